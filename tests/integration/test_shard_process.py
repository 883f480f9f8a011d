"""Shard processes (scanner/run/shard.py) and their coordinator (scanner/run/coordinator.py),
forked for real, probing real loopback ports, talking over real pipes."""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import orjson
import pytest

from scanner.core.errors import InventoryError
from scanner.core.model import Expect, Origin, State
from scanner.core.scope import Scope
from scanner.core.sharding import Sharding, ShardSlice, big_hosts_of
from scanner.core.sinks import Wanted
from scanner.engine.engine import EngineConfig
from scanner.engine.pipeline import ScanSettings
from scanner.history.sink import HistorySink
from scanner.history.store import HistoryStore
from scanner.inventory import DEFAULT_PORTS, TargetSpec, parse_target_spec
from scanner.outputs import make_sink
from scanner.outputs.progress import Progress
from scanner.outputs.quiet import QuietSink
from scanner.procs.frames import Frame, FrameReader, encode
from scanner.procs.worker_pool import WorkerPool
from scanner.resolve import ResolverConfig
from scanner.run.coordinator import ShardedScan, feed_for
from scanner.run.fanout import InventoryTally, ResultFanout
from scanner.run.shard import ShardBatch, ShardDone, ShardFeed, ShardWork, serve, share_of
from tests.support.listeners import LoopbackServices, free_port

ADDRESS = "127.83.0.1"
RESOLVER = ResolverConfig(hosts_file=None, nameservers=(("127.0.0.1", 9),))
CONFIG = EngineConfig(timeout=1.0, retries=0)


def spec(text: str, expect: Expect | None = None, line: int = 1) -> TargetSpec:
    return parse_target_spec(
        text, default_ports=DEFAULT_PORTS, expect=expect, origin=Origin("inventory", line)
    )


def works(
    specs: tuple[TargetSpec | InventoryError, ...], shards: int, *, diagnose: bool = False
) -> list[ShardWork]:
    sharding = Sharding(shards, CONFIG.per_host, big_hosts_of(specs))
    settings = ScanSettings(
        engine=share_of(CONFIG, sharding), families=frozenset({4}), scope=Scope()
    )
    return [
        ShardWork(index, ShardSlice(sharding, index), specs, settings, RESOLVER, diagnose)
        for index in range(shards)
    ]


def fork_shards(shard_works: list[ShardWork]) -> WorkerPool:
    def serving(work: ShardWork) -> Callable[[int, int], int]:
        return lambda read_fd, write_fd: serve(read_fd, write_fd, work, lambda: iter(()))

    return WorkerPool.fork_each([serving(work) for work in shard_works], "test shards")


def converse(pool: WorkerPool, feed: ShardFeed) -> list[list[Frame]]:
    """Send each shard "go", read its frames until "done" (or the end of its output)."""
    conversations: list[list[Frame]] = []
    for process in pool.processes:
        os.set_blocking(process.to_worker, True)
        os.write(process.to_worker, encode(("go", feed)))
    for process in pool.processes:
        reader = FrameReader()
        frames: list[Frame] = []
        deadline = time.monotonic() + 60  # the hang guard only
        while time.monotonic() < deadline and not any(frame[0] == "done" for frame in frames):
            data = os.read(process.from_worker, 1 << 20)
            if not data:
                break
            frames.extend(reader.feed(data))
        conversations.append(frames)
    return conversations


def batches(frames: list[Frame]) -> list[ShardBatch]:
    return [frame[1] for frame in frames if frame[0] == "batch"]  # type: ignore[misc]


def test_shard_work_is_plain_data_that_travels_as_a_pickle() -> None:
    """What lets a shard run elsewhere (a pod, another machine): its whole input."""
    (work, *_) = works((spec(f"{ADDRESS}:1-10"),), 2)
    assert pickle.loads(pickle.dumps(work)) == work
    feed = ShardFeed(json_lines=True, history_run=7, objects=Wanted.TROUBLE)
    assert pickle.loads(pickle.dumps(feed)) == feed


def test_shards_together_scan_every_endpoint_exactly_once_with_the_states_of_one() -> None:
    with LoopbackServices() as services:
        listening = {services.tcp(ADDRESS) for _ in range(3)}
        ports = sorted(listening)
        # 1,024 ports in one entry: a big host, spread over the three shards.
        swept = range(ports[0] - 512, ports[0] + 512)
        specs = (
            spec(f"{ADDRESS}:{swept[0]}-{swept[-1]}"),
            spec(f"{ADDRESS}:{ports[1]},{ports[2]}"),
        )
        inventory = {(ADDRESS, port) for port in swept} | {
            (ADDRESS, ports[1]),
            (ADDRESS, ports[2]),
        }
        with fork_shards(works(specs, 3)) as pool:
            conversations = converse(pool, ShardFeed(json_lines=True, objects=Wanted.NONE))
    seen: list[tuple[str, int]] = []
    opened = set()
    for frames in conversations:
        assert frames[-1][0] == "done"
        done = frames[-1][1]
        assert isinstance(done, ShardDone)
        shard_batches = batches(frames)
        lines = b"".join(batch.lines for batch in shard_batches).splitlines()
        assert sum(batch.total for batch in shard_batches) == len(lines)
        assert all(not batch.results for batch in shard_batches), "no objects were asked for"
        for line in lines:
            record = orjson.loads(line)
            seen.append((record["address"], record["port"]))
            if record["state"] == "open":
                opened.add(record["port"])
    assert sorted(seen) == sorted(inventory), "every endpoint once, in one shard or another"
    assert opened == listening
    assert all(len(batches(frames)) > 0 for frames in conversations), "every shard had work"


