"""A scan spread over vantage points: plan the shards, send them to each vantage's queue,
gather the answers as shards finish, and write the outputs and the history as a local
scan would.

Every vantage scans the whole inventory, split in `--shards N`; each shard's answer is
its JSON Lines, which the rules of `reachscan merge` account for (scanner/core/merging.py,
one ledger per vantage): a shard that never answers is *missing*, one that answers twice
(a redelivery) is kept once, a shard cut short is *incomplete*. The follow-up probes that
explain a refusal ran inside the shard's scan, at the vantage that saw the refusal.

Outputs. With one vantage every format is written as a local scan writes it. With
several, a run is what one vantage saw: the history gets one run per vantage; JSON Lines
carry every vantage's lines (each with its `vantage`); the table and `--format json` are
the comparison (`reachscan compare`'s: path-dependent endpoints with the evidence); and
`check --quorum K` gives the Nagios verdict over endpoints that at least K vantages see
failed. Formats of one run (prom, nmap-xml, report-json, plain nagios) need one vantage.

Bounded waits: no worker consuming a vantage's queue for `--wait-workers` seconds, at
the start or while its shards are pending, is a clear error (exit 5), its shards reported
missing; never a silent hang.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from celery import Celery
from celery.result import AsyncResult

from scanner import __version__
from scanner.console import report_error
from scanner.core.merging import VantageLedgers
from scanner.core.model import Result, State
from scanner.core.sinks import OutputError, RunInfo, RunSummary, Sink
from scanner.core.vantages import Comparison, EndpointView, failed_by_quorum, summarize
from scanner.distributed.app import check_broker, make_app
from scanner.distributed.protocol import (
    TASK_NAME,
    BrokerError,
    DistributedPlan,
    ShardAnswer,
    ShardRequest,
    queue_of,
)
from scanner.history.sink import HistorySink
from scanner.inventory import InventoryError
from scanner.outputs import OutputOptions, OutputSpec, make_sink, open_target
from scanner.outputs.comparison import comparison_to_json, render_comparison_table
from scanner.outputs.jsonl import encode_lines
from scanner.run.interrupts import ScanControl, SignalGuard, StopFlag
from scanner.run.merge import results_of_lines
from scanner.run.plan import ScanPlan
from scanner.run.session import HistorySession
from scanner.run.sinkset import (
    GuardedSinks,
    end_after_failure,
    open_sinks,
    quit_and_exit,
    start_sinks,
    with_history,
)
from scanner.status import ExitStatus

SHARD_STATUSES_WITHOUT_LOSS = (
    ExitStatus.OK,
    ExitStatus.NOT_AS_EXPECTED,
    ExitStatus.USAGE_OR_INVENTORY,  # inventory errors: the client reported them already
)
"""A shard scan's exit statuses that mean its whole share was probed."""

POLL_INTERVAL = 0.2
"""Seconds between two looks at the pending shards' results."""
WORKER_CHECK_INTERVAL = 5.0
"""Seconds between two checks that each vantage with pending shards has a worker."""


def run_distributed(plan: ScanPlan, spread: DistributedPlan, signals: SignalGuard) -> int:
    """The whole distributed scan, from the inventory's check to the exit status."""
    inventory_errors = check_inventory(plan)
    if inventory_errors and plan.strict:
        return ExitStatus.USAGE_OR_INVENTORY
    try:
        app = make_app(spread.broker)
        check_broker(app)
        wait_for_workers(app, spread.vantages, spread.wait_workers)
    except BrokerError as error:
        report_error(f"reachscan: {error}")
        return ExitStatus.OUTPUT_FAILED
    except NoWorker as missing:
        report_error(f"reachscan: {missing}")
        return ExitStatus.SCANNER_FAILED
    return with_history(
        plan.history,
        lambda history: signals.exit_status(
            gather(app, plan, spread, signals, history, inventory_errors)
        ),
    )


def check_inventory(plan: ScanPlan) -> int:
    """Read the inventory here once, reporting each malformed entry as FILE:LINE (the
    workers read the same files and keep quiet about them); the number of errors."""
    errors = 0
    for item in plan.specs():
        if not isinstance(item, InventoryError):
            continue
        errors += 1
        report_error(f"reachscan: {item}")
    return errors


