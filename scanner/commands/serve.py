"""`reachscan serve`: the newest complete stored run as Prometheus metrics over HTTP.

For those who scrape rather than run node_exporter's textfile collector: scans keep
writing the history (from cron or a timer), and `GET /metrics` replays the newest complete
run through the same `PromSink` the `--format prom` file comes from, so the metric names,
labels and values are the textfile's. What serve adds (see `self_families`):

  reachscan_history_up              1 when the history could be read for this scrape
  reachscan_runs_stored{status}     stored runs by status (every status, zeros too)
  reachscan_served_run_id           the run the metrics come from (`reachscan diff ID`)
  reachscan_last_run_age_seconds    seconds since that run finished
  reachscan_last_success_timestamp_seconds  from the history when the served run was not
      a success (a textfile carries it forward from the previous file instead)

Which run: the newest *complete* one. A running run is unfinished; an interrupted or
failed one is partial, and serving it would make endpoints it never reached vanish from
the series. Until a run completes only the serve metrics above are exposed, so alert on
`absent(reachscan_last_run_timestamp_seconds)` and on the age.

Why the standard library's ThreadingHTTPServer: one scrape every few seconds needs no
framework, and a thread per request lets each open the SQLite store itself (sqlite3
objects belong to the thread that made them) read-only, never blocking a scan that is
writing (WAL). Rendering a big run costs a pass over its rows, so the rendered run is
cached per (database file, run id): a complete run never changes. The database's mtime
is not part of the key because in WAL mode writes land in `-wal` and the main file
changes only at checkpoints; every batch a scan writes would otherwise empty the cache.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import itertools
import os
import signal
import socket
import socketserver
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, MappingProxyType
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from scanner import __version__
from scanner.commands.common import add_db_option, report_error
from scanner.history.paths import default_db_path
from scanner.history.records import RunRecord, RunStatus
from scanner.history.store import HistoryError, HistoryStore, run_info_of, summary_of
from scanner.outputs.prom import PREFIX, PromSink, run_succeeded
from scanner.plan import ExitStatus

if TYPE_CHECKING:
    from scanner.commands.common import Subparsers

DEFAULT_LISTEN = "127.0.0.1:9888"
METRICS_PATH = "/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REQUEST_TIMEOUT = 30.0  # seconds a client may take to send its request
REPLAY_BATCH = 1_000  # results handed to the sink at a time

INDEX_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>reachscan</title></head><body>\n"
    b"<h1>reachscan</h1>\n<p>The newest complete run in the history, as Prometheus metrics: "
    b'<a href="/metrics">/metrics</a></p>\n</body></html>\n'
)
NOT_FOUND_PAGE = b"not found: the metrics are at /metrics\n"


# --- the listen address -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """An IP literal and a port to listen on; port 0 lets the kernel pick one."""

    host: str
    port: int

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    def url(self, port: int | None = None, path: str = METRICS_PATH) -> str:
        shown = f"[{self.host}]" if self.family is socket.AF_INET6 else self.host
        return f"http://{shown}:{self.port if port is None else port}{path}"


_LISTEN_EXAMPLES = "e.g. 127.0.0.1:9888, [::1]:9888 or 0.0.0.0:9888"


def parse_listen_address(text: str) -> ListenAddress:
    """`IPV4:PORT` or `[IPV6]:PORT`. Raises ValueError saying what is wrong.

    Only address literals: which interfaces the metrics (a map of what is broken in the
    fleet) are exposed on is a security decision, so it is never left to a name lookup.
    """
    if text.startswith("["):
        closing = text.find("]")
        if closing < 0 or text[closing + 1 : closing + 2] != ":":
            raise ValueError(f"{text!r}: expected [IPV6]:PORT ({_LISTEN_EXAMPLES})")
        host, port_text = text[1:closing], text[closing + 2 :]
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            raise ValueError(f"{text!r}: expected ADDRESS:PORT ({_LISTEN_EXAMPLES})")
        if ":" in host:
            raise ValueError(f"{text!r}: put an IPv6 address in brackets, e.g. [::1]:9888")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"{text!r}: {host!r} is not an IP address; listen on an address ({_LISTEN_EXAMPLES})"
        ) from None
    if text.startswith("[") and address.version != 6:
        raise ValueError(f"{text!r}: brackets are for IPv6 addresses; write {host}:{port_text}")
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise ValueError(f"{text!r}: the port must be a number from 0 to 65535")
    return ListenAddress(host=str(address), port=int(port_text))


def listen_address(text: str) -> ListenAddress:
    try:
        return parse_listen_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


# --- rendering ----------------------------------------------------------------------


class MemoryTarget:
    """An `OutputTarget` that keeps the bytes, so a sink can render an HTTP response."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._committed: bytes | None = None

    def write(self, data: bytes | bytearray) -> None:
        self._chunks.append(bytes(data))

    def flush(self) -> None:
        """Nothing to hand on: the bytes are read with `committed`."""

    def commit(self) -> None:
        self._committed = b"".join(self._chunks)

    def discard(self) -> None:
        self._chunks.clear()
        self._committed = None

    @property
    def committed(self) -> bytes:
        """Everything written before `commit`; RuntimeError if nothing was committed."""
        if self._committed is None:
            raise RuntimeError("MemoryTarget: nothing committed")
        return self._committed


