"""Runs one scan end to end: inventory, pipeline, outputs, signals, exit status.

This is where the operator's guarantees are kept: results reach every output in batches
as they finish; on an interrupt no new probe starts, probes in flight are abandoned at
once, and every finished result is still written (files committed atomically, with what
was done), and one that comes once every result is in lets the writing finish (the phases:
scanner/run/interrupts.py); a reader that closes our stdout ends the run quietly.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import anyio

from scanner import __version__
from scanner.console import report_error
from scanner.core.evidence import ProbeAnswer, ProbeKey
from scanner.core.model import Result, Target
from scanner.engine.engine import Engine, EngineConfig, EngineStats
from scanner.engine.pipeline import Pipeline, ScanSettings
from scanner.history.errors import HistoryError
from scanner.net.connectors import probe_connectors
from scanner.outputs import (
    OutputError,
    RunInfo,
    RunSummary,
    Sink,
)
from scanner.outputs.progress import Progress
from scanner.outputs.quiet import run_had_trouble
from scanner.procs.limits import (
    FatalCallbackWatch,
    exhaustion_message,
    is_exhaustion,
    release_memory,
)
from scanner.procs.worker_pool import WorkerPool
from scanner.resolve import Resolver
from scanner.run.coordinator import ShardedScan, ShardFailed, feed_for
from scanner.run.fanout import BATCH_SIZE, InventoryTally, ResultFanout
from scanner.run.followups import EvidenceGatherer
from scanner.run.interrupts import ScanControl, SignalGuard
from scanner.run.plan import ScanPlan
from scanner.run.preflight import (
    DESCRIPTOR_RESERVE,
    Preflight,
    choose_workers,
    fit_concurrency,
    fit_workers_to_descriptors,
    inventory,
    preflight,
    raise_descriptor_limit,
    validate_inventory,
)
from scanner.run.session import HistorySession
from scanner.run.shard import ShardFeed
from scanner.run.sinkset import (
    end_after_failure,
    open_sinks,
    quit_and_exit,
    quit_at_once,
    start_sinks,
)
from scanner.status import ExitStatus


def scanning_status(fanout: ResultFanout, endpoints: int, since: float) -> str:
    """The SIGUSR1 line while probing. Runs inside the signal handler, at any point of
    the scan: it only reads, and never raises (an exception there would surface in
    whatever code the signal interrupted)."""
    try:
        states = ", ".join(
            f"{count:,} {state.value}" for state, count in sorted(fanout.counts.items())
        )
        return (
            f"reachscan: scanning for {time.monotonic() - since:.1f} s: {fanout.total:,} "
            f"results so far ({states or 'none yet'}); the inventory has {endpoints:,} "
            "endpoints"
        )
    except Exception:
        return "reachscan: scanning"


async def run_follow_up_probes(
    config: EngineConfig, targets: Sequence[Target], on_warning: Callable[[str], None]
) -> dict[ProbeKey, ProbeAnswer]:
    """Probe for evidence only: one attempt each, results kept apart from the scan's."""
    observed: dict[ProbeKey, ProbeAnswer] = {}

    def record(result: Result) -> None:
        if result.address is not None:
            key = (result.address, result.endpoint.port, result.endpoint.proto)
            observed[key] = (result.state, result.reason)

    send, receive = anyio.create_memory_object_stream[Sequence[Target]](1)
    with probe_connectors() as connectors:
        engine = Engine(replace(config, retries=0), connectors, record, on_warning)
        async with anyio.create_task_group() as group:
            group.start_soon(engine.run, receive)
            async with send:
                for start in range(0, len(targets), BATCH_SIZE):
                    await send.send(targets[start : start + BATCH_SIZE])
    return observed


async def explain_refusals(
    fanout: ResultFanout,
    plan: ScanPlan,
    resolver: Resolver,
    engine_config: EngineConfig,
    on_warning: Callable[[str], None],
    history: HistorySession | None,
) -> None:
    """After the scan: gather evidence for the held refusals and emit them with causes."""
    if not fanout.held:
        return

    async def probes(targets: Sequence[Target]) -> dict[ProbeKey, ProbeAnswer]:
        return await run_follow_up_probes(engine_config, targets, on_warning)

    gatherer = EvidenceGatherer(
        fanout.index,
        resolver,
        probes,
        plan.diagnosis_budget,
        plan.resolver.families,
        history=None if history is None else history.history_for,
    )
    explained = await gatherer.explain(fanout.held)
    fanout.follow_up_probes = gatherer.follow_up_probes
    fanout.release_held(explained)


