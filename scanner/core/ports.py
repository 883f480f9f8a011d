"""An immutable, normalised set of ports per protocol, with the arithmetic dedup needs.

A spec like `1-65535` must never be materialised, so ports are kept as sorted, merged
inclusive ranges per protocol; length, membership and overlap are computed from the
ranges. Service names the user wrote (`https`) ride along so an endpoint can keep them.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from scanner.core.model import Proto

MIN_PORT = 1
MAX_PORT = 65535

PortRange = tuple[Proto, int, int]
"""(protocol, first, last), inclusive."""

ServiceName = tuple[int, Proto, str]
"""(port, protocol, the service name the user wrote for it)."""


@dataclass(frozen=True, slots=True)
class PortSpec:
    """Ports to probe: sorted, merged `(proto, first, last)` ranges, tcp before udp.

    Construct with `PortSpec.of(...)`, which normalises; the constructor itself only
    accepts already-normalised ranges, so two equal sets always compare equal.
    """

    ranges: tuple[PortRange, ...]
    service_names: tuple[ServiceName, ...] = ()

    def __post_init__(self) -> None:
        for _, first, last in self.ranges:
            if not MIN_PORT <= first <= last <= MAX_PORT:
                raise ValueError(f"bad port range {first}-{last}")
        if self.ranges != _merge(self.ranges):
            raise ValueError("ranges must be sorted and merged; use PortSpec.of()")
        named = [(proto, port) for port, proto, _ in self.service_names]
        if named != sorted(set(named)):
            raise ValueError("service names must be sorted and unique; use PortSpec.of()")
        if any((port, proto) not in self for proto, port in named):
            raise ValueError("a service name names a port outside the ranges")

    @classmethod
    def of(cls, ranges: Iterable[PortRange], service_names: Iterable[ServiceName] = ()) -> PortSpec:
        """Normalise any ranges (overlapping, unsorted, repeated) into a PortSpec.

        When one port was given two service names, the first one given is kept.
        """
        names: dict[tuple[Proto, int], str] = {}
        for port, proto, name in service_names:
            names.setdefault((proto, port), name)
        return cls(
            _merge(ranges),
            tuple((port, proto, name) for (proto, port), name in sorted(names.items())),
        )

    def __iter__(self) -> Iterator[tuple[int, Proto, str | None]]:
        """(port, proto, service name or None), tcp ports ascending, then udp."""
        names = {(port, proto): name for port, proto, name in self.service_names}
        for proto, first, last in self.ranges:
            for port in range(first, last + 1):
                yield port, proto, names.get((port, proto))

    def __len__(self) -> int:
        return sum(last - first + 1 for _, first, last in self.ranges)

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, tuple) or len(item) != 2:
            return False
        port, proto = item
        # Ranges sort by (proto, first): the last range starting at or before the port
        # is the only one that can hold it.
        index = bisect_right(self.ranges, (proto, port, MAX_PORT + 1)) - 1
        if index < 0:
            return False
        range_proto, first, last = self.ranges[index]
        return bool(range_proto == proto and first <= port <= last)

    def overlaps(self, other: PortSpec) -> bool:
        """Do the two specs share at least one (port, proto)?"""
        return any(
            proto == other_proto and first <= other_last and other_first <= last
            for proto, first, last in self.ranges
            for other_proto, other_first, other_last in other.ranges
        )

    def union(self, other: PortSpec) -> PortSpec:
        return PortSpec.of(self.ranges + other.ranges, self.service_names + other.service_names)

    def __str__(self) -> str:
        """The spec in the grammar `parse_ports` reads, e.g. `22,80-81,53/udp`."""
        items = []
        for proto, first, last in self.ranges:
            text = str(first) if first == last else f"{first}-{last}"
            items.append(text if proto is Proto.TCP else f"{text}/{proto}")
        return ",".join(items)


def _merge(ranges: Iterable[PortRange]) -> tuple[PortRange, ...]:
    """Sort ranges and merge the ones that overlap or touch, per protocol."""
    merged: list[PortRange] = []
    for proto, first, last in sorted(ranges):
        if merged and merged[-1][0] == proto and first <= merged[-1][2] + 1:
            previous = merged[-1]
            merged[-1] = (proto, previous[1], max(previous[2], last))
        else:
            merged.append((proto, first, last))
    return tuple(merged)