class NoWorker(Exception):
    """No worker consumes a vantage's queue."""


def online_vantages(app: Celery, vantages: Iterable[str], patience: float = 1.0) -> set[str]:
    """The vantages whose queue some worker consumes now (asked of every worker, who have
    `patience` seconds to answer: the broadcast waits that long whatever comes)."""
    wanted = {queue_of(vantage): vantage for vantage in vantages}
    replies = app.control.inspect(timeout=patience).active_queues() or {}
    return {
        wanted[queue["name"]]
        for queues in replies.values()
        for queue in queues
        if queue.get("name") in wanted
    }


def wait_for_workers(app: Celery, vantages: Sequence[str], patience: float) -> None:
    deadline = time.monotonic() + patience
    answer_within = 0.25  # a worker on the same network answers in milliseconds; one far
    while True:  # away gets longer on the next tries
        online = online_vantages(app, vantages, answer_within)
        answer_within = min(2 * answer_within, 2.0)
        absent = [vantage for vantage in vantages if vantage not in online]
        if not absent:
            return
        if time.monotonic() >= deadline:
            raise NoWorker(
                f"no worker consumes the queue of {', '.join(absent)} (waited {patience:g} s): "
                f"start `reachscan worker --broker URL --vantage NAME` at "
                f"{'that site' if len(absent) == 1 else 'those sites'}"
            )
        time.sleep(POLL_INTERVAL)


@dataclass(slots=True)
class VantageTally:
    counts: dict[State, int]
    total: int = 0
    not_ok: int = 0
    finished: float = 0.0

    def add(self, batch: Sequence[Result]) -> None:
        for result in batch:
            self.counts[result.state] = self.counts.get(result.state, 0) + 1
            self.not_ok += not result.ok
            self.finished = max(self.finished, result.ts)
        self.total += len(batch)


def gather(
    app: Celery,
    plan: ScanPlan,
    spread: DistributedPlan,
    signals: SignalGuard,
    history: HistorySession | None,
    inventory_errors: int,
) -> int:
    signals.begin_scan()
    started = time.time()
    try:
        outputs = Outputs.open(plan, spread, history, started)
    except (OutputError, ValueError) as error:
        report_error(f"reachscan: {error}")
        end_after_failure(signals, [], history, ExitStatus.OUTPUT_FAILED)
        return ExitStatus.OUTPUT_FAILED
    gathering = StopFlag()  # the interrupt's hand between two polls
    signals.control_scan(
        ScanControl(
            loop=gathering,
            stop=gathering.stop,
            quit=lambda message: quit_and_exit(message, outputs.sinks, history),
        )
    )
    ledgers = VantageLedgers()
    pending = send_shards(app, spread)
    lost: list[str] = []
    out_of_time = False  # a shard's --max-time ran out (its answer is partial, exit 4)
    try:
        last_online = dict.fromkeys(spread.vantages, time.monotonic())
        next_check = time.monotonic() + WORKER_CHECK_INTERVAL
        while pending and not gathering.stopped and not outputs.failed:
            for key, result in list(pending.items()):
                if result.ready():
                    del pending[key]
                    status = take_answer(key, result, spread, ledgers, outputs)
                    if status is None or status not in SHARD_STATUSES_WITHOUT_LOSS:
                        lost.append(f"{key[0]} shard {key[1]}/{spread.shards}")
                    out_of_time = out_of_time or status == ExitStatus.OUT_OF_TIME
            if time.monotonic() >= next_check:
                lost += give_up_on_absent(app, pending, last_online, spread)
                next_check = time.monotonic() + WORKER_CHECK_INTERVAL
            if pending:
                time.sleep(POLL_INTERVAL)
        if pending:  # stopped: the shards not answered yet are not to be run later
            app.control.revoke([result.id for result in pending.values()])
        signals.finishing(lambda message: quit_and_exit(message, outputs.sinks, history))
        ledgers.conclude()
        for problem in ledgers.problems:
            report_error(f"reachscan: {problem}")
        interrupted = gathering.stopped or outputs.failed or ledgers.partial or bool(lost)
        outputs.finish(interrupted, inventory_errors + ledgers.problem_count)
    except KeyboardInterrupt:
        end_after_failure(signals, outputs.sinks, history, ExitStatus.INTERRUPTED)
        for sink in outputs.sinks:
            with contextlib.suppress(Exception):
                sink.abort()
        raise
    return outputs.status(
        lost=bool(lost) or (ledgers.partial and not out_of_time),
        out_of_time=out_of_time,
        problems=inventory_errors + ledgers.problem_count,
        stopped=gathering.stopped,
    )


