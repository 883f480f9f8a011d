"""`reachscan compare FILE...`: what each vantage point saw of the same endpoints.

Reads the JSON Lines of runs from several vantages (whole runs or shards, files or `-`),
and prints per endpoint each vantage's state and reason, flagging **path-dependent** the
endpoints whose state differs between vantages, with the evidence (scanner/core/vantages.py).
Exit status: 0 when no endpoint is path-dependent, 1 when some is, 2 for a usage error or
bad input lines (FILE:LINE on stderr; the rest is compared), 3 when the output cannot be
written, 130 on an interrupt (nothing is written then). Loads no engine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from typing import TYPE_CHECKING

import orjson

from scanner.console import report_error
from scanner.core.merging import VantageLedgers
from scanner.core.vantages import Comparison, summarize
from scanner.outputs import OutputError, open_target
from scanner.outputs.comparison import comparison_to_json, render_comparison_table
from scanner.run.interrupts import SignalGuard
from scanner.run.merge import read_results
from scanner.status import ExitStatus, UsageError

if TYPE_CHECKING:
    from scanner.commands.common import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare what several vantage points saw: path-dependent endpoints",
        description="Per endpoint, each vantage's state and reason, from the JSON Lines of "
        "runs made at several vantage points (`scan --vantage NAME`; whole runs or "
        "shards). An endpoint whose state differs between vantages is flagged "
        "path-dependent, with the evidence. Exit 1 when some endpoint is path-dependent.",
    )
    parser.add_argument("inputs", nargs="+", metavar="FILE", help="JSON Lines (- for stdin)")
    parser.add_argument(
        "--format", choices=["table", "json"], default="table", help="output (default: table)"
    )
    parser.add_argument(
        "-o", "--output", default="-", metavar="PATH", help="write to PATH atomically"
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="table: every endpoint (default: path-dependent ones and those some vantage "
        "sees not as expected)",
    )
    parser.set_defaults(handler=run)


def check_inputs(inputs: list[str]) -> None:
    """Each FILE a readable regular file, stdin at most once: said before any reading."""
    if inputs.count("-") > 1:
        raise UsageError("standard input (-) can be read only once")
    for path in inputs:
        if path == "-":
            continue
        if not os.path.isfile(path):
            reason = "no such file" if not os.path.exists(path) else "not a regular file"
            raise UsageError(f"{path}: {reason}")
        if not os.access(path, os.R_OK):
            raise UsageError(f"{path}: not readable")


def run(args: argparse.Namespace) -> int:
    check_inputs(args.inputs)
    with SignalGuard().installed():
        ledgers = VantageLedgers()
        comparison = Comparison()
        for result, vantage in read_results(args.inputs, ledgers):
            comparison.add(result, vantage)
        ledgers.conclude()
        for problem in ledgers.problems:
            report_error(f"reachscan: {problem}")
        views = comparison.endpoints()
        summary = summarize(comparison, views)
        if args.format == "json":
            text = orjson.dumps(
                comparison_to_json(views, summary), option=orjson.OPT_APPEND_NEWLINE
            )
        else:
            text = render_comparison_table(views, summary, every_row=args.all).encode()
        try:
            target = open_target(args.output)
            try:
                target.write(text)
                target.commit()
            except BaseException:
                with contextlib.suppress(Exception):
                    target.discard()
                raise
        except OutputError as error:
            report_error(f"reachscan: {error}")
            return ExitStatus.OUTPUT_FAILED
    if ledgers.problem_count:
        return ExitStatus.USAGE_OR_INVENTORY
    return ExitStatus.NOT_AS_EXPECTED if summary.path_dependent else ExitStatus.OK
