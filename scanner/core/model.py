"""The records every part of reachscan speaks: what to probe, what happened, what it means.

Everything here is a frozen, slotted value. The pure core (classification, diagnosis,
inventory parsing) works on these alone, so it can be tested without a network, and the
outputs see only `Result`, never a socket.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import Enum, StrEnum
from types import MappingProxyType
from typing import ClassVar

from scanner.core.fastinit import fast_init


class Proto(StrEnum):
    TCP = "tcp"
    UDP = "udp"


class State(StrEnum):
    """What an endpoint is, in nmap's words where nmap has them."""

    OPEN = "open"
    REFUSED = "refused"
    FILTERED = "filtered"
    OPEN_FILTERED = "open|filtered"
    UNRESOLVED = "unresolved"
    ERROR = "error"
    EXCLUDED = "excluded"  # never probed: --exclude, or a multicast/broadcast address


class Reason(StrEnum):
    """Why an endpoint is in its state: the packet (or lack of one) that decided it."""

    SYN_ACK = "syn-ack"
    UDP_RESPONSE = "udp-response"
    CONN_REFUSED = "conn-refused"
    PORT_UNREACH = "port-unreach"
    NO_RESPONSE = "no-response"
    NET_UNREACH = "net-unreach"
    HOST_UNREACH = "host-unreach"
    PROTO_UNREACH = "proto-unreach"
    FRAG_NEEDED = "frag-needed"
    SOURCE_ROUTE_FAILED = "source-route-failed"
    NET_UNKNOWN = "net-unknown"
    HOST_UNKNOWN = "host-unknown"
    HOST_ISOLATED = "host-isolated"
    NET_PROHIBITED = "net-prohibited"
    HOST_PROHIBITED = "host-prohibited"
    TOS_NET_UNREACH = "tos-net-unreach"
    TOS_HOST_UNREACH = "tos-host-unreach"
    ADMIN_PROHIBITED = "admin-prohibited"
    PRECEDENCE_VIOLATION = "precedence-violation"
    PRECEDENCE_CUTOFF = "precedence-cutoff"
    BEYOND_SCOPE = "beyond-scope"
    SOURCE_POLICY_FAILED = "source-policy-failed"
    REJECT_ROUTE = "reject-route"
    TIME_EXCEEDED = "time-exceeded"
    ICMP_OTHER = "icmp-other"
    NXDOMAIN = "nxdomain"
    NO_ADDRESS = "no-address"
    RESOLVER_ERROR = "resolver-error"
    LOCAL_FIREWALL = "local-firewall"
    NO_ROUTE = "no-route"
    LOCAL_ERROR = "local-error"
    EXCLUDE_LIST = "exclude-list"  # the address is in --exclude or --exclude-file
    SPECIAL_ADDRESS = "special-address"  # multicast, broadcast, unspecified: reaches many


class Expect(StrEnum):
    """What the inventory says should be true of an endpoint."""

    OPEN = "open"
    REFUSED = "refused"
    FILTERED = "filtered"
    CLOSED = "closed"  # anything but open: refused, filtered or open|filtered
    ANY = "any"  # measure and report, expect nothing (discovery inventories)


class ResolvedVia(StrEnum):
    """Where the probed address came from; the cause analysis reasons about it."""

    LITERAL = "literal"
    HOSTS_FILE = "hosts-file"
    DNS = "dns"
    PINNED = "pinned"
    NONE = "none"  # the name did not resolve


Labels = tuple[tuple[str, str], ...]
"""Inventory labels as sorted (key, value) pairs: hashable, shared between endpoints."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an inventory entry was written, so every message can say FILE:LINE."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@fast_init  # built once per endpoint: see scanner/core/fastinit.py
@dataclass(frozen=True, slots=True)
class Endpoint:
    """One thing the inventory wants checked: a host (as written), a port, a protocol.

    `host` is kept exactly as the inventory wrote it (a name or an address literal);
    `pinned_address` is the address the fleet's records pin for it, probed instead of
    resolving the name. `expect` is None for ad hoc sweeps, which have no expectation.
    """

    host: str
    port: int
    proto: Proto
    expect: Expect | None = Expect.OPEN
    labels: Labels = ()
    pinned_address: str | None = None
    service: str | None = None  # the service name the inventory used ("https"), if any
    origin: Origin | None = None

    @property
    def key(self) -> tuple[str, int, Proto, str | None]:
        """Identity for de-duplication: the same host, port, protocol and pin."""
        return (self.host, self.port, self.proto, self.pinned_address)


@fast_init  # built once per endpoint: see scanner/core/fastinit.py
@dataclass(frozen=True, slots=True)
class Target:
    """An endpoint at one concrete address: the unit the engine probes."""

    endpoint: Endpoint
    address: str
    family: int  # 4 or 6
    resolved_via: ResolvedVia


class Event(Enum):
    """What the socket layer saw, before any interpretation."""

    CONNECTED = "connected"  # TCP handshake completed with a peer that is not ourselves
    DATAGRAM = "datagram"  # UDP: an answer arrived
    ERROR = "error"  # the socket reported an errno (with or without an ICMP record)
    SILENCE = "silence"  # nothing before the deadline
    SELF_CONNECT = "self-connect"  # TCP simultaneous open with our own source port
    SEND_FAILED = "send-failed"  # the probe never left this machine


class IcmpOrigin(Enum):
    ICMP4 = 2
    ICMP6 = 3
    LOCAL = 1
    OTHER = 0


class Offender(Enum):
    """Who sent an ICMP error, relative to the probe."""

    TARGET = "target"  # the probed address itself
    SELF = "self"  # this machine (a local REJECT, or failed ARP/ND)
    OTHER = "other"  # a router or middlebox on the path
    UNKNOWN = "unknown"


@fast_init  # built once per endpoint: see scanner/core/fastinit.py
@dataclass(frozen=True, slots=True)
class IcmpReport:
    """One record from the socket's error queue (`struct sock_extended_err`)."""

    origin: IcmpOrigin
    icmp_type: int
    icmp_code: int
    errno: int
    offender_address: str | None
    offender: Offender


