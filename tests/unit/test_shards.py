"""The worker protocol's framing and sharding (no processes)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from scanner.engine import EngineConfig
from scanner.shards import FrameReader, encode, shard_of


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


def test_an_address_always_lands_on_the_same_shard() -> None:
    shards = {shard_of("10.0.0.1", 4) for _ in range(10)}
    assert len(shards) == 1
    spread = {shard_of(f"10.0.{a}.{b}", 4) for a in range(8) for b in range(32)}
    assert spread == {0, 1, 2, 3}
