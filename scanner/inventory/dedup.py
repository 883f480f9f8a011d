"""First-occurrence-wins de-duplication of endpoints, in memory that does not grow with
the size of a spec.

An inventory may say the same thing twice (`10.0.0.0/24:80` and `10.0.0.7:80`), and each
endpoint must be probed once. Remembering every key would cost a key per endpoint, which
for `10.0.0.0/8:80` is 16 million tuples. But a spec never repeats itself (see
`TargetSpec`), so a big spec is remembered as what it is, a rectangle of hosts x ports x
pin, and later endpoints are tested against the rectangles by arithmetic. Small specs
(explicit hosts, the common case) go into a set of `Endpoint.key`s, which is faster to
test than a growing list of rectangles.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from scanner.core.addresses import address_value
from scanner.core.errors import InventoryError
from scanner.core.hosts import HostPattern, may_overlap
from scanner.core.model import Endpoint, Proto
from scanner.core.ports import PortSpec
from scanner.core.sharding import ShardSlice, host_spot
from scanner.core.specs import TargetSpec

SMALL_SPEC_LIMIT = 1024
"""Specs with at most this many endpoints are remembered key by key."""

EndpointKey = tuple[str, int, Proto, str | None]


@dataclass(frozen=True, slots=True)
class _Rectangle:
    """A big spec already admitted: every host of `hosts` on every port, with one pin."""

    hosts: HostPattern
    ports: PortSpec
    pinned_address: str | None

    def holds(
        self, version: int | None, value: int | None, host: str, port: int, proto: Proto
    ) -> bool:
        return (port, proto) in self.ports and self.hosts.holds(version, value, host)


class Deduplicator:
    """Remembers what was admitted; drops every later endpoint with the same key.

    Feed it each spec through `unique_endpoints` and consume that fully before the next:
    a big spec claims all its endpoints when its walk starts.
    """

    def __init__(
        self, *, small_spec_limit: int = SMALL_SPEC_LIMIT, shard: ShardSlice | None = None
    ) -> None:
        """`shard`: keep only that shard's endpoints (scanner/core/sharding.py). Exact for
        the whole scan: a duplicate has the same host, port and protocol as its original,
        so the rule puts both in the same shard, where this de-duplicator sees both."""
        self._small_spec_limit = small_spec_limit
        self._shard = shard
        self._seen: set[EndpointKey] = set()
        self._rectangles: list[_Rectangle] = []

    def unique_endpoints(self, spec: TargetSpec) -> Iterator[Endpoint]:
        """The endpoints of `spec` that no earlier spec or endpoint produced."""
        pin = spec.pinned_address
        earlier = [
            rectangle
            for rectangle in self._rectangles
            if rectangle.pinned_address == pin
            and may_overlap(rectangle.hosts, spec.hosts)
            and rectangle.ports.overlaps(spec.ports)
        ]
        remember_keys = spec.count() <= self._small_spec_limit
        if not remember_keys:
            self._rectangles.append(_Rectangle(spec.hosts, spec.ports, pin))
        seen = self._seen
        # A big spec first in its inventory (a sweep) has no key to look up and none to
        # remember: the per-endpoint key is only built when one of those is needed.
        keyed = bool(seen) or remember_keys
        version = spec.hosts.version
        shard = self._shard
        for value, host in spec.hosts.members():
            if shard is not None:
                sharding, index = shard.sharding, shard.index
                spot, spread = host_spot(host), sharding.spreads(version, value, host)
            for port, proto, service in spec.ports:
                if shard is not None and sharding.shard_at(spot, spread, port, proto) != index:
                    continue  # another shard's: skipped before any key is built
                if keyed:
                    key = (host, port, proto, pin)
                    if key in seen:
                        continue
                if earlier and any(
                    rectangle.holds(version, value, host, port, proto) for rectangle in earlier
                ):
                    continue
                if remember_keys:
                    seen.add(key)
                yield spec.endpoint(host, port, proto, service)

    def admit(self, endpoint: Endpoint) -> bool:
        """Is this endpoint new (and this shard's)? If so, remember it. For endpoints made
        outside a spec."""
        shard = self._shard
        if shard is not None and not shard.holds(endpoint.host, endpoint.port, endpoint.proto):
            return False
        key = endpoint.key
        if key in self._seen:
            return False
        if self._rectangles:
            version, value = address_value(endpoint.host)
            for rectangle in self._rectangles:
                if rectangle.pinned_address == endpoint.pinned_address and rectangle.holds(
                    version, value, endpoint.host, endpoint.port, endpoint.proto
                ):
                    return False
        self._seen.add(key)
        return True


def iter_unique(
    items: Iterable[TargetSpec | InventoryError], deduplicator: Deduplicator | None = None
) -> Iterator[Endpoint | InventoryError]:
    """Flatten specs into endpoints, dropping repeats; errors pass through in order.

    Pass one `deduplicator` to several calls to de-duplicate across inventories.
    """
    unique = Deduplicator() if deduplicator is None else deduplicator
    for item in items:
        if isinstance(item, InventoryError):
            yield item
        else:
            yield from unique.unique_endpoints(item)
