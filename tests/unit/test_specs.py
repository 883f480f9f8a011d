"""Target and port specs: every documented form, the errors, and grammar properties."""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.core.addresses import address_text
from scanner.core.errors import SpecError
from scanner.core.hosts import AddressBlock, OctetRange, SingleHost
from scanner.core.model import Endpoint, Expect, Origin, Proto
from scanner.core.ports import PortSpec
from scanner.core.services import DEFAULT_PORTS, SERVICES, lookup_service
from scanner.core.specs import TargetSpec, parse_host_spec, parse_ports, parse_target_spec

TCP, UDP = Proto.TCP, Proto.UDP


def spec(text: str, default_ports: PortSpec = DEFAULT_PORTS) -> TargetSpec:
    return parse_target_spec(text, default_ports=default_ports, expect=None)


def hosts_of(target: TargetSpec) -> list[str]:
    return [host for _, host in target.hosts.members()]


def ports_of(text: str) -> list[tuple[int, Proto, str | None]]:
    return list(parse_ports(text))


# --- ports -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("80", [(80, TCP, None)]),
        ("80-82", [(80, TCP, None), (81, TCP, None), (82, TCP, None)]),
        ("53/udp", [(53, UDP, None)]),
        ("53/tcp,53/udp", [(53, TCP, None), (53, UDP, None)]),
        ("U:53,T:80,443", [(80, TCP, None), (443, TCP, None), (53, UDP, None)]),
        ("u:53,161", [(53, UDP, None), (161, UDP, None)]),
        ("https", [(443, TCP, "https")]),
        ("dns/udp", [(53, UDP, "dns")]),
        ("dns", [(53, UDP, "dns")]),
        ("dns/tcp", [(53, TCP, "dns")]),
        ("HTTPS", [(443, TCP, "https")]),
        ("U:dns", [(53, UDP, "dns")]),
        ("443,80,443,80-80", [(80, TCP, None), (443, TCP, None)]),
        (" 22 , 80 ", [(22, TCP, None), (80, TCP, None)]),
        ("1,65535", [(1, TCP, None), (65535, TCP, None)]),
    ],
)
def test_port_forms(text: str, expected: list[tuple[int, Proto, str | None]]) -> None:
    assert ports_of(text) == expected


def test_port_ranges_are_merged_and_sorted() -> None:
    ports = parse_ports("100-200,150-300,301,5/udp,1-2")
    assert ports.ranges == ((TCP, 1, 2), (TCP, 100, 301), (UDP, 5, 5))
    assert len(ports) == 2 + 202 + 1


def test_whole_port_range_is_not_materialised() -> None:
    ports = parse_ports("1-65535,U:1-65535")
    assert len(ports) == 2 * 65535
    assert ports.ranges == ((TCP, 1, 65535), (UDP, 1, 65535))
    assert (65535, UDP) in ports
    assert (0, TCP) not in ports


def test_port_membership() -> None:
    ports = parse_ports("22,80-90,U:53")
    assert (85, TCP) in ports
    assert (22, TCP) in ports
    assert (53, UDP) in ports
    assert (53, TCP) not in ports
    assert (91, TCP) not in ports
    assert (21, TCP) not in ports
    assert "22" not in ports


def test_a_port_named_and_numbered_keeps_the_name() -> None:
    assert ports_of("443,https") == [(443, TCP, "https")]


def test_port_spec_constructor_refuses_unnormalised_ranges() -> None:
    with pytest.raises(ValueError, match="sorted and merged"):
        PortSpec(((TCP, 80, 90), (TCP, 85, 100)))
    with pytest.raises(ValueError, match="bad port range"):
        PortSpec(((TCP, 0, 1),))


