"""Outcome -> state and reason: the decision table, with no I/O.

Why the rules are what they are (measured on Linux; see docs/KERNEL_NOTES.md):

* A TCP RST surfaces as ECONNREFUSED with *no* error-queue record; an ICMP port-unreachable
  (3/3, ICMPv6 1/4) surfaces as the same errno *with* a record. The first is a closed port,
  the second a firewall's REJECT (RFC 1122 4.2.3.9 lets a host refuse a connection by either
  means, but stacks answer a closed TCP port with a reset, RFC 9293 3.10.7.1), so both are
  `refused`, with different reasons.
* Every other ICMP destination-unreachable code means a router or the host filtered the
  probe: `filtered`, named after the code (RFC 792, RFC 1812 5.2.7.1, RFC 4443 3.1).
* An ICMP error whose offender is this machine and not the target means the packet never
  left: our own OUTPUT chain rejected it -> `error`. The exception is host-unreachable with
  our own address as offender: that is a failed ARP/ND for a directly connected target,
  i.e. the target is down -> `filtered/host-unreach`.
* An error raised by connect()/send() itself, with no ICMP record, comes from this
  machine's routing table or firewall (no route, prohibit/blackhole routes, EPERM from a
  local DROP on UDP send): `error`, never a target state.
* Resource errors (descriptors, source ports, buffers) are the scanner's own problem: they
  are not classified at all; the engine backs off and tries again.
* TCP silence is `filtered/no-response`; UDP silence is `open|filtered/no-response`, since
  an open UDP service need not answer an arbitrary datagram (as nmap reports it).
"""

from __future__ import annotations

import errno

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

SCANNER_SIDE_ERRNOS = frozenset(
    {
        errno.EMFILE,
        errno.ENFILE,
        errno.EADDRNOTAVAIL,
        errno.EADDRINUSE,
        errno.ENOBUFS,
        errno.ENOMEM,
        errno.EAGAIN,
        errno.EINTR,
    }
)
"""Errors that describe this machine's resources, not the target: retried, never reported."""

ICMP4_UNREACH_REASONS: dict[int, Reason] = {
    0: Reason.NET_UNREACH,
    1: Reason.HOST_UNREACH,
    2: Reason.PROTO_UNREACH,
    3: Reason.PORT_UNREACH,
    4: Reason.FRAG_NEEDED,
    5: Reason.SOURCE_ROUTE_FAILED,
    6: Reason.NET_UNKNOWN,
    7: Reason.HOST_UNKNOWN,
    8: Reason.HOST_ISOLATED,
    9: Reason.NET_PROHIBITED,
    10: Reason.HOST_PROHIBITED,
    11: Reason.TOS_NET_UNREACH,
    12: Reason.TOS_HOST_UNREACH,
    13: Reason.ADMIN_PROHIBITED,
    14: Reason.PRECEDENCE_VIOLATION,
    15: Reason.PRECEDENCE_CUTOFF,
}
"""ICMP type 3 codes (RFC 792, RFC 1812)."""

ICMP6_UNREACH_REASONS: dict[int, Reason] = {
    0: Reason.NET_UNREACH,  # no route to destination
    1: Reason.ADMIN_PROHIBITED,
    2: Reason.BEYOND_SCOPE,
    3: Reason.HOST_UNREACH,  # address unreachable
    4: Reason.PORT_UNREACH,
    5: Reason.SOURCE_POLICY_FAILED,
    6: Reason.REJECT_ROUTE,
}
"""ICMPv6 type 1 codes (RFC 4443 3.1)."""

ICMP4_DEST_UNREACH = 3
ICMP4_TIME_EXCEEDED = 11
ICMP6_DEST_UNREACH = 1
ICMP6_TIME_EXCEEDED = 3

LOCAL_ROUTE_REASONS: dict[int, Reason] = {
    errno.ENETUNREACH: Reason.NO_ROUTE,
    errno.EHOSTUNREACH: Reason.NO_ROUTE,
    errno.EACCES: Reason.LOCAL_FIREWALL,
    errno.EPERM: Reason.LOCAL_FIREWALL,
    errno.EINVAL: Reason.NO_ROUTE,  # blackhole route
}
"""Errors that connect()/send() raise before any packet leaves this machine."""

SILENCE_VERDICTS: dict[Proto, Verdict] = {
    Proto.TCP: Verdict(State.FILTERED, Reason.NO_RESPONSE),
    Proto.UDP: Verdict(State.OPEN_FILTERED, Reason.NO_RESPONSE),
}

