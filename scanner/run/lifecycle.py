"""One scan's process lifecycle, from the signal guard to the exit status.

The order matters and is decided here once, for `scan` and `check` alike: the signal
guard first (one handler from start to exit, scanner/run/interrupts.py), then the plan,
the inventory counted, the lock taken and the history opened before the event loop
exists (the lock waits by sleeping), the history writer and the scan workers forked
before any thread does (scanner/procs/worker_pool.py), and only then the event loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from scanner.console import report_error
from scanner.core.sharding import RunShard
from scanner.engine.pipeline import ScanSettings
from scanner.history.errors import HistoryError
from scanner.history.lock import LockBusy
from scanner.history.writer import WRITER_FROM, HistoryWriter
from scanner.procs.limits import cancel_give_up, exhaustion_message
from scanner.procs.worker_pool import WorkerPool, WorkersUnavailable
from scanner.run.interrupts import SignalGuard
from scanner.run.plan import ScanPlan
from scanner.run.preflight import list_targets
from scanner.run.runner import Prepared, prepare, run_plan
from scanner.run.session import history_session
from scanner.run.shard import ShardWork, serve, share_of
from scanner.status import ExitStatus, UsageError

__all__ = ["run_async", "run_scan", "start_history_writer", "start_shards"]


def run_scan(make_plan: Callable[[], ScanPlan], loop_choice: str) -> int:
    """A whole `reachscan scan`: the signal guard in place from before the plan is made
    (scanner/run/interrupts.py) to the exit, then the targets listed or the scan run."""
    with SignalGuard().installed() as signals:
        plan = make_plan()
        if plan.list_only:
            return list_targets(plan)
        return run_async(plan, loop_choice, signals)


def run_async(plan: ScanPlan, loop_choice: str, signals: SignalGuard | None = None) -> int:
    """Count the inventory, take the lock and open the history (before the loop: the lock
    waits by sleeping), fork the processes, then run the scan on the chosen event loop.
    `signals`: the guard already in place (`run`); else one is installed here."""
    if signals is None:
        with SignalGuard().installed() as guard:
            return run_async(plan, loop_choice, guard)
    import anyio

    options: dict[str, object] = {}
    if loop_choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if loop_choice == "uvloop":
                raise UsageError("--loop uvloop: uvloop is not installed") from None
        else:
            options["loop_factory"] = uvloop.new_event_loop
    try:
        prepared = prepare(plan, "uvloop" if "loop_factory" in options else "asyncio")
        if isinstance(prepared, ExitStatus):
            return prepared
        # Forked here, before the loop and any thread exist (scanner/procs/worker_pool.py), the
        # history writer even before the history is opened (scanner/history/writer.py).
        with (
            start_history_writer(plan, prepared) as writer,
            history_session(plan.history, writer) as history,
            start_shards(plan, prepared) as workers,
        ):
            status = anyio.run(
                run_plan,
                plan,
                prepared,
                signals,
                history,
                workers,
                backend="asyncio",
                backend_options=options,
            )
        return signals.exit_status(status)  # also for an interrupt while all was closed
    except LockBusy as busy:
        report_error(f"reachscan: {busy}")
        return ExitStatus.LOCKED
    except HistoryError as exc:
        report_error(f"reachscan: history: {exc}")
        return ExitStatus.OUTPUT_FAILED
    except Exception as error:
        # Out of memory or descriptors wherever it struck (scanner/procs/limits.py): one line
        # and exit 3; the run has removed its temporary files and failed its history run.
        message = exhaustion_message(error)
        if message is None:
            raise
        cancel_give_up()  # stopped cleanly after all
        report_error(message)
        return ExitStatus.OUTPUT_FAILED


def shard_works(plan: ScanPlan, prepared: Prepared) -> list[ShardWork]:
    """The slices of the scan, one per shard process (scanner/run/shard.py)."""
    per_host, big_hosts = prepared.engine.per_host, prepared.checked.big_hosts
    run_shard = RunShard(0, 1) if plan.shard is None else plan.shard
    slices = run_shard.worker_slices(prepared.workers, per_host, big_hosts)
    settings = ScanSettings(
        engine=share_of(prepared.engine, slices[0].sharding),
        families=plan.resolver.families,
        scope=prepared.checked.scope,
    )
    return [
        ShardWork(
            index=index,
            shard=shard,
            specs=prepared.checked.specs,
            settings=settings,
            resolver=plan.resolver,
            diagnose=plan.diagnose,
        )
        for index, shard in enumerate(slices)
    ]


def start_shards(plan: ScanPlan, prepared: Prepared) -> WorkerPool:
    """The shard processes `prepared` asks for (forked, each holding its `ShardWork`);
    none (the scan runs in this process) for one, or when they cannot be started, which
    is said on stderr."""
    if prepared.workers <= 1:
        return WorkerPool([])

    def serving(work: ShardWork) -> Callable[[int, int], int]:
        return lambda read_fd, write_fd: serve(read_fd, write_fd, work, plan.specs)

    try:
        return WorkerPool.fork_each(
            [serving(work) for work in shard_works(plan, prepared)], "scan shards"
        )
    except WorkersUnavailable as unavailable:
        report_error(f"reachscan: {unavailable}; probing in this process instead")
        return WorkerPool([])


def start_history_writer(
    plan: ScanPlan, prepared: Prepared
) -> contextlib.AbstractContextManager[HistoryWriter | None]:
    """The history writer, for a scan with a history and at least `WRITER_FROM` endpoints;
    none (the history written in this process) otherwise, or when it cannot be started."""
    if plan.history is None or prepared.checked.share(plan) < WRITER_FROM:
        return contextlib.nullcontext()
    try:
        return HistoryWriter.fork(plan.history.database())
    except WorkersUnavailable as unavailable:
        report_error(f"reachscan: {unavailable}; writing the history in this process instead")
        return contextlib.nullcontext()