def test_port_spec_str_reads_back() -> None:
    ports = parse_ports("U:53,T:80-81,443")
    assert str(ports) == "80-81,443,53/udp"
    assert parse_ports(str(ports)) == ports


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", "port 0 is out of range"),
        ("65536", "port 65536 is out of range"),
        ("99999999999999999999999", "out of range"),
        ("80-20", "runs backwards; write 20-80"),
        ("-1", "bad port item '-1'"),
        ("80-", "bad port item"),
        ("xyz", "unknown service name 'xyz'; write a port number"),
        ("80,,443", "empty port item"),
        ("80,", "empty port item"),
        ("U:", "empty port item"),
        ("S:80", "unsupported protocol prefix S:"),
        ("80/sctp", "unknown protocol 'sctp'"),
        ("U:53/tcp", "contradicts the udp prefix"),
        ("ssh/udp", "ssh is a tcp service; write 22/udp"),
        ("", "no ports given"),
        ("٨٠", "bad port item"),  # Arabic-Indic digits: int() would accept them
    ],
)
def test_port_errors(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_ports(text)


# --- services --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "port", "proto"),
    [
        ("ssh", 22, TCP),
        ("telnet", 23, TCP),
        ("smtp", 25, TCP),
        ("dns", 53, UDP),
        ("domain", 53, UDP),
        ("http", 80, TCP),
        ("https", 443, TCP),
        ("ntp", 123, UDP),
        ("snmp", 161, UDP),
        ("ldap", 389, TCP),
        ("ldaps", 636, TCP),
        ("smtps", 465, TCP),
        ("submissions", 465, TCP),
        ("submission", 587, TCP),
        ("imap", 143, TCP),
        ("imaps", 993, TCP),
        ("pop3", 110, TCP),
        ("pop3s", 995, TCP),
        ("mysql", 3306, TCP),
        ("postgresql", 5432, TCP),
        ("postgres", 5432, TCP),
        ("redis", 6379, TCP),
        ("memcached", 11211, TCP),
        ("mongodb", 27017, TCP),
        ("rdp", 3389, TCP),
        ("vnc", 5900, TCP),
        ("http-alt", 8080, TCP),
        ("https-alt", 8443, TCP),
        ("kafka", 9092, TCP),
        ("elasticsearch", 9200, TCP),
        ("prometheus", 9090, TCP),
        ("node-exporter", 9100, TCP),
        ("etcd", 2379, TCP),
        ("kubernetes-api", 6443, TCP),
        ("syslog", 514, UDP),
        ("tftp", 69, UDP),
        ("sip", 5060, TCP),
        ("amqp", 5672, TCP),
        ("zookeeper", 2181, TCP),
        ("ftp", 21, TCP),
        ("smb", 445, TCP),
        ("microsoft-ds", 445, TCP),
        ("nfs", 2049, TCP),
        ("rsync", 873, TCP),
        ("git", 9418, TCP),
    ],
)
def test_service_table(name: str, port: int, proto: Proto) -> None:
    assert lookup_service(name) == (port, proto)
    assert ports_of(name) == [(port, proto, name)]


def test_every_service_name_parses_as_a_port_item() -> None:
    for name, service in SERVICES.items():
        for proto in service.protocols:
            assert ports_of(f"{name}/{proto}") == [(service.port, proto, name)]


def test_default_ports() -> None:
    assert [port for port, _, _ in DEFAULT_PORTS] == [
        22, 25, 53, 80, 110, 143, 443, 445, 587, 993,
        995, 3306, 3389, 5432, 6379, 8080, 8443, 9090, 9100, 27017,
    ]  # fmt: skip
    assert {proto for _, proto, _ in DEFAULT_PORTS} == {TCP}


# --- hosts -----------------------------------------------------------------------------


def test_name_with_ports() -> None:
    target = spec("web1.example.com:80,443")
    assert target.hosts == SingleHost("web1.example.com")
    assert list(target.endpoints()) == [
        Endpoint("web1.example.com", 80, TCP, expect=None),
        Endpoint("web1.example.com", 443, TCP, expect=None),
    ]


def test_name_is_kept_as_written() -> None:
    assert hosts_of(spec("Web1.Example.COM.:80")) == ["Web1.Example.COM."]


def test_without_ports_the_defaults_apply() -> None:
    defaults = parse_ports("22,U:53")
    target = spec("db.internal", defaults)
    assert target.ports is defaults
    assert target.count() == 2


def test_ipv4_literal() -> None:
    target = spec("192.0.2.10:22")
    assert target.hosts == SingleHost("192.0.2.10", 4, int(ipaddress.IPv4Address("192.0.2.10")))
    assert hosts_of(target) == ["192.0.2.10"]


@pytest.mark.parametrize(
    ("text", "host"),
    [
        ("::1", "::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[::1:80]", "::1:80"),  # brackets say it is the address, not ::1 port 80
        ("2001:db8::8081", "2001:db8::8081"),  # `2001:db8:` is no address: no port meant
        ("fe80::1", "fe80::1"),
        ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),  # IPv4-mapped: the IPv4 half dotted
        ("[::FFFF:C000:201]", "::ffff:192.0.2.1"),
    ],
)
def test_bare_and_bracketed_ipv6_without_ports(text: str, host: str) -> None:
    target = spec(text, parse_ports("7"))
    assert hosts_of(target) == [host]
    assert [port for port, _, _ in target.ports] == [7]


