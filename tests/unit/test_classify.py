"""Every outcome the field notes list maps to exactly one state and reason."""

from __future__ import annotations

import errno

import pytest

from scanner.core.classify import ScannerSide, classify, is_scanner_side
from scanner.core.model import (
    Event,
    IcmpOrigin,
    IcmpReport,
    Offender,
    Outcome,
    Proto,
    Reason,
    State,
    Verdict,
)

TCP, UDP = Proto.TCP, Proto.UDP


def icmp4(
    code: int, err: int, offender: Offender = Offender.TARGET, icmp_type: int = 3
) -> IcmpReport:
    return IcmpReport(IcmpOrigin.ICMP4, icmp_type, code, err, "192.0.2.1", offender)


def icmp6(
    code: int, err: int, offender: Offender = Offender.TARGET, icmp_type: int = 1
) -> IcmpReport:
    return IcmpReport(IcmpOrigin.ICMP6, icmp_type, code, err, "2001:db8::1", offender)


def failed(err: int, icmp: IcmpReport | None = None, *, immediate: bool = False) -> Outcome:
    return Outcome(Event.ERROR, errno=err, icmp=icmp, immediate=immediate)


CASES: list[tuple[str, Proto, Outcome, Verdict]] = [
    ("tcp listener", TCP, Outcome(Event.CONNECTED), Verdict(State.OPEN, Reason.SYN_ACK)),
    ("udp answer", UDP, Outcome(Event.DATAGRAM), Verdict(State.OPEN, Reason.UDP_RESPONSE)),
    ("tcp rst", TCP, failed(errno.ECONNREFUSED), Verdict(State.REFUSED, Reason.CONN_REFUSED)),
    (
        "tcp icmp port-unreach (firewall reject)",
        TCP,
        failed(errno.ECONNREFUSED, icmp4(3, errno.ECONNREFUSED)),
        Verdict(State.REFUSED, Reason.PORT_UNREACH),
    ),
    (
        "tcp icmpv6 port-unreach",
        TCP,
        failed(errno.ECONNREFUSED, icmp6(4, errno.ECONNREFUSED)),
        Verdict(State.REFUSED, Reason.PORT_UNREACH),
    ),
    (
        "tcp host-unreach 3/1",
        TCP,
        failed(errno.EHOSTUNREACH, icmp4(1, errno.EHOSTUNREACH)),
        Verdict(State.FILTERED, Reason.HOST_UNREACH),
    ),
    (
        "tcp admin-prohibited 3/13",
        TCP,
        failed(errno.EHOSTUNREACH, icmp4(13, errno.EHOSTUNREACH)),
        Verdict(State.FILTERED, Reason.ADMIN_PROHIBITED),
    ),
    (
        "tcp host-prohibited 3/10",
        TCP,
        failed(errno.EHOSTUNREACH, icmp4(10, errno.EHOSTUNREACH)),
        Verdict(State.FILTERED, Reason.HOST_PROHIBITED),
    ),
    (
        "tcp net-unreach 3/0",
        TCP,
        failed(errno.ENETUNREACH, icmp4(0, errno.ENETUNREACH)),
        Verdict(State.FILTERED, Reason.NET_UNREACH),
    ),
    (
        "tcp net-prohibited 3/9",
        TCP,
        failed(errno.ENETUNREACH, icmp4(9, errno.ENETUNREACH)),
        Verdict(State.FILTERED, Reason.NET_PROHIBITED),
    ),
    (
        "tcp proto-unreach 3/2",
        TCP,
        failed(errno.ENOPROTOOPT, icmp4(2, errno.ENOPROTOOPT)),
        Verdict(State.FILTERED, Reason.PROTO_UNREACH),
    ),
    (
        "icmpv6 admin-prohibited 1/1",
        TCP,
        failed(errno.EACCES, icmp6(1, errno.EACCES)),
        Verdict(State.FILTERED, Reason.ADMIN_PROHIBITED),
    ),
    (
        "icmpv6 address-unreachable 1/3",
        TCP,
        failed(errno.EHOSTUNREACH, icmp6(3, errno.EHOSTUNREACH)),
        Verdict(State.FILTERED, Reason.HOST_UNREACH),
    ),
    (
        "icmpv6 no-route 1/0",
        TCP,
        failed(errno.ENETUNREACH, icmp6(0, errno.ENETUNREACH)),
        Verdict(State.FILTERED, Reason.NET_UNREACH),
    ),
    (
        "icmp time exceeded",
        UDP,
        failed(errno.EHOSTUNREACH, icmp4(0, errno.EHOSTUNREACH, icmp_type=11)),
        Verdict(State.FILTERED, Reason.TIME_EXCEEDED),
    ),
    ("tcp drop", TCP, Outcome(Event.SILENCE), Verdict(State.FILTERED, Reason.NO_RESPONSE)),
    (
        "tcp kernel timeout",
        TCP,
        failed(errno.ETIMEDOUT),
        Verdict(State.FILTERED, Reason.NO_RESPONSE),
    ),
    (
        "dead neighbour: ARP failed, offender is us",
        TCP,
        failed(errno.EHOSTUNREACH, icmp4(1, errno.EHOSTUNREACH, Offender.SELF)),
        Verdict(State.FILTERED, Reason.HOST_UNREACH),
    ),
    (
        "router host-unreach without a record (rate-limited copy)",
        TCP,
        failed(errno.EHOSTUNREACH),
        Verdict(State.FILTERED, Reason.HOST_UNREACH),
    ),
    (
        "local OUTPUT reject: port-unreach from ourselves",
        TCP,
        failed(errno.ECONNREFUSED, icmp4(3, errno.ECONNREFUSED, Offender.SELF)),
        Verdict(State.ERROR, Reason.LOCAL_FIREWALL),
    ),
    (
        "local OUTPUT reject: admin-prohibited from ourselves",
        TCP,
        failed(errno.EHOSTUNREACH, icmp4(13, errno.EHOSTUNREACH, Offender.SELF)),
        Verdict(State.ERROR, Reason.LOCAL_FIREWALL),
    ),
    (
        "no route: connect() fails at once",
        TCP,
        failed(errno.ENETUNREACH, immediate=True),
        Verdict(State.ERROR, Reason.NO_ROUTE),
    ),
    (
        "unreachable route type",
        TCP,
        failed(errno.EHOSTUNREACH, immediate=True),
        Verdict(State.ERROR, Reason.NO_ROUTE),
    ),
    (
        "prohibit route type",
        TCP,
        failed(errno.EACCES, immediate=True),
        Verdict(State.ERROR, Reason.LOCAL_FIREWALL),
    ),
    (
        "blackhole route",
        TCP,
        failed(errno.EINVAL, immediate=True),
        Verdict(State.ERROR, Reason.NO_ROUTE),
    ),
    (
        "udp closed",
        UDP,
        failed(errno.ECONNREFUSED, icmp4(3, errno.ECONNREFUSED)),
        Verdict(State.REFUSED, Reason.PORT_UNREACH),
    ),
    (
        "udp closed on loopback (offender is target and us)",
        UDP,
        failed(errno.ECONNREFUSED, icmp4(3, errno.ECONNREFUSED, Offender.TARGET)),
        Verdict(State.REFUSED, Reason.PORT_UNREACH),
    ),
    ("udp drop", UDP, Outcome(Event.SILENCE), Verdict(State.OPEN_FILTERED, Reason.NO_RESPONSE)),
    (
        "udp admin-prohibited from a router",
        UDP,
        failed(errno.EHOSTUNREACH, icmp4(13, errno.EHOSTUNREACH, Offender.OTHER)),
        Verdict(State.FILTERED, Reason.ADMIN_PROHIBITED),
    ),
    (
        "udp icmpv6 admin-prohibited",
        UDP,
        failed(errno.EACCES, icmp6(1, errno.EACCES)),
        Verdict(State.FILTERED, Reason.ADMIN_PROHIBITED),
    ),
    (
        "udp local OUTPUT drop: EPERM on send",
        UDP,
        Outcome(Event.SEND_FAILED, errno=errno.EPERM, immediate=True),
        Verdict(State.ERROR, Reason.LOCAL_FIREWALL),
    ),
    (
        "unknown icmp code",
        TCP,
        failed(errno.EHOSTUNREACH, icmp4(99, errno.EHOSTUNREACH)),
        Verdict(State.FILTERED, Reason.ICMP_OTHER),
    ),
]


