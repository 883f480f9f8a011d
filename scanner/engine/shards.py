"""Both cores: the probes of one scan spread over worker processes, one loop each.

One Python process saturates one core at roughly 45,000 connects a second; the parent
also parses the inventory, builds results and writes outputs. So with `--workers N` the
parent keeps the pipeline and the outputs, and N workers (forked before the loop starts
by scanner/procs/worker_pool.py, running scanner/engine/shard_worker.py) each run an ordinary
`Engine` over a shard of the targets (`Sharding`). A single host's TCP ports are spread
over the workers in blocks, so a sweep of one host uses every core; its UDP targets stay
with one worker, because ICMP pacing must meet the host's one rate limit from one
process. Each worker learns round trips and retry habits from its own share of a host's
answers (plenty: they are per-host averages), and keeps its share of `--per-host`.

Wire protocol, over one pipe pair per worker (frames: scanner/procs/frames.py): parent ->
worker `("config", EngineConfig)`, then `("targets", [(id, address, family, port, proto),
...])` batches, then `("end",)`; worker -> parent `("results", [(id, state, reason,
rtt_ms, ts, offender, message, attempts), ...])`, `("warning", text)` and finally
`("done", EngineStats)`. The parent never blocks on a write: it buffers and writes when
the pipe is writable, while it always reads promptly, so neither side can wait on the
other forever. Targets in flight are bounded per worker (credits), so memory stays
proportional to what is in flight.

Workers ignore SIGINT and SIGTERM, as every forked child does (scanner/procs/worker_pool.py):
the parent decides, and an interrupt closes their pipes, which ends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from anyio.abc import ObjectReceiveStream

from scanner.core.model import Proto, Reason, Result, State, Target
from scanner.engine.engine import EngineConfig, EngineStats, ResultCallback, WarningCallback
from scanner.procs.frames import Frame, FrameReader, encode
from scanner.procs.worker_pool import WorkerPool, WorkerProcess

BATCH = 512
CREDITS_PER_WORKER = 8192  # targets sent to one worker and not yet answered

PROTOS = {proto.value: proto for proto in Proto}
STATES = {state.value: state for state in State}
REASONS = {reason.value: reason for reason in Reason}


class WorkerFailed(Exception):
    """A worker process died or reported an error: reachscan's failure, not a target's."""


SPREAD_BLOCK_BITS = 6
"""TCP ports go to workers in blocks of 64: consecutive blocks of one host alternate."""

SPREAD_MIN_PER_HOST = 64
"""A smaller --per-host is a politeness limit to be kept exactly: hosts then stay whole
on one worker rather than being split into shares that could round up."""


@dataclass(frozen=True, slots=True)
class Sharding:
    """Which worker probes a target, and the per-host limit each worker keeps."""

    workers: int
    per_host: int

    @property
    def spread_hosts(self) -> bool:
        return self.per_host >= SPREAD_MIN_PER_HOST

    @property
    def per_host_per_worker(self) -> int:
        if not self.spread_hosts:
            return self.per_host
        return max(1, self.per_host // self.workers)

    def shard_of(self, address: str, port: int, proto: Proto) -> int:
        spot = zlib.crc32(address.encode())
        if self.spread_hosts and proto is Proto.TCP:
            spot += port >> SPREAD_BLOCK_BITS
        return spot % self.workers


@dataclass(eq=False)
class Worker:
    """The parent's side of one worker: its pipes, what waits to be sent, what is out."""

    process: WorkerProcess
    outgoing: bytearray = field(default_factory=bytearray)
    writing: bool = False
    outstanding: int = 0
    queue: deque[Target] = field(default_factory=deque)
    reader: FrameReader = field(default_factory=FrameReader)
    done: bool = False
    input_closed: bool = False  # the worker closed its end of our pipe (it has ended)
    stats: EngineStats | None = None