def test_only_shard_zero_reports_the_inventory_errors() -> None:
    error = InventoryError(Origin("inventory", 2), "port 70000 is out of range")
    specs = (spec(f"{ADDRESS}:{free_port('tcp', ADDRESS)}"), error)
    with fork_shards(works(specs, 2)) as pool:
        conversations = converse(pool, ShardFeed(objects=Wanted.NONE))
    reported = [
        [str(frame[1]) for frame in frames if frame[0] == "inventory-error"]
        for frames in conversations
    ]
    assert reported == [[str(error)], []]


def test_refusals_to_explain_come_back_as_objects_and_uncounted() -> None:
    """With the diagnosis on, a refusal of an endpoint expected open is held for its
    cause in the coordinator (counted when it is emitted, with the cause): a shard sends
    it as an object and does not count it; what the diagnosis reads comes too."""
    closed = free_port("tcp", ADDRESS)
    specs = (spec(f"{ADDRESS}:{closed}", Expect.OPEN),)
    with fork_shards(works(specs, 2, diagnose=True)) as pool:
        conversations = converse(pool, ShardFeed(json_lines=True, objects=Wanted.NONE))
    every = [batch for frames in conversations for batch in batches(frames)]
    (held,) = [result for batch in every for result in batch.held]
    assert held.state is State.REFUSED and held.endpoint.port == closed
    assert sum(batch.total for batch in every) == 0
    assert not b"".join(batch.lines for batch in every)
    observations = [observation for batch in every for observation in batch.observations]
    assert observations == [(ADDRESS, closed, "tcp", "refused", "conn-refused", None)]


def test_trouble_only_objects_are_the_results_not_as_expected() -> None:
    with LoopbackServices() as services:
        listening = services.tcp(ADDRESS)
        closed = free_port("tcp", ADDRESS)
        specs = (spec(f"{ADDRESS}:{listening},{closed}", Expect.OPEN),)
        with fork_shards(works(specs, 1)) as pool:
            conversations = converse(pool, ShardFeed(objects=Wanted.TROUBLE))
    every = [batch for frames in conversations for batch in batches(frames)]
    assert [result.endpoint.port for batch in every for result in batch.results] == [closed]
    assert sum(batch.not_ok for batch in every) == 1


def test_a_shard_whose_input_ends_before_go_exits_at_once() -> None:
    """The coordinator was interrupted before the scan began: nothing is probed."""
    with fork_shards(works((spec(f"{ADDRESS}:1-100"),), 2)) as pool:
        for process in pool.processes:
            process.close_input()
        outputs = [os.read(process.from_worker, 65536) for process in pool.processes]
        pool.close()
        assert outputs == [b"", b""]
        assert [process.exit_status for process in pool.processes] == [0, 0]


class FailingFanout(ResultFanout):
    """A fanout whose merging runs out of memory: the coordinator's pipe callback meets it."""

    def __init__(self) -> None:
        super().__init__([], Progress(False, None), diagnosis=False)
        self.taken = 0

    def take(self, batch: ShardBatch) -> None:
        self.taken += 1
        raise MemoryError("test: no memory for this batch")


def test_a_failing_pipe_callback_stops_the_run_once_instead_of_firing_again() -> None:
    """An exception in the coordinator's pipe callback used to reach only the loop's
    logger, and the pipe, still readable, called it again at once (a MemoryError there
    once wrote 233,010 tracebacks a minute and the run never ended). Now the callback
    stops watching that pipe and `run` raises the error, once."""
    specs = (spec(f"{ADDRESS}:20000-21999"),)
    fanout = FailingFanout()

    async def scan(pool: WorkerPool) -> None:
        coordinator = ShardedScan(pool, fanout, InventoryTally(lambda message: None), print)
        with anyio.fail_after(60):  # without the fix the run waits for ever
            await coordinator.run(ShardFeed(objects=Wanted.NONE))

    # One shard: with two, the other's pipe may rightly deliver its own first batch before
    # the run stops (a failure once per pipe, never again on the same one).
    with fork_shards(works(specs, 1)) as pool, pytest.raises(MemoryError):
        anyio.run(scan, pool)
    assert fanout.taken == 1


def test_what_the_shards_are_fed_follows_the_outputs(tmp_path: Path) -> None:
    """Encoded bytes for the sinks that take them, objects only as the others need."""
    sinks = {format: make_sink(format, str(tmp_path / format)) for format in ("jsonl", "table")}
    try:
        jsonl, table = sinks["jsonl"], sinks["table"]
        with HistoryStore.open(tmp_path / "history.sqlite") as store:
            history = HistorySink(store)
            assert feed_for([jsonl, history], 3, "a") == ShardFeed(True, 3, Wanted.NONE, "a")
            assert feed_for([jsonl], 3, "a") == ShardFeed(True, None, Wanted.NONE, "a")
            assert feed_for([history, QuietSink(jsonl)], 3, "a") == ShardFeed(
                False, 3, Wanted.TROUBLE, "a"
            )
            assert feed_for([jsonl, QuietSink(table), table], 3, "a") == ShardFeed(
                True, None, Wanted.ALL, "a"
            )
    finally:
        for sink in sinks.values():
            sink.abort()
