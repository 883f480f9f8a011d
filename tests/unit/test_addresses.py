"""The one IP-literal parser (`scanner.core.addresses`) and every site that asks it: the
zone-ID rule (kept on IPv6, never on IPv4, not in a hosts file), brackets, canonical text."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from scanner.core.addresses import literal_address, parse_ip_literal
from scanner.core.errors import SpecError
from scanner.core.hosts import SingleHost, parse_host
from scanner.core.model import ResolvedVia
from scanner.engine.pipeline import parse_literal
from scanner.resolve import ResolvedAddress, parse_address_literal, parse_hosts, parse_nameserver

# text -> (canonical address, family) with the defaults (brackets and zones allowed), or None
LITERALS: list[tuple[str, tuple[str, int] | None]] = [
    ("192.0.2.1", ("192.0.2.1", 4)),
    ("[192.0.2.1]", ("192.0.2.1", 4)),
    ("::1", ("::1", 6)),
    ("[2001:DB8:0::1]", ("2001:db8::1", 6)),
    ("::ffff:7f00:5", ("::ffff:127.0.0.5", 6)),  # mapped IPv4: its IPv4 half dotted
    ("fe80::1%eth0", ("fe80::1%eth0", 6)),  # the zone is part of the address
    ("[fe80::1%eth0]", ("fe80::1%eth0", 6)),
    ("FE80::1%eth0", ("fe80::1%eth0", 6)),
    ("::1%lo", ("::1%lo", 6)),  # any IPv6 may carry one, as getaddrinfo(3) allows
    ("fe80::1%", None),  # an empty zone
    ("192.0.2.1%eth0", None),  # IPv4 has no zones
    ("192.0.2", None),  # inet_aton's short forms are not literals
    ("0x7f.0.0.1", None),
    ("010.0.0.1", None),
    ("example.test", None),
    ("[example.test]", None),
    ("[::1", None),
    ("", None),
]


@pytest.mark.parametrize(("text", "expected"), LITERALS)
def test_literal_address(text: str, expected: tuple[str, int] | None) -> None:
    assert literal_address(text) == expected


@pytest.mark.parametrize(("text", "expected"), LITERALS)
def test_the_pipeline_and_the_resolver_agree(text: str, expected: tuple[str, int] | None) -> None:
    """They used to disagree: the pipeline sent `fe80::1%eth0` on to the resolver as a name."""
    parse_literal.cache_clear()
    assert parse_literal(text) == expected
    resolved = parse_address_literal(text)
    if expected is None:
        assert resolved is None
    else:
        assert resolved == ResolvedAddress(*expected, ResolvedVia.LITERAL)


@pytest.mark.parametrize(
    ("text", "zone", "brackets", "expected"),
    [
        ("fe80::1%eth0", False, True, None),
        ("fe80::1", False, True, ("fe80::1", 6)),
        ("[::1]", True, False, None),
        ("::1", True, False, ("::1", 6)),
    ],
)
def test_zones_and_brackets_can_be_refused(
    text: str, zone: bool, brackets: bool, expected: tuple[str, int] | None
) -> None:
    assert literal_address(text, brackets=brackets, zone=zone) == expected


def test_the_parsed_address_keeps_its_zone() -> None:
    address = parse_ip_literal("fe80::1%eth0")
    assert address is not None
    assert address.version == 6
    assert str(address) == "fe80::1%eth0"


def test_a_hosts_file_takes_no_zone() -> None:
    table = parse_hosts("fe80::1%eth0 scoped\nfe80::1 plain\n", "hosts")
    assert table.lookup("scoped") is None
    plain = table.lookup("plain")
    assert plain is not None
    assert [found.address for found in plain] == ["fe80::1"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fe80::1%eth0", SingleHost("fe80::1%eth0", 6, None)),
        ("::1", SingleHost("::1", 6, 1)),
        ("192.0.2.1", SingleHost("192.0.2.1", 4, 0xC0000201)),
    ],
)
def test_a_target_spec_host_uses_the_same_rule(text: str, expected: SingleHost) -> None:
    assert parse_host(text) == expected


def test_a_cidr_block_takes_no_zone() -> None:
    with pytest.raises(SpecError, match="cannot carry a scope"):
        parse_host("fe80::1%eth0/64")


def test_a_nameserver_is_a_literal_by_the_same_rule() -> None:
    assert parse_nameserver("[2001:DB8::53]:5353") == ("2001:db8::53", 5353)
    with pytest.raises(ValueError, match="is not an IP address"):
        parse_nameserver("192.0.2.1%eth0")


def _ipaddress_reading(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


OCTET_TEXT = st.one_of(
    st.integers(0, 999).map(str),
    st.integers(0, 255).map(lambda number: f"0{number}"),  # a leading zero
    st.text(st.sampled_from("0123456789٣+- _x"), min_size=0, max_size=4),
)


@given(st.lists(OCTET_TEXT, min_size=1, max_size=6).map(".".join))
@example("\u0663.1.1.1")  # ARABIC-INDIC DIGIT THREE: a digit to str.isdigit, not to inet_pton
@example("01.2.3.4")
@example("1.2.3.256")
@example("1.2.3.0255")
def test_the_dotted_quad_fast_path_reads_exactly_what_ipaddress_reads(text: str) -> None:
    """The fast path for IPv4 must accept and reject the very same texts as `ipaddress`."""
    assert parse_ip_literal(text, brackets=False) == _ipaddress_reading(text)


@given(st.text(st.sampled_from("0123456789abcdef.:%[] "), max_size=20))
def test_any_text_reads_as_ipaddress_reads_it(text: str) -> None:
    assert parse_ip_literal(text, brackets=False) == _ipaddress_reading(text)