def render_run(store: HistoryStore, run: RunRecord, *, aggregates_only: bool) -> bytes:
    """Run `run` through `PromSink` exactly as the scan fed it: the textfile's metrics.

    No previous file exists here, so the sink emits the last-success time only when this
    run was a success; `self_families` adds it from the history otherwise.
    """
    target = MemoryTarget()
    sink = PromSink(target, aggregates_only=aggregates_only)
    sink.start(run_info_of(run))
    results = store.results(run.id)
    while batch := list(itertools.islice(results, REPLAY_BATCH)):
        sink.write(batch)
    sink.finish(summary_of(run))
    return target.committed


@dataclass(frozen=True, slots=True)
class HistoryState:
    """What one scrape learned about the history, beyond the served run's own metrics."""

    readable: bool
    runs: Mapping[RunStatus, int]
    served: RunRecord | None
    last_success: float | None


NO_RUNS: Mapping[RunStatus, int] = MappingProxyType(dict.fromkeys(RunStatus, 0))


def self_families(state: HistoryState, now: float) -> list[Metric]:
    """serve's own metrics (the module docstring lists them)."""
    families: list[Metric] = [
        _gauge(
            "history_up",
            "1 when reachscan serve could read the history database for this scrape.",
            int(state.readable),
        )
    ]
    if not state.readable:
        return families
    runs = GaugeMetricFamily(
        f"{PREFIX}runs_stored", "Runs stored in reachscan's history, by status.", labels=["status"]
    )
    for status in RunStatus:
        runs.add_metric([status.value], state.runs.get(status, 0))
    families.append(runs)
    served = state.served
    if served is None or served.finished is None:
        return families
    families += [
        _gauge("served_run_id", "The stored run these metrics come from.", served.id),
        _gauge(
            "last_run_age_seconds",
            "Seconds since the run these metrics come from finished.",
            max(0.0, now - served.finished),
        ),
    ]
    if state.last_success is not None and not run_succeeded(summary_of(served)):
        families.append(
            _gauge(
                "last_success_timestamp_seconds",
                "Unix time a reachscan run last found every endpoint as expected.",
                state.last_success,
            )
        )
    return families


class _Families:
    """A prometheus_client collector yielding families built beforehand."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)


def exposition(families: Sequence[Metric]) -> bytes:
    registry = CollectorRegistry()
    registry.register(_Families(families))
    return generate_latest(registry)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}{name}", documentation, value=value)


_CacheKey = tuple[int, int, int]  # the database file's st_dev and st_ino, the run id


class MetricsRenderer:
    """Renders `/metrics` for any handler thread; shares only the cached run bytes.

    Each call opens the history read-only in the calling thread. A history that cannot be
    read gives `reachscan_history_up 0` (a scrape that fails outright would hide the
    reason); the reason goes to stderr once each time it changes, not once per scrape.
    """

    def __init__(
        self,
        db: Path,
        *,
        aggregates_only: bool = False,
        clock: Callable[[], float] = time.time,
        report: Callable[[str], None] = report_error,
    ) -> None:
        self._db = db
        self._aggregates_only = aggregates_only
        self._clock = clock
        self._report = report
        self._lock = threading.Lock()
        self._cached: tuple[_CacheKey, bytes] | None = None
        self._last_problem: str | None = None
        self.renders = 0  # runs rendered (not served from the cache), for the tests

    def render(self) -> bytes:
        try:
            run_metrics, state = self._read()
        except HistoryError as error:
            self._note_problem(str(error))
            run_metrics, state = b"", HistoryState(False, NO_RUNS, None, None)
        else:
            self._note_problem(None)
        return run_metrics + exposition(self_families(state, self._clock()))

    def _read(self) -> tuple[bytes, HistoryState]:
        try:
            identity = os.stat(self._db)
        except FileNotFoundError:
            # No scan has stored a run yet: nothing is wrong, there is just nothing to say.
            return b"", HistoryState(True, NO_RUNS, None, None)
        except OSError as error:
            raise HistoryError(self._db, error.strerror or str(error)) from error
        with HistoryStore.open_readonly(self._db) as store:
            served = store.latest_complete_run()
            state = HistoryState(
                readable=True,
                runs=store.run_counts(),
                served=served,
                last_success=store.last_success_time(),
            )
            if served is None:
                return b"", state
            key = (identity.st_dev, identity.st_ino, served.id)
            return self._run_metrics(store, served, key), state

    def _run_metrics(self, store: HistoryStore, run: RunRecord, key: _CacheKey) -> bytes:
        # Rendering under the lock: concurrent scrapes of a new run wait for one pass over
        # its rows instead of each making their own.
        with self._lock:
            if self._cached is not None and self._cached[0] == key:
                return self._cached[1]
            rendered = render_run(store, run, aggregates_only=self._aggregates_only)
            self._cached = (key, rendered)
            self.renders += 1
            return rendered

    def _note_problem(self, problem: str | None) -> None:
        with self._lock:
            changed, self._last_problem = problem != self._last_problem, problem
        if changed and problem is not None:
            self._report(problem)
        elif changed:
            self._report(f"history database {self._db} is readable again")


# --- HTTP ---------------------------------------------------------------------------


class MetricsHandler(BaseHTTPRequestHandler):
    """`/metrics`, a small index page at `/`, 404 for anything else; HEAD as GET."""

    server_version = f"reachscan/{__version__}"
    timeout = REQUEST_TIMEOUT

    def __init__(
        self,
        request: Any,
        client_address: Any,
        server: socketserver.BaseServer,
        *,
        renderer: MetricsRenderer,
    ) -> None:
        self._renderer = renderer  # before super().__init__, which handles the request
        super().__init__(request, client_address, server)

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def _respond(self, *, send_body: bool) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == METRICS_PATH:
            status, content_type, body = 200, CONTENT_TYPE, self._renderer.render()
        elif path == "/":
            status, content_type, body = 200, "text/html; charset=utf-8", INDEX_PAGE
        else:
            status, content_type, body = 404, "text/plain; charset=utf-8", NOT_FOUND_PAGE
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Nothing per request: a scrape every 15 seconds would fill the journal."""


