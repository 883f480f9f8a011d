"""`reachscan merge`: the JSON Lines of shards (and of whole runs) made into one run, written
to any output and into the history as a scan's results are.

The files are read line by line and never held: each kept result goes on to the outputs
in batches, as a scan's do, so a merge of a million endpoints needs the memory of one
batch and of the endpoint identities it has seen (to drop duplicates). What is wrong with
the files is decided by `MergeLedger` (scanner/core/merging.py) and said on stderr, FILE:LINE
first; the valid rest is still merged.

Signals, as a scan obeys them (scanner/run/interrupts.py): before the outputs are open an
interrupt stops at once; while reading, the first stops the reading and writes what was
read, marked as a partial run; while writing, the writing finishes; a second quits at
once (every output keeps its previous file, the history run is stored interrupted).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import orjson

from scanner import __version__
from scanner.console import report_error
from scanner.core.merging import MergeLedger, VantageLedgers, end_of_record, result_of_record
from scanner.core.model import Result, State
from scanner.core.sinks import OutputError, RunInfo, RunSummary, Sink
from scanner.outputs import OutputOptions, OutputSpec
from scanner.run.interrupts import ScanControl, SignalGuard, StopFlag
from scanner.run.session import HistoryPlan, HistorySession
from scanner.run.sinkset import (
    GuardedSinks,
    end_after_failure,
    open_sinks,
    quit_and_exit,
    start_sinks,
    with_history,
)
from scanner.status import ExitStatus

Ledger = MergeLedger | VantageLedgers
"""One vantage's files (`merge`) or several vantages' (`compare`, a distributed scan)."""

BATCH = 1024
"""Results handed to the outputs at a time (one history transaction each)."""


@dataclass(frozen=True, slots=True)
class MergePlan:
    """What `reachscan merge` was asked, decided by the command line."""

    inputs: tuple[str, ...]  # "-" for standard input
    outputs: tuple[OutputSpec, ...]
    options: OutputOptions
    quiet: bool
    history: HistoryPlan | None  # --db: also store the merged run
    only_vantage: str | None
    command: str
    changes_only: bool = False  # what goes to stdout: only what changed since the last run


class StopReading(Exception):
    """Raised by the handler into a read that waits on a pipe (scanner/run/merge.py)."""


class Reading(StopFlag):
    """The interrupt's hand in the reading loop (`StopFlag`): when the merge is waiting for
    a line (stdin from a pipe that stays open), the stop also raises `StopReading` there,
    inside the one `readline` that waits, which is the only place it can land."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = False

    def stop(self, message: str) -> None:
        super().stop(message)
        if self.waiting:
            self.waiting = False
            raise StopReading

    def lines(self, stream: BinaryIO) -> Iterator[bytes]:
        """The lines of `stream`, until its end or the stop."""
        while not self.stopped:
            try:
                self.waiting = True
                line = stream.readline()
                self.waiting = False
            except StopReading:
                return
            if not line:
                return
            yield line


def merge(plan: MergePlan, signals: SignalGuard) -> int:
    """The whole merge: lock and history (with --db), outputs, reading, writing, status."""
    return with_history(
        plan.history, lambda history: signals.exit_status(merge_into(plan, signals, history))
    )


