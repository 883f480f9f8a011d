"""The worker protocol's framing, and how a scan is split: into the processes of one run
and into the runs of `--shard I/N` (no processes, no sockets)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.core.errors import InventoryError
from scanner.core.model import Endpoint, Origin, Proto
from scanner.core.services import DEFAULT_PORTS
from scanner.core.sharding import (
    SPREAD_MIN_PORTS,
    RunShard,
    Sharding,
    big_hosts_of,
    host_spot,
    parse_run_shard,
)
from scanner.core.specs import TargetSpec, parse_target_spec
from scanner.engine.engine import EngineConfig
from scanner.inventory import iter_unique
from scanner.inventory.dedup import Deduplicator
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
    assert not sharding.spreads_any
    assert sharding.per_host_per_shard == 2
    shards = {sharding.shard_of("10.0.0.1", port, Proto.TCP) for port in range(1, 2000)}
    assert len(shards) == 1


def spec(text: str) -> TargetSpec:
    return parse_target_spec(text, default_ports=DEFAULT_PORTS, expect=None, origin=Origin("i", 1))


def keys(items: list[Endpoint | InventoryError]) -> list[tuple[str, int, Proto]]:
    return [(item.host, item.port, item.proto) for item in items if isinstance(item, Endpoint)]


# --- --shard I/N: the runs of a split scan ------------------------------------------------

HOSTS = st.sampled_from(
    ["10.0.0.1", "10.0.0.2", "10.0.0.0/30", "10.0.0.1-3", "db1", "db2.example", "[::1]", "[::/126]"]
)
PORTS = st.sampled_from(
    ["22", "22,80,443", "U:53,T:53", "1-40", f"1000-{1000 + SPREAD_MIN_PORTS}", "T:5-9,U:5-9"]
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(HOSTS, PORTS), min_size=1, max_size=5),
    st.integers(min_value=1, max_value=7),
    st.integers(min_value=1, max_value=3),
    st.sampled_from([1, 2, 1000]),
)
def test_the_runs_are_disjoint_and_together_the_whole_scan(
    entries: list[tuple[str, str]], runs: int, workers: int, per_host: int
) -> None:
    """For any inventory (duplicates, blocks, names, UDP, big hosts) and any N: every
    endpoint in exactly one run, and within a run in exactly one of its workers."""
    specs = [spec(f"{host}:{ports}") for host, ports in entries]
    whole = keys(list(iter_unique(specs)))
    big = big_hosts_of(specs)
    by_runs: list[tuple[str, int, Proto]] = []
    for index in range(runs):
        run = RunShard(index, runs)
        mine = keys(list(iter_unique(specs, Deduplicator(shard=run.whole_slice(per_host, big)))))
        by_workers = [
            key
            for worker in run.worker_slices(workers, per_host, big)
            for key in keys(list(iter_unique(specs, Deduplicator(shard=worker))))
        ]
        assert sorted(by_workers) == sorted(mine), "a run's workers hold exactly its endpoints"
        by_runs += mine
    assert sorted(by_runs) == sorted(whole)
    assert len(set(by_runs)) == len(by_runs)


def test_a_fleet_host_stays_whole_and_a_swept_host_is_spread() -> None:
    specs = [spec("10.1.0.0/24:22,80,443,5432"), spec("10.2.0.9:1-65535")]
    sharding = Sharding(4, per_host=1000, big_hosts=big_hosts_of(specs))
    for last in range(256):
        host = f"10.1.0.{last}"
        assert len({sharding.shard_of(host, port, Proto.TCP) for port in (22, 80, 443, 5432)}) == 1
    swept = Counter(sharding.shard_of("10.2.0.9", port, Proto.TCP) for port in range(1, 65536))
    assert set(swept) == {0, 1, 2, 3}
    assert max(swept.values()) - min(swept.values()) <= 64  # one block at most


@pytest.mark.parametrize("runs", [2, 4, 7, 16])
def test_the_runs_of_a_large_inventory_are_within_ten_per_cent_of_each_other(runs: int) -> None:
    """131,072 hosts of one port each (the benchmark's spec), and one host's full sweep."""
    sharding = Sharding(runs, per_host=1000, big_hosts=())
    hosts = spec("127.0.0.0/15:80").hosts
    sizes = Counter(host_spot(host) % runs for _, host in hosts.members())
    mean = hosts.count() / runs
    assert all(abs(size - mean) <= 0.1 * mean for size in sizes.values()), sizes
    swept = Sharding(runs, per_host=1000, big_hosts=None)
    ports = Counter(swept.shard_of("10.2.0.9", port, Proto.TCP) for port in range(1, 65536))
    assert all(abs(size - 65535 / runs) <= 0.1 * 65535 / runs for size in ports.values())
    assert sharding.shards == runs


def test_the_split_is_stable_from_run_to_run_and_machine_to_machine() -> None:
    """CRC-32 of the host as written (ISO-HDLC, as zlib, gzip and PNG compute it): the same
    numbers in every process and release, never salted as `hash` is. Changing them would
    move endpoints between the shards of runs already scheduled."""
    assert host_spot("db1.example.com") == 0x84B0ABFA
    sharding = Sharding(5, per_host=1000, big_hosts=())
    shards = [sharding.shard_of(f"10.0.0.{last}", 443, Proto.TCP) for last in range(1, 9)]
    assert shards == [2, 3, 1, 0, 3, 0, 0, 0]


def test_too_many_big_entries_make_every_tcp_host_big() -> None:
    specs = [spec(f"10.0.{n // 256}.{n % 256}:1-{SPREAD_MIN_PORTS}") for n in range(300)]
    assert big_hosts_of(specs) is None
    assert big_hosts_of(specs[:10]) == tuple(item.hosts for item in specs[:10])
    assert big_hosts_of([spec("10.0.0.1:1-1023"), spec("10.0.0.2:U:1-2000")]) == ()


@pytest.mark.parametrize(
    ("text", "environment", "expected"),
    [
        ("0/4", {}, RunShard(0, 4)),
        ("3/4", {"JOB_COMPLETION_INDEX": "1"}, RunShard(3, 4)),
        ("auto/4", {"JOB_COMPLETION_INDEX": "2"}, RunShard(2, 4)),
        ("auto/4", {"NOMAD_ALLOC_INDEX": "3"}, RunShard(3, 4)),
        ("auto/4", {"JOB_COMPLETION_INDEX": "1", "NOMAD_ALLOC_INDEX": "3"}, RunShard(1, 4)),
        ("0/1", {}, RunShard(0, 1)),
    ],
)
def test_shard_option(text: str, environment: dict[str, str], expected: RunShard) -> None:
    assert parse_run_shard(text, environment) == expected


@pytest.mark.parametrize(
    ("text", "environment", "says"),
    [
        ("auto/4", {}, "neither JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) nor NOMAD_ALLOC"),
        ("auto/4", {"JOB_COMPLETION_INDEX": "4"}, "JOB_COMPLETION_INDEX (a Kubernetes Indexed"),
        ("auto/4", {"NOMAD_ALLOC_INDEX": "x"}, "is 'x', not a shard number from 0 to 3"),
        ("4/4", {}, "a number from 0 to 3"),
        ("-1/4", {}, "a number from 0 to 3"),
        ("1/0", {}, "at least 1"),
        ("1", {}, "expected I/N or auto/N"),
        ("1/x", {}, "expected I/N or auto/N"),
        ("\u0661/4", {}, "a number from 0 to 3"),  # ARABIC-INDIC DIGIT ONE: not ASCII
    ],
)
def test_a_bad_shard_option_says_what_is_wrong(
    text: str, environment: dict[str, str], says: str
) -> None:
    with pytest.raises(ValueError) as raised:
        parse_run_shard(text, environment)
    assert says in str(raised.value)
