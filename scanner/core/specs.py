"""Target specs: the `HOST[:PORTS]` grammar of `-t` arguments and plain-text inventories.

HOST is a DNS name, an IPv4 literal, an IPv6 literal (in brackets when ports follow), a
CIDR block or an nmap-style IPv4 octet range; PORTS is a comma list of `N`, `N-M`,
`N/udp`, service names (`https`, `dns/tcp`), with nmap's `T:` / `U:` prefixes switching
the protocol for the items after them (`U:53,T:80,443`). A parsed spec is a lazy
rectangle, hosts x ports: it can count itself and walk its endpoints without ever
materialising `10.0.0.0/8:1-65535`.

An unbracketed string with two or more colons that parses as an IPv6 address (or block)
is that address, without ports; the bracket form `[::1]:80` is the only way to give ports
to an IPv6 literal. One that reads as well as an address followed by a port (`::1:8081`:
its last group a decimal 1-65535, the text before that colon an address too) is refused
as ambiguous, with both readings spelled out. Any other string splits at its first
colon, so `web:U:53,T:80` is host `web` with ports.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from scanner.core.addresses import parse_ip_literal
from scanner.core.errors import SpecError, cut, quoted
from scanner.core.hosts import HostPattern, SingleHost, parse_host
from scanner.core.model import Endpoint, Expect, Labels, Origin, Proto
from scanner.core.ports import MAX_PORT, MIN_PORT, PortRange, PortSpec, ServiceName
from scanner.core.services import lookup_service

__all__ = [
    "PortSpec",
    "SpecError",
    "TargetSpec",
    "parse_host_spec",
    "parse_ports",
    "parse_target_spec",
]

_PREFIX = re.compile(r"([A-Za-z]):(.*)\Z", re.DOTALL)
_PORT_ITEM = re.compile(r"([0-9]+)(?:-([0-9]+))?(?:/([A-Za-z]+))?\Z")
_SERVICE_ITEM = re.compile(r"([A-Za-z][A-Za-z0-9-]*)(?:/([A-Za-z]+))?\Z")
_PREFIX_PROTOCOLS = {"t": Proto.TCP, "u": Proto.UDP}
_ITEM_HELP = "write N, N-M, N/udp, a service name, or T:/U: before a list"


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """One parsed spec: every host of `hosts` on every port of `ports`, expanded lazily.

    All endpoints of one spec are distinct (a block never repeats an address and ports
    are normalised), which is what lets de-duplication remember a big spec as one
    rectangle instead of a million keys.
    """

    hosts: HostPattern
    ports: PortSpec
    expect: Expect | None
    labels: Labels = ()
    pinned_address: str | None = None
    origin: Origin | None = None

    def __post_init__(self) -> None:
        if self.pinned_address is not None and not isinstance(self.hosts, SingleHost):
            raise ValueError("a pinned address needs a single host, not a block")

    def count(self) -> int:
        """How many endpoints `endpoints()` yields, by arithmetic."""
        return self.hosts.count() * len(self.ports)

    def endpoints(self) -> Iterator[Endpoint]:
        """Every endpoint, host by host, each host's ports in PortSpec order."""
        for _, host in self.hosts.members():
            for port, proto, service in self.ports:
                yield self.endpoint(host, port, proto, service)

    def endpoint(self, host: str, port: int, proto: Proto, service: str | None) -> Endpoint:
        """The endpoint for one member host and port, carrying this spec's settings."""
        # Positional, in Endpoint's field order: this runs once per endpoint.
        return Endpoint(
            host,
            port,
            proto,
            self.expect,
            self.labels,
            self.pinned_address,
            service,
            self.origin,
        )


def parse_target_spec(
    spec: str,
    *,
    default_ports: PortSpec,
    expect: Expect | None,
    labels: Labels = (),
    origin: Origin | None = None,
) -> TargetSpec:
    """Parse `HOST[:PORTS]`; without PORTS, `default_ports` apply. Raises SpecError."""
    host_text, bracketed, ports_text = _split_spec(spec)
    try:
        hosts = parse_host(host_text, bracketed=bracketed)
        ports = default_ports if ports_text is None else parse_ports(ports_text)
    except SpecError as error:
        raise _with_bracket_hint(error, spec, host_text, bracketed=bracketed) from None
    return TargetSpec(hosts, ports, expect, labels, None, origin)


def parse_host_spec(text: str) -> HostPattern:
    """Parse a spec that must name hosts only (an inventory's `host:` field)."""
    host_text, bracketed, ports_text = _split_spec(text)
    if ports_text is not None:
        raise SpecError(f"ports go in 'ports:', not in the host: write {quoted(host_text)}")
    try:
        return parse_host(host_text, bracketed=bracketed)
    except SpecError as error:
        raise _with_bracket_hint(error, text, host_text, bracketed=bracketed) from None


def parse_ports(text: str, *, proto: Proto | None = None) -> PortSpec:
    """Parse a PORTS list; `proto` acts like a leading `T:`/`U:` prefix. Raises SpecError."""
    if not text.strip():
        raise SpecError("no ports given")
    ranges: list[PortRange] = []
    names: list[ServiceName] = []
    current = proto
    for raw_item in text.split(","):
        item = raw_item.strip()
        prefix = _PREFIX.match(item)
        if prefix is not None:
            current = _prefix_protocol(prefix[1], item)
            item = prefix[2].strip()
        if not item:
            raise SpecError(f"empty port item in {quoted(text)}; {_ITEM_HELP}")
        port_range, name = _parse_port_item(item, current)
        ranges.append(port_range)
        if name is not None:
            names.append((port_range[1], port_range[0], name))
    return PortSpec.of(ranges, names)