def test_bracketed_ipv6_with_ports() -> None:
    target = spec("[2001:db8::1]:80,U:53")
    assert hosts_of(target) == ["2001:db8::1"]
    assert list(target.ports) == [(80, TCP, None), (53, UDP, None)]


def test_scoped_ipv6_is_one_host_that_no_block_contains() -> None:
    target = spec("[fe80::1%eth0]:22")
    assert target.hosts == SingleHost("fe80::1%eth0", 6, None)


@pytest.mark.parametrize(
    ("text", "count", "first", "last"),
    [
        ("10.0.0.0/24", 256, "10.0.0.0", "10.0.0.255"),
        ("10.0.0.7/30", 4, "10.0.0.4", "10.0.0.7"),  # host bits set: the whole block
        ("10.0.0.5/32", 1, "10.0.0.5", "10.0.0.5"),
        ("10.0.0.4/31", 2, "10.0.0.4", "10.0.0.5"),
        ("[2001:db8::/120]", 256, "2001:db8::", "2001:db8::ff"),
        ("2001:db8::/127", 2, "2001:db8::", "2001:db8::1"),
        ("[2001:db8::5/128]", 1, "2001:db8::5", "2001:db8::5"),
    ],
)
def test_cidr_blocks_include_every_address(text: str, count: int, first: str, last: str) -> None:
    target = spec(text, parse_ports("80"))
    hosts = hosts_of(target)
    assert len(hosts) == count == target.count()
    assert (hosts[0], hosts[-1]) == (first, last)
    assert len(set(hosts)) == count


def test_bracketed_cidr_with_ports() -> None:
    target = spec("[2001:db8::/120]:80")
    assert isinstance(target.hosts, AddressBlock)
    assert target.count() == 256


def test_octet_ranges() -> None:
    assert hosts_of(spec("10.0.0.1-3:80")) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    target = spec("10.0-1.0.1-3:U:53,T:80,443")
    assert isinstance(target.hosts, OctetRange)
    assert hosts_of(target) == [
        f"10.{b}.0.{d}" for b, d in itertools.product(range(2), range(1, 4))
    ]
    assert target.count() == 6 * 3
    assert len(list(target.endpoints())) == 18


def test_octet_range_of_twenty() -> None:
    assert spec("10.0.0.1-20").hosts.count() == 20


def test_huge_specs_count_without_expanding() -> None:
    target = spec("10.0.0.0/8:1-65535")
    assert target.count() == (1 << 24) * 65535
    first = next(target.endpoints())
    assert (first.host, first.port) == ("10.0.0.0", 1)
    assert spec("[::/0]:1-65535").count() == (1 << 128) * 65535
    assert spec("0-255.0-255.0-255.0-255:80").count() == 1 << 32


def test_service_names_reach_the_endpoint() -> None:
    endpoints = list(spec("web:https,dns/udp,22").endpoints())
    assert [(e.port, e.proto, e.service) for e in endpoints] == [
        (22, TCP, None),
        (443, TCP, "https"),
        (53, UDP, "dns"),
    ]