ShardKey = tuple[str, int]


def send_shards(app: Celery, spread: DistributedPlan) -> dict[ShardKey, AsyncResult[Any]]:
    """Every shard of every vantage, to that vantage's queue; one task id each (the
    answer of a redelivered shard is the same task's: kept once)."""
    pending: dict[ShardKey, AsyncResult[Any]] = {}
    for vantage in spread.vantages:
        for index in range(spread.shards):
            request = ShardRequest(spread.argv, spread.files, f"{index}/{spread.shards}", vantage)
            pending[(vantage, index)] = app.send_task(
                TASK_NAME,
                args=[request.to_json()],
                queue=queue_of(vantage),
                task_id=f"reachscan-{vantage}-{index}-{uuid.uuid4().hex}",
            )
    return pending


def take_answer(
    key: ShardKey,
    result: AsyncResult[Any],
    spread: DistributedPlan,
    ledgers: VantageLedgers,
    outputs: Outputs,
) -> int | None:
    """Write a shard's answer; its scan's exit status, or None when there is no answer to
    write (the task failed at the worker, or its answer is garbled): that shard is lost,
    and said."""
    vantage, index = key
    name = f"{vantage} shard {index}/{spread.shards}"
    try:
        answer = ShardAnswer.from_json(result.get(propagate=True, disable_sync_subtasks=False))
    except Exception as error:  # the task raised at the worker, or the answer is garbled
        report_error(f"reachscan: {name}: the worker failed: {error}"[:500])
        return None
    finally:
        with contextlib.suppress(Exception):
            result.forget()
    if answer.status not in (*SHARD_STATUSES_WITHOUT_LOSS, ExitStatus.OUT_OF_TIME):
        said = answer.errors.strip().splitlines()[-1:] or ["no message"]
        report_error(
            f"reachscan: {name} at {answer.worker}: the scan there ended with exit status "
            f"{answer.status}: {said[0]}"
        )
    batch: list[Result] = []
    for kept, _vantage in results_of_lines(
        answer.lines.splitlines(keepends=True), f"{name} ({answer.worker})", ledgers
    ):
        batch.append(kept)
        if len(batch) >= 1024:
            outputs.write(vantage, batch)
            batch = []
    outputs.write(vantage, batch)
    if answer.status == ExitStatus.OUT_OF_TIME:
        report_error(f"reachscan: {name} at {answer.worker}: --max-time ran out; its rest unprobed")
    return answer.status


def give_up_on_absent(
    app: Celery,
    pending: dict[ShardKey, AsyncResult[Any]],
    last_online: dict[str, float],
    spread: DistributedPlan,
) -> list[str]:
    """The shards of vantages that have had no worker for `--wait-workers` seconds:
    revoked, dropped from `pending`, and said; the lines that say so."""
    waiting_for = {vantage for vantage, _index in pending}
    if not waiting_for:
        return []
    now = time.monotonic()
    for vantage in online_vantages(app, waiting_for):
        last_online[vantage] = now
    lost = []
    for vantage in sorted(waiting_for):
        if now - last_online[vantage] < spread.wait_workers:
            continue
        keys = [key for key in pending if key[0] == vantage]
        app.control.revoke([pending[key].id for key in keys])
        for key in keys:
            del pending[key]
        message = (
            f"no worker of {vantage} for {spread.wait_workers:g} s with "
            f"{len(keys)} of its shards unanswered: given up on them"
        )
        report_error(f"reachscan: {message}")
        lost.append(message)
    return lost