@fast_init  # built once per endpoint: see scanner/core/fastinit.py
@dataclass(frozen=True, slots=True)
class Outcome:
    """What one probe attempt produced, translated from the OS exactly once (net/)."""

    event: Event
    errno: int | None = None
    icmp: IcmpReport | None = None
    immediate: bool = False  # the error came from connect()/send() itself: nothing left
    rtt: float | None = None  # seconds from issuing the probe to its answer
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """A state with the reason that decided it."""

    state: State
    reason: Reason


class CauseKind(StrEnum):
    """Why an endpoint is not as expected, as the diagnosis decides it (core/diagnose.py).

    The values are what every output writes (JSON Lines, the report, Prometheus labels,
    the history), so they never change spelling.
    """

    STALE_ADDRESS = "stale-address"
    ADDRESS_FAMILY = "address-family"
    BOUND_ELSEWHERE = "bound-elsewhere"
    WRONG_PORT = "wrong-port"
    SERVICE_DOWN = "service-down"
    WRONG_HOST = "wrong-host"
    UNKNOWN = "unknown"
    FILTERED = "filtered"


class Relation(StrEnum):
    """How a related port relates to the expected one; the order is most specific first."""

    BYTE_SWAPPED = "byte-swapped"  # htons/ntohs missing on either end: 8080 <-> 36895
    REGISTERED = "registered-port"  # the registered port of the service the inventory named
    ALTERNATE = "alternate"  # well-known alternates, from ALTERNATES
    ADJACENT = "adjacent"  # port +-1


# --- the evidence each cause kind carries ---------------------------------------------------
#
# One record per kind, its fields declared once (as zmap's probe modules declare theirs):
# the diagnosis fills them, the outputs read them as attributes. `pairs()` gives the fields
# in declaration order as (name, JSON-native value) pairs, which is the `evidence` object of
# the JSON Lines record; a field listed in `OMITTED_WHEN_NONE` is left out while it is None.


@dataclass(frozen=True, slots=True)
class _EvidenceFields:
    KIND: ClassVar[CauseKind]
    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset()

    def pairs(self) -> tuple[tuple[str, object], ...]:
        values = ((item.name, getattr(self, item.name)) for item in fields(self))
        return tuple(
            (name, value)
            for name, value in values
            if not (value is None and name in self.OMITTED_WHEN_NONE)
        )


@dataclass(frozen=True, slots=True)
class StaleAddressEvidence(_EvidenceFields):
    """A fresh DNS answer no longer gives the probed address, and an address it gives accepts."""

    KIND: ClassVar[CauseKind] = CauseKind.STALE_ADDRESS
    name: str
    probed_address: str
    resolved_via: ResolvedVia  # where the stale copy came from
    fresh_addresses: tuple[str, ...]  # what DNS gives now
    answered: tuple[str, ...]  # the fresh addresses that accept on the port
    port: int


@dataclass(frozen=True, slots=True)
class AddressFamilyEvidence(_EvidenceFields):
    """The name's addresses of the other family accept on the same port."""

    KIND: ClassVar[CauseKind] = CauseKind.ADDRESS_FAMILY
    name: str
    probed_address: str
    family: int  # 4 or 6: the family of the probed address
    answered: tuple[str, ...]  # addresses of the other family that accept
    answered_family: int
    port: int


@dataclass(frozen=True, slots=True)
class BoundElsewhereEvidence(_EvidenceFields):
    """A listener on this machine owns the port on other addresses only."""

    KIND: ClassVar[CauseKind] = CauseKind.BOUND_ELSEWHERE
    probed_address: str
    port: int
    bound_addresses: tuple[str, ...]  # `address:port` of each listener
    processes: tuple[str, ...]  # their owners, as far as we can see them


