"""Which shard owns an endpoint: a pure, deterministic rule every shard applies alike.

A scan split into N shards is N independent slices of the same inventory: each shard
reads the whole inventory and keeps the endpoints this rule gives it, so no process has
to hand endpoints to another (scanner/run/shard.py), and no machine to another
(`--shard I/N`: each run of a split scan reads the whole inventory too). The rule looks
only at what the inventory wrote (the host as written, the port, the protocol, and which
hosts the inventory makes big), never at what a name resolves to, so every shard, on any
machine, decides the same without a seed, and a duplicate of an endpoint always lands in
the shard that holds the original (the de-duplication inside a shard is then exact for
the whole scan).

- **A host stays whole** in one shard, chosen by the CRC-32 of its text: its per-host
  limit, its ICMP pacing and the diagnosis's evidence about it (which of its ports
  answered) stay in one process.
- **A big host is spread**: one whose TCP ports an inventory entry sweeps (at least
  `SPREAD_MIN_PORTS` of them, as `127.0.0.1:1-65535` does) would keep one shard busy
  while the others idle, so its TCP ports go to the shards in blocks of 64, consecutive
  blocks to consecutive shards. Its UDP ports stay whole (ICMP pacing meets one rate limit
  per host, which one process must pace). Not when `--per-host` is small (a politeness
  limit, kept exactly): then every host stays whole.
- **Per-host limits are shared out** when any host is spread: each shard keeps
  `per_host // shards` (at least 1), which sums to at most the limit asked for.
- **A split of a split is one split**: shard I of N, probed by W worker processes, is
  the shards I, I + N, ..., I + N(W - 1) of N x W (`RunShard.worker_slices`), so the
  runs' rule and the workers' rule cannot disagree.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from scanner.core.addresses import address_value
from scanner.core.errors import InventoryError
from scanner.core.hosts import HostPattern
from scanner.core.model import Proto
from scanner.core.specs import TargetSpec

SPREAD_BLOCK_BITS = 6
"""A big host's TCP ports go to shards in blocks of 64: consecutive blocks alternate."""

SPREAD_MIN_PER_HOST = 64
"""A smaller --per-host is a politeness limit to be kept exactly: hosts then stay whole
in one shard rather than being split into shares that could round up."""

SPREAD_MIN_PORTS = 1024
"""TCP ports of one host in one inventory entry from which the host is big (spread over
the shards). A fleet host's few service ports stay together; a sweep is spread."""

MAX_BIG_HOST_ENTRIES = 256
"""Big entries remembered one by one; past this, every TCP host counts as big (the same
in every shard: only the cost of asking, once per host, stays bounded)."""


def host_spot(host: str) -> int:
    """The host's place on the ring of shards (CRC-32 of its text: stable across
    processes and machines, unlike `hash`, which is salted per process)."""
    return zlib.crc32(host.encode())


class BigHosts:
    """Gathers, item by item, the host patterns of the inventory's entries that sweep at
    least `SPREAD_MIN_PORTS` TCP ports (inventory errors are skipped): fed while the
    inventory is read for another reason, so that it need not be read again for this."""

    def __init__(self) -> None:
        self._found: list[HostPattern] = []
        self._too_many = False

    def add(self, item: TargetSpec | InventoryError) -> None:
        if self._too_many or not isinstance(item, TargetSpec):
            return
        tcp_ports = sum(
            last - first + 1 for proto, first, last in item.ports.ranges if proto is Proto.TCP
        )
        if tcp_ports >= SPREAD_MIN_PORTS and item.hosts not in self._found:
            self._found.append(item.hosts)
            self._too_many = len(self._found) > MAX_BIG_HOST_ENTRIES

    @property
    def patterns(self) -> tuple[HostPattern, ...] | None:
        """What `Sharding.big_hosts` takes: None when there are more than
        `MAX_BIG_HOST_ENTRIES` (every TCP host then counts as big)."""
        return None if self._too_many else tuple(self._found)


def big_hosts_of(items: Iterable[TargetSpec | InventoryError]) -> tuple[HostPattern, ...] | None:
    """`BigHosts` of a whole inventory."""
    gathered = BigHosts()
    for item in items:
        gathered.add(item)
    return gathered.patterns


