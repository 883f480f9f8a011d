"""The one IP-literal parser, and the canonical text every address is written in.

Every place that asks "is this text an IP address?" (target specs, the pipeline, the
resolver, the hosts file, `serve --listen`) asks `parse_ip_literal`, so they cannot
disagree about what a literal is.

The zone-ID rule (RFC 4007 section 11, `fe80::1%eth0`), decided once:

- accepted on IPv6 literals and kept in the address text. A link-local address means
  nothing without its interface; the kernel needs the zone (as `sin6_scope_id`) to route
  it, and `fe80::1%eth0` and `fe80::1%eth1` are two different hosts, which de-duplication
  and the report must keep apart. Python's `ipaddress` and getaddrinfo(3) accept a zone on
  any IPv6 address; Linux ignores it where the scope is global, so it is harmless there
  and refusing it would only turn a working target into an error.
- never on IPv4 (there is no IPv4 zone; `192.0.2.1%eth0` is not an address).
- not in a hosts file (`zone=False`): glibc reads hosts-file addresses with inet_pton(3),
  which rejects `%`, so such a line maps no name, and reachscan must agree with what the
  system's own resolver would return.
"""

from __future__ import annotations

import ipaddress

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_ip_literal(text: str, *, brackets: bool = True, zone: bool = True) -> IpAddress | None:
    """`text` as an IP address, or None when it is not one (a name, or nothing valid).

    `brackets` lets one pair of enclosing brackets through (`[2001:db8::1]`, as a URL
    writes an IPv6 host); `zone` lets an IPv6 zone ID through (see the module's rule).
    IPv4 is the strict dotted-quad form only: `10.1`, `0x7f.0.0.1` and `010.0.0.1` are
    not literals here (inet_aton would read them, inet_pton and `ipaddress` do not).
    """
    if brackets and text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    quad = _dotted_quad(text)
    if quad is not None:
        return quad
    if not zone and "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _dotted_quad(text: str) -> ipaddress.IPv4Address | None:
    """The common case first, by the same rules as `ipaddress` (four decimal octets of at
    most three ASCII digits, no leading zero, none above 255), in a third less time: a
    sweep of many hosts parses each new host once. None means "ask `ipaddress`", which
    then reads an IPv6 literal, or rejects what is neither."""
    octets = text.split(".")
    if len(octets) != 4:
        return None
    value = 0
    for octet in octets:
        if not (octet.isascii() and octet.isdigit()) or len(octet) > 3:
            return None
        number = int(octet)
        if number > 255 or (octet[0] == "0" and len(octet) > 1):
            return None
        value = value << 8 | number
    return ipaddress.IPv4Address(value)


def literal_address(
    text: str, *, brackets: bool = True, zone: bool = True
) -> tuple[str, int] | None:
    """(canonical text, family 4 or 6) of an IP literal, or None when `text` is not one.

    An IPv4 literal `ipaddress` accepts is the strict dotted quad, which is its canonical
    text already: it is kept as written (without brackets) rather than formatted anew,
    which a sweep of many hosts would pay once per host."""
    address = parse_ip_literal(text, brackets=brackets, zone=zone)
    if address is None:
        return None
    if address.version == 4:
        return (text[1:-1] if text.startswith("[") else text), 4
    return address_text(address), 6


def address_text(address: IpAddress) -> str:
    """The canonical text of an address: compressed, lower case, and an IPv4-mapped IPv6
    address with its IPv4 half dotted (`::ffff:127.0.0.5`, as RFC 4291 2.2 writes it and
    Python 3.13 does), never `::ffff:7f00:5`, which hides which host it reaches."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None and address.scope_id is None:
            return f"::ffff:{mapped}"
    return str(address)


def address_value(text: str) -> tuple[int | None, int | None]:
    """(IP version, integer value) of an address literal as a spec writes it; (None, None)
    for a name, and (6, None) for a scoped IPv6 address (which no block holds)."""
    address = parse_ip_literal(text, brackets=False)
    if address is None:
        return None, None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return 6, None
    return address.version, int(address)
