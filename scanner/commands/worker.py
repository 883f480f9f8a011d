"""`reachscan worker --broker URL --vantage NAME`: a Celery worker at one vantage point.

It consumes that vantage's queue only, and connects out to the broker (a site behind a
firewall needs no inbound rule). Each shard it takes is a whole local scan of that shard
(scanner/distributed/shard_task.py). Needs the extra: `pip install 'reachscan[celery]'`.
A broker URL that is not Redis's, or a broker nothing answers at, is one line on stderr
and exit 2 or 3; SIGTERM or SIGINT stops the worker as Celery does (a warm shutdown: the
shard in hand finishes first; a second signal stops at once, and the shard returns to
the queue).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from scanner.commands.common import IN_FLIGHT, vantage_name
from scanner.console import report_error
from scanner.status import ExitStatus, UsageError

if TYPE_CHECKING:
    from scanner.commands.common import Subparsers

CELERY_MISSING = (
    "the distributed scan needs Celery and Redis's client: pip install 'reachscan[celery]'"
)


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run a Celery worker that scans the shards sent to one vantage point",
        description="Consume the queue of vantage NAME on the broker and scan each shard "
        "sent there (`reachscan scan INVENTORY --broker URL --vantages NAME,...`), "
        "from this machine.",
    )
    parser.add_argument("--broker", required=True, metavar="URL", help="redis://HOST[:PORT][/DB]")
    parser.add_argument(
        "--vantage", required=True, type=vantage_name, metavar="NAME", help="this site's name"
    )
    parser.add_argument(
        "--concurrency",
        type=IN_FLIGHT,
        default=1,
        metavar="N",
        help="shards scanned at once by this worker (default 1; each is a scan of its own)",
    )
    parser.add_argument(
        "--hosts-file",
        metavar="PATH",
        help="this site's hosts file for the shards' scans (names resolve where the "
        "probes start; default /etc/hosts)",
    )
    parser.add_argument(
        "--nameserver",
        action="append",
        default=[],
        metavar="ADDR[:PORT]",
        help="this site's DNS server for the shards' scans (repeatable; default: "
        "/etc/resolv.conf's)",
    )
    parser.add_argument(
        "--visibility-timeout",
        type=float,
        default=3600.0,
        metavar="S",
        help="a shard taken by a worker that vanished with its machine returns to the "
        "queue after S seconds (Redis's visibility timeout; default 3600: longer than "
        "any shard)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        from scanner.distributed.app import check_broker, make_app
        from scanner.distributed.protocol import BrokerError, queue_of
    except ImportError:
        raise UsageError(CELERY_MISSING) from None
    site = [
        *(["--hosts-file", args.hosts_file] if args.hosts_file else []),
        *(item for server in args.nameserver for item in ("--nameserver", server)),
    ]
    try:
        app = make_app(args.broker, site, args.visibility_timeout)
    except BrokerError as error:
        raise UsageError(str(error)) from None
    try:
        check_broker(app)
    except BrokerError as error:
        report_error(f"reachscan: {error}")
        return ExitStatus.OUTPUT_FAILED
    app.worker_main(
        [
            "worker",
            "--queues",
            queue_of(args.vantage),
            "--hostname",
            f"{args.vantage}@%h",
            "--concurrency",
            str(args.concurrency),
            "--pool",
            "prefork",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return ExitStatus.OK
