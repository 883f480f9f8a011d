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

from scanner.core.addresses import parse_ip_literal
from scanner.core.errors import InventoryError
from scanner.core.hosts import AddressBlock, OctetRange, SingleHost
from scanner.core.model import Reason
from scanner.core.specs import TargetSpec

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
    """Decides, address by address, whether a probe may be sent (immutable).

    An IPv4-mapped IPv6 address (`::ffff:127.0.0.5`) is judged as the IPv4 address it
    is: a connect to it leaves as IPv4 to that very address, so `--exclude 127.0.0.0/8`
    and the multicast/broadcast rules must hold for it too. Its IPv6 form is tested as
    well, so an exclusion written as `::ffff:127.0.0.0/104` or `::/0` still applies.
    """

    __slots__ = ("_check", "_ranges", "broadcast", "excluded", "include_special")

    def __init__(
        self,
        excluded: tuple[IpNetwork, ...] = (),
        include_special: bool = False,
        broadcast: tuple[IpNetwork, ...] = (),
    ):
        self.excluded = excluded
        self.include_special = include_special
        self.broadcast = broadcast  # the inventory's own blocks' broadcast addresses
        special = () if include_special else SPECIAL_NETWORKS + broadcast
        self._ranges = {
            version: (
                _ranges_of(excluded, version, Reason.EXCLUDE_LIST)
                + _ranges_of(special, version, Reason.SPECIAL_ADDRESS)
            )
            for version in (4, 6)
        }
        # A sweep asks about the same address once per port: remember recent answers.
        self._check = lru_cache(maxsize=4096)(self._judge)

    def _values(self) -> tuple[tuple[IpNetwork, ...], bool, tuple[IpNetwork, ...]]:
        return (self.excluded, self.include_special, self.broadcast)

    def __reduce__(self) -> tuple[type[Scope], tuple[object, ...]]:
        """Pickled as its three values (a shard's scope travels with its work,
        scanner/run/shard.py); the cache of answers is rebuilt, not carried."""
        return (Scope, self._values())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Scope) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return "Scope(excluded={!r}, include_special={!r}, broadcast={!r})".format(*self._values())

    def allows(self, address: str) -> bool:
        return self._check(address) is None

    def refusal(self, address: str) -> Reason | None:
        """Why `address` must not be probed (`exclude-list`, `special-address`), or None."""
        return self._check(address)

    def with_excluded(self, more: tuple[IpNetwork, ...]) -> Scope:
        return Scope(self.excluded + more, self.include_special, self.broadcast)

    def with_broadcast(self, more: tuple[IpNetwork, ...]) -> Scope:
        return Scope(self.excluded, self.include_special, self.broadcast + more)

    def _judge(self, address: str) -> Reason | None:
        """The exclusions first, then the special addresses, for each form of the address.

        On integer ranges made once: a sweep of many hosts asks this once per new host,
        and `address in network` for every network costs more than the probe's own work."""
        parsed = parse_ip_literal(address, brackets=False)
        if parsed is None:
            raise ValueError(f"{address!r} does not appear to be an IP address")
        forms = judged_forms(parsed)
        refusals = [
            (rank, reason)
            for form in forms
            for rank, (first, last, reason) in enumerate(self._ranges[form.version])
            if first <= int(form) <= last
        ]
        return min(refusals)[1] if refusals else None


def _ranges_of(
    networks: Iterable[IpNetwork], version: int, reason: Reason
) -> tuple[tuple[int, int, Reason], ...]:
    """The networks of one IP version as (first, last, reason) integer ranges."""
    return tuple(
        (int(network.network_address), int(network.broadcast_address), reason)
        for network in networks
        if network.version == version
    )


def judged_forms(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
    """The address, and for an IPv4-mapped IPv6 address also the IPv4 address it maps."""
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (address,) if mapped is None else (address, mapped)


_MAPPED_PREFIX = 0xFFFF << 32
"""`::ffff:0:0/96` as an integer: the IPv4-mapped IPv6 addresses (RFC 4291 2.5.5.2)."""


def broadcast_addresses(specs: Iterable[TargetSpec]) -> tuple[IpNetwork, ...]:
    """The broadcast address of every IPv4 block of 4 or more addresses in the inventory
    (its last address): probing it would reach every host of that subnet at once. A block
    of IPv4-mapped IPv6 addresses (`[::ffff:10.0.0.0/120]`) is an IPv4 block too."""
    found: list[IpNetwork] = []
    for spec in specs:
        hosts = spec.hosts
        if not isinstance(hosts, AddressBlock) or hosts.count() < 4:
            continue
        if hosts.version == 4:
            found.append(ipaddress.IPv4Network(hosts.last))
        elif hosts.first >> 32 == hosts.last >> 32 == 0xFFFF:
            found.append(ipaddress.IPv4Network(hosts.last - _MAPPED_PREFIX))
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