@dataclass(frozen=True, slots=True)
class Prepared:
    """What is decided before the event loop starts (and before any worker is forked)."""

    checked: Preflight
    workers: int  # processes to probe in; 1 = this one
    descriptor_limit: int
    engine: EngineConfig


def prepare(plan: ScanPlan, loop: str = "uvloop") -> Prepared | ExitStatus:
    """--strict, counting the inventory, the descriptor limit and the worker count; an
    exit status when the scan must not start. `loop`: the event loop the scan will run
    on ("uvloop" or "asyncio"), which opens descriptors of its own."""
    if plan.strict and validate_inventory(plan):
        report_error("reachscan: --strict: inventory errors above; nothing was scanned")
        return ExitStatus.USAGE_OR_INVENTORY
    checked = preflight(plan)
    if not checked.within_limit:
        return ExitStatus.USAGE_OR_INVENTORY
    descriptor_limit = raise_descriptor_limit()
    workers = fit_workers_to_descriptors(
        plan,
        checked.share(plan),
        choose_workers(plan.workers, checked.share(plan)),
        descriptor_limit,
        loop,
    )
    if workers is None:  # too few descriptors even in this process alone: said why
        return ExitStatus.OUTPUT_FAILED
    calm_garbage_collector()
    engine = fit_concurrency(plan.engine, descriptor_limit)
    whole = checked.slice_of(plan)
    if whole is not None and workers <= 1:
        # Other runs probe a spread host's other blocks at the same time.
        engine = replace(engine, per_host=whole.sharding.per_host_per_shard)
    return Prepared(
        checked=checked, workers=workers, descriptor_limit=descriptor_limit, engine=engine
    )


GC_THRESHOLDS = (20_000, 20, 20)
"""Collect the youngest generation every 20,000 net allocations rather than 700."""


