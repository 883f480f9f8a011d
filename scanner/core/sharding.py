"""Which shard owns an endpoint: a pure, deterministic rule every shard applies alike.

A scan split into N shards is N independent slices of the same inventory: each shard
reads the whole inventory and keeps the endpoints this rule gives it, so no process has
to hand endpoints to another (scanner/run/shard.py). The rule looks only at what the
inventory wrote (the host as written, the port, the protocol), never at what a name
resolves to, so every shard, on any machine, decides the same, and a duplicate of an
endpoint always lands in the shard that holds the original (the de-duplication inside
a shard is then exact for the whole scan).

- **UDP: a host stays whole.** ICMP pacing must meet one host's single rate limit from
  one process, so all of a host's UDP ports go to one shard.
- **TCP: a host's ports are spread in blocks of 64**, so one host's full sweep uses every
  shard, while neighbouring ports stay together. Not when `--per-host` is small (a
  politeness limit, kept exactly): then the host stays whole in one shard too.
- **Per-host limits are shared out**: each shard keeps `per_host // shards` of a spread
  host (at least 1), which sums to at most the limit asked for.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from scanner.core.model import Proto

SPREAD_BLOCK_BITS = 6
"""TCP ports go to shards in blocks of 64: consecutive blocks of one host alternate."""

SPREAD_MIN_PER_HOST = 64
"""A smaller --per-host is a politeness limit to be kept exactly: hosts then stay whole
in one shard rather than being split into shares that could round up."""


def host_spot(host: str) -> int:
    """The host's place on the ring of shards (CRC-32 of its text: stable across
    processes and machines, unlike `hash`, which is salted per process)."""
    return zlib.crc32(host.encode())


@dataclass(frozen=True, slots=True)
class Sharding:
    """How one scan is split: `shards` slices, and the per-host limit each keeps."""

    shards: int
    per_host: int

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ValueError(f"a scan has at least one shard, not {self.shards}")

    @property
    def spread_hosts(self) -> bool:
        return self.per_host >= SPREAD_MIN_PER_HOST

    @property
    def per_host_per_shard(self) -> int:
        if not self.spread_hosts:
            return self.per_host
        return max(1, self.per_host // self.shards)

    def shard_of(self, host: str, port: int, proto: Proto) -> int:
        return self.shard_at(host_spot(host), port, proto)

    def shard_at(self, spot: int, port: int, proto: Proto) -> int:
        """`shard_of` for a host whose `host_spot` is known (computed once per host)."""
        if self.spread_hosts and proto is Proto.TCP:
            spot += port >> SPREAD_BLOCK_BITS
        return spot % self.shards


@dataclass(frozen=True, slots=True)
class ShardSlice:
    """One shard's share of the scan: the endpoints `sharding` gives to shard `index`."""

    sharding: Sharding
    index: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.sharding.shards:
            raise ValueError(f"shard {self.index} of {self.sharding.shards} does not exist")

    def holds(self, host: str, port: int, proto: Proto) -> bool:
        return self.sharding.shard_of(host, port, proto) == self.index