def test_endpoints_carry_the_spec_settings() -> None:
    origin = Origin("<command line>", 2)
    target = parse_target_spec(
        "web:80",
        default_ports=DEFAULT_PORTS,
        expect=Expect.REFUSED,
        labels=(("a", "b"),),
        origin=origin,
    )
    assert list(target.endpoints()) == [
        Endpoint("web", 80, TCP, Expect.REFUSED, (("a", "b"),), None, None, origin)
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.0/33", "prefix length 33 is out of range for IPv4"),
        ("[2001:db8::/129]", "prefix length 129 is out of range for IPv6"),
        ("10.0.0.0/x", "bad prefix length"),
        ("10.0.0.0/", "bad prefix length"),
        ("web/24", "is not an IP address"),
        ("1.2.3.4:0", "port 0 is out of range"),
        (":65536", "missing host"),
        (":80", "missing host"),
        ("host:80-20", "runs backwards"),
        ("host:", "missing ports after ':'"),
        ("[::1", "missing ']'"),
        ("[::1]x", "unexpected 'x' after ']'"),
        ("[::1]:", "missing ports after ':'"),
        ("[1.2.3.4]:80", "brackets are for IPv6 literals"),
        ("[web]:80", "not a valid IPv6 address"),
        ("fe80::zz:80", r"put IPv6 literals in brackets when ports follow: \[::1\]:80"),
        ("::1:zz", r"put IPv6 literals in brackets"),
        ("host:xyz", "unknown service name 'xyz'; write a port number"),
        ("10.0.0.256", "not a valid IPv4 address"),
        ("1.2.3", "not a valid IPv4 address"),
        ("10.0.0.1-300", "octet 300 is out of range"),
        ("10.0.0.5-1", "runs backwards"),
        ("10.0.1-20", "needs four octets"),
        ("10.0.0.1--2", "bad octet"),
        ("-web.example", "not a valid host name"),
        ("web..example", "not a valid host name"),
        ("wéb.example", "xn-- form"),
        ("a" * 64 + ".example", "not a valid host name"),
        (".".join(["a" * 60] * 5), "longer than 253"),
        ("web#1", "not a valid host name"),
        ("web 80", "without spaces"),
        ("", "empty target spec"),
        ("   ", "empty target spec"),
    ],
)
def test_spec_errors(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        spec(text)


def test_host_only_specs_refuse_ports() -> None:
    assert parse_host_spec("10.0.0.0/30").count() == 4
    assert parse_host_spec("[::1]") == SingleHost("::1", 6, 1)
    with pytest.raises(SpecError, match="ports go in 'ports:'"):
        parse_host_spec("web:80")


# --- properties ------------------------------------------------------------------------

_label = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=10)
_names = (
    st.lists(_label, min_size=1, max_size=4)
    .map(".".join)
    .filter(lambda name: not name.split(".")[-1].isdigit())
)


@st.composite
def _hosts(draw: st.DrawFn) -> tuple[str, list[str], bool]:
    """(host text, the hosts it must expand to, needs brackets before ports)."""
    kind = draw(st.sampled_from(["name", "v4", "v6", "v4cidr", "v6cidr", "range"]))
    if kind == "name":
        name = draw(_names)
        return name, [name], False
    if kind == "v4":
        address = draw(st.ip_addresses(v=4))
        return str(address), [str(address)], False
    if kind == "v6":
        address6 = draw(st.ip_addresses(v=6))
        return str(address6).upper(), [address_text(address6)], True
    if kind in ("v4cidr", "v6cidr"):
        is_v6 = kind == "v6cidr"
        bits = 128 if is_v6 else 32
        prefix = draw(st.integers(bits - 4, bits))
        base = draw(st.ip_addresses(v=6) if is_v6 else st.ip_addresses(v=4))
        network = ipaddress.ip_network(f"{base}/{prefix}", strict=False)
        return str(network), [address_text(address) for address in network], is_v6
    octets = []
    for _ in range(4):
        low = draw(st.integers(0, 255))
        high = draw(st.integers(low, min(255, low + 2)))
        octets.append((low, high))
    text = ".".join(str(low) if low == high else f"{low}-{high}" for low, high in octets)
    expanded = [
        ".".join(map(str, parts))
        for parts in itertools.product(*(range(low, high + 1) for low, high in octets))
    ]
    return text, expanded, False


@st.composite
def _ports(draw: st.DrawFn) -> tuple[str, set[tuple[int, Proto]]]:
    """(ports text, the (port, proto) pairs it must mean)."""
    items: list[str] = []
    expected: set[tuple[int, Proto]] = set()
    prefix: Proto | None = None
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.booleans()) and draw(st.booleans()):
            prefix = draw(st.sampled_from([TCP, UDP]))
            lead = "T:" if prefix is TCP else "U:"
        else:
            lead = ""
        kind = draw(st.sampled_from(["single", "range", "service"]))
        proto = prefix or TCP
        if kind == "service":
            name = draw(st.sampled_from(sorted(SERVICES)))
            service = SERVICES[name]
            if prefix is not None and prefix not in service.protocols:
                name, service = "dns", SERVICES["dns"]
            proto = prefix or service.default_proto
            items.append(lead + name)
            expected.add((service.port, proto))
            continue
        first = draw(st.integers(1, 65535))
        last = first if kind == "single" else draw(st.integers(first, min(65535, first + 5)))
        body = str(first) if kind == "single" else f"{first}-{last}"
        if prefix is None and draw(st.booleans()):
            proto = draw(st.sampled_from([TCP, UDP]))
            body += f"/{proto}"
        items.append(lead + body)
        expected.update((port, proto) for port in range(first, last + 1))
    return ",".join(items), expected


