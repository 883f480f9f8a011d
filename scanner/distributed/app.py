"""The Celery application both sides build from the broker's URL: Redis as broker and
result backend, JSON only, and the settings that keep a shard from being lost or counted
twice.

- **Late acknowledgement** (`task_acks_late`, `task_reject_on_worker_lost`): a shard's
  message is acknowledged when the shard is done, so a worker process killed mid-shard
  leaves it on the queue, and another worker of that vantage (or the same one, restarted)
  runs it again; the client keeps one answer per shard (its task id), never two.
- **One shard at a time per worker process** (`worker_prefetch_multiplier=1`): a busy
  worker does not hoard shards that an idle one at the same site could run.
- **Redis's visibility timeout**: a message taken by a worker whose whole machine
  vanished returns to the queue after `visibility_timeout` seconds (default an hour, the
  longest a shard may take); `reachscan worker --visibility-timeout` sets it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery

from scanner.distributed.protocol import TASK_NAME, BrokerError, ShardRequest, check_broker_url
from scanner.distributed.shard_task import run_shard_request

DEFAULT_VISIBILITY_TIMEOUT = 3600.0


def make_app(
    broker: str,
    site_argv: Sequence[str] = (),
    visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT,
) -> Celery:
    """The application for `broker`; `site_argv`: the worker's own scan options (its
    hosts file and nameservers: names resolve where the probes start)."""
    app = Celery("reachscan", broker=check_broker_url(broker), backend=broker, set_as_current=False)
    transport = {"visibility_timeout": visibility_timeout}
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        result_expires=86_400,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        broker_connection_timeout=5,
        broker_connection_retry_on_startup=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_default_queue="reachscan.unrouted",
    )
    site = tuple(site_argv)

    @app.task(name=TASK_NAME, bind=True)
    def scan_shard(task: Any, request: dict[str, object]) -> dict[str, object]:
        worker = str(getattr(task.request, "hostname", "") or "")
        return run_shard_request(ShardRequest.from_json(request), site, worker).to_json()

    return app


def check_broker(app: Celery, timeout: int = 5) -> None:
    """Connect once, or raise BrokerError saying why (no retries for ever: a wrong URL in
    a cron job must fail, not hang)."""
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as error:  # kombu raises its transport's own errors
        raise BrokerError(f"cannot reach the broker {app.conf.broker_url}: {error}") from None
