"""`reachscan history HOST[:PORT[/PROTO]]`: one host's endpoints over the last runs.

Shows each endpoint's state in each of the last N complete runs and marks those that
flap (changed state at least K times). HOST matches the name as the inventory wrote it
or the probed address. Exit status 0 when something was shown, 2 when the history is
missing, the argument is malformed or nothing is stored for HOST.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from scanner.commands.common import (
    RUN_COUNT,
    add_db_option,
    emit,
    emit_json,
    open_existing,
)
from scanner.console import report_error
from scanner.core.model import Proto
from scanner.history.store import HistoryError
from scanner.history.timeline import (
    DEFAULT_FLAP_THRESHOLD,
    DEFAULT_RUNS,
    endpoint_timeline,
    render_timeline_text,
    timeline_to_json,
)
from scanner.status import ExitStatus

if TYPE_CHECKING:
    from scanner.commands.common import Subparsers

EndpointQuery = tuple[str, int | None, Proto | None]


def parse_endpoint_query(text: str) -> EndpointQuery:
    """`HOST`, `HOST:PORT` or `HOST:PORT/PROTO`; IPv6 in brackets when a port follows
    (`[::1]:53/udp`), bare otherwise (`::1`). Raises ValueError saying what is wrong."""
    if text.startswith("["):
        closing = text.find("]")
        if closing < 0:
            raise ValueError(f"{text!r}: '[' without ']'")
        host, rest = text[1:closing], text[closing + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected ':PORT' after ']'")
        port_text = rest[1:] if rest else None
    elif text.count(":") > 1:
        host, port_text = text, None  # a bare IPv6 address
    else:
        host, _, port_text = text.partition(":")
        port_text = port_text if ":" in text else None
    if not host:
        raise ValueError(f"{text!r}: no host")
    if port_text is None:
        return host, None, None
    number, slash, proto_text = port_text.partition("/")
    if not number.isdigit() or not 1 <= int(number) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    if not slash:
        return host, int(number), None
    try:
        proto = Proto(proto_text.lower())
    except ValueError:
        raise ValueError(f"{text!r}: the protocol must be tcp or udp") from None
    return host, int(number), proto


def endpoint_query(text: str) -> EndpointQuery:
    try:
        return parse_endpoint_query(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "history",
        help="show a host's endpoints over the last runs, and which ones flap",
        description="Each endpoint of HOST in each of the last N complete runs (oldest "
        "first), its state now, and whether it flaps.",
    )
    parser.add_argument(
        "endpoint",
        type=endpoint_query,
        metavar="HOST[:PORT[/PROTO]]",
        help="a name as the inventory wrote it, or an address; e.g. db1, db1:5432, [::1]:53/udp",
    )
    add_db_option(parser)
    parser.add_argument(
        "--runs",
        type=RUN_COUNT,
        default=DEFAULT_RUNS,
        metavar="N",
        help=f"how many complete runs to show ({RUN_COUNT.accepted()}; default {DEFAULT_RUNS})",
    )
    parser.add_argument(
        "--flap-threshold",
        type=RUN_COUNT,
        default=DEFAULT_FLAP_THRESHOLD,
        metavar="K",
        help="state changes within the runs shown that make an endpoint flapping "
        f"({RUN_COUNT.accepted()}; default {DEFAULT_FLAP_THRESHOLD})",
    )
    parser.add_argument(
        "--format", choices=["table", "json"], default="table", help="output (default: table)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    host, port, proto = args.endpoint
    try:
        with open_existing(args.db) as store:
            timeline = endpoint_timeline(
                store, host, port, proto, runs=args.runs, flap_threshold=args.flap_threshold
            )
    except HistoryError as error:
        report_error(f"reachscan: {error}")
        return int(ExitStatus.USAGE_OR_INVENTORY)
    if not timeline.endpoints:
        report_error(
            f"reachscan: no stored results for {host}"
            + (f" port {port}" if port is not None else "")
            + f" in the last {args.runs} complete runs "
            f"({len(timeline.runs)} stored); check the spelling, or try its address"
        )
        return int(ExitStatus.USAGE_OR_INVENTORY)
    if args.format == "json":
        return emit_json(timeline_to_json(timeline))
    return emit(render_timeline_text(timeline))