@settings(max_examples=300)
@given(_hosts(), _ports())
def test_valid_specs_round_trip(
    host: tuple[str, list[str], bool], ports: tuple[str, set[tuple[int, Proto]]]
) -> None:
    host_text, expected_hosts, needs_brackets = host
    ports_text, expected_ports = ports
    written_host = f"[{host_text}]" if needs_brackets else host_text
    target = spec(f"{written_host}:{ports_text}")
    endpoints = list(target.endpoints())
    assert target.count() == len(endpoints) == len(expected_hosts) * len(expected_ports)
    assert {(e.host, e.port, e.proto) for e in endpoints} == {
        (h, port, proto) for h in expected_hosts for port, proto in expected_ports
    }
    assert len({e.key for e in endpoints}) == len(endpoints)  # a spec never repeats itself
    assert all(1 <= e.port <= 65535 for e in endpoints)


@settings(max_examples=100)
@given(_hosts())
def test_host_without_ports_takes_the_defaults(host: tuple[str, list[str], bool]) -> None:
    host_text, expected_hosts, needs_brackets = host
    if needs_brackets and reads_as_address_and_port(host_text):
        # `::ffff:7b5e:2810` is an address and also `::ffff:7b5e` port 2810: refused as
        # ambiguous unbracketed, and meant as the address once bracketed.
        with pytest.raises(SpecError, match="is ambiguous"):
            spec(host_text, parse_ports("9"))
        host_text = f"[{host_text}]"
    target = spec(host_text, parse_ports("9"))
    assert hosts_of(target) == expected_hosts


def reads_as_address_and_port(text: str) -> bool:
    """The ambiguity rule (README, target specs): an unbracketed IPv6 literal whose last
    group is a decimal 1-65535 and whose text before that colon is an address itself."""
    if "/" in text:
        return False
    address, _, group = text.rpartition(":")
    if not (group.isascii() and group.isdigit() and 1 <= int(group) <= 65535):
        return False
    try:
        return ipaddress.ip_address(address).version == 6
    except ValueError:
        return False


def _parse_or_spec_error(text: str) -> None:
    try:
        target = spec(text)
    except SpecError as error:
        assert str(error)
        return
    assert target.count() >= 1


@settings(max_examples=500)
@given(st.text(max_size=40))
def test_junk_text_parses_or_raises_spec_error(text: str) -> None:
    _parse_or_spec_error(text)


@settings(max_examples=300)
@given(st.binary(max_size=40))
def test_junk_bytes_parse_or_raise_spec_error(data: bytes) -> None:
    _parse_or_spec_error(data.decode("utf-8", errors="replace"))
    _parse_or_spec_error(data.decode("utf-8", errors="surrogateescape"))


_SPEC_ALPHABET = "0123456789abcdefTU:[]/.,-xyz%"


@settings(max_examples=500)
@given(st.text(_SPEC_ALPHABET, max_size=30))
def test_near_miss_specs_parse_or_raise_spec_error(text: str) -> None:
    _parse_or_spec_error(text)
    with contextlib.suppress(SpecError):
        parse_ports(text)


@pytest.mark.parametrize(
    ("text", "address", "port"),
    [("::1:8081", "::1", "8081"), ("2001:db8::1:443", "2001:db8::1", "443"), ("::1:1", "::1", "1")],
)
def test_an_ipv6_literal_that_reads_as_address_and_port_is_ambiguous(
    text: str, address: str, port: str
) -> None:
    with pytest.raises(SpecError) as raised:
        spec(text)
    message = str(raised.value)
    assert f"[{address}]:{port}" in message and f"-t {address} -p {port}" in message
    assert f"[{text}]" in message


@pytest.mark.parametrize("text", ["::1", "fe80::1", "2001:db8::8081", "::1:0", "::1:ab"])
def test_ipv6_literals_no_port_could_follow_are_addresses(text: str) -> None:
    assert hosts_of(spec(text, parse_ports("7"))) == [str(ipaddress.ip_address(text))]


def test_a_huge_bad_token_is_cut_in_the_message() -> None:
    with pytest.raises(SpecError) as raised:
        parse_ports("%" * 1_000_000)
    assert str(raised.value) == f"bad port item {'%' * 40!r}…; " + (
        "write N, N-M, N/udp, a service name, or T:/U: before a list"
    )
