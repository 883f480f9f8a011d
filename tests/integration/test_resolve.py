"""Resolution against a real DNS responder on loopback and temporary hosts files.

Every test passes the responder's address explicitly: the machine's nameserver (from
/etc/resolv.conf) must never be asked anything. Names use the reserved `.test` TLD.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

import anyio
import pytest

from scanner.core.model import Reason, ResolvedVia
from scanner.resolve import Resolution, Resolver, ResolverConfig
from tests.support.dns_responder import DnsResponder
from tests.support.fixtures import HostsFileFactory

BOTH = frozenset({4, 6})
ONLY_V4 = frozenset({4})
ONLY_V6 = frozenset({6})


def make_resolver(
    responder: DnsResponder,
    hosts_path: str | None = None,
    families: frozenset[int] = BOTH,
    timeout: float = 3.0,
    concurrency: int = 64,
) -> Resolver:
    return Resolver(
        ResolverConfig(
            hosts_file=hosts_path,
            nameservers=(responder.nameserver,),
            families=families,
            timeout=timeout,
            concurrency=concurrency,
        )
    )


def addresses(resolution: Resolution) -> list[tuple[str, int, ResolvedVia]]:
    return [(found.address, found.family, found.via) for found in resolution.addresses]


def query_names(queries: Iterable[tuple[str, str]]) -> set[str]:
    return {name for name, _ in queries}


# --- the hosts file -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_hosts_file_gives_both_families_in_file_order_by_any_alias(
    dns_responder: DnsResponder, hosts_file: HostsFileFactory
) -> None:
    path = hosts_file(
        "# test hosts\n"
        "2001:db8::10 Web.Example.Test web\n"
        "192.0.2.10   web.example.test   www   # comment\n"
        "192.0.2.11   WEB.example.test.\n"
    )
    resolver = make_resolver(dns_responder, path)
    expected = [
        ("2001:db8::10", 6, ResolvedVia.HOSTS_FILE),
        ("192.0.2.10", 4, ResolvedVia.HOSTS_FILE),
        ("192.0.2.11", 4, ResolvedVia.HOSTS_FILE),
    ]
    for name in ("web.example.test", "WEB.EXAMPLE.TEST.", "Web.Example.Test."):
        resolution = await resolver.resolve(name)
        assert addresses(resolution) == expected
        assert resolution.failure is None
        assert resolution.name == name
    for alias, address, family in (("WEB", "2001:db8::10", 6), ("www", "192.0.2.10", 4)):
        resolution = await resolver.resolve(alias)
        assert addresses(resolution) == [(address, family, ResolvedVia.HOSTS_FILE)]
    assert dns_responder.queries == []


@pytest.mark.asyncio
async def test_hosts_file_wins_over_dns_even_when_dns_disagrees(
    dns_responder: DnsResponder, hosts_file: HostsFileFactory
) -> None:
    dns_responder.set_records("moved.test", ["198.51.100.20", "2001:db8::20"])
    resolver = make_resolver(dns_responder, hosts_file({"moved.test": ["192.0.2.20"]}))
    resolution = await resolver.resolve("moved.test")
    assert addresses(resolution) == [("192.0.2.20", 4, ResolvedVia.HOSTS_FILE)]
    assert dns_responder.queries == []


@pytest.mark.asyncio
async def test_hosts_file_respects_families_and_never_falls_back_to_dns(
    dns_responder: DnsResponder, hosts_file: HostsFileFactory
) -> None:
    dns_responder.set_records("dual.test", ["198.51.100.21"])
    path = hosts_file(
        {"dual.test": ["2001:db8::21", "192.0.2.21"], "sixonly.test": ["2001:db8::22"]}
    )
    only_v6 = make_resolver(dns_responder, path, families=ONLY_V6)
    assert addresses(await only_v6.resolve("dual.test")) == [
        ("2001:db8::21", 6, ResolvedVia.HOSTS_FILE)
    ]
    only_v4 = make_resolver(dns_responder, path, families=ONLY_V4)
    sixonly = await only_v4.resolve("sixonly.test")
    assert sixonly.addresses == ()
    assert sixonly.failure is Reason.NO_ADDRESS
    assert sixonly.message is not None and "-4" in sixonly.message and path in sixonly.message
    assert dns_responder.queries == []


@pytest.mark.asyncio
async def test_hosts_file_warnings_are_exposed_not_printed(
    dns_responder: DnsResponder,
    hosts_file: HostsFileFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = hosts_file("192.0.2.30 fine.test\nnonsense broken.test\n")
    resolver = make_resolver(dns_responder, path)
    assert addresses(await resolver.resolve("fine.test")) == [
        ("192.0.2.30", 4, ResolvedVia.HOSTS_FILE)
    ]
    assert [str(warning.origin) for warning in resolver.hosts_warnings] == [f"{path}:2"]
    assert capsys.readouterr() == ("", "")


@pytest.mark.asyncio
async def test_fresh_dns_ignores_the_hosts_file_and_has_its_own_cache(
    dns_responder: DnsResponder, hosts_file: HostsFileFactory
) -> None:
    dns_responder.set_records("stale.test", ["198.51.100.40"])
    resolver = make_resolver(dns_responder, hosts_file({"stale.test": ["192.0.2.40"]}))
    assert addresses(await resolver.resolve("stale.test")) == [
        ("192.0.2.40", 4, ResolvedVia.HOSTS_FILE)
    ]
    fresh = await resolver.fresh_dns("stale.test")
    assert addresses(fresh) == [("198.51.100.40", 4, ResolvedVia.DNS)]
    assert await resolver.fresh_dns("Stale.Test.") == fresh.__class__(
        "Stale.Test.", fresh.addresses, None, None
    )
    assert addresses(await resolver.resolve("stale.test")) == [
        ("192.0.2.40", 4, ResolvedVia.HOSTS_FILE)
    ]
    assert sorted(dns_responder.queries) == [("stale.test", "A"), ("stale.test", "AAAA")]


# --- DNS answers ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_dns_keeps_every_address_of_both_families(dns_responder: DnsResponder) -> None:
    v4 = ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
    v6 = ["2001:db8::1", "2001:db8::2"]
    dns_responder.set_records("rr.test", v4 + v6)
    resolution = await make_resolver(dns_responder).resolve("rr.test")
    assert resolution.failure is None and resolution.message is None
    assert all(found.via is ResolvedVia.DNS for found in resolution.addresses)
    families = [found.family for found in resolution.addresses]
    assert families == [4, 4, 4, 6, 6]  # IPv4 first; within a family, as the server sent them
    assert {found.address for found in resolution.addresses} == set(v4 + v6)


@pytest.mark.asyncio
async def test_dns_answers_too_big_for_udp_are_fetched_over_tcp(
    dns_responder: DnsResponder,
) -> None:
    many = [f"198.51.100.{last}" for last in range(1, 101)]
    dns_responder.set_records("big.test", many)
    resolution = await make_resolver(dns_responder, families=ONLY_V4).resolve("big.test")
    assert sorted(found.address for found in resolution.addresses) == sorted(many)
    assert dns_responder.queries.count(("big.test", "A")) == 2  # truncated UDP, then TCP


@pytest.mark.asyncio
@pytest.mark.parametrize(("families", "asked"), [(ONLY_V4, "A"), (ONLY_V6, "AAAA")])
async def test_families_restrict_what_is_asked_and_returned(
    dns_responder: DnsResponder, families: frozenset[int], asked: str
) -> None:
    dns_responder.set_records("dual.test", ["198.51.100.5", "2001:db8::5"])
    resolution = await make_resolver(dns_responder, families=families).resolve("dual.test")
    assert [found.family for found in resolution.addresses] == sorted(families)
    assert dns_responder.queries == [("dual.test", asked)]


@pytest.mark.asyncio
async def test_nxdomain(dns_responder: DnsResponder) -> None:
    resolution = await make_resolver(dns_responder).resolve("missing.test")
    assert resolution.addresses == ()
    assert resolution.failure is Reason.NXDOMAIN
    assert resolution.message is not None and "missing.test" in resolution.message


@pytest.mark.asyncio
async def test_name_with_only_aaaa_has_no_address_under_minus_4(
    dns_responder: DnsResponder,
) -> None:
    dns_responder.set_records("v6only.test", ["2001:db8::6"])
    resolution = await make_resolver(dns_responder, families=ONLY_V4).resolve("v6only.test")
    assert resolution.addresses == ()
    assert resolution.failure is Reason.NO_ADDRESS
    assert resolution.message is not None and "-4" in resolution.message


@pytest.mark.asyncio
async def test_name_without_any_address_record(dns_responder: DnsResponder) -> None:
    dns_responder.set_records("bare.test", [])
    resolution = await make_resolver(dns_responder).resolve("bare.test")
    assert (resolution.addresses, resolution.failure) == ((), Reason.NO_ADDRESS)


@pytest.mark.asyncio
async def test_invalid_name_is_not_sent(dns_responder: DnsResponder) -> None:
    resolution = await make_resolver(dns_responder).resolve("bad..name.test")
    assert resolution.failure is Reason.NXDOMAIN
    assert resolution.message is not None and "not a valid DNS name" in resolution.message
    assert dns_responder.queries == []


# --- DNS failures ---------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("rcode", ["SERVFAIL", "REFUSED"])
async def test_server_failure_is_a_resolver_error_naming_the_server(
    dns_responder: DnsResponder, rcode: str
) -> None:
    dns_responder.set_records("broken.test", ["198.51.100.7"])
    dns_responder.set_failure("broken.test", rcode)
    resolution = await make_resolver(dns_responder).resolve("broken.test")
    assert resolution.addresses == ()
    assert resolution.failure is Reason.RESOLVER_ERROR
    assert resolution.message is not None
    assert f"127.0.0.1:{dns_responder.port}" in resolution.message
    assert rcode in resolution.message


@pytest.mark.asyncio
async def test_timeout_is_a_resolver_error_within_the_configured_lifetime(
    dns_responder: DnsResponder,
) -> None:
    dns_responder.set_records("silent.test", ["198.51.100.8"])
    dns_responder.set_failure("silent.test", "TIMEOUT")
    resolution = await make_resolver(dns_responder, timeout=0.5).resolve("silent.test")
    assert resolution.failure is Reason.RESOLVER_ERROR
    assert resolution.message is not None
    # The lifetime dnspython gave up after is the one configured (not its 5 s default).
    assert f"no answer from nameserver 127.0.0.1:{dns_responder.port} within 0.5 s" in (
        resolution.message
    )
    assert f"127.0.0.1:{dns_responder.port}" in resolution.message
    # Two tries per record type: the lifetime is split, not spent on one datagram.
    assert dns_responder.queries.count(("silent.test", "A")) >= 2


@pytest.mark.asyncio
async def test_one_family_failing_keeps_the_other_answers(dns_responder: DnsResponder) -> None:
    dns_responder.set_records("half.test", ["198.51.100.9", "2001:db8::9"])
    dns_responder.set_failure("half.test", "SERVFAIL", record_type="AAAA")
    resolution = await make_resolver(dns_responder).resolve("half.test")
    assert addresses(resolution) == [("198.51.100.9", 4, ResolvedVia.DNS)]
    assert resolution.failure is None
    assert resolution.message is not None
    assert "AAAA" in resolution.message and "SERVFAIL" in resolution.message


@pytest.mark.asyncio
async def test_nameserver_on_a_closed_port_is_a_resolver_error_naming_it() -> None:
    # dnspython sends from an unconnected UDP socket, which Linux does not tell about ICMP
    # port-unreachable: a closed port looks like a silent server.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    resolver = Resolver(
        ResolverConfig(hosts_file=None, nameservers=(("127.0.0.1", closed_port),), timeout=0.5)
    )
    resolution = await resolver.resolve("anything.test")
    assert resolution.failure is Reason.RESOLVER_ERROR
    assert resolution.message is not None
    assert f"no answer from nameserver 127.0.0.1:{closed_port}" in resolution.message


# --- literals -------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("192.0.2.50", ("192.0.2.50", 4)),
        ("[192.0.2.50]", ("192.0.2.50", 4)),
        ("2001:DB8:0:0::50", ("2001:db8::50", 6)),
        ("[::1]", ("::1", 6)),
    ],
)
async def test_literals_resolve_to_themselves_without_io(
    dns_responder: DnsResponder, literal: str, expected: tuple[str, int]
) -> None:
    resolver = make_resolver(dns_responder)
    for lookup in (resolver.resolve, resolver.fresh_dns):
        resolution = await lookup(literal)
        assert addresses(resolution) == [(*expected, ResolvedVia.LITERAL)]
    assert dns_responder.queries == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("literal", "families", "flag"), [("::1", ONLY_V4, "-4"), ("127.0.0.1", ONLY_V6, "-6")]
)
async def test_literals_of_an_excluded_family_have_no_address(
    dns_responder: DnsResponder, literal: str, families: frozenset[int], flag: str
) -> None:
    resolution = await make_resolver(dns_responder, families=families).resolve(literal)
    assert resolution.addresses == ()
    assert resolution.failure is Reason.NO_ADDRESS
    assert resolution.message is not None and f"excluded by {flag}" in resolution.message


# --- caching, sharing, limits ---------------------------------------------------------


@pytest.mark.asyncio
async def test_concurrent_callers_share_one_lookup(dns_responder: DnsResponder) -> None:
    dns_responder.set_records("popular.test", ["198.51.100.60", "2001:db8::60"])
    resolver = make_resolver(dns_responder)
    results: list[Resolution] = []

    async def ask() -> None:
        results.append(await resolver.resolve("popular.test"))

    async with anyio.create_task_group() as group:
        for _ in range(50):
            group.start_soon(ask)
    assert len(results) == 50
    assert all(result == results[0] for result in results)
    assert len(results[0].addresses) == 2
    assert sorted(dns_responder.queries) == [("popular.test", "A"), ("popular.test", "AAAA")]
    again = await resolver.resolve("POPULAR.test.")
    assert again.name == "POPULAR.test." and again.addresses == results[0].addresses
    assert len(dns_responder.queries) == 2


@pytest.mark.asyncio
async def test_failures_are_cached_too(dns_responder: DnsResponder) -> None:
    resolver = make_resolver(dns_responder)
    first = await resolver.resolve("gone.test")
    dns_responder.set_records("gone.test", ["198.51.100.61"])
    assert await resolver.resolve("gone.test") == first
    assert len(dns_responder.queries) == 2


@pytest.mark.asyncio
async def test_a_cancelled_lookup_hands_over_to_a_waiting_caller(
    dns_responder: DnsResponder,
) -> None:
    dns_responder.set_records("handover.test", ["198.51.100.62"])
    dns_responder.set_failure("handover.test", "TIMEOUT")
    resolver = make_resolver(dns_responder, families=ONLY_V4, timeout=5.0)
    first_caller = anyio.CancelScope()
    waiter_results: list[Resolution] = []

    async def first() -> None:
        with first_caller:
            await resolver.resolve("handover.test")

    async def waiter() -> None:
        waiter_results.append(await resolver.resolve("handover.test"))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(first)
            await anyio.sleep(0.1)  # the first caller's query is in flight
            group.start_soon(waiter)
            await anyio.sleep(0.1)
            assert dns_responder.queries == [("handover.test", "A")]  # the waiter shares it
            dns_responder.clear_failure("handover.test")
            first_caller.cancel()
    assert [addresses(result) for result in waiter_results] == [
        [("198.51.100.62", 4, ResolvedVia.DNS)]
    ]
    assert dns_responder.queries == [("handover.test", "A"), ("handover.test", "A")]


@pytest.mark.asyncio
async def test_concurrency_bounds_names_in_flight(dns_responder: DnsResponder) -> None:
    names = [f"slow{index}.test" for index in range(6)]
    for name in names:
        dns_responder.set_failure(name, "TIMEOUT")
    resolver = make_resolver(dns_responder, timeout=5.0, concurrency=2)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            for name in names:
                group.start_soon(resolver.resolve, name)
            await anyio.sleep(0.3)
            in_flight = query_names(dns_responder.queries)
            group.cancel_scope.cancel()
    assert len(in_flight) == 2
