"""The coordinator of a sharded scan: start the shards, merge what they send, stop them.

Each shard process does the whole work of its slice (scanner/run/shard.py); this side
only merges: encoded JSON Lines and history rows go to their sinks as the bytes they
arrived as, counters are added, and only the results an output or the diagnosis needs
as objects are ever unpickled as such (`ResultFanout.take`). Nothing is sent to a shard
but its "go"; nothing per endpoint is decided here.

The coordinator never blocks on a shard: it reads each pipe when it is readable (a
shard writes with blocking writes, so a shard that produces faster than the outputs
take waits for us, and memory stays bounded by the pipes). A shard that ends without
saying "done" has failed (`ShardFailed`), which is reachscan's failure, never a
target's state; the results merged before it are kept.

Stopping: leaving `run` by any way (finished, an interrupt cancelling the scan, a
failure) closes every pipe and reaps the shards (`WorkerPool.close`): a shard whose
input ends stops at once, so none is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from scanner.core.sinks import EncodedSink, Encoding, Sink, Wanted, wanted
from scanner.engine.engine import EngineStats
from scanner.procs.frames import FrameReader, encode
from scanner.procs.worker_pool import WorkerPool, WorkerProcess
from scanner.run.fanout import InventoryTally, ResultFanout
from scanner.run.shard import ShardBatch, ShardDone, ShardFeed


class ShardFailed(Exception):
    """A shard process died or reported an error: reachscan's failure, not a target's."""


def feed_for(sinks: list[Sink], history_run: int | None, vantage: str) -> ShardFeed:
    """What the shards must send for these outputs: the encodings some sink takes, and
    the results the others need as objects (none, the trouble only, or all)."""
    encodings = {sink.encoding for sink in sinks if isinstance(sink, EncodedSink)}
    needs = {wanted(sink) for sink in sinks}
    objects = (
        Wanted.ALL
        if Wanted.ALL in needs
        else Wanted.TROUBLE
        if Wanted.TROUBLE in needs
        else Wanted.NONE
    )
    return ShardFeed(
        json_lines=Encoding.JSON_LINES in encodings,
        history_run=history_run if Encoding.HISTORY_ROWS in encodings else None,
        objects=objects,
        vantage=vantage,
    )


@dataclass(eq=False)
class Shard:
    """The coordinator's side of one shard process."""

    process: WorkerProcess
    reader: FrameReader = field(default_factory=FrameReader)
    done: ShardDone | None = None


class ShardedScan:
    """One scan over forked shard processes, merged into `fanout`."""

    def __init__(
        self,
        pool: WorkerPool,
        fanout: ResultFanout,
        tally: InventoryTally,
        on_warning: Callable[[str], None],
    ) -> None:
        self._pool = pool
        self._fanout = fanout
        self._tally = tally
        self._on_warning = on_warning
        self._shards = [Shard(process) for process in pool.processes]
        self._changed: asyncio.Event | None = None
        self._failure: str | None = None
        self._crash: BaseException | None = None  # raised by a pipe callback
        self.stats = EngineStats()
        self.excluded = 0  # endpoint addresses reported `excluded`, all shards together

    @property
    def all_results_in(self) -> bool:
        """Every shard said "done": each sends it after its last result, so stopping
        now loses nothing, and an interrupt landing here must not mark a finished scan
        partial (scanner/run/interrupts.py)."""
        return all(shard.done is not None for shard in self._shards)

    async def run(self, feed: ShardFeed) -> EngineStats:
        """Start every shard with `feed`, merge until all are done; raises `ShardFailed`."""
        loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        try:
            go = encode(("go", feed))
            for shard in self._shards:
                loop.add_reader(shard.process.from_worker, self._on_readable, shard)
                try:
                    os.write(shard.process.to_worker, go)  # a few bytes into an empty pipe
                except OSError as error:
                    self._fail(f"a scan worker ({self._name(shard)}) did not start: {error}")
            while not self.all_results_in:
                if self._failure is not None:
                    raise ShardFailed(self._failure)
                await self._changed.wait()
                self._changed.clear()
                if self._crash is not None:
                    raise self._crash
        finally:
            self._stop(loop)
            self._combine()  # also when stopped early: what the finished shards did
        return self.stats

    # ---------------------------------------------------------------- receiving

    def _on_readable(self, shard: Shard) -> None:
        """The pipe's reader callback. It never raises: the loop would only log the
        exception and, the pipe still readable, call it again at once, for ever. A
        failure stops watching the pipe and is raised from `run`."""
        try:
            self._read(shard)
        except Exception as error:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(shard.process.from_worker)
            if self._crash is None:
                self._crash = error
        self._signal()

    def _read(self, shard: Shard) -> None:
        try:
            data = os.read(shard.process.from_worker, 1 << 20)
        except BlockingIOError:
            return
        if not data:
            asyncio.get_running_loop().remove_reader(shard.process.from_worker)
            if shard.done is None:
                status = self._pool.poll(shard.process)
                self._fail(f"a scan worker exited early ({self._name(shard)}, status {status})")
            return
        for frame in shard.reader.feed(data):
            kind = frame[0]
            if kind == "batch":
                batch = frame[1]
                assert isinstance(batch, ShardBatch)
                self._fanout.take(batch)
            elif kind == "inventory-error":
                self._tally.report(str(frame[1]))
            elif kind == "warning":
                self._on_warning(str(frame[1]))
            elif kind == "done":
                done = frame[1]
                assert isinstance(done, ShardDone)
                shard.done = done
            elif kind == "error":
                lines = str(frame[1]).strip().splitlines() or ["unknown error"]
                if lines[-1].startswith(MemoryError.__name__):
                    raise MemoryError("a scan worker ran out of memory")  # as if it were ours
                # The exception, not its trace:
                self._fail(f"a scan worker failed ({self._name(shard)}): {lines[-1]}")

    def _name(self, shard: Shard) -> str:
        return f"shard {self._shards.index(shard) + 1} of {len(self._shards)}"

    def _fail(self, message: str) -> None:
        if self._failure is None:
            self._failure = message
        self._signal()

    def _signal(self) -> None:
        if self._changed is not None:
            self._changed.set()

    # ------------------------------------------------------------------ ending

    def _stop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close the pipes (which ends a shard still running) and reap the processes."""
        for shard in self._shards:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(shard.process.from_worker)
        self._pool.close()

    def _combine(self) -> None:
        stats = self.stats
        stats.concurrency = stats.lowest_concurrency = 0
        for shard in self._shards:
            if shard.done is None:
                continue
            part = shard.done.stats
            stats.probes += part.probes
            stats.retries += part.retries
            stats.scanner_side_errors += part.scanner_side_errors
            stats.self_connects += part.self_connects
            stats.not_probed += part.not_probed
            stats.out_of_time = stats.out_of_time or part.out_of_time
            stats.concurrency += part.concurrency
            stats.lowest_concurrency += part.lowest_concurrency
            self.excluded += shard.done.excluded
