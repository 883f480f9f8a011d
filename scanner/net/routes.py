"""This machine's routing and neighbour tables, read from Linux's /proc, for the engine's
per-path round trips and for neighbours that never answered ARP (scanner/core/paths.py).

Read once per scan for the routes (a scan's own routes do not change under it); the
neighbour table is read again at most every `NEIGHBOUR_TABLE_TTL` seconds, when a silent
on-link host's last try expires: a table of thousands of entries must not be read once a
probe. Where /proc has neither (another system, a sandbox), paths fall back to prefixes
and no neighbour is known to be unanswered.
"""

from __future__ import annotations

import time
from pathlib import Path

from scanner.core.paths import (
    ON_LINK,
    PathKey,
    RouteTable,
    parse_ipv4_routes,
    parse_ipv6_routes,
)

PROC_NET = Path("/proc/net")
NEIGHBOUR_TABLE_TTL = 0.2
"""Seconds a reading of /proc/net/arp serves: a neighbour's state moves in whole seconds
(ARP retransmits once a second), so this is fresh enough and cheap for a big sweep."""

_INCOMPLETE = 0x0  # ATF flags of an entry that never resolved (incomplete or failed)


class LinkPaths:
    """`path_of` (interface and next hop) and `unanswered_neighbour` (IPv4: the kernel's
    ARP entry for an on-link address is still unresolved)."""

    def __init__(self, routes: RouteTable, proc_net: Path = PROC_NET) -> None:
        self._routes = routes
        self._arp_path = proc_net / "arp"
        self._unresolved: frozenset[str] = frozenset()
        self._read_at = float("-inf")

    @classmethod
    def load(cls, proc_net: Path = PROC_NET) -> LinkPaths:
        routes = []
        for name, parse in (("route", parse_ipv4_routes), ("ipv6_route", parse_ipv6_routes)):
            try:
                routes += parse((proc_net / name).read_text())
            except OSError:
                continue
        return cls(RouteTable(routes), proc_net)

    def path_of(self, address: str) -> PathKey:
        return self._routes.path_of(address)

    def on_link(self, address: str) -> bool:
        return self._routes.on_link(address)

    def unanswered_neighbour(self, address: str) -> bool:
        """Has this on-link IPv4 address never answered the kernel's ARP requests (its
        entry incomplete or failed)? IPv6 neighbours are not in /proc: False."""
        if ":" in address or self._routes.path_of(address)[1] != ON_LINK:
            return False
        now = time.monotonic()
        if now - self._read_at > NEIGHBOUR_TABLE_TTL:
            self._unresolved = _unresolved_neighbours(self._arp_path)
            self._read_at = now
        return address in self._unresolved


def _unresolved_neighbours(arp: Path) -> frozenset[str]:
    """/proc/net/arp: IP address, HW type, Flags, HW address, Mask, Device."""
    try:
        lines = arp.read_text().splitlines()[1:]
    except OSError:
        return frozenset()
    unresolved = set()
    for line in lines:
        fields = line.split()
        if len(fields) >= 3:
            try:
                flags = int(fields[2], 16)
            except ValueError:
                continue
            if flags == _INCOMPLETE:
                unresolved.add(fields[0])
    return frozenset(unresolved)
