"""What may be probed at all: the size guard, exclusions, and special addresses.

Pure (no sockets). A typo can turn a fleet check into a sweep of a /8: `10.0.0.0/8:1-65535`
is 1.1 × 10¹² endpoints. So the inventory is counted, by arithmetic, before anything is
sent, and a scan larger than `--max-endpoints` is refused with the expansion shown. Like
masscan's exclude file, `--exclude` removes networks nobody may probe; multicast and
broadcast addresses (which reach many hosts at once) are left out unless asked for.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from scanner.inventory import InventoryError, TargetSpec
from scanner.inventory.hosts import AddressBlock, OctetRange, SingleHost

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_MAX_ENDPOINTS = 1_000_000

SPECIAL_NETWORKS: tuple[IpNetwork, ...] = (
    ipaddress.ip_network("224.0.0.0/4"),  # IPv4 multicast (RFC 5771)
    ipaddress.ip_network("255.255.255.255/32"),  # limited broadcast (RFC 919)
    ipaddress.ip_network("0.0.0.0/8"),  # "this network" (RFC 1122 3.2.1.3)
    ipaddress.ip_network("ff00::/8"),  # IPv6 multicast (RFC 4291 2.7)
    ipaddress.ip_network("::/128"),  # unspecified
)
"""Addresses a reachability probe must not go to unless the user insists."""


class ScopeError(ValueError):
    """An exclusion that cannot be read."""


def parse_exclusions(lines: Iterable[str], source: str) -> tuple[IpNetwork, ...]:
    """CIDR blocks or addresses, one or more per line (comma or space separated), `#`
    comments: the masscan exclude-file format."""
    networks: list[IpNetwork] = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0]
        for item in text.replace(",", " ").split():
            try:
                networks.append(
                    ipaddress.ip_network(item.replace("[", "").replace("]", ""), strict=False)
                )
            except ValueError:
                raise ScopeError(
                    f"{source}:{number}: {item!r} is not an address or CIDR block"
                ) from None
    return tuple(networks)


class Scope:
    """Decides, address by address, whether a probe may be sent (immutable)."""

    __slots__ = ("_check", "excluded", "include_special")

    def __init__(self, excluded: tuple[IpNetwork, ...] = (), include_special: bool = False):
        self.excluded = excluded
        self.include_special = include_special
        # A sweep asks about the same address once per port: remember recent answers.
        self._check = lru_cache(maxsize=4096)(self._allowed)

    def allows(self, address: str) -> bool:
        return self._check(address)

    def with_excluded(self, more: tuple[IpNetwork, ...]) -> Scope:
        return Scope(self.excluded + more, self.include_special)

    def _allowed(self, address: str) -> bool:
        parsed = ipaddress.ip_address(address)
        if not self.include_special and any(parsed in network for network in SPECIAL_NETWORKS):
            return False
        return not any(parsed in network for network in self.excluded)


def broadcast_addresses(specs: Iterable[TargetSpec]) -> tuple[IpNetwork, ...]:
    """The broadcast address of every IPv4 block of 4 or more addresses in the inventory
    (its last address): probing it would reach every host of that subnet at once."""
    found: list[IpNetwork] = []
    for spec in specs:
        hosts = spec.hosts
        if isinstance(hosts, AddressBlock) and hosts.version == 4 and hosts.count() >= 4:
            found.append(ipaddress.IPv4Network(hosts.last))
    return tuple(found)


@dataclass(frozen=True, slots=True)
class Expansion:
    """How big the inventory is, and its largest entries."""

    total: int
    largest: tuple[TargetSpec, ...]


def measure(items: Iterable[TargetSpec | InventoryError], keep: int = 3) -> Expansion:
    """Count endpoints by arithmetic (duplicates included: this is an upper bound)."""
    total = 0
    largest: list[TargetSpec] = []
    for item in items:
        if isinstance(item, InventoryError):
            continue
        total += item.count()
        largest.append(item)
        largest.sort(key=lambda spec: spec.count(), reverse=True)
        del largest[keep:]
    return Expansion(total, tuple(largest))


def describe_hosts(hosts: SingleHost | AddressBlock | OctetRange) -> str:
    if isinstance(hosts, AddressBlock):
        make = ipaddress.IPv4Address if hosts.version == 4 else ipaddress.IPv6Address
        first, last = make(hosts.first), make(hosts.last)
        blocks = list(ipaddress.summarize_address_range(first, last))
        return str(blocks[0]) if len(blocks) == 1 else f"{first}-{last}"
    if isinstance(hosts, OctetRange):
        return ".".join(f"{low}-{high}" if low != high else str(low) for low, high in hosts.octets)
    return hosts.text


def scientific(count: int) -> str:
    """1.1 × 10¹² for numbers too long to read; digits with separators otherwise."""
    if count < 10_000_000:
        return f"{count:,}"
    exponent = len(str(count)) - 1
    mantissa = count / 10**exponent
    superscript = str(exponent).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return f"{mantissa:.1f} × 10{superscript}"


def oversize_message(expansion: Expansion, limit: int) -> str:
    """What the user sees when the guard refuses: the total and the entries behind it."""
    lines = [
        f"the inventory expands to {scientific(expansion.total)} endpoints, more than "
        f"--max-endpoints {limit:,}; nothing was probed."
    ]
    for spec in expansion.largest:
        if spec.count() * 100 < expansion.total:
            continue  # not what makes the inventory too big
        where = f" ({spec.origin})" if spec.origin is not None else ""
        lines.append(
            f"  {describe_hosts(spec.hosts)}:{spec.ports} is "
            f"{scientific(spec.count())} endpoints{where}"
        )
    lines.append("Raise --max-endpoints if you mean it.")
    return "\n".join(lines)