@dataclass(frozen=True, slots=True)
class WrongPortEvidence(_EvidenceFields):
    """A related port on the same address accepts."""

    KIND: ClassVar[CauseKind] = CauseKind.WRONG_PORT
    expected_port: int
    answered_port: int  # the most specific related port that accepts
    relation: Relation
    also_answered: tuple[int, ...]  # the other related ports that accept


@dataclass(frozen=True, slots=True)
class ServiceDownEvidence(_EvidenceFields):
    """The host is alive and nothing related answers."""

    KIND: ClassVar[CauseKind] = CauseKind.SERVICE_DOWN
    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"last_open", "first_refused"})
    address: str | None
    port: int
    alive_ports: tuple[int, ...]  # other ports of the address open in this run
    local: bool  # the address is this machine's
    refusal: Reason
    last_open: str | None = None  # ISO 8601 UTC: the last time the endpoint was open
    first_refused: str | None = None  # ISO 8601 UTC: when the current refusals began


@dataclass(frozen=True, slots=True)
class WrongHostEvidence(_EvidenceFields):
    """Nothing on the address ever accepted on any port tried."""

    KIND: ClassVar[CauseKind] = CauseKind.WRONG_HOST
    address: str | None
    ports_probed: tuple[int, ...]
    refusal: Reason


@dataclass(frozen=True, slots=True)
class UnknownEvidence(_EvidenceFields):
    """No rule fits: what was tried."""

    KIND: ClassVar[CauseKind] = CauseKind.UNKNOWN
    tried: tuple[str, ...]
    budget_exhausted: bool
    fresh_dns_failure: str | None


@dataclass(frozen=True, slots=True)
class FilteredEvidence(_EvidenceFields):
    """Who stopped a filtered endpoint, as far as the ICMP sender tells."""

    KIND: ClassVar[CauseKind] = CauseKind.FILTERED
    reason: Reason
    offender: str | None  # the ICMP sender's address; None when nothing answered
    who: str  # WHO_* in core/diagnose.py: target, router, this machine, unknown


CauseEvidence = (
    StaleAddressEvidence
    | AddressFamilyEvidence
    | BoundElsewhereEvidence
    | WrongPortEvidence
    | ServiceDownEvidence
    | WrongHostEvidence
    | UnknownEvidence
    | FilteredEvidence
)

EVIDENCE_TYPES: Mapping[CauseKind, type[CauseEvidence]] = MappingProxyType(
    {
        evidence_type.KIND: evidence_type
        for evidence_type in (
            StaleAddressEvidence,
            AddressFamilyEvidence,
            BoundElsewhereEvidence,
            WrongPortEvidence,
            ServiceDownEvidence,
            WrongHostEvidence,
            UnknownEvidence,
            FilteredEvidence,
        )
    }
)
"""The evidence record of each kind."""


@dataclass(frozen=True, slots=True)
class Cause:
    """Why an endpoint that should be reachable is not (filled by the diagnosis)."""

    confidence: float
    evidence: CauseEvidence
    advice: str

    @property
    def kind(self) -> CauseKind:
        return self.evidence.KIND


@fast_init  # built once per endpoint: see scanner/core/fastinit.py
@dataclass(frozen=True, slots=True)
class Result:
    """The final word on one endpoint at one address."""

    endpoint: Endpoint
    address: str | None
    resolved_via: ResolvedVia
    state: State
    reason: Reason
    rtt_ms: float | None
    ts: float  # seconds since the epoch, when the verdict was reached
    offender: str | None = None  # who sent the deciding ICMP error, if any
    message: str | None = None
    attempts: int = 1
    cause: Cause | None = None
    ok: bool = field(init=False, compare=False)  # the state meets the expectation

    def __post_init__(self) -> None:
        # Computed once: every output, the counters and the history all ask.
        object.__setattr__(self, "ok", state_meets_expectation(self.state, self.endpoint.expect))


_SCAN_FAILURES = frozenset({State.UNRESOLVED, State.ERROR})


def state_meets_expectation(state: State, expect: Expect | None) -> bool:
    """Does `state` satisfy `expect`? With no expectation, anything measured is fine.

    Unresolved names and scanner-side errors never satisfy anything: nothing was learned
    about the endpoint, and an unattended run must not call that success. An excluded
    endpoint was never probed either: fine for a sweep that expects nothing (a block's
    broadcast address), but an expectation it cannot have met is not met.
    """
    if state in _SCAN_FAILURES:
        return False
    if expect is None or expect is Expect.ANY:
        return True
    if state is State.EXCLUDED:
        return False
    if expect is Expect.OPEN:
        return state is State.OPEN
    if expect is Expect.REFUSED:
        return state is State.REFUSED
    if expect is Expect.FILTERED:
        return state in (State.FILTERED, State.OPEN_FILTERED)
    return state is not State.OPEN  # Expect.CLOSED
