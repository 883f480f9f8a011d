"""Runs one scan end to end: inventory, pipeline, outputs, signals, exit status.

This is where the operator's guarantees are kept: results reach every output in batches
as they finish; on SIGINT or SIGTERM no new probe starts, probes in flight are abandoned at
once, and every finished result is still written (files committed atomically, with what
was done); a reader that closes our stdout ends the run quietly.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any

import anyio

from scanner import __version__
from scanner.diagnose import describe_filtered
from scanner.engine import Engine, EngineConfig
from scanner.evidence import (
    DiagnosisBudget,
    EvidenceGatherer,
    Observation,
    ProbeKey,
    ScanIndex,
    needs_explanation,
)
from scanner.history import ChangesOnlySink, HistoryError
from scanner.host_sockets import local_addresses
from scanner.inventory import InventoryError, InventoryItem, TargetSpec, iter_unique
from scanner.model import Endpoint, Expect, Result, State, Target
from scanner.net.connectors import probe_connectors
from scanner.outputs import (
    OutputClosed,
    OutputError,
    OutputOptions,
    RunInfo,
    RunSummary,
    Sink,
    make_sink,
)
from scanner.outputs.nagios import NagiosSink
from scanner.outputs.progress import Progress
from scanner.outputs.quiet import QuietSink, run_had_trouble
from scanner.pipeline import Pipeline, ScanSettings
from scanner.resolve import Resolver, ResolverConfig
from scanner.scope import Scope, broadcast_addresses, measure, oversize_message
from scanner.session import HistoryPlan, HistorySession
from scanner.shards import WorkerFailed

BATCH_SIZE = 512
FLUSH_INTERVAL = 0.2
DESCRIPTOR_RESERVE = 64
"""Descriptors kept back from the probes for outputs, DNS sockets and the loop itself."""


class ExitStatus(IntEnum):
    """The documented exit statuses (README, "Exit status")."""

    OK = 0
    NOT_AS_EXPECTED = 1
    USAGE_OR_INVENTORY = 2
    OUTPUT_FAILED = 3
    OUT_OF_TIME = 4  # --max-time ran out: the results are partial
    SCANNER_FAILED = 5  # reachscan itself failed (a worker process died); partial results
    LOCKED = 75  # another run holds the lock (EX_TEMPFAIL: try again later)
    INTERRUPTED = 130
    STDOUT_CLOSED = 141


@dataclass(frozen=True, slots=True)
class OutputSpec:
    format: str
    path: str  # "-" for stdout


@dataclass(frozen=True, slots=True)
class ScanPlan:
    """Everything a scan needs, decided by the CLI before anything runs."""

    specs: Callable[[], Iterator[TargetSpec | InventoryError]]  # read twice: counted, scanned
    max_endpoints: int
    scope: Scope
    outputs: tuple[OutputSpec, ...]
    output_options: OutputOptions
    history: HistoryPlan | None  # None: --no-history
    changes_only: bool
    resolver: ResolverConfig
    engine: EngineConfig
    strict: bool
    workers: int | None  # None: auto
    quiet: bool
    list_only: bool
    diagnose: bool
    diagnosis_budget: DiagnosisBudget
    progress: bool
    color: bool
    command: str


class ResultFanout:
    """Counts results, batches them and hands each batch to every sink and the progress bar.

    With diagnosis on, refusals of endpoints expected open are held back until they have
    their cause (or until the run is interrupted, when they go out without one).
    """

    def __init__(self, sinks: Sequence[Sink], progress: Progress, diagnosis: bool) -> None:
        self.sinks = list(sinks)
        self.stdout_closed = False
        self.failures: list[OutputError] = []
        self.stop: Callable[[], None] = lambda: None  # set to cancel the scan
        self.follow_up_probes = 0
        self.progress = progress
        self.counts: Counter[State] = Counter()
        self.not_ok = 0
        self.total = 0
        self._batch: list[Result] = []
        self.diagnosis = diagnosis
        self.index = ScanIndex()
        self.held: list[Result] = []
        self._local_addresses = local_addresses() if diagnosis else frozenset()

    def add(self, result: Result) -> None:
        """A result from the main scan."""
        if self.diagnosis:
            self.index.add(result)
            if needs_explanation(result):
                self.held.append(result)
                return
            if result.state is State.FILTERED and result.endpoint.expect is Expect.OPEN:
                cause = describe_filtered(result, local_addresses=self._local_addresses)
                result = replace(result, cause=cause)
        self.emit(result)

    def release_held(self, explained: Sequence[Result] | None = None) -> None:
        """Emit the held refusals: explained, or as they were after an interrupt."""
        held, self.held = self.held, []
        for result in held if explained is None else explained:
            self.emit(result)

    def emit(self, result: Result) -> None:
        self.counts[result.state] += 1
        self.total += 1
        if not result.ok:
            self.not_ok += 1
        self._batch.append(result)
        if len(self._batch) >= BATCH_SIZE:
            self.flush()

    def flush(self) -> None:
        """Hand the batch to every sink still working. Never raises: this runs inside the
        loop's I/O callbacks, where an exception would only be logged; a sink that fails
        is set aside, the failure recorded, and the scan asked to stop."""
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        for sink in list(self.sinks):
            self._guarded(sink, sink.write, batch)
        self.progress.advance(batch)

    def finish(self, summary: RunSummary) -> None:
        for sink in list(self.sinks):
            self._guarded(sink, sink.finish, summary)

    def _guarded(self, sink: Sink, action: Callable[[Any], None], argument: Any) -> None:
        try:
            action(argument)
        except OutputClosed:
            self.sinks.remove(sink)
            self.stdout_closed = True
            self.stop()
        except OutputError as failure:
            self.sinks.remove(sink)
            sink.abort()
            self.failures.append(failure)
            self.stop()

    async def flush_periodically(self) -> None:
        while True:
            await anyio.sleep(FLUSH_INTERVAL)
            self.flush()


class InventoryTally:
    """Passes endpoints through, reporting each inventory error on stderr as it is found."""

    def __init__(self, report: Callable[[str], None]) -> None:
        self.errors = 0
        self._report = report

    def endpoints(self, items: Iterator[InventoryItem]) -> Iterator[Endpoint]:
        for item in items:
            if isinstance(item, InventoryError):
                self.errors += 1
                self._report(f"reachscan: {item}")
            else:
                yield item


def raise_descriptor_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (no privilege needed); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def fit_concurrency(config: EngineConfig, descriptor_limit: int) -> EngineConfig:
    """Never plan more sockets in flight than this process may open."""
    ceiling = max(config.backoff_floor, descriptor_limit - DESCRIPTOR_RESERVE)
    if config.concurrency <= ceiling:
        return config
    return replace(config, concurrency=ceiling)


def report_error(message: str) -> None:
    with contextlib.suppress(BrokenPipeError, OSError):
        print(message, file=sys.stderr, flush=True)


def inventory(
    plan: ScanPlan, specs: Sequence[TargetSpec | InventoryError] | None = None
) -> Iterator[InventoryItem]:
    """The inventory's unique endpoints and its errors, in order (from `specs` when the
    preflight kept them, else read again)."""
    return iter_unique(plan.specs() if specs is None else iter(specs))


def validate_inventory(plan: ScanPlan) -> int:
    """The --strict pass: read the whole inventory, report every error, probe nothing."""
    tally = InventoryTally(report_error)
    for _ in tally.endpoints(inventory(plan)):
        pass
    return tally.errors


@dataclass(frozen=True, slots=True)
class Preflight:
    """What counting the inventory decided, before anything is sent."""

    within_limit: bool
    scope: Scope
    endpoints: int  # an upper bound (duplicates counted)
    specs: tuple[TargetSpec | InventoryError, ...] | None  # kept when few, so not re-read


SPECS_KEPT = 50_000
"""Inventory entries the preflight keeps in memory so the scan need not parse the files
again; a larger inventory is read again (its memory stays bounded)."""


def preflight(plan: ScanPlan) -> Preflight:
    """Count the inventory before anything is sent; refuse one past --max-endpoints.

    Also extends the scope with the broadcast address of every IPv4 block in the
    inventory (unless special addresses were asked for)."""
    kept: list[TargetSpec | InventoryError] | None = []

    def keeping(
        items: Iterator[TargetSpec | InventoryError],
    ) -> Iterator[TargetSpec | InventoryError]:
        nonlocal kept
        for item in items:
            if kept is not None:
                kept.append(item)
                if len(kept) > SPECS_KEPT:
                    kept = None
            yield item

    expansion = measure(keeping(plan.specs()))
    specs = None if kept is None else tuple(kept)
    if expansion.total > plan.max_endpoints:
        report_error(f"reachscan: {oversize_message(expansion, plan.max_endpoints)}")
        return Preflight(False, plan.scope, expansion.total, specs)
    scope = plan.scope
    if not scope.include_special:
        blocks = (
            item
            for item in (plan.specs() if specs is None else specs)
            if isinstance(item, TargetSpec)
        )
        scope = scope.with_excluded(broadcast_addresses(blocks))
    return Preflight(True, scope, expansion.total, specs)


AUTO_WORKERS_FROM = 20_000
"""Endpoints from which --workers auto probes in several processes."""


def choose_workers(requested: int | None, endpoints: int) -> int:
    """--workers auto: probe in this process for small scans (a worker costs a start-up);
    for large ones, one worker per core (two on a two-core machine: the parent's share —
    inventory, results, outputs — and the workers' then fill both cores; 20 % faster on
    the loopback sweep, benchmarks/README.md), at most eight."""
    if requested is not None:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if cores < 2 or endpoints < AUTO_WORKERS_FROM:
        return 1
    return min(cores, 8)


def describe_endpoint(endpoint: Endpoint) -> str:
    """One line per endpoint for --list-targets: what would be probed, and why."""
    words = [endpoint.host, f"{endpoint.port}/{endpoint.proto}"]
    if endpoint.pinned_address is not None:
        words.append(f"address={endpoint.pinned_address}")
    words.append(f"expect={endpoint.expect or '-'}")
    if endpoint.labels:
        words.append(",".join(f"{key}={value}" for key, value in endpoint.labels))
    if endpoint.origin is not None:
        words.append(f"({endpoint.origin})")
    return " ".join(words)


def list_targets(plan: ScanPlan) -> ExitStatus:
    """--list-targets: expand the inventory and print it; no name is resolved, nothing sent."""
    tally = InventoryTally(report_error)
    try:
        for endpoint in tally.endpoints(inventory(plan)):
            print(describe_endpoint(endpoint))
    except BrokenPipeError:
        return ExitStatus.STDOUT_CLOSED
    return ExitStatus.USAGE_OR_INVENTORY if tally.errors else ExitStatus.OK


def open_sinks(plan: ScanPlan, history: HistorySession | None) -> list[Sink]:
    """Every output of the run; what goes to stdout is filtered by -q and --changes-only."""
    sinks: list[Sink] = []
    changes = history.change_filter() if history is not None and plan.changes_only else None
    try:
        for output in plan.outputs:
            sink = make_sink(output.format, output.path, plan.output_options)
            if output.path == "-" and changes is not None:
                sink = ChangesOnlySink(sink, changes)
            if output.path == "-" and plan.quiet:
                sink = QuietSink(sink)
            sinks.append(sink)
        if plan.quiet and all(output.path != "-" for output in plan.outputs):
            # Every output goes to a file: -q still owes cron a word when something is
            # wrong, so the trouble goes to stdout as a table (and nothing otherwise).
            sinks.append(QuietSink(make_sink("table", "-", plan.output_options)))
        if history is not None:
            sinks.append(history.sink)
    except (OutputError, ValueError):
        for sink in sinks:
            sink.abort()
        raise
    return sinks


class Interrupted:
    """Remembers which signal stopped the run."""

    def __init__(self) -> None:
        self.signal: int | None = None


async def watch_signals(
    scope: anyio.CancelScope, interrupted: Interrupted, progress: Progress, sinks: Sequence[Sink]
) -> None:
    """First SIGINT/SIGTERM: stop the scan, keep results. Second: leave at once, dropping
    the outputs' half-written temporary files (each path keeps its previous whole file)."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for received in signals:
            if interrupted.signal is not None:
                for sink in sinks:
                    with contextlib.suppress(Exception):
                        sink.abort()
                os._exit(ExitStatus.INTERRUPTED)
            interrupted.signal = received
            progress.log(
                "reachscan: interrupted; writing the results finished so far "
                "(press Ctrl-C again to quit at once)"
            )
            scope.cancel()


