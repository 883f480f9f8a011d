"""The host half of a target spec: one name or address, a CIDR block, or an nmap octet range.

Blocks are never expanded up front: `10.0.0.0/8` is two integers, and `members()` walks it
lazily. Address literals are stored in canonical form (IPv6 compressed, lower case), so
`2001:DB8::1`, `[2001:db8::1]` and the same address out of `2001:db8::/64` are one host to
de-duplication; names are kept exactly as written.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import product

from scanner.core.addresses import address_text, parse_ip_literal
from scanner.core.errors import SpecError, cut, quoted

_IP_BITS = {4: 32, 6: 128}
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\Z")
_NUMERIC = re.compile(r"[0-9.]+\Z")
_OCTET_RANGE = re.compile(r"[0-9.\-]+\Z")
_OCTET_ITEM = re.compile(r"([0-9]{1,3})(?:-([0-9]{1,3}))?\Z")


@dataclass(frozen=True, slots=True)
class SingleHost:
    """One host: a DNS name as written, or an address literal in canonical form.

    `value` is the address as an integer; None for names and for scoped IPv6 addresses
    (`fe80::1%eth0`), which no block can contain.
    """

    text: str
    version: int | None = None
    value: int | None = None

    @property
    def is_name(self) -> bool:
        return self.version is None

    def count(self) -> int:
        return 1

    def members(self) -> Iterator[tuple[int | None, str]]:
        yield self.value, self.text

    def holds(self, version: int | None, value: int | None, text: str) -> bool:
        return text == self.text

    def bounds(self) -> tuple[int, int] | None:
        return None if self.value is None else (self.value, self.value)


@dataclass(frozen=True, slots=True)
class AddressBlock:
    """A contiguous block of addresses, `first` to `last` inclusive (a CIDR block)."""

    version: int
    first: int
    last: int

    def count(self) -> int:
        return self.last - self.first + 1

    def members(self) -> Iterator[tuple[int | None, str]]:
        to_text = _ipv4_text if self.version == 4 else _ipv6_text
        for value in range(self.first, self.last + 1):
            yield value, to_text(value)

    def holds(self, version: int | None, value: int | None, text: str) -> bool:
        return version == self.version and value is not None and self.first <= value <= self.last

    def bounds(self) -> tuple[int, int] | None:
        return self.first, self.last


@dataclass(frozen=True, slots=True)
class OctetRange:
    """An nmap-style IPv4 range: an inclusive (low, high) interval for each octet."""

    octets: tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]
    version: int = 4

    def count(self) -> int:
        total = 1
        for low, high in self.octets:
            total *= high - low + 1
        return total

    def members(self) -> Iterator[tuple[int | None, str]]:
        # product() varies the last octet fastest: ascending numeric order.
        for a, b, c, d in product(*(range(low, high + 1) for low, high in self.octets)):
            yield (a << 24) | (b << 16) | (c << 8) | d, f"{a}.{b}.{c}.{d}"

    def holds(self, version: int | None, value: int | None, text: str) -> bool:
        if version != 4 or value is None:
            return False
        for shift, (low, high) in zip((24, 16, 8, 0), self.octets, strict=True):
            if not low <= (value >> shift) & 0xFF <= high:
                return False
        return True

    def bounds(self) -> tuple[int, int] | None:
        lows = [low for low, _ in self.octets]
        highs = [high for _, high in self.octets]
        return _octets_value(lows), _octets_value(highs)


HostPattern = SingleHost | AddressBlock | OctetRange
"""Every host form a spec can name; each can count, walk and test membership lazily."""


def may_overlap(first: HostPattern, second: HostPattern) -> bool:
    """Can the two patterns share a host? A cheap test; False is always right.

    Used to skip, once per spec, the earlier specs that cannot hold any of its hosts.
    """
    if isinstance(first, SingleHost) and isinstance(second, SingleHost):
        return first.text == second.text
    first_bounds, second_bounds = first.bounds(), second.bounds()
    if first_bounds is None or second_bounds is None or first.version != second.version:
        return False
    return first_bounds[0] <= second_bounds[1] and second_bounds[0] <= first_bounds[1]


def parse_host(text: str, *, bracketed: bool = False) -> HostPattern:
    """Parse the host half of a spec; `bracketed` says it was written inside `[...]`.

    Raises SpecError saying what is wrong with it.
    """
    if not text:
        raise SpecError("missing host")
    if "/" in text:
        return _parse_cidr(text, bracketed=bracketed)
    address = parse_ip_literal(text, brackets=False)
    if address is not None:
        if bracketed and address.version == 4:
            raise SpecError(f"brackets are for IPv6 literals; write {cut(text)} without them")
        value = None if getattr(address, "scope_id", None) else int(address)
        return SingleHost(address_text(address), address.version, value)
    if bracketed or ":" in text:
        raise SpecError(f"{quoted(text)} is not a valid IPv6 address")
    if "-" in text and _OCTET_RANGE.match(text):
        return _parse_octet_range(text)
    if _NUMERIC.match(text):
        raise SpecError(f"{quoted(text)} is not a valid IPv4 address")
    return SingleHost(_checked_name(text))


def _parse_cidr(text: str, *, bracketed: bool) -> AddressBlock:
    address_part, _, prefix_text = text.partition("/")
    address = parse_ip_literal(address_part, brackets=False)
    if address is None:
        raise SpecError(
            f"{quoted(address_part)} is not an IP address; a CIDR block looks like 10.0.0.0/24"
        )
    if bracketed and address.version == 4:
        raise SpecError(f"brackets are for IPv6 literals; write {cut(text)} without them")
    if getattr(address, "scope_id", None):
        raise SpecError(f"a CIDR block cannot carry a scope: {quoted(text)}")
    bits = _IP_BITS[address.version]
    if not prefix_text.isascii() or not prefix_text.isdigit() or len(prefix_text) > 3:
        raise SpecError(f"bad prefix length {quoted(prefix_text)} in {quoted(text)}")
    prefix = int(prefix_text)
    if prefix > bits:
        raise SpecError(
            f"prefix length {prefix} is out of range for IPv{address.version} (0-{bits})"
        )
    # Host bits set (10.0.0.7/24) mean the whole block, as in nmap.
    host_bits = bits - prefix
    first = int(address) >> host_bits << host_bits
    return AddressBlock(address.version, first, first + (1 << host_bits) - 1)


def _parse_octet_range(text: str) -> OctetRange:
    parts = text.split(".")
    if len(parts) != 4:
        raise SpecError(
            f"an IPv4 range needs four octets, e.g. 10.0.0.1-20 or 10.0-1.0.1-3; got {quoted(text)}"
        )
    octets: list[tuple[int, int]] = []
    for part in parts:
        match = _OCTET_ITEM.match(part)
        if match is None:
            raise SpecError(f"bad octet {quoted(part)} in range {quoted(text)}; write N or N-M")
        low = int(match[1])
        high = int(match[2]) if match[2] is not None else low
        if high > 255:
            raise SpecError(f"octet {high} is out of range (0-255) in {quoted(text)}")
        if low > high:
            raise SpecError(
                f"octet range {quoted(part)} runs backwards in {quoted(text)}; write {high}-{low}"
            )
        octets.append((low, high))
    return OctetRange((octets[0], octets[1], octets[2], octets[3]))


def _checked_name(text: str) -> str:
    name = text[:-1] if text.endswith(".") else text
    if not text.isascii():
        raise SpecError(f"{quoted(text)} is not a valid host name; write IDN names in xn-- form")
    if len(name) > 253:
        raise SpecError(f"host name is longer than 253 characters: {quoted(text)}")
    labels = name.split(".")
    for label in labels:
        if not _LABEL.match(label):
            raise SpecError(f"{quoted(text)} is not a valid host name (bad label {quoted(label)})")
    if labels[-1].isdigit():
        raise SpecError(f"{quoted(text)} is not a valid host name or IPv4 address")
    return text


def _octets_value(octets: list[int]) -> int:
    return (octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]


def _ipv4_text(value: int) -> str:
    return f"{value >> 24}.{(value >> 16) & 0xFF}.{(value >> 8) & 0xFF}.{value & 0xFF}"


def _ipv6_text(value: int) -> str:
    return address_text(ipaddress.IPv6Address(value))
