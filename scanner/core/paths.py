"""Which hosts share a path, so that what some of them show of its round trip serves the
others: the routing table's longest match for an address, as `ip route get` would say.

Hosts reached through the same interface and the same next hop (a gateway, or the link
itself for on-link neighbours) share a path. Pure: the tables' text comes in (Linux's
/proc/net/route and /proc/net/ipv6_route, read by scanner/net/routes.py), keys go out.
Without a table (another system, an unreadable /proc) an address's path is its /24
(IPv4) or /64 (IPv6): hosts of one subnet usually share the route.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from scanner.core.addresses import address_value

PathKey = tuple[str, str]
"""(interface, next hop): `("eth0", "on-link")`, `("eth0", "10.0.0.1")`, or, without a
routing table, `("prefix", "10.0.5.0/24")`."""

ON_LINK = "on-link"


@dataclass(frozen=True, slots=True)
class Route:
    version: int  # 4 or 6
    network: int
    prefix_length: int
    gateway: int | None  # None: on-link (the destination is the neighbour itself)
    interface: str


def _ipv4_le(hex_text: str) -> int:
    """/proc/net/route writes IPv4 addresses as 8 hex digits in host (little-endian) order."""
    return int.from_bytes(int(hex_text, 16).to_bytes(4, "little"), "big")


def parse_ipv4_routes(text: str) -> list[Route]:
    """/proc/net/route: Iface Destination Gateway Flags RefCnt Use Metric Mask ..."""
    routes = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            destination, gateway, mask = (_ipv4_le(fields[i]) for i in (1, 2, 7))
        except ValueError:
            continue
        length = bin(mask).count("1")
        routes.append(Route(4, destination, length, gateway or None, fields[0]))
    return routes


def parse_ipv6_routes(text: str) -> list[Route]:
    """/proc/net/ipv6_route: dest dest_len src src_len next_hop metric refcnt use flags iface"""
    routes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            destination, length, next_hop = (
                int(fields[0], 16),
                int(fields[1], 16),
                int(fields[4], 16),
            )
        except ValueError:
            continue
        if fields[9] == "lo" and length == 128:
            continue  # the local table's own addresses
        routes.append(Route(6, destination, length, next_hop or None, fields[9]))
    return routes


class PrefixPaths:
    """Paths without a routing table: an address's /24 or /64; no neighbour is known to
    be unanswered (the engine's default, and what its scheduling tests run on)."""

    def path_of(self, address: str) -> PathKey:
        return prefix_path(address)

    def on_link(self, address: str) -> bool:
        return False

    def unanswered_neighbour(self, address: str) -> bool:
        return False


class RouteTable:
    """Longest-prefix match over the routes given; `path_of` an address."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self._routes = sorted(routes, key=lambda route: -route.prefix_length)

    def path_of(self, address: str) -> PathKey:
        version, value = address_value(address)
        if version is None or value is None:
            return ("name", address)
        if (version == 4 and value >> 24 == 127) or (version == 6 and value == 1):
            return ("lo", "loopback")  # the local table, which /proc/net/route leaves out
        bits = 32 if version == 4 else 128
        for route in self._routes:
            if route.version != version:
                continue
            shift = bits - route.prefix_length
            if value >> shift == route.network >> shift:
                if route.gateway is None:
                    return (route.interface, ON_LINK)
                return (route.interface, _text(version, route.gateway))
        return prefix_path(address)

    def on_link(self, address: str) -> bool:
        """Is the address a neighbour on a link (no gateway between): its silence can be
        an unanswered ARP/ND."""
        return self.path_of(address)[1] == ON_LINK


def _text(version: int, value: int) -> str:
    return str(ipaddress.IPv6Address(value) if version == 6 else ipaddress.IPv4Address(value))


def prefix_path(address: str) -> PathKey:
    """The path of an address without a routing table: its /24 or /64."""
    version, value = address_value(address)
    if version is None or value is None:
        return ("name", address)
    if version == 4:
        return ("prefix", f"{_text(4, value >> 8 << 8)}/24")
    return ("prefix", f"{_text(6, value >> 64 << 64)}/64")