async def run_follow_up_probes(
    config: EngineConfig, targets: Sequence[Target], on_warning: Callable[[str], None]
) -> dict[ProbeKey, Observation]:
    """Probe for evidence only: one attempt each, results kept apart from the scan's."""
    observed: dict[ProbeKey, Observation] = {}

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

    async def probes(targets: Sequence[Target]) -> dict[ProbeKey, Observation]:
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


async def run_plan(plan: ScanPlan, history: HistorySession | None = None) -> int:
    """Scan, write every output, and say how it went."""
    if plan.strict and validate_inventory(plan):
        report_error("reachscan: --strict: inventory errors above; nothing was scanned")
        return ExitStatus.USAGE_OR_INVENTORY
    checked = preflight(plan)
    if not checked.within_limit:
        return ExitStatus.USAGE_OR_INVENTORY
    scope = checked.scope
    workers = choose_workers(plan.workers, checked.endpoints)
    descriptor_limit = raise_descriptor_limit()
    engine_config = fit_concurrency(plan.engine, descriptor_limit)
    try:
        sinks = open_sinks(plan, history)
    except (OutputError, ValueError) as exc:
        report_error(f"reachscan: {exc}")
        return ExitStatus.OUTPUT_FAILED
    started = time.time()
    for sink in sinks:
        sink.start(RunInfo(started=started, command=plan.command, version=__version__))
    tally = InventoryTally(report_error)
    interrupted = Interrupted()
    with Progress(plan.progress, None) as progress:
        fanout = ResultFanout(sinks, progress, plan.diagnose)
        resolver = Resolver(plan.resolver)

        held_warnings: list[str] = []
        worker_failures: list[str] = []

        def warn(message: str) -> None:
            if plan.quiet:
                held_warnings.append(f"reachscan: {message}")
            else:
                progress.log(f"reachscan: {message}")

        if engine_config.concurrency < plan.engine.concurrency:
            warn(
                f"concurrency capped at {engine_config.concurrency} (asked "
                f"{plan.engine.concurrency}): this process may open {descriptor_limit} "
                f"descriptors (ulimit -n) and keeps {DESCRIPTOR_RESERVE} for outputs and DNS"
            )
        with probe_connectors() as connectors:
            pipeline = Pipeline(
                ScanSettings(
                    engine=engine_config,
                    families=plan.resolver.families,
                    scope=scope,
                    workers=workers,
                ),
                resolver,
                connectors,
                on_result=fanout.add,
                on_warning=warn,
                wall_clock=time.time,
            )
            async with anyio.create_task_group() as group:
                fanout.stop = group.cancel_scope.cancel
                group.start_soon(
                    watch_signals, group.cancel_scope, interrupted, progress, fanout.sinks
                )
                group.start_soon(fanout.flush_periodically)
                try:
                    await pipeline.run(tally.endpoints(inventory(plan, checked.specs)))
                except* WorkerFailed as failed:
                    worker_failures.extend(str(error) for error in failed.exceptions)
                if not pipeline.engine.stats.out_of_time and not worker_failures:
                    await explain_refusals(fanout, plan, resolver, engine_config, warn, history)
                group.cancel_scope.cancel()
        out_of_time = pipeline.engine.stats.out_of_time
        if out_of_time:
            warn(
                f"--max-time {engine_config.max_time:g} s ran out: the results are partial; "
                f"{pipeline.engine.stats.not_probed} queued endpoint addresses and the rest of "
                "the inventory were not probed (silent probes still waiting for a retry are "
                "reported unconfirmed: filtered or open|filtered, no-response)"
            )
        if pipeline.excluded:
            warn(
                f"{pipeline.excluded} endpoint addresses not probed: excluded by --exclude, "
                "or multicast/broadcast (--include-special to probe those)"
            )
        fanout.release_held()
        fanout.flush()
    summary = RunSummary(
        finished=time.time(),
        counts=dict(fanout.counts),
        total=fanout.total,
        not_ok=fanout.not_ok,
        inventory_errors=tally.errors,
        interrupted=interrupted.signal is not None
        or fanout.stdout_closed
        or bool(fanout.failures)
        or out_of_time
        or bool(worker_failures),
        follow_up_probes=fanout.follow_up_probes,
    )
    fanout.finish(summary)
    if run_had_trouble(summary):
        for message in held_warnings:
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
        if isinstance(sink, NagiosSink):
            return sink.exit_status()  # a plugin's exit status is the verdict
    if worker_failures:
        for message in worker_failures:
            report_error(f"reachscan: {message}")
        report_error("reachscan: the results finished before the failure were written")
        return ExitStatus.SCANNER_FAILED
    if out_of_time and interrupted.signal is None:
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
