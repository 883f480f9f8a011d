"""`reachscan check`: a Nagios/Icinga plugin.

One status line on stdout with perfdata, and the plugin exit statuses: 0 OK, 1 WARNING,
2 CRITICAL, 3 UNKNOWN. `-w`/`-c` are Nagios ranges on how many endpoints may fail (by
default any failure is CRITICAL). Everything that is our failure rather than the
endpoints' — a usage error, another run holding the lock, an interrupt, an unwritable
history — is UNKNOWN: never argparse's 2, which Nagios would read as CRITICAL. The run
is recorded in the history only when `--db` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from scanner.commands import scan
from scanner.commands.common import IntRange
from scanner.outputs import OutputOptions, OutputSpec
from scanner.outputs.nagios import DEFAULT_CRITICAL, Status, Threshold
from scanner.run.lifecycle import run_async
from scanner.status import ExitStatus, UsageError

if TYPE_CHECKING:
    from scanner.commands.common import Subparsers

QUORUM = IntRange(1, 1000)
"""--quorum: vantages that must agree an endpoint failed."""

DESCRIPTION = (
    "Nagios/Icinga plugin: scan, print one status line with perfdata, exit 0 OK, "
    "1 WARNING, 2 CRITICAL, 3 UNKNOWN."
)


def unknown(message: str) -> int:
    with contextlib.suppress(OSError):
        print(f"REACHSCAN UNKNOWN - {message}", flush=True)
    return Status.UNKNOWN


class NagiosArgumentParser(argparse.ArgumentParser):
    """Usage errors exit 3 (UNKNOWN) with a plugin-style line, not argparse's 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        unknown(f"usage: {message}")
        raise SystemExit(Status.UNKNOWN)


def threshold(text: str) -> Threshold:
    try:
        return Threshold.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    scan.add_scan_arguments(parser)
    limits = parser.add_argument_group("thresholds (Nagios ranges on failed endpoints)")
    limits.add_argument(
        "-w",
        "--warning",
        type=threshold,
        default=None,
        metavar="RANGE",
        help="WARNING when the number of endpoints not as expected is outside RANGE",
    )
    limits.add_argument(
        "-c",
        "--critical",
        type=threshold,
        default=DEFAULT_CRITICAL,
        metavar="RANGE",
        help="CRITICAL likewise (default 0: any failure is critical)",
    )
    limits.add_argument(
        "--quorum",
        type=QUORUM,
        default=None,
        metavar="K",
        help="with --broker and --vantages: an endpoint counts as failed only when at "
        "least K vantages see it not as expected (default 1)",
    )


def register(subparsers: Subparsers) -> None:
    """Listed in `reachscan --help`; parsed by `main` below (for the exit statuses)."""
    parser = subparsers.add_parser("check", help=DESCRIPTION, description=DESCRIPTION)
    add_check_arguments(parser)


def main(argv: Sequence[str]) -> int:
    parser = NagiosArgumentParser(prog="reachscan check", description=DESCRIPTION)
    add_check_arguments(parser)
    args = parser.parse_args(argv)
    if args.db is None:
        args.no_history = True
    try:
        quorum = args.quorum if args.quorum is not None or args.broker is None else 1
        spread = scan.distributed_plan(args, quorum=quorum)
        plan = scan.make_plan(
            args,
            outputs=(OutputSpec("nagios", "-"),),
            output_options=OutputOptions(warning=args.warning, critical=args.critical),
        )
        status = run_async(plan, args.loop) if spread is None else scan.run_spread(plan, spread)
    except UsageError as exc:
        return unknown(str(exc))
    except KeyboardInterrupt:
        return unknown("interrupted")
    return plugin_status(status)


def plugin_status(status: int) -> int:
    """The scan's exit status as the plugin's. The Nagios output's own verdict comes back
    as a plain int (0-3); an `ExitStatus` member means the scan ended before that output
    could give one (an inventory without endpoints, an oversize one, the lock, an output
    failure, an interrupt), and its number would be misread as a service state (2 would
    say CRITICAL with no plugin line at all): that is UNKNOWN, with a line saying why."""
    if isinstance(status, ExitStatus):
        if status is ExitStatus.INTERRUPTED:
            return unknown("interrupted")
        return unknown(f"the scan could not run (exit status {int(status)}; see stderr)")
    if status not in (Status.OK, Status.WARNING, Status.CRITICAL, Status.UNKNOWN):
        return unknown(f"the scan could not run (exit status {status}; see stderr)")
    return status
