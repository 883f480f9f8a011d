"""The worker protocol's framing and sharding (no processes)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from scanner.core.model import Proto
from scanner.core.sharding import Sharding
from scanner.engine.engine import EngineConfig
from scanner.procs.frames import FrameReader, encode


@given(
    st.lists(st.tuples(st.text(max_size=20), st.integers()), max_size=20),
    st.integers(min_value=1, max_value=64),
)
def test_frames_survive_any_split_of_the_byte_stream(
    frames: list[tuple[str, int]], chunk: int
) -> None:
    data = b"".join(encode(frame) for frame in frames)
    reader = FrameReader()
    received: list[tuple[object, ...]] = []
    for start in range(0, len(data), chunk):
        received.extend(reader.feed(data[start : start + chunk]))
    assert received == frames


def test_a_config_frame_round_trips() -> None:
    (frame,) = FrameReader().feed(encode(("config", EngineConfig(concurrency=7))))
    assert frame == ("config", EngineConfig(concurrency=7))


def test_an_address_always_lands_on_the_same_shard_for_udp() -> None:
    sharding = Sharding(shards=4, per_host=1000)
    shards = {sharding.shard_of("10.0.0.1", port, Proto.UDP) for port in range(1, 2000)}
    assert len(shards) == 1
    spread = {
        sharding.shard_of(f"10.0.{a}.{b}", 53, Proto.UDP) for a in range(8) for b in range(32)
    }
    assert spread == {0, 1, 2, 3}


def test_one_hosts_tcp_ports_are_spread_evenly_in_blocks() -> None:
    sharding = Sharding(shards=2, per_host=1000)
    counts = [0, 0]
    for port in range(1, 65536):
        counts[sharding.shard_of("127.0.0.1", port, Proto.TCP)] += 1
    assert abs(counts[0] - counts[1]) <= 64
    block = {sharding.shard_of("127.0.0.1", port, Proto.TCP) for port in range(64, 128)}
    assert len(block) == 1  # neighbouring ports stay together


def test_each_worker_keeps_its_share_of_the_per_host_limit() -> None:
    assert Sharding(shards=2, per_host=1000).per_host_per_shard == 500
    assert Sharding(shards=3, per_host=100).per_host_per_shard == 33


def test_a_small_per_host_limit_keeps_hosts_whole_and_exact() -> None:
    sharding = Sharding(shards=4, per_host=2)
    assert not sharding.spread_hosts
    assert sharding.per_host_per_shard == 2
    shards = {sharding.shard_of("10.0.0.1", port, Proto.TCP) for port in range(1, 2000)}
    assert len(shards) == 1
