"""A scan worker process: an ordinary `Engine` over the targets the parent sends.

Forked by scanner/procs/worker_pool.py, which calls `serve`; see scanner/engine/shards.py for the
protocol. Results go back as compact tuples, batched, and the worker ends when its input
pipe closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import traceback
from collections.abc import Mapping

import anyio

from scanner.core.model import Endpoint, Proto, Reason, ResolvedVia, Result, State, Target
from scanner.engine.engine import Engine, EngineConfig, Job
from scanner.engine.shards import BATCH, PROTOS
from scanner.net.base import Connector
from scanner.net.connectors import probe_connectors
from scanner.procs.frames import FrameReader, encode
from scanner.procs.limits import FatalCallbackWatch, is_out_of_memory

FLUSH_INTERVAL = 0.02

OUT_OF_MEMORY_FRAME = encode(("error", MemoryError.__name__))
"""What a worker out of memory tells the parent (which then fails as out of memory)."""


class Conversation:
    """The worker's side of the pipes."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.reader = FrameReader()
        self.results: list[tuple[object, ...]] = []
        self.closed = False

    def send(self, frame: tuple[object, ...]) -> None:
        """Blocking writes are fine here: the parent always reads. Once the parent has
        gone (an interrupt closes the pipes), everything else is dropped quietly."""
        if self.closed:
            return
        data = memoryview(encode(frame))
        try:
            while data:
                written = os.write(self.write_fd, data)
                data = data[written:]
        except (BrokenPipeError, ConnectionResetError):
            self.closed = True

    def add_row(self, row: tuple[object, ...]) -> None:
        self.results.append(row)
        if len(self.results) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self.results:
            batch, self.results = self.results, []
            self.send(("results", batch))


class RowEngine(Engine):
    """An `Engine` that reports each verdict as the compact row the parent reads, never
    building the `Result` the parent would only take apart (a tenth of the worker's time
    on a loopback sweep)."""

    def __init__(
        self,
        config: EngineConfig,
        connectors: Mapping[Proto, Connector[Job]],
        conversation: Conversation,
    ) -> None:
        super().__init__(
            config,
            connectors,
            on_result=self._unexpected,
            on_warning=lambda message: conversation.send(("warning", message)),
        )
        self._conversation = conversation

    def _deliver(
        self,
        job: Job,
        state: State,
        reason: Reason,
        rtt_ms: float | None,
        offender: str | None,
        message: str | None,
    ) -> None:
        identity = int(job.target.endpoint.host)
        ts = self._wall_clock()
        self._conversation.add_row(
            (identity, state._value_, reason._value_, rtt_ms, ts, offender, message, job.attempts)
        )

    @staticmethod
    def _unexpected(result: Result) -> None:
        raise AssertionError("RowEngine delivers rows, never results")


async def converse(conversation: Conversation) -> None:
    loop = asyncio.get_running_loop()
    frames: asyncio.Queue[tuple[object, ...]] = asyncio.Queue()
    with anyio.CancelScope() as lifetime:
        # Out of memory in any callback (probes, timers, the pipe) ends the worker, which
        # reports it, rather than being logged and met again at the next turn.
        watch = FatalCallbackWatch(lifetime.cancel)
        loop.set_exception_handler(watch)

        def readable() -> None:
            """Never raises (the loop would call it again at once, failing for ever): a
            failure stops reading and ends the worker, reported by `serve`."""
            try:
                read_frames()
            except Exception as error:
                loop.remove_reader(conversation.read_fd)
                watch.error = watch.error or error
                lifetime.cancel()

        def read_frames() -> None:
            data = os.read(conversation.read_fd, 1 << 20)
            if not data:
                # The input ended. After "done" that is the parent saying goodbye; before
                # it, the parent is gone or is stopping the scan, and nobody will read
                # what is still in flight: stop now rather than wait out the probes'
                # timeouts as an orphan.
                loop.remove_reader(conversation.read_fd)
                lifetime.cancel()
                return
            for frame in conversation.reader.feed(data):
                frames.put_nowait(frame)

        loop.add_reader(conversation.read_fd, readable)
        try:
            await probe(conversation, frames)
        finally:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(conversation.read_fd)
    watch.raise_error()


async def probe(conversation: Conversation, frames: asyncio.Queue[tuple[object, ...]]) -> None:
    """Take the config, run the engine over the targets that follow, report "done"."""
    first = await frames.get()
    if first[0] != "config":
        return
    config = first[1]
    assert isinstance(config, EngineConfig)
    send, receive = anyio.create_memory_object_stream[list[Target]](4)

    async def feed() -> None:
        async with send:
            while True:
                frame = await frames.get()
                if frame[0] == "end":
                    return
                batch = frame[1]
                assert isinstance(batch, list)
                targets = [
                    # The endpoint's host carries the parent's id for this target: the
                    # parent keeps the real endpoint and rebuilds the result.
                    Target(
                        Endpoint(str(identity), port, PROTOS[proto], None),
                        address,
                        family,
                        ResolvedVia.LITERAL,
                    )
                    for identity, address, family, port, proto in batch
                ]
                try:
                    await send.send(targets)
                except anyio.BrokenResourceError:
                    return  # --max-time ran out: the engine takes nothing more

    async def flush_periodically() -> None:
        while True:
            await anyio.sleep(FLUSH_INTERVAL)
            conversation.flush()

    with probe_connectors() as connectors:
        engine = RowEngine(config, connectors, conversation)
        async with anyio.create_task_group() as group:
            group.start_soon(feed)
            group.start_soon(flush_periodically)
            await engine.run(receive)
            group.cancel_scope.cancel()
    conversation.flush()
    conversation.send(("done", engine.stats))


def serve(read_fd: int, write_fd: int) -> int:
    """The worker's whole run on its own event loop; returns its exit status."""
    conversation = Conversation(read_fd, write_fd)
    options: dict[str, object] = {}
    try:
        import uvloop

        options["loop_factory"] = uvloop.new_event_loop
    except ImportError:
        pass
    try:
        anyio.run(converse, conversation, backend="asyncio", backend_options=options)
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the parent went away (interrupted): nothing left to report to
    except Exception as error:
        with contextlib.suppress(OSError):
            if is_out_of_memory(error):  # the frame was made in advance: needs no memory
                os.write(write_fd, OUT_OF_MEMORY_FRAME)
            else:
                conversation.send(("error", traceback.format_exc()))
        return 1
    return 0