class Outputs(GuardedSinks):
    """Where the gathered results go: a local scan's sinks (one vantage), or per vantage
    the history's run and the shared JSON Lines, comparison and quorum verdict."""

    def __init__(
        self,
        sinks: list[Sink],
        by_vantage: Mapping[str, list[Sink]],
        tallies: Mapping[str, VantageTally],
        comparison: ComparisonOutput | None,
    ) -> None:
        super().__init__(sinks)  # every sink, each once
        self._by_vantage = by_vantage
        self._tallies = tallies
        self._comparison = comparison
        self._history_sinks = {
            vantage: sink
            for vantage, sinks_of in by_vantage.items()
            for sink in sinks_of
            if isinstance(sink, HistorySink)
        }

    @classmethod
    def open(
        cls,
        plan: ScanPlan,
        spread: DistributedPlan,
        history: HistorySession | None,
        started: float,
    ) -> Outputs:
        tallies = {vantage: VantageTally({}) for vantage in spread.vantages}
        run = RunInfo(started, plan.command, __version__, ",".join(spread.vantages))
        comparing = len(spread.vantages) > 1 or any(o.format == "json" for o in plan.outputs)
        if not comparing and spread.quorum is None:
            sinks = open_sinks(
                plan.outputs, plan.output_options, plan.quiet, history, plan.changes_only
            )
            start_sinks(sinks, replace(run, vantage=spread.vantages[0]))
            return cls(sinks, {spread.vantages[0]: sinks}, tallies, None)
        comparison = ComparisonOutput(plan.outputs, plan.output_options, spread.quorum, plan.quiet)
        shared: list[Sink] = [comparison]
        for output in plan.outputs:
            if output.format == "jsonl":
                shared.append(TaggedLines(make_sink("jsonl", output.path, plan.output_options)))
        by_vantage: dict[str, list[Sink]] = {vantage: list(shared) for vantage in spread.vantages}
        every = list(shared)
        start_sinks(every, run)
        if history is not None:
            for vantage in spread.vantages:
                sink = HistorySink(history.store)
                every.append(sink)
                by_vantage[vantage].append(sink)
                start_sinks([sink], replace(run, vantage=vantage))
        return cls(every, by_vantage, tallies, comparison)

    def write(self, vantage: str, batch: Sequence[Result]) -> None:
        if not batch:
            return
        self._tallies[vantage].add(batch)
        for sink in list(self._by_vantage[vantage]):
            if sink not in self.sinks:
                continue
            if isinstance(sink, VantageAware):
                self.guarded(sink, partial(sink.write_from, vantage), batch)
            else:
                self.guarded(sink, sink.write, batch)

    def finish(self, interrupted: bool, problems: int) -> None:
        whole = self._summary(self._tallies.values(), interrupted, problems)
        for sink in list(self.sinks):
            vantage = next((v for v, s in self._history_sinks.items() if s is sink), None)
            summary = (
                whole
                if vantage is None
                else self._summary([self._tallies[vantage]], interrupted, problems)
            )
            self.guarded(sink, sink.finish, summary)

    def _summary(
        self, tallies: Iterable[VantageTally], interrupted: bool, problems: int
    ) -> RunSummary:
        counts: dict[State, int] = {}
        total = not_ok = 0
        finished = 0.0
        for tally in tallies:
            for state, count in tally.counts.items():
                counts[state] = counts.get(state, 0) + count
            total += tally.total
            not_ok += tally.not_ok
            finished = max(finished, tally.finished)
        if self._comparison is not None and self._comparison.quorum is not None:
            not_ok = self._comparison.failed_by_quorum()
        return RunSummary(
            finished=finished or time.time(),
            counts=counts,
            total=total,
            not_ok=not_ok,
            inventory_errors=problems,
            interrupted=interrupted,
        )

    def status(self, lost: bool, problems: int, stopped: bool, out_of_time: bool) -> int:
        """README, "Exit status", as for a local scan."""
        decided = self.outputs_status()
        if decided is not None:
            return decided
        if stopped:
            return ExitStatus.INTERRUPTED
        if lost:
            return ExitStatus.SCANNER_FAILED
        if out_of_time:
            return ExitStatus.OUT_OF_TIME
        if problems:
            return ExitStatus.USAGE_OR_INVENTORY
        not_ok = sum(tally.not_ok for tally in self._tallies.values())
        return ExitStatus.NOT_AS_EXPECTED if not_ok else ExitStatus.OK