def _split_spec(spec: str) -> tuple[str, bool, str | None]:
    """(host text, written in brackets?, ports text or None when there were none)."""
    text = spec.strip()
    if not text:
        raise SpecError("empty target spec")
    if any(character.isspace() for character in text):
        raise SpecError(f"one target per spec, without spaces: {quoted(text)}")
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise SpecError(f"missing ']' in {quoted(text)}; write IPv6 literals as [::1]:80")
        rest = text[close + 1 :]
        if rest and not rest.startswith(":"):
            raise SpecError(f"unexpected {quoted(rest)} after ']'; write [ADDRESS]:PORTS")
        return text[1:close], True, _ports_after_colon(rest, text)
    if text.count(":") >= 2 and _is_ipv6_literal(text):
        _refuse_port_lookalike(text)
        return text, False, None
    host, colon, ports = text.partition(":")
    return host, False, _ports_after_colon(colon + ports, text)


def _ports_after_colon(rest: str, spec: str) -> str | None:
    if not rest:
        return None
    if rest == ":":
        raise SpecError(f"missing ports after ':' in {quoted(spec)}; write HOST:PORTS or just HOST")
    return rest[1:]


def _is_ipv6_literal(text: str) -> bool:
    try:
        return parse_host(text).version == 6
    except SpecError:
        return False


_PORT_LOOKALIKE = re.compile(r"[0-9]{1,5}\Z")


def _refuse_port_lookalike(text: str) -> None:
    """Refuse an unbracketed IPv6 literal that reads as well as an address and a port.

    `::1:8081` is a valid address, and it is also what someone who meant port 8081 on
    `::1` types; probing the address sends packets nobody meant to a host off this
    machine. So when the last group is a decimal number 1-65535 and the text before its
    colon is an address in its own right, the spec is ambiguous and the user must say
    which: `[::1]:8081` (or `-t ::1 -p 8081`) for the port, `[::1:8081]` for the address.
    `2001:db8::8081`, `fe80::1` and `::1` stay addresses: `2001:db8:` and `fe80:` and `:`
    are not addresses, so no port could have been meant.
    """
    if "/" in text:
        return  # a block: ports never follow an unbracketed one
    address, _, group = text.rpartition(":")
    if _PORT_LOOKALIKE.match(group) is None or not MIN_PORT <= int(group) <= MAX_PORT:
        return
    parsed = parse_ip_literal(address, brackets=False)
    if parsed is None or parsed.version != 6:
        return
    shown_address, shown_text = cut(address), cut(text)  # a zone id can be megabytes long
    raise SpecError(
        f"{quoted(text)} is ambiguous: for port {group} on {shown_address} write "
        f"[{shown_address}]:{group} (or -t {shown_address} -p {group}); for the address "
        f"{shown_text} itself write [{shown_text}]"
    )


def _with_bracket_hint(error: SpecError, spec: str, host: str, *, bracketed: bool) -> SpecError:
    """Point at brackets when a failed spec was probably an IPv6 literal with ports."""
    hexadecimal = all(character in "0123456789abcdefABCDEF" for character in host)
    if bracketed or spec.count(":") < 2 or not hexadecimal:
        return error
    return SpecError(
        f"{quoted(spec.strip())} is not a valid IPv6 address;"
        " put IPv6 literals in brackets when ports follow: [::1]:80"
    )


def _prefix_protocol(letter: str, item: str) -> Proto:
    proto = _PREFIX_PROTOCOLS.get(letter.lower())
    if proto is None:
        raise SpecError(f"unsupported protocol prefix {letter}: in {quoted(item)}; use T: or U:")
    return proto


def _parse_port_item(item: str, prefix: Proto | None) -> tuple[PortRange, str | None]:
    """One item without its prefix: (the port range, the service name if one was used)."""
    number = _PORT_ITEM.match(item)
    if number is not None:
        first = _port_number(number[1])
        last = _port_number(number[2]) if number[2] is not None else first
        if first > last:
            raise SpecError(f"port range {cut(item)} runs backwards; write {last}-{first}")
        proto = _item_protocol(number[3], prefix, item) or Proto.TCP
        return (proto, first, last), None
    service = _SERVICE_ITEM.match(item)
    if service is not None:
        name = service[1].lower()
        port, proto = lookup_service(name, _item_protocol(service[2], prefix, item))
        return (proto, port, port), name
    raise SpecError(f"bad port item {quoted(item)}; {_ITEM_HELP}")


def _item_protocol(suffix: str | None, prefix: Proto | None, item: str) -> Proto | None:
    if suffix is None:
        return prefix
    try:
        proto = Proto(suffix.lower())
    except ValueError:
        raise SpecError(
            f"unknown protocol {quoted(suffix)} in {quoted(item)}; write /tcp or /udp"
        ) from None
    if prefix is not None and proto is not prefix:
        raise SpecError(f"{quoted(item)} contradicts the {prefix} prefix before it")
    return proto


def _port_number(text: str) -> int:
    port = int(text) if len(text) <= 5 else MAX_PORT + 1
    if not MIN_PORT <= port <= MAX_PORT:
        raise SpecError(f"port {cut(text)} is out of range ({MIN_PORT}-{MAX_PORT})")
    return port