ANSWER_VERDICTS: dict[Proto, Verdict] = {
    Proto.TCP: Verdict(State.OPEN, Reason.SYN_ACK),
    Proto.UDP: Verdict(State.OPEN, Reason.UDP_RESPONSE),
}


class ScannerSide(Exception):
    """The outcome describes this machine's resources (or a self-connect), not the target."""


def is_scanner_side(outcome: Outcome) -> bool:
    """True when the outcome must be retried rather than reported."""
    if outcome.event is Event.SELF_CONNECT:
        return True
    if outcome.event in (Event.ERROR, Event.SEND_FAILED) and outcome.icmp is None:
        return outcome.errno in SCANNER_SIDE_ERRNOS
    return False


def icmp_reason(report: IcmpReport) -> Reason:
    """Name an ICMP error by its type and code."""
    if report.origin is IcmpOrigin.ICMP4:
        if report.icmp_type == ICMP4_DEST_UNREACH:
            return ICMP4_UNREACH_REASONS.get(report.icmp_code, Reason.ICMP_OTHER)
        if report.icmp_type == ICMP4_TIME_EXCEEDED:
            return Reason.TIME_EXCEEDED
    elif report.origin is IcmpOrigin.ICMP6:
        if report.icmp_type == ICMP6_DEST_UNREACH:
            return ICMP6_UNREACH_REASONS.get(report.icmp_code, Reason.ICMP_OTHER)
        if report.icmp_type == ICMP6_TIME_EXCEEDED:
            return Reason.TIME_EXCEEDED
    return Reason.ICMP_OTHER


def classify_icmp(report: IcmpReport) -> Verdict:
    """An ICMP error from the error queue decides the verdict on its own."""
    reason = icmp_reason(report)
    from_this_machine = report.offender is Offender.SELF
    if report.origin is IcmpOrigin.LOCAL:
        return Verdict(State.ERROR, Reason.LOCAL_ERROR)
    if from_this_machine and reason is not Reason.HOST_UNREACH:
        # Our own OUTPUT chain answered for the target: nothing reached the network.
        return Verdict(State.ERROR, Reason.LOCAL_FIREWALL)
    if reason is Reason.PORT_UNREACH:
        return Verdict(State.REFUSED, Reason.PORT_UNREACH)
    return Verdict(State.FILTERED, reason)


REFUSED_BY_RESET = Verdict(State.REFUSED, Reason.CONN_REFUSED)

ANSWERED_ERRNO_VERDICTS: dict[int, Verdict] = {
    errno.EHOSTUNREACH: Verdict(State.FILTERED, Reason.HOST_UNREACH),
    errno.ENETUNREACH: Verdict(State.FILTERED, Reason.NET_UNREACH),
    errno.EACCES: Verdict(State.FILTERED, Reason.ADMIN_PROHIBITED),
    errno.ENOPROTOOPT: Verdict(State.FILTERED, Reason.PROTO_UNREACH),
}
"""Errors reported by SO_ERROR once the probe was on its way, without an ICMP record."""

LOCAL_ERROR = Verdict(State.ERROR, Reason.LOCAL_ERROR)


def classify(proto: Proto, outcome: Outcome) -> Verdict:
    """The one place that decides a target's state from what the socket layer saw.

    Raises ScannerSide for outcomes that say nothing about the target; the engine, which
    checks `is_scanner_side` first anyway, calls `classify_target_side` instead.
    """
    if is_scanner_side(outcome):
        raise ScannerSide(outcome.message or f"errno {outcome.errno}")
    return classify_target_side(proto, outcome)


def classify_target_side(proto: Proto, outcome: Outcome) -> Verdict:
    """`classify` for an outcome already known not to be scanner-side (once per probe:
    the verdicts are constants, not built anew)."""
    event = outcome.event
    if event is Event.CONNECTED or event is Event.DATAGRAM:
        return ANSWER_VERDICTS[proto]
    if event is Event.SILENCE:
        return SILENCE_VERDICTS[proto]
    if outcome.icmp is not None:
        return classify_icmp(outcome.icmp)
    if event is Event.SEND_FAILED:
        return Verdict(State.ERROR, LOCAL_ROUTE_REASONS.get(outcome.errno or 0, Reason.LOCAL_ERROR))
    # Event.ERROR without an ICMP record.
    code = outcome.errno
    if code == errno.ECONNREFUSED:
        return REFUSED_BY_RESET
    if code == errno.ETIMEDOUT:
        return SILENCE_VERDICTS[proto]
    if outcome.immediate and code in LOCAL_ROUTE_REASONS:
        return Verdict(State.ERROR, LOCAL_ROUTE_REASONS[code])
    return ANSWERED_ERRNO_VERDICTS.get(code or 0, LOCAL_ERROR)