def merge_into(plan: MergePlan, signals: SignalGuard, history: HistorySession | None) -> int:
    ledger = MergeLedger(only_vantage=plan.only_vantage)
    reading = Reading()
    lines = kept_results(plan.inputs, ledger, reading)
    first = next(lines, None)  # the run starts with its first result
    signals.begin_scan()
    try:
        sinks = open_sinks(plan.outputs, plan.options, plan.quiet, history, plan.changes_only)
        start_sinks(
            sinks,
            RunInfo(
                started=time.time() if first is None else first.ts,
                command=plan.command,
                version=__version__,
                vantage=ledger.vantage or plan.only_vantage or "",
            ),
        )
    except (OutputError, ValueError) as error:
        report_error(f"reachscan: {error}")
        end_after_failure(signals, [], history, ExitStatus.OUTPUT_FAILED)
        return ExitStatus.OUTPUT_FAILED
    signals.control_scan(
        ScanControl(
            loop=reading,
            stop=reading.stop,
            quit=lambda message: quit_and_exit(message, sinks, history),
        )
    )
    writer = Writer(sinks)
    finished = 0.0
    try:
        batch: list[Result] = []
        for result in _chain(first, lines):
            batch.append(result)
            finished = max(finished, result.ts)
            if len(batch) >= BATCH or reading.stopped or writer.failed:
                writer.write(batch)
                batch = []
            if reading.stopped or writer.failed:
                break
        writer.write(batch)
        signals.finishing(lambda message: quit_and_exit(message, sinks, history))
        ledger.conclude()
        for problem in ledger.problems:
            report_error(f"reachscan: {problem}")
        summary = RunSummary(
            finished=finished or time.time(),
            counts=dict(writer.counts),
            total=writer.total,
            not_ok=writer.not_ok,
            inventory_errors=ledger.problem_count,
            interrupted=ledger.partial or reading.stopped or writer.failed,
        )
        writer.finish_all(summary)
    except KeyboardInterrupt:
        end_after_failure(signals, sinks, history, ExitStatus.INTERRUPTED)
        for sink in sinks:
            with contextlib.suppress(Exception):
                sink.abort()
        raise
    return writer.status(summary, ledger.problem_count)


def _chain(first: Result | None, rest: Iterator[Result]) -> Iterator[Result]:
    if first is not None:
        yield first
        yield from rest


class Writer(GuardedSinks):
    """The outputs of the merged run, and its tallies. An output that fails is set aside
    (its previous file kept) and the merge stops, exit 3; a closed stdout ends it quietly."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        super().__init__(sinks)
        self.counts: Counter[State] = Counter()
        self.total = 0
        self.not_ok = 0

    def write(self, batch: Sequence[Result]) -> None:
        if not batch:
            return
        for result in batch:
            self.counts[result.state] += 1
            if not result.ok:
                self.not_ok += 1
        self.total += len(batch)
        self.write_all(batch)

    def status(self, summary: RunSummary, problems: int) -> int:
        """README, "Exit status", as for a scan; bad input files count as a bad inventory."""
        decided = self.outputs_status()
        if decided is not None:
            return decided
        if problems:
            return ExitStatus.USAGE_OR_INVENTORY
        return ExitStatus.NOT_AS_EXPECTED if summary.not_ok else ExitStatus.OK


def kept_results(inputs: Sequence[str], ledger: MergeLedger, reading: Reading) -> Iterator[Result]:
    """Every result line of `inputs`, in order, that the ledger keeps, until the stop."""
    for result, _vantage in read_results(inputs, ledger, reading):
        yield result


def read_results(
    inputs: Sequence[str], ledger: Ledger, reading: Reading | None = None
) -> Iterator[tuple[Result, str]]:
    """Every result line of `inputs` that the ledger keeps, with its vantage, in order,
    until the end or the stop; `ledger` is told of every line (scanner/core/merging.py)."""
    reading = reading or Reading()
    for name in inputs:
        if reading.stopped:
            return
        with _opened(name) as stream:
            yield from results_of_lines(
                reading.lines(stream), "<stdin>" if name == "-" else name, ledger
            )


@contextlib.contextmanager
def _opened(name: str) -> Iterator[BinaryIO]:
    if name == "-":
        yield sys.stdin.buffer
        return
    with open(name, "rb") as stream:
        yield stream


def results_of_lines(
    lines: Iterable[bytes], name: str, ledger: Ledger
) -> Iterator[tuple[Result, str]]:
    """The kept results of one file's (or one shard's) lines, with their vantage."""
    number = 0
    cut = False
    for number, raw in enumerate(lines, 1):  # `number` is used after the loop
        where = f"{name}:{number}"
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            if not raw.endswith(b"\n"):
                cut = True  # the last line, cut mid-way: said once, as a truncation
                break
            ledger.line_malformed(where, f"not JSON ({error})")
            continue
        if not isinstance(record, dict):
            ledger.line_malformed(where, "not a JSON object")
            continue
        try:
            end = end_of_record(record)
            if end is not None:
                ledger.line_end(end, where, number)
                continue
            result, vantage = result_of_record(record)
        except ValueError as error:
            ledger.line_malformed(where, str(error))
            continue
        if ledger.line_result(result, vantage, where):
            yield result, vantage
    ledger.file_ended(name, number, cut)