class VantageAware(Sink):
    """A sink that takes each batch with the vantage it came from."""

    def write_from(self, vantage: str, results: Sequence[Result]) -> None:
        raise NotImplementedError


class TaggedLines(VantageAware):
    """JSON Lines of several vantages: each line with its own `vantage`."""

    def __init__(self, inner: Sink) -> None:
        self._inner = inner

    def start(self, run: RunInfo) -> None:
        self._inner.start(replace(run, shard=None))

    def write(self, results: Sequence[Result]) -> None:
        raise TypeError("TaggedLines.write_from names the vantage")

    def write_from(self, vantage: str, results: Sequence[Result]) -> None:
        encoded = getattr(self._inner, "write_encoded", None)
        assert encoded is not None  # the JSON Lines sink takes encoded lines
        encoded(encode_lines(results, vantage))

    def finish(self, summary: RunSummary) -> None:
        self._inner.finish(summary)

    def abort(self) -> None:
        self._inner.abort()

    def verdict(self) -> int | None:
        return None


class ComparisonOutput(VantageAware):
    """What every vantage saw, side by side: the table and `--format json` outputs of a
    distributed scan, and, with `check --quorum K`, the Nagios verdict on endpoints that
    at least K vantages see failed. Written when the run finishes (a comparison needs
    every vantage's word)."""

    def __init__(
        self,
        outputs: Sequence[OutputSpec],
        options: OutputOptions,
        quorum: int | None,
        quiet: bool,
    ) -> None:
        self.quorum = quorum
        self._comparison = Comparison()
        self._outputs = [o for o in outputs if o.format in ("table", "json", "nagios")]
        self._options = options
        self._quiet = quiet
        self._verdict: int | None = None
        self._run: RunInfo | None = None

    def start(self, run: RunInfo) -> None:
        self._run = run

    def write(self, results: Sequence[Result]) -> None:
        raise TypeError("ComparisonOutput.write_from names the vantage")

    def write_from(self, vantage: str, results: Sequence[Result]) -> None:
        for result in results:
            self._comparison.add(result, vantage)

    def failed_by_quorum(self) -> int:
        assert self.quorum is not None
        return sum(failed_by_quorum(view, self.quorum) for view in self._comparison.endpoints())

    def finish(self, summary: RunSummary) -> None:
        views = self._comparison.endpoints()
        overview = summarize(self._comparison, views)
        for output in self._outputs:
            if output.format == "nagios":
                self._verdict = self._nagios(output, views, summary)
                continue
            if output.format == "json":
                import orjson

                text = orjson.dumps(
                    comparison_to_json(views, overview), option=orjson.OPT_APPEND_NEWLINE
                )
            else:
                trouble = overview.path_dependent or any(view.failing() for view in views)
                if self._quiet and output.path == "-" and not trouble:
                    continue
                text = render_comparison_table(views, overview).encode()
            target = open_target(output.path)
            try:
                target.write(text)
                target.commit()
            except BaseException:
                target.discard()
                raise

    def _nagios(
        self, output: OutputSpec, views: Sequence[EndpointView], summary: RunSummary
    ) -> int | None:
        """The plugin's line over endpoints, each failed only by a quorum of vantages: a
        failed endpoint stands in with a failing vantage's result."""
        sink = make_sink("nagios", output.path, self._options)
        assert self._run is not None
        sink.start(self._run)
        quorum = self.quorum or 1
        representatives = [
            self._comparison.result_of(view, failing=failed_by_quorum(view, quorum))
            for view in views
        ]
        sink.write(representatives)
        sink.finish(replace(summary, total=len(views)))
        return sink.verdict()

    def abort(self) -> None:
        return None

    def verdict(self) -> int | None:
        return self._verdict