class ShardedEngine:
    """The `Engine` interface (run a stream of targets, report results), over processes."""

    def __init__(
        self,
        config: EngineConfig,
        pool: WorkerPool,
        on_result: ResultCallback,
        on_warning: WarningCallback,
    ) -> None:
        self.config = config
        self._pool = pool
        self.stats = EngineStats(
            concurrency=config.concurrency, lowest_concurrency=config.concurrency
        )
        self._on_result = on_result
        self._on_warning = on_warning
        self._pending: dict[int, Target] = {}
        self._next_id = 0
        self._workers: list[Worker] = []
        self._sharding = Sharding(len(pool.processes), config.per_host)
        self._changed: asyncio.Event | None = None
        self._failure: str | None = None
        self._crash: BaseException | None = None  # raised by a pipe callback
        self._input_done = False
        self._out_of_time = False

    async def run(self, targets: ObjectReceiveStream[Sequence[Target]]) -> EngineStats:
        loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        workers = self._sharding.workers
        share = replace(
            self.config,
            concurrency=max(self.config.backoff_floor, self.config.concurrency // workers),
            per_host=self._sharding.per_host_per_worker,
            rate=None if self.config.rate is None else self.config.rate / workers,
        )
        try:
            for process in self._pool.processes:
                worker = Worker(process)
                self._workers.append(worker)
                loop.add_reader(process.from_worker, self._on_readable, worker)
                self._send(loop, worker, ("config", share))
            async with targets:
                async for batch in targets:
                    if self._out_of_time:
                        break  # --max-time ran out in the workers: read no further
                    self._route(batch)
                    for worker in self._workers:
                        self._flush_queue(loop, worker)
                    await self._wait_for_credit(loop)
            self._input_done = True
            for worker in self._workers:
                self._flush_queue(loop, worker, final=True)
            while any(worker.queue for worker in self._workers) and not self._out_of_time:
                if self._failure is not None:
                    raise WorkerFailed(self._failure)
                await self._wait_change()  # results return credits; _on_readable sends more
            for worker in self._workers:
                if not worker.done:
                    self._send(loop, worker, ("end",))
            while not all(worker.done for worker in self._workers):
                if self._failure is not None:
                    raise WorkerFailed(self._failure)
                await self._wait_change()
            self._raise_crash()
        finally:
            self._stop(loop)
        self._combine_stats()
        return self.stats

    @property
    def all_results_in(self) -> bool:
        """The input has ended and every target has its result: what remains is the
        workers' goodbye (their statistics), so stopping now loses no result. An interrupt
        landing there must not mark a finished scan partial (scanner/run/interrupts.py)."""
        return (
            self._input_done
            and not self._pending
            and not any(worker.queue for worker in self._workers)
        )

    # ------------------------------------------------------------------ sending

    def _route(self, batch: Sequence[Target]) -> None:
        workers = self._workers
        shard_of = self._sharding.shard_of
        for target in batch:
            endpoint = target.endpoint
            workers[shard_of(target.address, endpoint.port, endpoint.proto)].queue.append(target)

    def _flush_queue(
        self, loop: asyncio.AbstractEventLoop, worker: Worker, final: bool = False
    ) -> None:
        if worker.done or worker.input_closed:
            return  # out of time (or gone): it takes no more targets
        while worker.queue and worker.outstanding < CREDITS_PER_WORKER:
            if len(worker.queue) < BATCH and not final:
                return
            batch: list[tuple[int, str, int, int, str]] = []
            while worker.queue and len(batch) < BATCH and worker.outstanding < CREDITS_PER_WORKER:
                target = worker.queue.popleft()
                identity = self._next_id
                self._next_id += 1
                self._pending[identity] = target
                worker.outstanding += 1
                batch.append(
                    (
                        identity,
                        target.address,
                        target.family,
                        target.endpoint.port,
                        target.endpoint.proto.value,
                    )
                )
            self._send(loop, worker, ("targets", batch))

    async def _wait_for_credit(self, loop: asyncio.AbstractEventLoop) -> None:
        """Stop reading the inventory while any worker has a full queue."""
        while not self._out_of_time and any(
            len(worker.queue) >= CREDITS_PER_WORKER for worker in self._workers
        ):
            if self._failure is not None:
                raise WorkerFailed(self._failure)
            await self._wait_change()
            for worker in self._workers:
                self._flush_queue(loop, worker)

    def _send(self, loop: asyncio.AbstractEventLoop, worker: Worker, frame: Frame) -> None:
        worker.outgoing += encode(frame)
        self._write(loop, worker)

    def _write(self, loop: asyncio.AbstractEventLoop, worker: Worker) -> None:
        """Also the pipe's writer callback: see `_on_readable` on why it never raises."""
        try:
            self._write_some(loop, worker)
        except Exception as error:
            self._crashed(loop, worker, error)

    def _write_some(self, loop: asyncio.AbstractEventLoop, worker: Worker) -> None:
        if worker.input_closed:
            return
        try:
            written = os.write(worker.process.to_worker, worker.outgoing)
        except BlockingIOError:
            written = 0
        except BrokenPipeError:
            # The worker has ended: out of time (its "done" is on the way), or it died,
            # which its output pipe's end, without a "done", reports (_on_readable).
            worker.input_closed = True
            worker.outgoing.clear()
            written = 0
        except OSError as exc:
            self._fail(f"a scan worker stopped taking targets: {exc}")
            return
        del worker.outgoing[:written]
        if worker.outgoing and not worker.writing:
            loop.add_writer(worker.process.to_worker, self._write, loop, worker)
            worker.writing = True
        elif not worker.outgoing and worker.writing:
            loop.remove_writer(worker.process.to_worker)
            worker.writing = False

    # ---------------------------------------------------------------- receiving

    def _on_readable(self, worker: Worker) -> None:
        """The pipe's reader callback. It never raises: the loop would only log the
        exception and, the pipe still readable, call it again at once, for ever (a
        `MemoryError` here once wrote 100 MB of tracebacks a minute). A failure stops
        watching the pipes and is raised from `run`, where the scan can end cleanly."""
        try:
            self._read(worker)
        except Exception as error:
            self._crashed(asyncio.get_running_loop(), worker, error)

    def _crashed(self, loop: asyncio.AbstractEventLoop, worker: Worker, error: Exception) -> None:
        with contextlib.suppress(Exception):
            loop.remove_reader(worker.process.from_worker)
            if worker.writing:
                loop.remove_writer(worker.process.to_worker)
                worker.writing = False
        if self._crash is None:
            self._crash = error
        self._signal()

    def _raise_crash(self) -> None:
        if self._crash is not None:
            raise self._crash

    def _read(self, worker: Worker) -> None:
        try:
            data = os.read(worker.process.from_worker, 1 << 20)
        except BlockingIOError:
            return
        if not data:
            asyncio.get_running_loop().remove_reader(worker.process.from_worker)
            if not worker.done:
                self._fail(f"a scan worker exited early (status {self._pool.poll(worker.process)})")
            return
        for frame in worker.reader.feed(data):
            self._handle(worker, frame)
        self._flush_queue(asyncio.get_running_loop(), worker, final=self._input_done)
        self._signal()

    def _handle(self, worker: Worker, frame: Frame) -> None:
        kind = frame[0]
        if kind == "results":
            batch = frame[1]
            assert isinstance(batch, list)
            worker.outstanding -= len(batch)
            pending = self._pending
            on_result = self._on_result
            for identity, state, reason, rtt_ms, ts, offender, message, attempts in batch:
                target = pending.pop(identity)
                # Positional, in Result's field order: once per endpoint, keywords cost a
                # third more than the frozen dataclass's own __init__.
                on_result(
                    Result(
                        target.endpoint,
                        target.address,
                        target.resolved_via,
                        STATES[state],
                        REASONS[reason],
                        rtt_ms,
                        ts,
                        offender,
                        message,
                        attempts,
                    )
                )
        elif kind == "warning":
            self._on_warning(str(frame[1]))
        elif kind == "done":
            stats = frame[1]
            assert isinstance(stats, EngineStats)
            worker.stats = stats
            worker.done = True
            if stats.out_of_time:
                self._out_of_time = True
        elif kind == "error":
            lines = str(frame[1]).strip().splitlines() or ["unknown error"]
            if lines[-1].startswith(MemoryError.__name__):
                raise MemoryError("a scan worker ran out of memory")  # as if it were ours
            self._fail(f"a scan worker failed: {lines[-1]}")  # the exception, not its trace

    def _fail(self, message: str) -> None:
        if self._failure is None:
            self._failure = message
        self._signal()

    def _signal(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def _wait_change(self) -> None:
        assert self._changed is not None
        await self._changed.wait()
        self._changed.clear()
        self._raise_crash()

    # ------------------------------------------------------------------ ending

    def _stop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close the pipes (which ends a worker still running) and reap the processes."""
        for worker in self._workers:
            loop.remove_reader(worker.process.from_worker)
            if worker.writing:
                loop.remove_writer(worker.process.to_worker)
        self._pool.close()

    def _combine_stats(self) -> None:
        parts = [worker.stats for worker in self._workers if worker.stats is not None]
        stats = self.stats
        for part in parts:
            stats.probes += part.probes
            stats.retries += part.retries
            stats.scanner_side_errors += part.scanner_side_errors
            stats.self_connects += part.self_connects
            stats.not_probed += part.not_probed
            stats.out_of_time = stats.out_of_time or part.out_of_time
        if parts:
            stats.concurrency = sum(part.concurrency for part in parts)
            stats.lowest_concurrency = sum(part.lowest_concurrency for part in parts)
        stats.not_probed += len(self._pending)
        stats.not_probed += sum(len(worker.queue) for worker in self._workers)
        stats.out_of_time = stats.out_of_time or self._out_of_time