@dataclass(frozen=True, slots=True)
class Sharding:
    """How one scan is split: `shards` slices, the per-host limit, and the big hosts."""

    shards: int
    per_host: int
    big_hosts: tuple[HostPattern, ...] | None = None
    """The hosts whose TCP ports are spread (`big_hosts_of` the inventory); None: every
    TCP host."""

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ValueError(f"a scan has at least one shard, not {self.shards}")

    @property
    def spreads_any(self) -> bool:
        """Can any host's ports be spread over several shards?"""
        return self.per_host >= SPREAD_MIN_PER_HOST and self.big_hosts != ()

    @property
    def per_host_per_shard(self) -> int:
        if not self.spreads_any:
            return self.per_host
        return max(1, self.per_host // self.shards)

    def spreads(self, version: int | None, value: int | None, host: str) -> bool:
        """Is this host big (its TCP ports spread), or whole in one shard? Asked once per
        host, with the host as a spec walks it: (IP version, integer value, text)."""
        if not self.spreads_any:
            return False
        if self.big_hosts is None:
            return True
        return any(pattern.holds(version, value, host) for pattern in self.big_hosts)

    def shard_of(self, host: str, port: int, proto: Proto) -> int:
        version, value = address_value(host)
        return self.shard_at(host_spot(host), self.spreads(version, value, host), port, proto)

    def shard_at(self, spot: int, spread: bool, port: int, proto: Proto) -> int:
        """`shard_of` for a host whose `host_spot` and `spreads` are known (computed once
        per host)."""
        if spread and proto is Proto.TCP:
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


@dataclass(frozen=True, slots=True)
class RunShard:
    """This run's part of a scan split over several runs (`--shard I/N`): shard `index` of
    `count`, on this machine or any other."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} of {self.count} does not exist")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def whole_slice(self, per_host: int, big_hosts: tuple[HostPattern, ...] | None) -> ShardSlice:
        """This run's endpoints, probed in one process."""
        return ShardSlice(Sharding(self.count, per_host, big_hosts), self.index)

    def worker_slices(
        self, workers: int, per_host: int, big_hosts: tuple[HostPattern, ...] | None
    ) -> list[ShardSlice]:
        """This run's endpoints over `workers` processes: the shards I + N * j of N x W.

        A spot is I + N * j modulo N x W exactly when it is I modulo N (j being the spot
        modulo N x W, divided by N), so together the workers hold this run's endpoints,
        each once, and each worker's per-host share is that of a scan in N x W shards."""
        sharding = Sharding(self.count * workers, per_host, big_hosts)
        return [ShardSlice(sharding, self.index + self.count * worker) for worker in range(workers)]


AUTO_INDEX_VARIABLES = (
    ("JOB_COMPLETION_INDEX", "a Kubernetes Indexed Job"),
    ("NOMAD_ALLOC_INDEX", "Nomad"),
)
"""Where `--shard auto/N` finds this run's index, in this order, and who sets each."""


def parse_run_shard(text: str, environment: Mapping[str, str]) -> RunShard:
    """`--shard I/N` (I from 0 to N - 1) or `auto/N` (I from the scheduler's variable in
    `environment`). Raises ValueError saying what is wrong, in the option's terms."""
    index_text, slash, count_text = text.partition("/")
    if not slash or not count_text.isdigit() or not count_text.isascii():
        raise ValueError(f"--shard {text}: expected I/N or auto/N, as in 0/4 or auto/4")
    count = int(count_text)
    if count < 1:
        raise ValueError(f"--shard {text}: N is the number of shards, at least 1")
    span = f"from 0 to {count - 1}"
    if index_text == "auto":
        for variable, scheduler in AUTO_INDEX_VARIABLES:
            value = environment.get(variable)
            if value is None:
                continue
            if not (value.isascii() and value.isdigit()) or int(value) >= count:
                raise ValueError(
                    f"--shard {text}: {variable} ({scheduler}) is {value!r}, "
                    f"not a shard number {span}"
                )
            return RunShard(int(value), count)
        names = " nor ".join(
            f"{variable} ({scheduler})" for variable, scheduler in AUTO_INDEX_VARIABLES
        )
        raise ValueError(
            f"--shard {text}: neither {names} is set; give this run's shard number "
            f"instead, as in --shard 0/{count}"
        )
    if not (index_text.isascii() and index_text.isdigit()) or int(index_text) >= count:
        raise ValueError(f"--shard {text}: I is this run's shard, a number {span}")
    return RunShard(int(index_text), count)
