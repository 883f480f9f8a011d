"""The `reachscan` command: one subcommand per module in scanner/commands/.

Each module's `register(subparsers)` adds its parser and sets `handler`; this module only
dispatches and turns a usage error into the documented exit status. `reachscan check`
is parsed on its own because Nagios wants exit status 3, not argparse's 2, for a usage
error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from scanner import __version__
from scanner.commands import check, diff, history, scan, serve
from scanner.commands.scan import UsageError
from scanner.plan import ExitStatus


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reachscan",
        description="Bulk TCP/UDP reachability scanner that explains refusals.",
    )
    parser.add_argument("--version", action="version", version=f"reachscan {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    scan.register(commands)
    check.register(commands)
    diff.register(commands)
    history.register(commands)
    serve.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["check"]:
        return check.main(arguments[1:])
    parser = build_parser()
    args = parser.parse_args(arguments)
    try:
        return int(args.handler(args))
    except UsageError as exc:
        parser.exit(ExitStatus.USAGE_OR_INVENTORY, f"reachscan: {exc}\n")
    except KeyboardInterrupt:
        return int(ExitStatus.INTERRUPTED)
