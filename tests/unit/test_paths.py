"""Which hosts share a path (scanner/core/paths.py), from the routing tables' own text, and
the neighbour table's unresolved entries (scanner/net/routes.py, on files made here)."""

from __future__ import annotations

from pathlib import Path

from scanner.core.paths import (
    ON_LINK,
    PrefixPaths,
    RouteTable,
    parse_ipv4_routes,
    parse_ipv6_routes,
    prefix_path,
)
from scanner.net.routes import LinkPaths

PROC_NET_ROUTE = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
tun0\t0000000A\t0100640A\t0003\t0\t0\t0\t000000FF\t0\t0\t0
"""

IPV6_FIELDS = (
    ("fd000000000000000000000000000000", "40", "00000000000000000000000000000000", "eth0"),
    ("00000000000000000000000000000000", "00", "fd000000000000000000000000000001", "eth0"),
    ("00000000000000000000000000000001", "80", "00000000000000000000000000000000", "lo"),
)
PROC_NET_IPV6_ROUTE = "".join(
    f"{dest} {length} {'0' * 32} 00 {hop} 00000100 00000001 00000000 00000001 {iface}\n"
    for dest, length, hop, iface in IPV6_FIELDS
)
"""/proc/net/ipv6_route: dest, dest length, source, source length, next hop, metric,
reference count, use, flags, interface."""


def table() -> RouteTable:
    return RouteTable([*parse_ipv4_routes(PROC_NET_ROUTE), *parse_ipv6_routes(PROC_NET_IPV6_ROUTE)])


def test_the_longest_match_decides_the_path() -> None:
    routes = table()
    assert routes.path_of("192.0.2.77") == ("eth0", ON_LINK)  # the /24 on the link
    assert routes.path_of("10.5.6.7") == ("tun0", "10.100.0.1")  # the /8 through a gateway
    assert routes.path_of("203.0.113.9") == ("eth0", "192.0.2.1")  # the default route
    assert routes.path_of("fd00::5") == ("eth0", ON_LINK)
    assert routes.path_of("2001:db8::1") == ("eth0", "fd00::1")
    assert routes.on_link("192.0.2.77") and not routes.on_link("203.0.113.9")


def test_loopback_is_a_path_of_its_own() -> None:
    routes = table()
    assert routes.path_of("127.0.0.1") == routes.path_of("127.5.6.7") == ("lo", "loopback")
    assert routes.path_of("::1") == ("lo", "loopback")
    assert not routes.on_link("127.0.0.1")


def test_without_a_table_a_subnet_is_a_path() -> None:
    assert (
        RouteTable([]).path_of("10.1.2.3") == prefix_path("10.1.2.3") == ("prefix", "10.1.2.0/24")
    )
    assert prefix_path("fd00:1:2:3:4::9") == ("prefix", "fd00:1:2:3::/64")
    assert PrefixPaths().path_of("10.1.2.99") == PrefixPaths().path_of("10.1.2.3")
    assert not PrefixPaths().on_link("10.1.2.3")
    assert not PrefixPaths().unanswered_neighbour("10.1.2.3")


def test_unresolved_neighbours_come_from_the_arp_table(tmp_path: Path) -> None:
    (tmp_path / "route").write_text(PROC_NET_ROUTE)
    (tmp_path / "arp").write_text(
        "IP address       HW type     Flags       HW address            Mask     Device\n"
        "192.0.2.9        0x1         0x0         00:00:00:00:00:00     *        eth0\n"
        "192.0.2.10       0x1         0x2         52:54:00:12:34:56     *        eth0\n"
    )
    paths = LinkPaths.load(tmp_path)
    assert paths.unanswered_neighbour("192.0.2.9")
    assert not paths.unanswered_neighbour("192.0.2.10")  # it answered ARP
    assert not paths.unanswered_neighbour("203.0.113.9")  # behind a gateway: not ours to say
    assert not paths.unanswered_neighbour("fd00::9")  # IPv6 neighbours are not in /proc
    assert paths.on_link("192.0.2.9")


def test_a_machine_without_proc_tables_falls_back_to_prefixes(tmp_path: Path) -> None:
    paths = LinkPaths.load(tmp_path)
    assert paths.path_of("10.1.2.3") == ("prefix", "10.1.2.0/24")
    assert not paths.unanswered_neighbour("10.1.2.3")
