"""What several vantage points saw of the same endpoints: which endpoints are
path-dependent, with the evidence, and which fail by a quorum of vantages.

Reachability is relative to where the probe stands. An endpoint open from one site and
filtered from another is not "up" or "down": something on one path (a firewall, a route,
an ACL) treats the two sites differently, and the ICMP sender, when there is one, says
where. `reachscan compare` (files) and a distributed scan (`--vantages`) build a
`Comparison` and print it; `check --quorum K` counts an endpoint failed only when at least
K vantages see it not as expected, so one site's broken uplink pages no one.

An endpoint here is a host, the address probed, a port and a protocol: a name that
resolves differently at two sites gives two rows, each seen from its own vantages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from scanner.core.model import Expect, FilteredEvidence, Proto, Reason, Result, State

UNMEASURED = frozenset({State.ERROR, State.EXCLUDED})
"""States that say nothing about the path (reachscan's own failure, never probed): an
endpoint differing only by these is not path-dependent."""

_STRENGTH = MappingProxyType(
    {
        State.OPEN: 0,
        State.REFUSED: 1,
        State.OPEN_FILTERED: 2,
        State.FILTERED: 3,
        State.UNRESOLVED: 4,
    }
)
"""How far a probe got, best first: the vantage that got furthest is the reference the
others are explained against."""

EndpointKey = tuple[str, str | None, int, Proto]


@dataclass(frozen=True, slots=True)
class Sighting:
    """One vantage's word on one endpoint."""

    state: State
    reason: Reason
    ok: bool
    offender: str | None  # who sent the ICMP error that decided it, when known

    @classmethod
    def of(cls, result: Result) -> Sighting:
        offender = result.offender
        if offender is None and result.cause is not None:
            evidence = result.cause.evidence
            if isinstance(evidence, FilteredEvidence):
                offender = evidence.offender
        return cls(result.state, result.reason, result.ok, offender)

    def __str__(self) -> str:
        source = f" from {self.offender}" if self.offender else ""
        return f"{self.state} ({self.reason}{source})"


@dataclass(frozen=True, slots=True)
class EndpointView:
    """An endpoint and what each vantage saw of it (in the comparison's vantage order)."""

    host: str
    address: str | None
    port: int
    proto: Proto
    expect: Expect | None
    seen: Mapping[str, Sighting]

    @property
    def path_dependent(self) -> bool:
        """Do the vantages that measured it see different states?"""
        return len({s.state for s in self.seen.values() if s.state not in UNMEASURED}) > 1

    def failing(self) -> tuple[str, ...]:
        """The vantages that see it not as expected."""
        return tuple(vantage for vantage, sighting in self.seen.items() if not sighting.ok)

    def evidence(self) -> str | None:
        """For a path-dependent endpoint, each other vantage's state against the one that
        got furthest, and what lies between: "open from a, filtered from b
        (admin-prohibited from 10.1.0.1): a firewall or a route between b and the target"."""
        if not self.path_dependent:
            return None
        measured = {v: s for v, s in self.seen.items() if s.state not in UNMEASURED}
        best_vantage, best = min(measured.items(), key=lambda item: _STRENGTH[item[1].state])
        parts = [f"{best.state} from {best_vantage}"]
        for vantage, sighting in measured.items():
            if sighting.state is not best.state:
                between = _between(vantage, sighting, best)
                parts.append(f"{sighting.state} from {vantage} ({_how(sighting)}): {between}")
        return ", ".join(parts)


def _how(sighting: Sighting) -> str:
    return (
        f"{sighting.reason} from {sighting.offender}" if sighting.offender else str(sighting.reason)
    )


def _between(vantage: str, sighting: Sighting, best: Sighting) -> str:
    """What stands between `vantage` and the target, given what the best vantage saw."""
    state = sighting.state
    if state is State.UNRESOLVED:
        return (
            f"the name resolves differently at {vantage} (split-horizon DNS, or a stale resolver)"
        )
    if state is State.REFUSED and best.state is State.OPEN:
        return (
            f"the target, or a firewall on {vantage}'s path, resets {vantage}'s connections: "
            "a rule by source address"
        )
    if sighting.offender is not None:
        return f"a firewall or a route between {vantage} and the target"
    if sighting.reason is Reason.NO_RESPONSE:
        return f"a firewall or a route between {vantage} and the target drops the probes"
    if state in (State.FILTERED, State.OPEN_FILTERED):
        return f"a firewall or a route between {vantage} and the target rejects the probes"
    return f"something on the path from {vantage} differs"


@dataclass(slots=True)
class Comparison:
    """Endpoints as several vantages saw them, built result by result. Holds every
    endpoint's results (a row per endpoint is the answer; a quorum's verdict needs a
    failing vantage's result to stand for the endpoint)."""

    vantages: list[str] = field(default_factory=list)
    _rows: dict[EndpointKey, dict[str, Result]] = field(default_factory=dict)

    def add(self, result: Result, vantage: str) -> None:
        """What `vantage` saw of an endpoint (its first word on it is kept)."""
        if vantage not in self.vantages:
            self.vantages.append(vantage)
        endpoint = result.endpoint
        key = (endpoint.host, result.address, endpoint.port, endpoint.proto)
        self._rows.setdefault(key, {}).setdefault(vantage, result)

    def endpoints(self) -> list[EndpointView]:
        """Every endpoint, sorted by host, address, protocol and port; `seen` in the
        order the vantages came."""
        order = {vantage: place for place, vantage in enumerate(self.vantages)}
        views = []
        for (host, address, port, proto), results in self._rows.items():
            ordered = sorted(results.items(), key=lambda item: order[item[0]])
            expect = next(iter(results.values())).endpoint.expect
            seen = {vantage: Sighting.of(result) for vantage, result in ordered}
            views.append(EndpointView(host, address, port, proto, expect, MappingProxyType(seen)))
        views.sort(key=lambda view: (view.host, view.address or "", view.proto, view.port))
        return views

    def result_of(self, view: EndpointView, failing: bool) -> Result:
        """One vantage's result standing for the endpoint: a failing vantage's when the
        endpoint counts as failed, else one of a vantage that sees it as expected."""
        results = self._rows[(view.host, view.address, view.port, view.proto)]
        wanted = [result for result in results.values() if result.ok is not failing]
        return (wanted or list(results.values()))[0]


def failed_by_quorum(view: EndpointView, quorum: int) -> bool:
    """Is the endpoint failed, counting only when at least `quorum` vantages see it not as
    expected? (One vantage alone failing is that vantage's path, not the endpoint.)"""
    return len(view.failing()) >= quorum


@dataclass(frozen=True, slots=True)
class ComparisonSummary:
    endpoints: int
    path_dependent: int
    vantages: tuple[str, ...]
    unseen: Mapping[str, int]  # per vantage: endpoints it has no word on


def summarize(comparison: Comparison, views: Iterable[EndpointView]) -> ComparisonSummary:
    total = dependent = 0
    unseen = dict.fromkeys(comparison.vantages, 0)
    for view in views:
        total += 1
        dependent += view.path_dependent
        for vantage in comparison.vantages:
            if vantage not in view.seen:
                unseen[vantage] += 1
    return ComparisonSummary(total, dependent, tuple(comparison.vantages), MappingProxyType(unseen))
