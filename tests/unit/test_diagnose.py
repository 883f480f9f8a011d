"""The cause rules: one scenario per kind, the precedence between them, the port planner."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.core.diagnose import (
    ALTERNATES,
    COMMON_PORTS,
    REFUSAL_KINDS,
    AddressCheck,
    Evidence,
    LocalListener,
    PastObservations,
    PortCheck,
    byte_swapped,
    describe_filtered,
    diagnose,
    iso_utc,
    listener_covers,
    related_ports,
)
from scanner.core.model import (
    CauseEvidence,
    Endpoint,
    Expect,
    Proto,
    Reason,
    Relation,
    ResolvedVia,
    Result,
    State,
)

TS = 1795559401.0  # 2026-11-24T22:30:01Z


def refused(
    host: str = "db.example.com",
    address: str = "10.0.0.3",
    port: int = 5432,
    *,
    via: ResolvedVia = ResolvedVia.DNS,
    reason: Reason = Reason.CONN_REFUSED,
    service: str | None = None,
    proto: Proto = Proto.TCP,
) -> Result:
    endpoint = Endpoint(host, port, proto, expect=Expect.OPEN, service=service)
    return Result(endpoint, address, via, State.REFUSED, reason, 0.2, TS)


def evidence(result: Result | None = None, **fields: object) -> Evidence:
    """Evidence that supports nothing, unless `fields` say otherwise."""
    result = result or refused()
    is_literal = result.resolved_via is ResolvedVia.LITERAL
    values: dict[str, object] = {
        "result": result,
        "name": None if is_literal else result.endpoint.host,
        "fresh_dns": None,
        "fresh_dns_failure": None,
        "fresh_address_checks": (),
        "other_family_checks": (),
        "related_port_checks": (),
        "alive_ports": (),
        "probed_ports": (result.endpoint.port,),
        "is_local_address": False,
        "local_listeners": (),
        "history": None,
        "budget_exhausted": False,
    }
    values.update(fields)
    return Evidence(**values)  # type: ignore[arg-type]


def open_address(address: str, family: int = 4) -> AddressCheck:
    return AddressCheck(address, family, State.OPEN, Reason.SYN_ACK)


def refused_address(address: str, family: int = 4) -> AddressCheck:
    return AddressCheck(address, family, State.REFUSED, Reason.CONN_REFUSED)


def open_port(port: int, relation: Relation) -> PortCheck:
    return PortCheck(port, relation, State.OPEN, Reason.SYN_ACK)


def refused_port(port: int, relation: Relation) -> PortCheck:
    return PortCheck(port, relation, State.REFUSED, Reason.CONN_REFUSED)


def facts(evidence: CauseEvidence) -> dict[str, object]:
    return dict(evidence.pairs())


# --- related_ports ------------------------------------------------------------------------


def test_byte_swap_of_8080_is_36895_and_back() -> None:
    assert byte_swapped(8080) == 36895
    assert byte_swapped(36895) == 8080


def test_related_ports_of_8080_start_with_the_byte_swap_then_alternates_then_neighbours() -> None:
    assert related_ports(8080, None) == (
        (36895, Relation.BYTE_SWAPPED),
        (80, Relation.ALTERNATE),
        (8000, Relation.ALTERNATE),
        (8081, Relation.ALTERNATE),
        (8079, Relation.ADJACENT),
    )


def test_related_ports_of_36895_finds_8080_as_the_byte_swap() -> None:
    assert related_ports(36895, None)[0] == (8080, Relation.BYTE_SWAPPED)


def test_related_ports_include_the_registered_port_of_the_named_service() -> None:
    planned = dict(related_ports(5433, "postgresql"))
    assert planned[5432] is Relation.REGISTERED  # also an alternate; the closer relation wins
    assert planned[5434] is Relation.ADJACENT


def test_related_ports_skip_an_unknown_service_and_the_port_itself() -> None:
    planned = related_ports(443, "no-such-service")
    ports = [port for port, _relation in planned]
    assert 443 not in ports
    assert len(ports) == len(set(ports))
    assert (8443, Relation.ALTERNATE) in planned


def test_related_ports_never_leave_the_port_range() -> None:
    assert all(1 <= port <= 65535 for port, _ in related_ports(1, None))
    assert all(1 <= port <= 65535 for port, _ in related_ports(65535, None))
    # 0x0101 swaps to itself: no byte-swapped candidate at all
    assert Relation.BYTE_SWAPPED not in {relation for _, relation in related_ports(257, None)}
    # 256 swaps to 1, a valid port
    assert (1, Relation.BYTE_SWAPPED) in related_ports(256, None)


@given(st.integers(min_value=1, max_value=65535), st.sampled_from([None, "http", "ssh", "x"]))
def test_related_ports_are_unique_valid_and_ordered_by_specificity(
    port: int, service: str | None
) -> None:
    planned = related_ports(port, service)
    ports = [candidate for candidate, _ in planned]
    assert len(ports) == len(set(ports))
    assert all(1 <= candidate <= 65535 and candidate != port for candidate in ports)
    order = list(Relation)
    ranks = [order.index(relation) for _, relation in planned]
    assert ranks == sorted(ranks)


def test_alternates_table_is_symmetric() -> None:
    for port, alternates in ALTERNATES.items():
        for alternate in alternates:
            assert port in ALTERNATES[alternate], (port, alternate)
    assert ALTERNATES[8443] == (443,)
    assert 1521 in ALTERNATES[1522]


def test_common_ports_are_small_and_include_ssh_and_web() -> None:
    assert {22, 80, 443} <= set(COMMON_PORTS)
    assert len(COMMON_PORTS) == len(set(COMMON_PORTS)) <= 12


# --- one scenario per kind ----------------------------------------------------------------


def test_stale_hosts_file_address_when_fresh_dns_gives_another_that_accepts() -> None:
    result = refused("api.example.com", "10.0.0.9", 443, via=ResolvedVia.HOSTS_FILE)
    cause = diagnose(
        evidence(
            result,
            fresh_dns=("10.0.0.10",),
            fresh_address_checks=(open_address("10.0.0.10"),),
        )
    )
    assert cause.kind == "stale-address"
    assert cause.confidence == pytest.approx(0.9)
    assert facts(cause.evidence) == {
        "name": "api.example.com",
        "probed_address": "10.0.0.9",
        "resolved_via": "hosts-file",
        "fresh_addresses": ("10.0.0.10",),
        "answered": ("10.0.0.10",),
        "port": 443,
    }
    assert "grep api.example.com /etc/hosts" in cause.advice
    assert "dig +short api.example.com A api.example.com AAAA" in cause.advice
    assert "getent hosts api.example.com" in cause.advice


def test_stale_pin_advises_updating_the_pin() -> None:
    result = refused("api.example.com", "10.0.0.9", 443, via=ResolvedVia.PINNED)
    cause = diagnose(
        evidence(
            result,
            fresh_dns=("10.0.0.10",),
            fresh_address_checks=(open_address("10.0.0.10"),),
        )
    )
    assert cause.kind == "stale-address"
    assert "pins api.example.com to 10.0.0.9" in cause.advice


@pytest.mark.parametrize(
    ("via", "fresh", "checks"),
    [
        # a literal cannot be stale
        (ResolvedVia.LITERAL, ("10.0.0.10",), (open_address("10.0.0.10"),)),
        # DNS still lists the probed address: a dead pool member, not a stale entry
        (ResolvedVia.HOSTS_FILE, ("10.0.0.9", "10.0.0.10"), (open_address("10.0.0.10"),)),
        # the fresh address refuses too
        (ResolvedVia.HOSTS_FILE, ("10.0.0.10",), (refused_address("10.0.0.10"),)),
        # no fresh answer
        (ResolvedVia.HOSTS_FILE, None, ()),
    ],
)
def test_not_stale_without_a_moved_address_that_accepts(
    via: ResolvedVia, fresh: tuple[str, ...] | None, checks: tuple[AddressCheck, ...]
) -> None:
    result = refused("api.example.com", "10.0.0.9", 443, via=via)
    name = None if via is ResolvedVia.LITERAL else "api.example.com"
    cause = diagnose(evidence(result, name=name, fresh_dns=fresh, fresh_address_checks=checks))
    assert cause.kind != "stale-address"


def test_address_family_localhost_v6_refused_v4_open() -> None:
    result = refused("localhost", "::1", 8000)
    cause = diagnose(evidence(result, other_family_checks=(open_address("127.0.0.1"),)))
    assert cause.kind == "address-family"
    assert facts(cause.evidence)["answered"] == ("127.0.0.1",)
    assert facts(cause.evidence)["family"] == 6
    assert facts(cause.evidence)["answered_family"] == 4
    assert "IPv4 only" in cause.advice
    assert "getent ahosts localhost" in cause.advice
    assert "[::]:8000" in cause.advice


def test_bound_elsewhere_names_the_bound_address_and_process() -> None:
    result = refused("127.0.0.2", "127.0.0.2", 9000, via=ResolvedVia.LITERAL)
    listener = LocalListener("127.0.0.1", 9000, Proto.TCP, "nginx", 4242)
    cause = diagnose(evidence(result, is_local_address=True, local_listeners=(listener,)))
    assert cause.kind == "bound-elsewhere"
    assert facts(cause.evidence) == {
        "probed_address": "127.0.0.2",
        "port": 9000,
        "bound_addresses": ("127.0.0.1:9000",),
        "processes": ("nginx (pid 4242)",),
    }
    assert "nginx (pid 4242)" in cause.advice
    assert "ss -ltnp 'sport = :9000'" in cause.advice


@pytest.mark.parametrize("bound", ["0.0.0.0", "::", "127.0.0.2", "::ffff:127.0.0.2"])
def test_a_listener_that_covers_the_target_is_not_bound_elsewhere(bound: str) -> None:
    result = refused("127.0.0.2", "127.0.0.2", 9000, via=ResolvedVia.LITERAL)
    listener = LocalListener(bound, 9000, Proto.TCP, "nginx", 4242)
    cause = diagnose(evidence(result, is_local_address=True, local_listeners=(listener,)))
    assert cause.kind != "bound-elsewhere"


def test_a_listener_on_another_protocol_or_port_is_ignored() -> None:
    result = refused("127.0.0.2", "127.0.0.2", 9000, via=ResolvedVia.LITERAL)
    listeners = (
        LocalListener("127.0.0.1", 9000, Proto.UDP, "dnsmasq", 1),
        LocalListener("127.0.0.1", 9001, Proto.TCP, "nginx", 2),
    )
    cause = diagnose(evidence(result, is_local_address=True, local_listeners=listeners))
    assert cause.kind != "bound-elsewhere"


def test_bound_elsewhere_needs_a_local_target() -> None:
    listener = LocalListener("127.0.0.1", 5432, Proto.TCP, "postgres", 7)
    cause = diagnose(evidence(is_local_address=False, local_listeners=(listener,)))
    assert cause.kind != "bound-elsewhere"


@pytest.mark.parametrize(
    ("listener", "target", "covers"),
    [
        ("0.0.0.0", "10.0.0.5", True),
        ("0.0.0.0", "::1", False),
        ("::", "10.0.0.5", True),
        ("::", "::1", True),
        ("127.0.0.1", "127.0.0.2", False),
        ("::1", "::1", True),
        ("0:0::1", "::1", True),
        ("::ffff:127.0.0.1", "127.0.0.1", True),
    ],
)
def test_listener_covers(listener: str, target: str, covers: bool) -> None:
    assert listener_covers(listener, target) is covers


def test_wrong_port_byte_swapped_names_htons() -> None:
    result = refused("app", "10.0.0.11", 8080)
    cause = diagnose(
        evidence(result, related_port_checks=(open_port(36895, Relation.BYTE_SWAPPED),))
    )
    assert cause.kind == "wrong-port"
    assert cause.confidence == pytest.approx(0.9)
    assert facts(cause.evidence)["answered_port"] == 36895
    assert facts(cause.evidence)["relation"] == "byte-swapped"
    assert "htons/ntohs" in cause.advice
    assert "36895" in cause.advice


def test_wrong_port_prefers_the_most_specific_relation_that_answered() -> None:
    result = refused("web", "10.0.0.12", 80)
    checks = (
        open_port(81, Relation.ADJACENT),
        refused_port(20480, Relation.BYTE_SWAPPED),
        open_port(8080, Relation.ALTERNATE),
        open_port(8000, Relation.ALTERNATE),
    )
    cause = diagnose(evidence(result, related_port_checks=checks))
    assert cause.kind == "wrong-port"
    assert facts(cause.evidence)["answered_port"] == 8000
    assert facts(cause.evidence)["relation"] == "alternate"
    assert facts(cause.evidence)["also_answered"] == (8080, 81)
    assert cause.confidence == pytest.approx(0.7)


@pytest.mark.parametrize(
    ("relation", "confidence"),
    [(Relation.REGISTERED, 0.8), (Relation.ALTERNATE, 0.7), (Relation.ADJACENT, 0.5)],
)
def test_wrong_port_confidence_follows_the_relation(relation: Relation, confidence: float) -> None:
    cause = diagnose(evidence(related_port_checks=(open_port(5433, relation),)))
    assert cause.confidence == pytest.approx(confidence)


def test_service_down_with_history_gives_iso_times_and_high_confidence() -> None:
    history = PastObservations(last_open=TS - 3600, first_refused=TS - 600, host_ever_answered=True)
    result = refused(service="postgresql")
    cause = diagnose(evidence(result, alive_ports=(22,), history=history))
    assert cause.kind == "service-down"
    assert cause.confidence == pytest.approx(0.9)
    found = facts(cause.evidence)
    assert found["last_open"] == "2026-11-24T21:30:01Z"
    assert found["first_refused"] == "2026-11-24T22:20:01Z"
    assert found["alive_ports"] == (22,)
    assert "systemctl status postgresql" in cause.advice
    assert "ss -ltnp 'sport = :5432'" in cause.advice


def test_service_down_from_alive_ports_only() -> None:
    cause = diagnose(evidence(alive_ports=(22, 443), probed_ports=(22, 443, 5432)))
    assert cause.kind == "service-down"
    assert cause.confidence == pytest.approx(0.7)
    assert "accepts on 22, 443" in cause.advice
    assert "last_open" not in facts(cause.evidence)


def test_service_down_from_history_alone() -> None:
    history = PastObservations(last_open=TS - 60, first_refused=TS - 30, host_ever_answered=True)
    cause = diagnose(evidence(history=history))
    assert cause.kind == "service-down"
    assert cause.confidence == pytest.approx(0.9)


def test_a_local_target_with_nothing_listening_is_service_down_not_wrong_host() -> None:
    result = refused("127.0.0.1", "127.0.0.1", 9000, via=ResolvedVia.LITERAL)
    cause = diagnose(evidence(result, is_local_address=True, probed_ports=(9000, 22, 80)))
    assert cause.kind == "service-down"
    assert facts(cause.evidence)["local"] is True


def test_wrong_host_when_nothing_on_the_address_ever_accepted() -> None:
    result = refused("db.example.com", "10.0.0.77", 5432)
    checks = (refused_port(5433, Relation.ALTERNATE),)
    cause = diagnose(evidence(result, probed_ports=(22, 80, 443, 5432), related_port_checks=checks))
    assert cause.kind == "wrong-host"
    assert cause.confidence == pytest.approx(0.6)
    assert facts(cause.evidence)["ports_probed"] == (22, 80, 443, 5432, 5433)
    assert "dig +short db.example.com A db.example.com AAAA" in cause.advice


def test_wrong_host_is_ruled_out_by_a_history_of_answering() -> None:
    history = PastObservations(last_open=None, first_refused=None, host_ever_answered=True)
    cause = diagnose(evidence(probed_ports=(22, 80, 5432), history=history))
    assert cause.kind == "service-down"
    assert cause.confidence == pytest.approx(0.5)


def test_unknown_when_the_budget_ran_out_before_any_check() -> None:
    cause = diagnose(evidence(budget_exhausted=True))
    assert cause.kind == "unknown"
    assert 0.0 <= cause.confidence <= 0.2
    assert facts(cause.evidence)["budget_exhausted"] is True
    assert "budget ran out" in cause.advice


def test_unknown_says_what_was_tried() -> None:
    cause = diagnose(evidence(fresh_dns_failure="SERVFAIL from 127.0.0.1:5353"))
    assert cause.kind == "unknown"
    tried = facts(cause.evidence)["tried"]
    assert isinstance(tried, tuple)
    assert any("SERVFAIL" in item for item in tried)
    assert facts(cause.evidence)["budget_exhausted"] is False


def test_one_refused_port_alone_is_not_enough_to_call_it_the_wrong_host() -> None:
    assert diagnose(evidence(probed_ports=(5432,))).kind == "unknown"
    assert diagnose(evidence(probed_ports=(22, 5432))).kind == "wrong-host"


def test_a_firewall_reject_refusal_mentions_the_firewall() -> None:
    result = refused(reason=Reason.PORT_UNREACH)
    cause = diagnose(evidence(result, alive_ports=(22,)))
    assert cause.kind == "service-down"
    assert "REJECT" in cause.advice
    assert facts(cause.evidence)["refusal"] == "port-unreach"


# --- precedence ---------------------------------------------------------------------------


def everything_applies() -> Evidence:
    result = refused("db.example.com", "10.0.0.3", 5432, via=ResolvedVia.HOSTS_FILE)
    return evidence(
        result,
        fresh_dns=("10.0.0.4",),
        fresh_address_checks=(open_address("10.0.0.4"),),
        other_family_checks=(open_address("2001:db8::3", 6),),
        related_port_checks=(open_port(5433, Relation.ALTERNATE),),
        alive_ports=(22,),
        probed_ports=(22, 5432),
        is_local_address=True,
        local_listeners=(LocalListener("127.0.0.1", 5432, Proto.TCP, "postgres", 99),),
        history=PastObservations(TS - 60, TS - 30, True),
    )


def test_precedence_order_peels_off_one_kind_at_a_time() -> None:
    full = everything_applies()
    peeled = [
        full,
        replace(full, fresh_address_checks=()),
        replace(full, fresh_address_checks=(), other_family_checks=()),
        replace(full, fresh_address_checks=(), other_family_checks=(), local_listeners=()),
        replace(
            full,
            fresh_address_checks=(),
            other_family_checks=(),
            local_listeners=(),
            related_port_checks=(),
        ),
    ]
    kinds = [diagnose(item).kind for item in peeled]
    assert kinds == list(REFUSAL_KINDS[:5])


def test_refusal_kinds_are_exactly_the_documented_strings() -> None:
    assert REFUSAL_KINDS == (
        "stale-address",
        "address-family",
        "bound-elsewhere",
        "wrong-port",
        "service-down",
        "wrong-host",
        "unknown",
    )


def test_every_cause_is_hashable_and_its_evidence_serialises_to_json() -> None:
    causes = [diagnose(everything_applies()), diagnose(evidence(budget_exhausted=True))]
    causes.append(diagnose(evidence(history=PastObservations(TS - 60, TS - 30, True))))
    for cause in causes:
        hash(cause)
        json.dumps(dict(cause.evidence.pairs()))


# --- filtered -----------------------------------------------------------------------------


def filtered(
    reason: Reason,
    offender: str | None,
    *,
    address: str = "10.1.2.3",
    state: State = State.FILTERED,
    proto: Proto = Proto.TCP,
) -> Result:
    endpoint = Endpoint("fw.example", 443, proto, expect=Expect.OPEN)
    return Result(endpoint, address, ResolvedVia.DNS, state, reason, None, TS, offender=offender)


def test_filtered_by_a_router_names_it_and_its_firewall() -> None:
    cause = describe_filtered(filtered(Reason.ADMIN_PROHIBITED, "10.1.0.1"))
    assert cause.kind == "filtered"
    assert facts(cause.evidence) == {
        "reason": "admin-prohibited",
        "offender": "10.1.0.1",
        "who": "router",
    }
    assert cause.advice.startswith("rejected by 10.1.0.1 (admin-prohibited): check the firewall")


def test_filtered_by_the_target_itself() -> None:
    cause = describe_filtered(filtered(Reason.HOST_PROHIBITED, "10.1.2.3"))
    assert facts(cause.evidence)["who"] == "target"
    assert "the target itself" in cause.advice


def test_filtered_silently_suggests_a_tcp_traceroute() -> None:
    cause = describe_filtered(filtered(Reason.NO_RESPONSE, None))
    assert facts(cause.evidence) == {"reason": "no-response", "offender": None, "who": "unknown"}
    assert "dropped silently" in cause.advice
    assert "traceroute -T -p 443 10.1.2.3" in cause.advice


def test_filtered_host_unreachable_from_this_machine_is_a_failed_arp() -> None:
    result = filtered(Reason.HOST_UNREACH, "10.1.2.1")
    cause = describe_filtered(result, local_addresses=("10.1.2.1",))
    assert facts(cause.evidence)["who"] == "this machine"
    assert "ip neigh show 10.1.2.3" in cause.advice


def test_udp_silence_mentions_the_service_may_not_answer() -> None:
    result = filtered(Reason.NO_RESPONSE, None, state=State.OPEN_FILTERED, proto=Proto.UDP)
    cause = describe_filtered(result)
    assert "traceroute -U -p 443 10.1.2.3" in cause.advice


def test_iso_utc_has_a_z_and_no_offset() -> None:
    assert iso_utc(TS) == "2026-11-24T22:30:01Z"