@pytest.mark.parametrize(
    ("proto", "outcome", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_outcome_maps_to_state_and_reason(
    proto: Proto, outcome: Outcome, expected: Verdict
) -> None:
    assert not is_scanner_side(outcome)
    assert classify(proto, outcome) == expected


@pytest.mark.parametrize(
    "err",
    [
        errno.EMFILE,
        errno.ENFILE,
        errno.EADDRNOTAVAIL,
        errno.EADDRINUSE,
        errno.ENOBUFS,
        errno.ENOMEM,
    ],
)
@pytest.mark.parametrize("proto", [TCP, UDP])
def test_resource_errors_are_never_target_states(err: int, proto: Proto) -> None:
    outcome = failed(err, immediate=True)
    assert is_scanner_side(outcome)
    with pytest.raises(ScannerSide):
        classify(proto, outcome)


def test_self_connect_is_never_open() -> None:
    outcome = Outcome(Event.SELF_CONNECT)
    assert is_scanner_side(outcome)
    with pytest.raises(ScannerSide):
        classify(TCP, outcome)


def test_every_state_is_reachable_from_the_table() -> None:
    produced = {case[3].state for case in CASES}
    assert produced >= {State.OPEN, State.REFUSED, State.FILTERED, State.OPEN_FILTERED, State.ERROR}