def calm_garbage_collector() -> None:
    """A scan allocates millions of short-lived objects (probes, outcomes, results) that
    reference counting frees; at its default thresholds the cyclic collector would wake
    every 700 allocations and walk the survivors, some 5 % of a loopback sweep's time.
    Everything imported so far is frozen out of its sight (forked workers then also
    share those pages instead of copying them), and it wakes less often; cycles are
    still collected."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


@dataclass(frozen=True, slots=True)
class Scanned:
    """How the scan itself went, for the summary and the exit status."""

    fanout: ResultFanout
    completed: bool  # every result came in: no signal, failure or --max-time cut it short
    out_of_time: bool
    worker_failures: tuple[str, ...]
    held_warnings: tuple[str, ...]  # kept back by -q; printed only if the run had trouble


async def run_plan(
    plan: ScanPlan,
    prepared: Prepared,
    signals: SignalGuard,
    history: HistorySession | None = None,
    workers: WorkerPool | None = None,
) -> int:
    """Scan, write every output, and say how it went (`workers`: forked by the caller,
    before the loop, when `prepared.workers` asks for more than this process).
    `signals` is moved through the phases of the run (scanner/run/interrupts.py): an
    interrupt from here on keeps every result that finished."""
    signals.begin_scan()
    try:
        sinks = open_sinks(
            plan.outputs, plan.output_options, plan.quiet, history, plan.changes_only
        )
    except (OutputError, ValueError) as exc:
        report_error(f"reachscan: {exc}")
        end_after_failure(signals, [], history, ExitStatus.OUTPUT_FAILED)
        return ExitStatus.OUTPUT_FAILED
    try:
        start_sinks(
            sinks,
            RunInfo(
                started=time.time(),
                command=plan.command,
                version=__version__,
                vantage=plan.vantage,
                shard=None if plan.shard is None else str(plan.shard),
            ),
        )
    except OutputError as exc:
        report_error(f"reachscan: {exc}")
        end_after_failure(signals, sinks, history, ExitStatus.OUTPUT_FAILED)
        return ExitStatus.OUTPUT_FAILED
    tally = InventoryTally(report_error)
    try:
        scanned = await scan(plan, prepared, history, workers, sinks, tally, signals)
        total = scanned.fanout.total
        signals.status = lambda: f"reachscan: all {total:,} results are in; writing the outputs"
        # From here a second interrupt quits from the handler itself (or here, if it came
        # already): the writing is synchronous and holds the loop.
        signals.finishing(lambda message: quit_and_exit(message, sinks, history))
        summary = RunSummary(
            finished=time.time(),
            counts=dict(scanned.fanout.counts),
            total=scanned.fanout.total,
            not_ok=scanned.fanout.not_ok,
            inventory_errors=tally.errors,
            interrupted=(signals.received is not None and not scanned.completed)
            or scanned.fanout.stdout_closed
            or bool(scanned.fanout.failures)
            or scanned.out_of_time
            or bool(scanned.worker_failures),
            follow_up_probes=scanned.fanout.follow_up_probes,
        )
        scanned.fanout.finish(summary)
    except KeyboardInterrupt:
        # Not from an interrupt (scanner/run/interrupts.py handles SIGINT), but a
        # KeyboardInterrupt raised by other means still leaves no half-written file.
        end_after_failure(signals, sinks, history, ExitStatus.INTERRUPTED)
        quit_at_once(sinks, history)
        raise
    except Exception as error:
        # A fatal error (out of memory, out of descriptors: scanner/procs/limits.py), which the
        # caller reports: no half-written file stays behind, the history run is failed.
        exhausted = is_exhaustion(error)
        if exhausted:
            release_memory(error)
        end_after_failure(
            signals,
            sinks,
            history,
            ExitStatus.OUTPUT_FAILED if exhausted else ExitStatus.SCANNER_FAILED,
            exhaustion_message(error) if exhausted else f"reachscan: failed: {error}"[:300],
        )
        for sink in sinks:
            with contextlib.suppress(Exception):
                sink.abort()
        raise
    return conclude(scanned, summary, sinks, history, signals)


class InProcessScan:
    """A scan probed in this process (small scans, `--workers 1`): the inventory through
    one pipeline, each result into the fanout; the same surface as `ShardedScan`."""

    def __init__(
        self,
        plan: ScanPlan,
        prepared: Prepared,
        resolver: Resolver,
        fanout: ResultFanout,
        tally: InventoryTally,
        on_warning: Callable[[str], None],
    ) -> None:
        self._plan = plan
        self._prepared = prepared
        self._resolver = resolver
        self._fanout = fanout
        self._tally = tally
        self._on_warning = on_warning
        self.stats = EngineStats()
        self.excluded = 0
        self.all_results_in = False  # an interrupt while probing here always cuts it short

    async def run(self, feed: ShardFeed) -> EngineStats:
        """`feed` is for shards: in this process every sink takes the `Result`s."""
        plan, prepared = self._plan, self._prepared
        with probe_connectors() as connectors:
            pipeline = Pipeline(
                ScanSettings(
                    engine=prepared.engine,
                    families=plan.resolver.families,
                    scope=prepared.checked.scope,
                ),
                self._resolver,
                connectors,
                on_result=self._fanout.add,
                on_warning=self._on_warning,
                wall_clock=time.time,
            )
            self.stats = pipeline.engine.stats
            try:
                endpoints = inventory(plan, prepared.checked.specs, prepared.checked.slice_of(plan))
                await pipeline.run(self._tally.endpoints(endpoints))
            finally:
                self.stats = pipeline.engine.stats
                self.excluded = pipeline.excluded
        return self.stats


async def scan(
    plan: ScanPlan,
    prepared: Prepared,
    history: HistorySession | None,
    workers: WorkerPool | None,
    sinks: list[Sink],
    tally: InventoryTally,
    signals: SignalGuard,
) -> Scanned:
    """The inventory through the pipeline, the refusals explained, every result handed
    to the sinks; stops early on a signal, --max-time or a failed output or worker."""
    engine_config = prepared.engine
    held_warnings: list[str] = []
    worker_failures: list[str] = []
    completed = False
    with Progress(plan.progress, None) as progress:
        fanout = ResultFanout(sinks, progress, plan.diagnose)
        resolver = Resolver(plan.resolver)

        def warn(message: str) -> None:
            if plan.quiet:
                held_warnings.append(f"reachscan: {message}")
            else:
                progress.log(f"reachscan: {message}")

        if engine_config.concurrency < plan.engine.concurrency:
            warn(
                f"concurrency capped at {engine_config.concurrency} (asked "
                f"{plan.engine.concurrency}): this process may open "
                f"{prepared.descriptor_limit} descriptors (ulimit -n) and keeps "
                f"{DESCRIPTOR_RESERVE} for outputs and DNS"
            )
        if workers is not None and workers.processes:
            probing: InProcessScan | ShardedScan = ShardedScan(workers, fanout, tally, warn)
            feed = feed_for(
                fanout.sinks, None if history is None else history.sink.run_id, plan.vantage
            )
        else:
            probing = InProcessScan(plan, prepared, resolver, fanout, tally, warn)
            feed = ShardFeed()
        loop = asyncio.get_running_loop()
        async with anyio.create_task_group() as group:
            # Out of memory in a loop callback stops the run (scanner/procs/limits.py).
            exhaustion = FatalCallbackWatch(group.cancel_scope.cancel)
            loop.set_exception_handler(exhaustion)
            fanout.stop = group.cancel_scope.cancel

            def stop(message: str) -> None:
                with contextlib.suppress(OSError):  # SIGHUP: the terminal may be gone
                    progress.log(message)
                group.cancel_scope.cancel()

            def quit_now(message: str) -> None:
                quit_and_exit(message, fanout.sinks, history)

            since = time.monotonic()
            endpoints = prepared.checked.share(plan)
            signals.status = lambda: scanning_status(fanout, endpoints, since)
            signals.control_scan(ScanControl(loop, stop, quit_now))
            group.start_soon(fanout.flush_periodically)
            try:
                await probing.run(feed)
            except* ShardFailed as failed:
                worker_failures.extend(str(error) for error in failed.exceptions)
            if not probing.stats.out_of_time and not worker_failures:
                await explain_refusals(fanout, plan, resolver, engine_config, warn, history)
            completed = not probing.stats.out_of_time and not worker_failures
            group.cancel_scope.cancel()
        loop.set_exception_handler(None)
        exhaustion.release_reserve()
        exhaustion.raise_error()
        if not completed:
            # Stopped while the shards were saying goodbye, every result in: not partial.
            completed = (
                probing.all_results_in
                and not fanout.held
                and not worker_failures
                and not probing.stats.out_of_time
            )
        stats = probing.stats
        if stats.out_of_time:
            warn(
                f"--max-time {engine_config.max_time:g} s ran out: the results are partial; "
                f"{stats.not_probed} queued endpoint addresses and the rest of the inventory "
                "were not probed (silent probes still waiting for a retry are reported "
                "unconfirmed: filtered or open|filtered, no-response)"
            )
        if probing.excluded:
            warn(
                f"{probing.excluded} endpoint addresses not probed: excluded by --exclude, "
                "or multicast/broadcast (--include-special to probe those)"
            )
        fanout.release_held()
        fanout.flush()
    return Scanned(
        fanout, completed, stats.out_of_time, tuple(worker_failures), tuple(held_warnings)
    )


def conclude(
    scanned: Scanned,
    summary: RunSummary,
    sinks: Sequence[Sink],
    history: HistorySession | None,
    signals: SignalGuard,
) -> int:
    """After the outputs are written: report what went wrong, prune the history, and
    choose the exit status."""
    fanout = scanned.fanout
    if run_had_trouble(summary):
        for message in scanned.held_warnings:
            report_error(message)
    for failure in fanout.failures:
        report_error(f"reachscan: {failure}")
    if fanout.failures:
        return ExitStatus.OUTPUT_FAILED
    if history is not None:
        prune_history(history)
    if fanout.stdout_closed:
        silence_stdout()
        return ExitStatus.STDOUT_CLOSED
    for sink in sinks:
        verdict = sink.verdict()  # a Nagios plugin's exit status is the run's verdict
        if verdict is not None:
            return verdict
    if scanned.worker_failures:
        for message in scanned.worker_failures:
            report_error(f"reachscan: {message}")
        report_error("reachscan: the results finished before the failure were written")
        return ExitStatus.SCANNER_FAILED
    if scanned.out_of_time and signals.received is None:
        return ExitStatus.OUT_OF_TIME
    return exit_status(summary)


def prune_history(history: HistorySession) -> None:
    """--keep / --keep-days: housekeeping after the run is stored; a failure is reported
    but does not change what the run found."""
    try:
        history.prune()
    except HistoryError as exc:
        report_error(f"reachscan: could not prune the history: {exc}")


def silence_stdout() -> None:
    """The reader of stdout left: point stdout at /dev/null so that nothing at exit
    (buffered text, the interpreter's own flush) raises BrokenPipeError again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def exit_status(summary: RunSummary) -> ExitStatus:
    if summary.interrupted:
        return ExitStatus.INTERRUPTED
    if summary.inventory_errors:
        return ExitStatus.USAGE_OR_INVENTORY
    if summary.not_ok:
        return ExitStatus.NOT_AS_EXPECTED
    return ExitStatus.OK
