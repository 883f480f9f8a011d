"""The grouped report's records: a `Report` of refusal groups, filtered groups, hosts and
disagreements, frozen values built by grouping.py and rendered by text.py and as_json.py;
and the wording they share (collapsed port lists, the advice said once).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from scanner.core.diagnose import (
    PROHIBITED_REASONS,
    WHO_SELF,
    WHO_TARGET,
)
from scanner.core.model import CauseKind, Proto, Reason, ResolvedVia, State

SCHEMA = "reachscan-report/1"
UNDIAGNOSED = "undiagnosed"
"""The group of refusals that carry no cause (the diagnosis did not run for them)."""

LIST_LIMIT = 8
"""Evidence lines list at most this many ports or addresses, then say how many more."""

GROUP_EXPLANATIONS: Mapping[CauseKind | str, str] = MappingProxyType(
    {
        CauseKind.STALE_ADDRESS: (
            "The address probed came from the hosts file, a pin or an old DNS answer; DNS now "
            "gives another address, and that one accepts."
        ),
        CauseKind.ADDRESS_FAMILY: (
            "The service listens on one address family only; clients trying the other one "
            "are refused."
        ),
        CauseKind.BOUND_ELSEWHERE: (
            "On this machine the port is bound to another address, so the probed address refuses."
        ),
        CauseKind.WRONG_PORT: (
            "A related port accepts instead: the service or the inventory is off."
        ),
        CauseKind.SERVICE_DOWN: (
            "The host is up but nothing listens on the port: the service is stopped, crashed "
            "or was never started."
        ),
        CauseKind.WRONG_HOST: (
            "Nothing on the address accepts on any port tried: the inventory may point at "
            "the wrong machine."
        ),
        CauseKind.UNKNOWN: "The follow-up checks could not tell why.",
        UNDIAGNOSED: "No diagnosis ran for these refusals.",
    }
)
"""The generic sentence a refusal group opens with, by cause kind."""


@dataclass(frozen=True, slots=True)
class EndpointEntry:
    """One endpoint in a group: where, how sure, what shows it, what to do."""

    port: int
    proto: Proto
    confidence: float | None
    evidence: tuple[tuple[str, object], ...]
    summary: str  # the evidence as one readable line
    advice: str | None


@dataclass(frozen=True, slots=True)
class HostEntry:
    """The endpoints of one (host, address) pair inside a group."""

    host: str
    address: str | None
    resolved_via: ResolvedVia
    endpoints: tuple[EndpointEntry, ...]

    @property
    def ports(self) -> str:
        """The ports, collapsed into ranges: `22/tcp, 8000-8003/tcp, 53/udp`."""
        return collapse_ports((entry.port, entry.proto) for entry in self.endpoints)

    @property
    def common_advice(self) -> str | None:
        return common_advice(entry.advice for entry in self.endpoints)


@dataclass(frozen=True, slots=True)
class RefusalGroup:
    """Refused endpoints that share a cause kind."""

    kind: CauseKind | str  # a CauseKind, or UNDIAGNOSED
    explanation: str | None
    hosts: tuple[HostEntry, ...]

    @property
    def count(self) -> int:
        return sum(len(host.endpoints) for host in self.hosts)

    @property
    def confidence_range(self) -> tuple[float, float] | None:
        values = [
            entry.confidence
            for host in self.hosts
            for entry in host.endpoints
            if entry.confidence is not None
        ]
        return (min(values), max(values)) if values else None

    @property
    def common_advice(self) -> str | None:
        return common_advice(entry.advice for host in self.hosts for entry in host.endpoints)


@dataclass(frozen=True, slots=True)
class FilteredGroup:
    """Filtered endpoints stopped in the same way by the same sender."""

    reason: Reason
    offender: str | None
    who: str
    hosts: tuple[HostEntry, ...]

    @property
    def count(self) -> int:
        return sum(len(host.endpoints) for host in self.hosts)

    @property
    def title(self) -> str:
        return filtered_title(self.reason, self.offender, self.who)

    @property
    def common_advice(self) -> str | None:
        return common_advice(entry.advice for host in self.hosts for entry in host.endpoints)


@dataclass(frozen=True, slots=True)
class Disagreement:
    """One (name, port, protocol) whose addresses answered differently."""

    host: str
    port: int
    proto: Proto
    addresses: tuple[str, ...]  # every address of the name seen in the run
    not_as_expected: tuple[tuple[State, tuple[str, ...]], ...]  # state -> its addresses
    as_expected: tuple[str, ...]

    @property
    def summary(self) -> str:
        """`db.example.com:5432/tcp: 1 of 3 addresses refuses (10.0.0.3)`."""
        total = len(self.addresses)
        parts = []
        for index, (state, addresses) in enumerate(self.not_as_expected):
            singular, plural = _STATE_VERBS.get(state, ("is " + state, "are " + state))
            verb = singular if len(addresses) == 1 else plural
            counted = f"{len(addresses)} of {total} addresses" if index == 0 else len(addresses)
            parts.append(f"{counted} {verb} ({limited(addresses)})")
        return f"{self.host}:{self.port}/{self.proto.value}: " + ", ".join(parts)


_STATE_VERBS: Mapping[State, tuple[str, str]] = MappingProxyType(
    {
        State.REFUSED: ("refuses", "refuse"),
        State.FILTERED: ("is filtered", "are filtered"),
        State.OPEN_FILTERED: ("does not answer", "do not answer"),
        State.OPEN: ("is open", "are open"),
        State.ERROR: ("could not be probed", "could not be probed"),
        State.EXCLUDED: ("is excluded (not probed)", "are excluded (not probed)"),
    }
)


@dataclass(frozen=True, slots=True)
class Report:
    """Everything the grouped diagnosis has to say about a run."""

    refusals: tuple[RefusalGroup, ...]
    filtered: tuple[FilteredGroup, ...]
    disagreements: tuple[Disagreement, ...]

    @property
    def empty(self) -> bool:
        return not (self.refusals or self.filtered or self.disagreements)


# --- building -----------------------------------------------------------------------------


def filtered_title(reason: Reason, offender: str | None, who: str) -> str:
    """How a filtered group is headed: `rejected by 10.1.0.1 (admin-prohibited)`."""
    if offender is None:
        if reason is Reason.NO_RESPONSE:
            return "no response (dropped silently, or a UDP service that did not answer)"
        return reason.value
    sender = offender
    if who == WHO_TARGET:
        sender = f"{offender} (the target itself)"
    elif who == WHO_SELF:
        sender = f"this machine ({offender})"
    if reason in PROHIBITED_REASONS:
        return f"rejected by {sender} ({reason.value})"
    return f"{reason.value} from {sender}"


def common_advice(advice: Iterable[str | None]) -> str | None:
    """The one advice every entry shares, or None when they differ."""
    distinct = set(advice)
    if len(distinct) == 1:
        return distinct.pop()
    return None


# --- evidence as one line -----------------------------------------------------------------


def limited(items: Sequence[str]) -> str:
    if len(items) <= LIST_LIMIT:
        return ", ".join(items)
    return ", ".join(items[:LIST_LIMIT]) + f" and {len(items) - LIST_LIMIT} more"


def collapse_ports(ports: Iterable[tuple[int, Proto]]) -> str:
    """`22/tcp, 8000-8003/tcp, 53/udp`: sorted per protocol, runs of three or more joined."""
    by_proto: dict[Proto, set[int]] = {}
    for port, proto in ports:
        by_proto.setdefault(proto, set()).add(port)
    parts: list[str] = []
    for proto in Proto:
        numbers = sorted(by_proto.get(proto, ()))
        for first, last in _runs(numbers):
            if last - first >= 2:
                parts.append(f"{first}-{last}/{proto.value}")
            else:
                parts.extend(f"{port}/{proto.value}" for port in range(first, last + 1))
    return ", ".join(parts)


def _runs(numbers: Sequence[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], number)
        else:
            runs.append((number, number))
    return runs


# --- text ---------------------------------------------------------------------------------
