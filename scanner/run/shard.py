"""One shard of a scan, the whole work: its slice of the inventory, in, its results
encoded as output bytes and history rows, out.

Why the shard is the unit of work: a coordinator that turns every result into a `Result`,
a JSON line and a history row caps the scan at what its one core can do, however many
cores probe. So a shard does everything per endpoint in its own process and its own
event loop: it walks the whole inventory and keeps the endpoints `core/sharding.py` gives
it (no process hands endpoints to another), resolves, probes, classifies, attaches the
filtered endpoints' causes, and encodes each result into what the outputs want (JSON
Lines, the history's rows). What leaves it, in `ShardBatch`es, is bytes, counters, the
few results the coordinator needs as objects (the refusals to explain, and whatever an
output that takes no encoded form needs), and the observations the diagnosis reads.

The input is plain values (`ShardWork`, picklable; `ShardFeed` once the outputs are open),
the output plain frames (scanner/procs/frames.py): the same function can run in a forked
process here (scanner/run/coordinator.py) or, with the frames sent elsewhere, on another
machine. The one exception, for now: an inventory too large for the preflight to keep is
read again from the sources the forked process inherited (`read_specs`).

Protocol, over one pipe pair: coordinator -> shard `("go", ShardFeed)`; shard ->
coordinator `("batch", ShardBatch)` as results finish (every `BATCH` results or
`FLUSH_INTERVAL` seconds), `("inventory-error", text)` (shard 0 only: every shard meets
the same errors), `("warning", text)`, then `("done", ShardDone)`; or `("error", text)`
and exit status 1. The end of its input before "done" means the coordinator is stopping
the scan (an interrupt) or gone: the shard stops at once, as an orphan must not probe on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import anyio

from scanner.core.diagnose import with_filtered_cause
from scanner.core.evidence import needs_explanation
from scanner.core.model import Endpoint, ResolvedVia, Result
from scanner.core.sharding import Sharding, ShardSlice
from scanner.core.sinks import Wanted
from scanner.engine.engine import EngineConfig, EngineStats
from scanner.engine.pipeline import Pipeline, ScanSettings
from scanner.history.codec import ResultRow, result_row
from scanner.history.writer import rows_frame
from scanner.inventory import InventoryError, TargetSpec, iter_unique
from scanner.inventory.dedup import Deduplicator
from scanner.net.connectors import probe_connectors
from scanner.net.host_sockets import local_addresses
from scanner.outputs.jsonl import encode_lines
from scanner.procs.frames import Frame, FrameReader, encode
from scanner.procs.limits import FatalCallbackWatch, is_out_of_memory
from scanner.resolve import Resolver, ResolverConfig

BATCH = 512
"""Results a shard sends at once (one frame, one history transaction)."""

FLUSH_INTERVAL = 0.02
"""Seconds a finished result may wait in a shard for its batch to fill."""

OUT_OF_MEMORY_FRAME = encode(("error", MemoryError.__name__))
"""What a shard out of memory tells the coordinator (made in advance: needs no memory)."""

SpecSource = Callable[[], Iterator[TargetSpec | InventoryError]]

Observation = tuple[str, int, str, str, str, str | None]
"""(address, port, proto, state, reason, name or None): what the diagnosis keeps of a
result (`ScanIndex.add_observation`), as plain values."""


@dataclass(frozen=True, slots=True)
class ShardWork:
    """Everything one shard needs, decided before it starts: plain, picklable values."""

    index: int  # among this run's shards (shard 0 reports the inventory's errors)
    shard: ShardSlice  # which endpoints are its own
    specs: tuple[TargetSpec | InventoryError, ...] | None  # None: read them again
    settings: ScanSettings  # this shard's share of the limits (`share_of`)
    resolver: ResolverConfig
    diagnose: bool


def share_of(config: EngineConfig, sharding: Sharding) -> EngineConfig:
    """One shard's part of the scan's limits: the concurrency and `--rate` divided among
    the shards, and a spread host's `--per-host` (scanner/core/sharding.py)."""
    shards = sharding.shards
    return replace(
        config,
        concurrency=max(config.backoff_floor, config.concurrency // shards),
        per_host=sharding.per_host_per_shard,
        rate=None if config.rate is None else config.rate / shards,
    )


@dataclass(frozen=True, slots=True)
class ShardFeed:
    """What the coordinator wants back, known once its outputs are open: JSON Lines
    bytes, history rows (for run `history_run`), and which results as objects."""

    json_lines: bool = False
    history_run: int | None = None
    objects: Wanted = Wanted.ALL
    vantage: str = ""  # stamped on every JSON line


@dataclass(slots=True)
class ShardBatch:
    """Finished results of one shard, as the coordinator merges them."""

    counts: list[tuple[str, int]] = field(default_factory=list)  # state value, results
    total: int = 0  # results counted, encoded and handed to the outputs
    not_ok: int = 0
    lines: bytearray = field(default_factory=bytearray)  # JSON Lines, if fed
    rows: bytes = b""  # a `rows_frame`, if fed
    results: list[Result] = field(default_factory=list)  # as `ShardFeed.objects` asks
    held: list[Result] = field(default_factory=list)  # refusals to explain (not counted)
    observations: list[Observation] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ShardDone:
    stats: EngineStats
    excluded: int  # endpoint addresses reported `excluded`


class ShardOutput:
    """Turns each result into what the coordinator was fed, and sends full batches."""

    def __init__(self, feed: ShardFeed, diagnose: bool, send: Callable[[Frame], None]) -> None:
        self._feed = feed
        self._diagnose = diagnose
        self._send = send
        self._local_addresses = local_addresses() if diagnose else frozenset()
        self._counts: Counter[str] = Counter()
        self._batch = ShardBatch()
        self._rows: list[ResultRow] = []
        self._pending = 0

    def add(self, result: Result) -> None:
        """A result of the shard's pipeline: everything `ResultFanout.add` would do with
        it in the coordinator, but the holding, done here."""
        batch = self._batch
        if self._diagnose:
            endpoint = result.endpoint
            if result.address is not None and endpoint.expect is not None:
                batch.observations.append(
                    (
                        result.address,
                        endpoint.port,
                        endpoint.proto._value_,
                        result.state._value_,
                        result.reason._value_,
                        None if result.resolved_via is ResolvedVia.LITERAL else endpoint.host,
                    )
                )
            if needs_explanation(result):
                batch.held.append(result)
                self._added()
                return
            result = with_filtered_cause(result, local_addresses=self._local_addresses)
        self._counts[result.state._value_] += 1
        batch.total += 1
        ok = result.ok
        if not ok:
            batch.not_ok += 1
        feed = self._feed
        if feed.json_lines:
            encode_lines((result,), feed.vantage, into=batch.lines)
        if feed.history_run is not None:
            self._rows.append(result_row(feed.history_run, result))
        if feed.objects is Wanted.ALL or (feed.objects is Wanted.TROUBLE and not ok):
            batch.results.append(result)
        self._added()

    def _added(self) -> None:
        self._pending += 1
        if self._pending >= BATCH:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        batch, self._batch = self._batch, ShardBatch()
        batch.counts = list(self._counts.items())
        self._counts.clear()
        if self._rows:
            batch.rows = rows_frame(self._rows)
            self._rows = []
        self._pending = 0
        self._send(("batch", batch))


class Conversation:
    """The shard's side of the pipes."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.reader = FrameReader()
        self.closed = False

    def send(self, frame: Frame) -> None:
        """Blocking writes are fine here: the coordinator always reads. Once it has gone
        (an interrupt closes the pipes), everything else is dropped quietly."""
        if self.closed:
            return
        data = memoryview(encode(frame))
        try:
            while data:
                data = data[os.write(self.write_fd, data) :]
        except (BrokenPipeError, ConnectionResetError):
            self.closed = True


def shard_endpoints(
    work: ShardWork, read_specs: SpecSource, send: Callable[[Frame], None]
) -> Iterator[Endpoint]:
    """This shard's unique endpoints, in inventory order; shard 0 reports the errors."""
    specs = iter(work.specs) if work.specs is not None else read_specs()
    for item in iter_unique(specs, Deduplicator(shard=work.shard)):
        if isinstance(item, InventoryError):
            if work.index == 0:
                send(("inventory-error", str(item)))
        else:
            yield item


async def run_shard(
    work: ShardWork, feed: ShardFeed, read_specs: SpecSource, send: Callable[[Frame], None]
) -> ShardDone:
    """The shard's whole scan: its endpoints through a pipeline of its own, every result
    through `ShardOutput`; returns once all are sent (or `--max-time` ran out)."""
    output = ShardOutput(feed, work.diagnose, send)

    def warn(message: str) -> None:
        send(("warning", message))

    async def flush_periodically() -> None:
        while True:
            await anyio.sleep(FLUSH_INTERVAL)
            output.flush()

    with probe_connectors() as connectors:
        pipeline = Pipeline(
            work.settings,
            Resolver(work.resolver),
            connectors,
            on_result=output.add,
            on_warning=warn,
            wall_clock=time.time,
        )
        async with anyio.create_task_group() as group:
            group.start_soon(flush_periodically)
            stats = await pipeline.run(shard_endpoints(work, read_specs, send))
            group.cancel_scope.cancel()
    output.flush()
    return ShardDone(stats, pipeline.excluded)


async def converse(work: ShardWork, read_specs: SpecSource, conversation: Conversation) -> None:
    """Wait for "go", scan, say "done"; stop at once when the input ends."""
    loop = asyncio.get_running_loop()
    frames: asyncio.Queue[Frame] = asyncio.Queue()
    with anyio.CancelScope() as lifetime:
        # Out of memory in any callback (probes, timers, the pipe) ends the shard, which
        # reports it, rather than being logged and met again at the next turn.
        watch = FatalCallbackWatch(lifetime.cancel)
        loop.set_exception_handler(watch)

        def readable() -> None:
            """Never raises (the loop would call it again at once, failing for ever)."""
            try:
                data = os.read(conversation.read_fd, 1 << 16)
            except BlockingIOError:
                return
            except Exception as error:
                data = b""
                watch.error = watch.error or error
            if not data:
                # The input ended. After "done" that is the coordinator saying goodbye;
                # before it, the coordinator is gone or is stopping the scan, and nobody
                # will read what is still in flight: stop now, not an orphan probing on.
                loop.remove_reader(conversation.read_fd)
                lifetime.cancel()
                return
            for frame in conversation.reader.feed(data):
                frames.put_nowait(frame)

        loop.add_reader(conversation.read_fd, readable)
        try:
            first = await frames.get()
            if first[0] == "go" and isinstance(first[1], ShardFeed):
                done = await run_shard(work, first[1], read_specs, conversation.send)
                conversation.send(("done", done))
        finally:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(conversation.read_fd)
    watch.raise_error()


def serve(read_fd: int, write_fd: int, work: ShardWork, read_specs: SpecSource) -> int:
    """The shard process's whole run, on an event loop of its own; its exit status."""
    conversation = Conversation(read_fd, write_fd)
    options: dict[str, object] = {}
    try:
        import uvloop

        options["loop_factory"] = uvloop.new_event_loop
    except ImportError:
        pass
    try:
        anyio.run(
            converse, work, read_specs, conversation, backend="asyncio", backend_options=options
        )
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the coordinator went away (interrupted): nothing left to report to
    except Exception as error:
        with contextlib.suppress(OSError):
            if is_out_of_memory(error):
                os.write(write_fd, OUT_OF_MEMORY_FRAME)
            else:
                conversation.send(("error", traceback.format_exc()))
        return 1
    return 0
