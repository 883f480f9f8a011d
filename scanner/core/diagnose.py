"""Why an endpoint that should be open is not: evidence in, one cause with advice out.

Pure: no sockets, no event loop, no files. The evidence gatherer probes and looks things
up, fills an `Evidence` record, and `diagnose` turns it into a `Cause` by trying the rules
below in order. The first rule that fits wins, because the rules go from the most specific
explanation (one that names the fix outright) to the least:

1. `stale-address` — the probed address came from the hosts file, a pin or an earlier DNS
   answer; a fresh DNS query no longer gives it, and an address it does give accepts on the
   port. The service moved and our copy of its address did not. (A refusing address that
   fresh DNS still lists is a dead member of a pool, not a stale entry: not this rule.)
2. `address-family` — the name's address of the other family accepts on the same port:
   the service listens on IPv4 only (or IPv6 only). The classic: `localhost` gives `::1`
   first, the daemon bound `127.0.0.1`, and `::1` answers with a reset.
3. `bound-elsewhere` — the target is this machine, and a local listener owns the port on a
   different address: bound to `127.0.0.1`, connections to `127.0.0.2` or to the LAN address
   are refused by the kernel (docs/KERNEL_NOTES.md, "Kernel tables"). `0.0.0.0` covers every IPv4
   address and `::` every address (a v6only socket would not take IPv4, but /proc does not
   show the flag, so `::` is assumed to cover both: this rule then stays quiet rather than
   accuse a listener that may well be fine).
4. `wrong-port` — a related port on the same address accepts: the port with its two bytes
   swapped (a missing `htons`/`ntohs` turns 8080 into 36895), the registered port of the
   service the inventory named, a well-known alternate (`ALTERNATES`), or a neighbour.
5. `service-down` — the host is alive (other ports accepted in this run, this endpoint was
   open in an earlier run, or the target is this machine) and nothing related answers.
6. `wrong-host` — nothing on this address accepted on any port we tried and history never
   saw it answer: a machine is there (it sends resets) but not the one that runs the
   service. Needs at least two distinct ports tried to say so.
7. `unknown` — none of the above fits; the cause says what was tried.

A refusal is an answer, so the host (or a firewall in its name) is up; that is why
`refused` never produces "host down". When the refusal was an ICMP port-unreachable rather
than a TCP reset, a firewall REJECT rule produced it (see classify.py), and the advice
says to look at the firewall too.

Confidence is a rough probability that the cause is right, fixed per rule and written next
to the rule's return value with its reason. The evidence of each kind is a frozen record
declared in core/model.py (`StaleAddressEvidence`, ...): its fields are JSON-native (str,
int, float, bool, None, string enums, tuples of those), so `Cause` stays hashable and
every output can serialise it.

Filtered endpoints get a simpler description (`describe_filtered`): who sent the verdict,
if anyone, and where to look.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import MappingProxyType

from scanner.core.errors import SpecError
from scanner.core.model import (
    AddressFamilyEvidence,
    BoundElsewhereEvidence,
    Cause,
    CauseKind,
    Expect,
    FilteredEvidence,
    Proto,
    Reason,
    Relation,
    ResolvedVia,
    Result,
    ServiceDownEvidence,
    StaleAddressEvidence,
    State,
    UnknownEvidence,
    WrongHostEvidence,
    WrongPortEvidence,
)
from scanner.core.services import lookup_service

MIN_PORT = 1
MAX_PORT = 65535


RELATION_ORDER: tuple[Relation, ...] = tuple(Relation)
"""Most specific first: when several related ports answer, the earliest relation wins."""


@dataclass(frozen=True, slots=True)
class PortCheck:
    """A follow-up probe of a related port on the same address."""

    port: int
    relation: Relation
    state: State
    reason: Reason


@dataclass(frozen=True, slots=True)
class AddressCheck:
    """A follow-up probe of the same port on another address of the name."""

    address: str
    family: int  # 4 or 6
    state: State
    reason: Reason


@dataclass(frozen=True, slots=True)
class LocalListener:
    """A socket listening (TCP) or bound (UDP) on this machine, and who owns it.

    `address` is the bound address as text; an IPv4-mapped IPv6 address is written as the
    IPv4 address it stands for. `process` and `pid` are None when the owner could not be
    found (another user's process, without privilege).
    """

    address: str
    port: int
    proto: Proto
    process: str | None
    pid: int | None


@dataclass(frozen=True, slots=True)
class PastObservations:
    """What earlier runs (the history) saw of this endpoint (epoch seconds)."""

    last_open: float | None  # the last time this endpoint was open
    first_refused: float | None  # the start of the current run of refusals
    host_ever_answered: bool  # any port of this address ever accepted


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything the gatherer learned about one refused endpoint."""

    result: Result  # the refused result being explained
    name: str | None  # the DNS name, None when the host is an IP literal
    fresh_dns: tuple[str, ...] | None  # addresses a fresh DNS query gave (None: not asked)
    fresh_dns_failure: str | None  # why the fresh query failed, if it did
    fresh_address_checks: tuple[AddressCheck, ...]  # fresh addresses != the probed one
    other_family_checks: tuple[AddressCheck, ...]  # the name's other-family addresses
    related_port_checks: tuple[PortCheck, ...]  # this address, related ports
    alive_ports: tuple[int, ...]  # ports of this address that were open in this run (tcp)
    probed_ports: tuple[int, ...]  # every tcp port of this address probed in this run
    is_local_address: bool  # the address belongs to this machine
    local_listeners: tuple[LocalListener, ...]  # listeners for this port, on any address
    history: PastObservations | None  # None until history exists
    budget_exhausted: bool  # follow-ups were cut short by the per-run budget


# --- the related-port planner -------------------------------------------------------------

COMMON_PORTS: tuple[int, ...] = (22, 80, 443, 445, 3389, 25, 53, 8080)
"""Probed to tell a live host from a dead one when nothing else of it was probed: remote
access (ssh, rdp), web, SMB, mail and DNS — between them, almost every server runs one."""

_ALTERNATE_ROWS: tuple[tuple[int, tuple[int, ...]], ...] = (
    (80, (8080, 8000, 8008, 8888)),  # http: the usual development and proxy ports
    (443, (8443, 4443)),  # https
    (22, (2222, 2200)),  # ssh moved off 22 to dodge scanners, or a container's sshd
    (25, (587, 2525)),  # smtp: submission, and the port hosting providers leave open
    (3306, (3307, 33060)),  # mysql: a second instance; the X protocol
    (5432, (5433, 6432)),  # postgresql: a second cluster; pgbouncer
    (6379, (6380,)),  # redis: a second instance
    (9200, (9300,)),  # elasticsearch: HTTP API vs transport
    (389, (636,)),  # ldap vs ldaps
    (8080, (80, 8000, 8081)),  # http-alt
    (21, (2121,)),  # ftp
    (1521, (1522,)),  # oracle listener
)


def _symmetric(rows: Iterable[tuple[int, tuple[int, ...]]]) -> Mapping[int, tuple[int, ...]]:
    """Make the table work from either side: 8443 finds 443 as well as 443 finds 8443."""
    table: dict[int, list[int]] = {}
    for port, alternates in rows:
        for alternate in alternates:
            for source, target in ((port, alternate), (alternate, port)):
                found = table.setdefault(source, [])
                if target not in found:
                    found.append(target)
    return MappingProxyType({port: tuple(found) for port, found in table.items()})


ALTERNATES: Mapping[int, tuple[int, ...]] = _symmetric(_ALTERNATE_ROWS)
"""Port -> well-known alternates a service is often moved to, in both directions."""


def byte_swapped(port: int) -> int:
    """The port with its two bytes swapped: what a missing htons/ntohs sends or listens on."""
    return ((port & 0xFF) << 8) | (port >> 8)


def related_ports(port: int, service: str | None) -> tuple[tuple[int, Relation], ...]:
    """The ports worth probing when `port` refuses, each with how it relates, most specific
    relation first and no port twice (a port related in two ways keeps the closer one)."""
    candidates: list[tuple[int, Relation]] = [(byte_swapped(port), Relation.BYTE_SWAPPED)]
    registered = _registered_port(service)
    if registered is not None:
        candidates.append((registered, Relation.REGISTERED))
    candidates.extend((alternate, Relation.ALTERNATE) for alternate in ALTERNATES.get(port, ()))
    candidates.extend(((port - 1, Relation.ADJACENT), (port + 1, Relation.ADJACENT)))
    planned: dict[int, Relation] = {}
    for candidate, relation in candidates:
        if candidate != port and MIN_PORT <= candidate <= MAX_PORT:
            planned.setdefault(candidate, relation)
    return tuple(planned.items())


def _registered_port(service: str | None) -> int | None:
    if not service:
        return None
    try:
        registered, _proto = lookup_service(service)
    except SpecError:  # a service name the table does not know: nothing to compare with
        return None
    return registered


# --- diagnosis ----------------------------------------------------------------------------

REFUSAL_KINDS: tuple[CauseKind, ...] = (
    CauseKind.STALE_ADDRESS,
    CauseKind.ADDRESS_FAMILY,
    CauseKind.BOUND_ELSEWHERE,
    CauseKind.WRONG_PORT,
    CauseKind.SERVICE_DOWN,
    CauseKind.WRONG_HOST,
    CauseKind.UNKNOWN,
)
"""Every kind `diagnose` returns, in precedence order (most specific first)."""

_WRONG_PORT_CONFIDENCE: Mapping[Relation, float] = MappingProxyType(
    {
        # Swapped bytes are no coincidence: 36895 is not a port anyone picks.
        Relation.BYTE_SWAPPED: 0.9,
        # The service named in the inventory answers on its own registered port.
        Relation.REGISTERED: 0.8,
        # A common move, but hosts often run both (80 and 8080) on purpose.
        Relation.ALTERNATE: 0.7,
        # Neighbouring ports are often unrelated services.
        Relation.ADJACENT: 0.5,
    }
)

_WILDCARD_FOR_FAMILY: Mapping[int, str] = MappingProxyType({4: "0.0.0.0", 6: "::"})


def diagnose(evidence: Evidence) -> Cause:
    """The most specific cause the evidence supports (see the module docstring)."""
    for rule in _RULES:
        cause = rule(evidence)
        if cause is not None:
            return cause
    return _unknown(evidence)


def _stale_address(evidence: Evidence) -> Cause | None:
    """Evidence: `StaleAddressEvidence`."""
    result = evidence.result
    address = result.address
    if evidence.name is None or address is None or not evidence.fresh_dns:
        return None
    if result.resolved_via not in _STALE_SOURCES:
        return None
    if any(_same_address(address, fresh) for fresh in evidence.fresh_dns):
        return None  # DNS still lists it: a dead member of a pool, not a stale copy
    answered = tuple(
        check.address for check in evidence.fresh_address_checks if check.state is State.OPEN
    )
    if not answered:
        return None
    name, port = evidence.name, result.endpoint.port
    fresh = ", ".join(evidence.fresh_dns)
    lookups = f"`getent hosts {name}` vs `dig +short {name} A {name} AAAA`"
    if result.resolved_via is ResolvedVia.HOSTS_FILE:
        fix = (
            f"the hosts file maps {name} to {address}: update or remove that line "
            f"(`grep {name} /etc/hosts`, or the file given with --hosts-file); compare {lookups}"
        )
    elif result.resolved_via is ResolvedVia.PINNED:
        fix = f"the inventory pins {name} to {address}: update the pin; check with {lookups}"
    else:
        fix = (
            f"{address} came from an earlier DNS answer: a cache or a secondary still serves "
            f"the old record; compare {lookups} and the record's TTL"
        )
    return Cause(
        # A fresh answer that differs and accepts where the old one refuses is close to
        # proof; the rest is the chance that both addresses are meant to serve.
        confidence=0.9,
        evidence=StaleAddressEvidence(
            name=name,
            probed_address=address,
            resolved_via=result.resolved_via,
            fresh_addresses=tuple(evidence.fresh_dns),
            answered=answered,
            port=port,
        ),
        advice=(
            f"{name} now resolves to {fresh} and {', '.join(answered)} accepts on port {port}; "
            f"{fix}."
        ),
    )


_STALE_SOURCES = frozenset({ResolvedVia.HOSTS_FILE, ResolvedVia.PINNED, ResolvedVia.DNS})


def _address_family(evidence: Evidence) -> Cause | None:
    """Evidence: `AddressFamilyEvidence`."""
    result = evidence.result
    address = result.address
    answered = tuple(check for check in evidence.other_family_checks if check.state is State.OPEN)
    if address is None or not answered:
        return None
    family = _family(address)
    other_family = answered[0].family
    port = result.endpoint.port
    name = evidence.name or result.endpoint.host
    listen_on = "::" if family == 6 else "0.0.0.0"
    others = ", ".join(check.address for check in answered)
    ss_command = _ss(result.endpoint.proto, port)
    return Cause(
        # The other family answering on the very same port leaves little else to blame.
        confidence=0.9,
        evidence=AddressFamilyEvidence(
            name=name,
            probed_address=address,
            family=family,
            answered=tuple(check.address for check in answered),
            answered_family=other_family,
            port=port,
        ),
        advice=(
            f"{name} accepts on port {port} over IPv{other_family} ({others}) but refuses over "
            f"IPv{family} ({address}): the service listens on IPv{other_family} only. Make it "
            f"listen on {_with_port(listen_on, port)} too (check `{ss_command}` on the host), "
            f"or have clients use IPv{other_family}; `getent ahosts {name}` shows which "
            f"addresses clients try first."
        ),
    )


def _bound_elsewhere(evidence: Evidence) -> Cause | None:
    """Evidence: `BoundElsewhereEvidence`."""
    result = evidence.result
    address = result.address
    if address is None or not evidence.is_local_address:
        return None
    endpoint = result.endpoint
    listeners = [
        listener
        for listener in evidence.local_listeners
        if listener.port == endpoint.port and listener.proto is endpoint.proto
    ]
    if not listeners or any(listener_covers(listener.address, address) for listener in listeners):
        return None  # nothing bound, or bound where it should accept: not this cause
    bound = tuple(_with_port(listener.address, listener.port) for listener in listeners)
    owners = tuple(_owner(listener) for listener in listeners)
    known_owners = sorted({owner for owner in owners if owner != "an unknown process"})
    who = ", ".join(known_owners) if known_owners else "a process we cannot see"
    wildcard = _WILDCARD_FOR_FAMILY[_family(address)]
    return Cause(
        # The kernel's own table shows the port owned on another address; only a rebind
        # racing with the scan could make this wrong.
        confidence=0.95,
        evidence=BoundElsewhereEvidence(
            probed_address=address,
            port=endpoint.port,
            bound_addresses=bound,
            processes=owners,
        ),
        advice=(
            f"{who} listens on {', '.join(bound)} only, so connections to "
            f"{_with_port(address, endpoint.port)} are refused: bind it to {address} or to "
            f"{wildcard} (every address), or point clients at {bound[0]}; "
            f"check with `{_ss(endpoint.proto, endpoint.port)}`."
        ),
    )


def _wrong_port(evidence: Evidence) -> Cause | None:
    """Evidence: `WrongPortEvidence`."""
    answered = [check for check in evidence.related_port_checks if check.state is State.OPEN]
    if not answered:
        return None
    answered.sort(key=lambda check: (RELATION_ORDER.index(check.relation), check.port))
    best = answered[0]
    endpoint = evidence.result.endpoint
    host = _host_label(evidence)
    return Cause(
        confidence=_WRONG_PORT_CONFIDENCE[best.relation],  # see the table for the reasons
        evidence=WrongPortEvidence(
            expected_port=endpoint.port,
            answered_port=best.port,
            relation=best.relation,
            also_answered=tuple(check.port for check in answered[1:]),
        ),
        advice=_wrong_port_advice(host, endpoint.port, best, endpoint.service, endpoint.proto),
    )


def _wrong_port_advice(
    host: str, port: int, answered: PortCheck, service: str | None, proto: Proto
) -> str:
    where = f"{host} refuses port {port} but accepts on {answered.port}"
    check = f"`{_ss(proto, answered.port)}` on {host} shows what listens there"
    if answered.relation is Relation.BYTE_SWAPPED:
        return (
            f"{where}, which is {port} with its two bytes swapped: check the byte order of the "
            f"port in the client/server code (htons/ntohs); {check}."
        )
    if answered.relation is Relation.REGISTERED:
        return (
            f"{where}, the registered port of {service}: the inventory's port {port} is likely "
            f"a typo, or the service was never moved; {check}."
        )
    if answered.relation is Relation.ALTERNATE:
        return (
            f"{where}, a common alternate: the service may have moved; check its configured "
            f"listen port and fix the inventory or the configuration; {check}."
        )
    return (
        f"{where}, the port next to it: an off-by-one in the configuration or the inventory "
        f"is possible; {check}."
    )


def _service_down(evidence: Evidence) -> Cause | None:
    """Evidence: `ServiceDownEvidence`."""
    result = evidence.result
    history = evidence.history
    alive_ports = tuple(sorted(set(evidence.alive_ports) - {result.endpoint.port}))
    last_open = history.last_open if history is not None else None
    answered_before = history is not None and history.host_ever_answered
    if not (alive_ports or last_open is not None or evidence.is_local_address or answered_before):
        return None  # nothing shows the host alive
    if last_open is not None:
        confidence = 0.9  # this very endpoint used to accept: something stopped it
    elif alive_ports or evidence.is_local_address:
        confidence = 0.7  # the host is up; the service may never have run here
    else:
        confidence = 0.5  # other ports answered in earlier runs, nothing answers now
    # The streak of refusals began at the first stored refusal since it was last open, or
    # with this result (not stored yet while it is being explained).
    first_refused = history.first_refused if history is not None else None
    if first_refused is None and last_open is not None:
        first_refused = result.ts
    return Cause(
        confidence=confidence,
        evidence=ServiceDownEvidence(
            address=result.address,
            port=result.endpoint.port,
            alive_ports=alive_ports,
            local=evidence.is_local_address,
            refusal=result.reason,
            last_open=None if last_open is None else iso_utc(last_open),
            first_refused=None if first_refused is None else iso_utc(first_refused),
        ),
        advice=_service_down_advice(evidence, alive_ports, last_open, first_refused),
    )


def _service_down_advice(
    evidence: Evidence,
    alive_ports: tuple[int, ...],
    last_open: float | None,
    first_refused: float | None,
) -> str:
    endpoint = evidence.result.endpoint
    host = _host_label(evidence)
    if alive_ports:
        alive = f"{host} is up (it accepts on {_port_list(alive_ports)})"
    elif evidence.is_local_address:
        alive = f"{host} is this machine"
    else:
        alive = f"{host} answered on other ports in earlier runs"
    if endpoint.service:
        unit = f"`systemctl status {endpoint.service}`"
    else:
        unit = "`systemctl --failed` (crashed units)"
    text = (
        f"{alive} but nothing listens on {endpoint.port}/{endpoint.proto.value}: start the "
        f"service or find out why it stopped — on the host, `{_ss(endpoint.proto, endpoint.port)}` "
        f"and {unit}"
    )
    if last_open is not None:
        since = iso_utc(first_refused) if first_refused is not None else iso_utc(last_open)
        text += (
            f"; it was open at {iso_utc(last_open)}, so read its logs from then on "
            f"(`journalctl --since '{since}'`)"
        )
    return text + _firewall_note(evidence.result) + "."


def _wrong_host(evidence: Evidence) -> Cause | None:
    """Evidence: `WrongHostEvidence`."""
    result = evidence.result
    if evidence.alive_ports or evidence.is_local_address:
        return None
    if evidence.history is not None and (
        evidence.history.host_ever_answered or evidence.history.last_open is not None
    ):
        return None
    tried = _ports_tried(evidence)
    if len(tried) < 2:
        return None  # one refused port says nothing about the rest of the host
    host = _host_label(evidence)
    if evidence.name is not None:
        check = (
            f"check what {evidence.name} should point to: `dig +short {evidence.name} A "
            f"{evidence.name} AAAA`, `getent hosts {evidence.name}`"
        )
    else:
        check = f"check the address {result.address} in the inventory"
    return Cause(
        # A machine that refuses everything may be the right one with its services down
        # (service-down without history looks the same), so only moderately sure.
        confidence=0.4 if evidence.budget_exhausted else 0.6,
        evidence=WrongHostEvidence(
            address=result.address, ports_probed=tried, refusal=result.reason
        ),
        advice=(
            f"{host} accepts on none of the ports tried ({_port_list(tried)}): a machine "
            f"answers there, but it runs none of these services and never did — the inventory "
            f"may name the wrong host; {check}{_firewall_note(result)}."
        ),
    )


def _unknown(evidence: Evidence) -> Cause:
    """Evidence: `UnknownEvidence`."""
    tried = _what_was_tried(evidence)
    host = _host_label(evidence)
    port = evidence.result.endpoint.port
    if evidence.budget_exhausted:
        why = "the follow-up budget ran out before the checks could finish"
    else:
        why = "the checks found nothing that explains it"
    return Cause(
        # Nothing supports any cause; with the budget exhausted, more probing might have.
        confidence=0.1 if evidence.budget_exhausted else 0.0,
        evidence=UnknownEvidence(
            tried=tried,
            budget_exhausted=evidence.budget_exhausted,
            fresh_dns_failure=evidence.fresh_dns_failure,
        ),
        advice=(
            f"{host} refuses port {port} and {why}; on the host, "
            f"`{_ss(evidence.result.endpoint.proto, port)}` shows whether anything listens"
            f"{_firewall_note(evidence.result)}."
        ),
    )


_RULES: tuple[Callable[[Evidence], Cause | None], ...] = (
    _stale_address,
    _address_family,
    _bound_elsewhere,
    _wrong_port,
    _service_down,
    _wrong_host,
)
"""The rules in precedence order (REFUSAL_KINDS without `unknown`, the fallback)."""


def _what_was_tried(evidence: Evidence) -> tuple[str, ...]:
    tried: list[str] = []
    if evidence.fresh_dns is not None:
        tried.append(f"fresh DNS query ({len(evidence.fresh_dns)} addresses)")
    elif evidence.fresh_dns_failure is not None:
        tried.append(f"fresh DNS query (failed: {evidence.fresh_dns_failure})")
    if evidence.fresh_address_checks:
        tried.append(f"{len(evidence.fresh_address_checks)} fresh addresses")
    if evidence.other_family_checks:
        tried.append(f"{len(evidence.other_family_checks)} other-family addresses")
    if evidence.related_port_checks:
        ports = _port_list(sorted(check.port for check in evidence.related_port_checks))
        tried.append(f"related ports {ports}")
    if evidence.probed_ports:
        count = len(set(evidence.probed_ports))
        tried.append(f"{count} {'port' if count == 1 else 'ports'} of this address in this run")
    if evidence.is_local_address:
        tried.append("local listener table")
    if evidence.history is not None:
        tried.append("history")
    return tuple(tried)


def _ports_tried(evidence: Evidence) -> tuple[int, ...]:
    ports = set(evidence.probed_ports) | {check.port for check in evidence.related_port_checks}
    ports.add(evidence.result.endpoint.port)
    return tuple(sorted(ports))


def _firewall_note(result: Result) -> str:
    if result.reason is not Reason.PORT_UNREACH:
        return ""
    return (
        "; the refusal was an ICMP port-unreachable, which is what a firewall REJECT rule "
        "sends, so check the host's firewall too (`nft list ruleset`, `iptables -S`)"
    )


# --- filtered endpoints -------------------------------------------------------------------

WHO_TARGET = "target"
WHO_ROUTER = "router"
WHO_SELF = "this machine"
WHO_UNKNOWN = "unknown"

PROHIBITED_REASONS = frozenset(
    {
        Reason.ADMIN_PROHIBITED,
        Reason.HOST_PROHIBITED,
        Reason.NET_PROHIBITED,
        Reason.PRECEDENCE_CUTOFF,
        Reason.SOURCE_POLICY_FAILED,
        Reason.REJECT_ROUTE,
    }
)
"""ICMP codes that say a rule, not a failure, stopped the packet: "rejected by" someone."""
_UNREACHABLE = frozenset(
    {
        Reason.HOST_UNREACH,
        Reason.NET_UNREACH,
        Reason.HOST_UNKNOWN,
        Reason.NET_UNKNOWN,
        Reason.HOST_ISOLATED,
        Reason.TOS_HOST_UNREACH,
        Reason.TOS_NET_UNREACH,
        Reason.BEYOND_SCOPE,
    }
)


def who_filtered(result: Result, local_addresses: Iterable[str] = ()) -> str:
    """Who sent the verdict, as far as the offender address tells: the target itself,
    this machine (a local rule, or no ARP/ND answer), a router on the path, or unknown."""
    offender = result.offender
    if offender is None:
        return WHO_UNKNOWN
    if result.address is not None and _same_address(offender, result.address):
        return WHO_TARGET
    if any(_same_address(offender, local) for local in local_addresses):
        return WHO_SELF
    return WHO_ROUTER


def with_filtered_cause(result: Result, *, local_addresses: Iterable[str] = ()) -> Result:
    """`result` with its cause when it is filtered and was expected open (known at once,
    unlike a refusal's); any other result as it is. One rule for the scan in one process
    (scanner/run/fanout.py) and in a shard (scanner/run/shard.py)."""
    if result.state is State.FILTERED and result.endpoint.expect is Expect.OPEN:
        return replace(result, cause=describe_filtered(result, local_addresses=local_addresses))
    return result


def describe_filtered(result: Result, *, local_addresses: Iterable[str] = ()) -> Cause:
    """The cause for a filtered endpoint that was expected open.

    Evidence: `FilteredEvidence` (who: one of WHO_*).
    `local_addresses` lets an offender that is this machine be named as such; without
    them it counts as a router.
    """
    who = who_filtered(result, local_addresses)
    return Cause(
        # An ICMP error names its sender, so the "where" is solid; silence could be a drop
        # anywhere on the path, or a UDP service that does not answer this probe.
        confidence=0.5 if result.offender is None else 0.8,
        evidence=FilteredEvidence(reason=result.reason, offender=result.offender, who=who),
        advice=_filtered_advice(result, who),
    )


def _filtered_advice(result: Result, who: str) -> str:
    endpoint = result.endpoint
    address = result.address or endpoint.host
    reason = result.reason
    offender = result.offender
    trace = _traceroute(endpoint.proto, endpoint.port, address)
    if offender is None:
        if result.state is State.OPEN_FILTERED:
            return (
                f"no answer from {address} on {endpoint.port}/udp: the service may be down, "
                f"may not answer this probe, or a firewall drops the datagram; check on the "
                f"host with `{_ss(endpoint.proto, endpoint.port)}`, and the path with `{trace}`"
            )
        return f"packets are dropped silently: check firewalls on the path, `{trace}`"
    if reason is Reason.HOST_UNREACH and who == WHO_SELF:
        return (
            f"no ARP/ND answer from {address}: it is down or not on this subnet; "
            f"check `ip neigh show {address}` and that the host is powered and cabled"
        )
    if who == WHO_SELF:
        return (
            f"refused by this machine ({reason.value}) before the packet left: check the "
            f"local firewall's output rules (`nft list ruleset`) and the route "
            f"(`ip route get {address}`)"
        )
    if reason in PROHIBITED_REASONS:
        place = f"{offender} (the target itself)" if who == WHO_TARGET else offender
        return (
            f"rejected by {offender} ({reason.value}): check the firewall rules on {place} "
            f"for {endpoint.proto.value} traffic from this machine to {address}"
        )
    if reason in _UNREACHABLE:
        return (
            f"{offender} reports {address} unreachable ({reason.value}): the host is down, "
            f"or {offender} has no route to it; check the host and the route, `{trace}`"
        )
    return f"{offender} answered {reason.value} for {address}: follow the path with `{trace}`"


def _traceroute(proto: Proto, port: int, address: str) -> str:
    flag = "-T" if proto is Proto.TCP else "-U"
    return f"traceroute {flag} -p {port} {address}"


# --- small helpers ------------------------------------------------------------------------


def listener_covers(listener_address: str, target_address: str) -> bool:
    """Does a socket bound to `listener_address` accept connections to `target_address`?

    A wildcard covers its family (`::` is taken to cover IPv4 too, since /proc does not
    show IPV6_V6ONLY); anything else covers only itself. IPv4-mapped addresses count as
    the IPv4 address they carry.
    """
    listener = _parse_ip(listener_address)
    target = _parse_ip(target_address)
    if listener is None or target is None:
        return listener_address == target_address
    if listener.is_unspecified:
        return listener.version == 6 or target.version == 4
    return listener == target


IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse_ip(text: str) -> IpAddress | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _same_address(first: str, second: str) -> bool:
    """Equal as addresses, whatever the spelling (`::1` and `0::1`, mapped IPv4)."""
    first_ip, second_ip = _parse_ip(first), _parse_ip(second)
    if first_ip is None or second_ip is None:
        return first == second
    return first_ip == second_ip


def _family(address: str) -> int:
    parsed = _parse_ip(address)
    return 6 if parsed is not None and parsed.version == 6 else 4


def _with_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _ss(proto: Proto, port: int) -> str:
    flags = "-ltnp" if proto is Proto.TCP else "-lunp"
    return f"ss {flags} 'sport = :{port}'"


def _owner(listener: LocalListener) -> str:
    if listener.process is None and listener.pid is None:
        return "an unknown process"
    if listener.pid is None:
        return str(listener.process)
    return f"{listener.process or 'process'} (pid {listener.pid})"


def _host_label(evidence: Evidence) -> str:
    """How advice names the target: `name (address)`, or just the address for literals."""
    address = evidence.result.address
    name = evidence.name
    if name is None or address is None or name == address:
        return address or evidence.result.endpoint.host
    return f"{name} ({address})"


def _port_list(ports: Iterable[int]) -> str:
    return ", ".join(str(port) for port in ports)


def iso_utc(epoch_seconds: float) -> str:
    """ISO 8601 in UTC with seconds and `Z`, the form the JSON outputs use for times."""
    moment = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    return moment.isoformat(timespec="seconds").removesuffix("+00:00") + "Z"
