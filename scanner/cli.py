"""The `reachscan` command: one subcommand per module in scanner/commands/.

Each module's `register(subparsers)` adds its parser and sets `handler`; this module only
dispatches and turns a usage error into the documented exit status. `reachscan check`
is parsed on its own because Nagios wants exit status 3, not argparse's 2, for a usage
error. When the first argument names a subcommand, only that subcommand's module is
imported: `reachscan scan` from cron need not load the HTTP server and Prometheus
client of `serve` (start-up is part of every run's time).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from scanner import __version__
from scanner.console import (
    STDOUT_CLOSED,
    discard_stdout,
    fill_closed_standard_streams,
    report_error,
    stdout_writable,
)
from scanner.run.interrupts import Interrupt
from scanner.status import ExitStatus, UsageError

COMMANDS = ("scan", "check", "merge", "compare", "worker", "diff", "history", "serve")
"""In the order `reachscan --help` lists them; each is the module scanner.commands.NAME."""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or of `only` (the one named on the command line)."""
    parser = argparse.ArgumentParser(
        prog="reachscan",
        description="Bulk TCP/UDP reachability scanner that explains refusals.",
    )
    parser.add_argument("--version", action="version", version=f"reachscan {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS if only is None else (only,):
        importlib.import_module(f"scanner.commands.{name}").register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    fill_closed_standard_streams()  # before anything opens a file that could take fd 1
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["check"]:
        from scanner.commands import check

        return check.main(arguments[1:])
    named = arguments[0] if arguments and arguments[0] in COMMANDS else None
    parser = build_parser(named)
    args = parser.parse_args(arguments)
    try:
        return int(args.handler(args))
    except UsageError as exc:
        parser.exit(ExitStatus.USAGE_OR_INVENTORY, f"reachscan: {exc}\n")
    except Interrupt as interrupt:  # said last, once everything has been cleaned up
        report_error(str(interrupt))
        return int(ExitStatus.INTERRUPTED)
    except KeyboardInterrupt:
        return int(ExitStatus.INTERRUPTED)
    except OSError:
        if stdout_writable():
            raise
        # A command that prints its answer (history, diff) started with stdout closed.
        report_error(f"reachscan: cannot write to standard output: {STDOUT_CLOSED}")
        discard_stdout()  # else the interpreter's own flush at exit fails once more
        return int(ExitStatus.OUTPUT_FAILED)
