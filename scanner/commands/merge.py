"""`reachscan merge FILE...`: the JSON Lines of a split scan's shards made into one run.

Any output a scan writes (`--format`/`-o`), and into the history with `--db`, where the
merged run shows in `history` and `diff` as any run does. A shard missing, a shard given
twice, a file cut short, an endpoint twice or a line that is no result is reported with
its file and line (scanner/core/merging.py) and the exit status is 2; the valid rest is
merged. Reads no inventory and loads no engine or event loop.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from scanner.commands.common import WAIT_LOCK, vantage_name
from scanner.commands.outputs import (
    add_output_arguments,
    refuse_outputs_onto_inputs,
    resolve_outputs,
)
from scanner.history.paths import history_files
from scanner.outputs import OutputOptions
from scanner.run.interrupts import SignalGuard
from scanner.run.merge import MergePlan, merge
from scanner.run.session import HistoryPlan
from scanner.status import UsageError

if TYPE_CHECKING:
    from scanner.commands.common import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "merge",
        help="make one run of the JSON Lines of a split scan's shards",
        description="Read the JSON Lines that `reachscan scan --shard I/N --format jsonl` "
        "runs wrote (files, or - for standard input; a file may hold several shards "
        "one after another) and write them as one run, to any output and, with --db, into "
        "the history. A shard missing or given twice, a file cut short, an endpoint twice "
        "or a line that is no result is reported as FILE:LINE and makes the exit status 2; "
        "the rest is merged. One run is one vantage point: see --vantage.",
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="FILE", help="JSON Lines of shards (- for stdin)"
    )
    parser.add_argument(
        "--vantage",
        type=vantage_name,
        metavar="NAME",
        help="merge only the results probed from NAME (files from several vantage points "
        "are one run each; `reachscan compare` puts them side by side)",
    )
    history = parser.add_argument_group("history")
    history.add_argument(
        "--db",
        type=Path,
        metavar="PATH",
        help="also store the merged run in this history database (as a scan's run: "
        "`reachscan history` and `diff` show it)",
    )
    history.add_argument(
        "--wait-lock",
        type=WAIT_LOCK,
        default=0.0,
        metavar="S",
        help="if another run holds the history's lock, wait up to S seconds (default 0)",
    )
    add_output_arguments(parser)
    parser.set_defaults(handler=run)


def make_plan(args: argparse.Namespace) -> MergePlan:
    if args.inputs.count("-") > 1:
        raise UsageError("standard input (-) can be read only once")
    for path in args.inputs:
        if path != "-" and not os.path.isfile(path):
            reason = "no such file" if not os.path.exists(path) else "not a regular file"
            raise UsageError(f"{path}: {reason}")
        if path != "-" and not os.access(path, os.R_OK):
            raise UsageError(f"{path}: not readable")
    stdout_is_terminal = sys.stdout.isatty()
    outputs = resolve_outputs(getattr(args, "outputs", None), stdout_is_terminal)
    history = None if args.db is None else HistoryPlan(path=args.db, wait_lock=args.wait_lock)
    if args.changes_only and history is None:
        raise UsageError("--changes-only compares with the history: give --db PATH")
    kept = () if history is None else history_files(history.database())
    refuse_outputs_onto_inputs(
        outputs,
        (
            *((f"{what} {path}", str(path)) for what, path in kept),
            *((f"the input {path}", path) for path in args.inputs if path != "-"),
        ),
    )
    use_color = args.color == "always" or (args.color == "auto" and stdout_is_terminal)
    return MergePlan(
        inputs=tuple(args.inputs),
        outputs=outputs,
        options=OutputOptions(color=use_color, aggregates_only=args.prom_aggregates_only),
        quiet=args.quiet,
        history=history,
        only_vantage=args.vantage,
        command=shlex.join(["reachscan", *sys.argv[1:]]),
        changes_only=args.changes_only,
    )


def run(args: argparse.Namespace) -> int:
    with SignalGuard().installed() as signals:
        return merge(make_plan(args), signals)
