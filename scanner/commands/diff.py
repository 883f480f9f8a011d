"""`reachscan diff [RUN_A [RUN_B]]`: what changed between two stored runs.

With no run ids, the last two complete runs; with one, that run against the newest
complete run. Exit status 0 when the diff was printed (changes or not; with
`--exit-code`, 1 when there were changes), 2 when the history or a run id is missing.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from scanner.commands.common import (
    RUN_ID,
    add_db_option,
    emit,
    emit_json,
    open_existing,
)
from scanner.console import report_error
from scanner.history.diff import diff_runs, diff_to_json, render_diff_text
from scanner.history.store import HistoryError
from scanner.status import ExitStatus

if TYPE_CHECKING:
    from scanner.commands.common import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "diff",
        help="show what changed between two stored runs",
        description="Endpoints whose state or cause changed, appeared or vanished between "
        "two runs (default: the last two complete runs; with one RUN_A, it against the "
        "newest complete run).",
    )
    parser.add_argument("run_a", nargs="?", type=RUN_ID, metavar="RUN_A", help="earlier run id")
    parser.add_argument("run_b", nargs="?", type=RUN_ID, metavar="RUN_B", help="later run id")
    add_db_option(parser)
    parser.add_argument(
        "--format", choices=["table", "json"], default="table", help="output (default: table)"
    )
    parser.add_argument(
        "--exit-code",
        action="store_true",
        help="exit 1 when something changed, 0 when nothing did (as `diff` and `git diff "
        "--exit-code` do), for scripts and cron",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        with open_existing(args.db) as store:
            diff = diff_runs(store, args.run_a, args.run_b)
    except HistoryError as error:
        report_error(f"reachscan: {error}")
        return int(ExitStatus.USAGE_OR_INVENTORY)
    if args.format == "json":
        status = emit_json(diff_to_json(diff))
    else:
        status = emit(render_diff_text(diff))
    if status == ExitStatus.OK and args.exit_code and diff.changes:
        return int(ExitStatus.NOT_AS_EXPECTED)
    return status