class MetricsServer(ThreadingHTTPServer):
    """ThreadingHTTPServer on an IPv4 or IPv6 literal, without the name lookups."""

    daemon_threads = True  # a stuck client must not keep the process from exiting
    # socketserver's default backlog of 5 drops SYNs once full (FIELD_NOTES.md), which a
    # scraper sees as a timeout; a few Prometheus replicas and a curl must not get that.
    request_queue_size = 64

    def __init__(
        self, address: ListenAddress, handler: Callable[..., BaseHTTPRequestHandler]
    ) -> None:
        self.address_family = address.family
        super().__init__((address.host, address.port), handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(host): a reverse lookup that, for
        # 0.0.0.0, asks the configured DNS server about this machine's name. Nothing here
        # needs the name, so bind as TCPServer does and keep the literal.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-response is not our error; anything else is."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


# --- the command --------------------------------------------------------------------


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the newest complete stored run as Prometheus metrics over HTTP",
        description="An HTTP endpoint for Prometheus to scrape: GET /metrics gives the "
        "newest complete run in the history, with the metrics `--format prom` writes. "
        "Stops cleanly (exit 0) on SIGINT or SIGTERM.",
    )
    parser.add_argument(
        "--listen",
        type=listen_address,
        default=DEFAULT_LISTEN,
        metavar="ADDRESS:PORT",
        help=f"where to listen (default {DEFAULT_LISTEN}, this machine only; "
        "[::1]:9888 for IPv6, 0.0.0.0:9888 for every interface, port 0 for any free port)",
    )
    add_db_option(parser)
    parser.add_argument(
        "--prom-aggregates-only",
        action="store_true",
        help="only run-level metrics, no per-endpoint series (huge fleets)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    db: Path = args.db if args.db is not None else default_db_path()
    address: ListenAddress = args.listen
    if db.exists():
        try:
            HistoryStore.open_readonly(db).close()  # a wrong --db fails now, not per scrape
        except HistoryError as error:
            report_error(str(error))
            return int(ExitStatus.USAGE_OR_INVENTORY)
    else:
        report_error(
            f"history database {db} does not exist yet; serving only reachscan_history_up "
            "and reachscan_runs_stored until a scan stores a run there (pass --db PATH for "
            "another location)"
        )
    renderer = MetricsRenderer(db, aggregates_only=args.prom_aggregates_only)
    try:
        server = MetricsServer(address, partial(MetricsHandler, renderer=renderer))
    except OSError as error:
        report_error(f"cannot listen on {address.url(path='')}: {error.strerror or error}")
        return int(ExitStatus.USAGE_OR_INVENTORY)
    with server:
        return serve_until_signalled(server, address)


def serve_until_signalled(server: MetricsServer, address: ListenAddress) -> int:
    """Serve in a worker thread until SIGINT or SIGTERM, then shut down and return 0.

    The main thread only waits: `shutdown()` blocks until `serve_forever` returns, so it
    cannot be called from a signal handler running in the serving thread itself.
    """
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    def serve() -> None:
        try:
            server.serve_forever()
        finally:
            stop.set()  # if serving ever dies, do not wait for a signal that may not come

    worker = threading.Thread(target=serve, name="reachscan-serve")
    worker.start()
    try:
        with contextlib.suppress(OSError):  # no stderr (a closed journal) is no reason to stop
            sys.stderr.write(f"serving {address.url(port=server.server_port)}\n")  # one write
            sys.stderr.flush()
        stop.wait()
    finally:
        server.shutdown()
        worker.join()
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)
    return int(ExitStatus.OK)
