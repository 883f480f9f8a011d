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

This module is the options, the listen address and the wiring: what `/metrics` contains
and its cache are `scanner.serve.metrics`; the HTTP side is `scanner.serve.server`, one
event-loop thread and a fixed few responder threads, bounded connections and timeouts,
whatever clients do (its docstring says why).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from scanner import __version__
from scanner.commands.common import add_db_option
from scanner.console import report_error
from scanner.core.addresses import parse_ip_literal
from scanner.history.paths import default_db_path
from scanner.history.store import HistoryError, HistoryStore
from scanner.serve.metrics import METRICS_PATH, MetricsRenderer, report_problem, respond
from scanner.serve.server import DEFAULT_LIMITS, Limits, MetricsHttpServer
from scanner.status import ExitStatus

if TYPE_CHECKING:
    from scanner.commands.common import Subparsers

DEFAULT_LISTEN = "127.0.0.1:9888"

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
    address = parse_ip_literal(host, brackets=False)
    if address is None:
        raise ValueError(
            f"{text!r}: {host!r} is not an IP address; listen on an address ({_LISTEN_EXAMPLES})"
        )
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
            report_error(f"reachscan: {error}")
            return int(ExitStatus.USAGE_OR_INVENTORY)
    else:
        report_error(
            f"reachscan: history database {db} does not exist yet; serving only "
            "reachscan_history_up and reachscan_runs_stored until a scan stores a run there "
            "(pass --db PATH for another location)"
        )
    renderer = MetricsRenderer(db, aggregates_only=args.prom_aggregates_only)
    try:
        server = metrics_server(address, renderer)
    except OSError as error:
        report_error(
            f"reachscan: cannot listen on {address.url(path='')}: {error.strerror or error}"
        )
        return int(ExitStatus.USAGE_OR_INVENTORY)
    with server:
        return serve_until_signalled(server, address)


def metrics_server(
    address: ListenAddress, renderer: MetricsRenderer, limits: Limits = DEFAULT_LIMITS
) -> MetricsHttpServer:
    """The server `run` starts, bound and listening; tests pass smaller `limits`."""
    return MetricsHttpServer(
        address.host,
        address.port,
        address.family,
        partial(respond, renderer),
        server_name=f"reachscan/{__version__}",
        limits=limits,
        report=report_problem,
    )


def serve_until_signalled(server: MetricsHttpServer, address: ListenAddress) -> int:
    """Serve in a worker thread until SIGINT or SIGTERM, then shut down and return 0.

    The main thread only waits: `shutdown()` blocks until `serve_forever` returns, so it
    cannot be called from a signal handler running in the serving thread itself. If
    serving dies instead (an error the server does not expect, such as its listening
    socket failing), that is said in one line and the exit status is 3: a service manager
    must see a failure, not a clean stop, and restart it.
    """
    stop = threading.Event()
    failures: list[Exception] = []

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    def serve() -> None:
        try:
            server.serve_forever()
        except Exception as error:  # said by the main thread, never a thread's traceback
            failures.append(error)
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
    if failures:
        report_error(f"reachscan: serving stopped: {describe_failure(failures[0])}")
        return int(ExitStatus.OUTPUT_FAILED)
    return int(ExitStatus.OK)


def describe_failure(error: Exception) -> str:
    """One line for an error that ended serving: its OS reason, or its type and text."""
    if isinstance(error, OSError) and error.strerror:
        return f"the server failed: {error.strerror} (errno {error.errno})"
    return f"the server failed: {type(error).__name__}: {error}".replace("\n", " ")
