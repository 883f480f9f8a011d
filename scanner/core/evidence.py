"""The evidence the diagnosis reads, as values: what the main scan measured (`ScanIndex`),
the follow-up probes planned within their budget (`FollowUpPlan`), and the shapes of
probe results and history lookups. The gathering itself, which probes, resolves and
reads this machine's sockets, is scanner/run/followups.py.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from scanner.core.diagnose import PastObservations
from scanner.core.model import (
    Endpoint,
    Expect,
    Proto,
    Reason,
    ResolvedVia,
    Result,
    State,
    Target,
)

ProbeKey = tuple[str, int, Proto]
ProbeAnswer = tuple[State, Reason]
"""What one probe of an address and port answered: its state and the reason for it."""
ProbeRunner = Callable[[Sequence[Target]], Awaitable[dict[ProbeKey, ProbeAnswer]]]
HistoryLookup = Callable[[str, str, int, Proto], PastObservations | None]
"""(host, address, port, proto) -> what earlier runs saw of that endpoint (None: the
history could not say, e.g. it failed during the diagnosis)."""

FRESH_ADDRESS_SOURCES = frozenset({ResolvedVia.HOSTS_FILE, ResolvedVia.PINNED})
"""Sources worth checking against a fresh DNS answer (a DNS answer is fresh already)."""


@dataclass(frozen=True, slots=True)
class DiagnosisBudget:
    """Follow-up probes allowed: per refused endpoint, and for the whole run."""

    per_endpoint: int = 16
    per_run: int = 20_000


def needs_explanation(result: Result) -> bool:
    """Expected open and refused: the case the cause analysis is for."""
    return result.state is State.REFUSED and result.endpoint.expect is Expect.OPEN


@dataclass(slots=True)
class ScanIndex:
    """What the main scan measured, by address and by endpoint, for the diagnosis.

    Only results that carry an expectation are kept (ad hoc sweeps are not diagnosed),
    and only up to `limit` observations, so a huge sweep cannot grow memory without end;
    past the limit the diagnosis simply probes more.
    """

    limit: int = 1_000_000
    by_address: dict[str, dict[tuple[int, Proto], ProbeAnswer]] = field(default_factory=dict)
    by_endpoint: dict[tuple[str, int, Proto], list[tuple[str, ProbeAnswer]]] = field(
        default_factory=dict
    )
    size: int = 0

    def add(self, result: Result) -> None:
        if result.address is None or result.endpoint.expect is None or self.size >= self.limit:
            return
        endpoint = result.endpoint
        self.add_observation(
            result.address,
            endpoint.port,
            endpoint.proto,
            (result.state, result.reason),
            None if result.resolved_via is ResolvedVia.LITERAL else endpoint.host,
        )

    def add_observation(
        self, address: str, port: int, proto: Proto, observation: ProbeAnswer, name: str | None
    ) -> None:
        """What `add` keeps of one result (`name`: the host as written, when the address
        came from resolving it), for results measured in another process."""
        if self.size >= self.limit:
            return
        self.record(address, port, proto, observation)
        if name is not None:
            self.by_endpoint.setdefault((name, port, proto), []).append((address, observation))

    def record(self, address: str, port: int, proto: Proto, observation: ProbeAnswer) -> None:
        ports = self.by_address.setdefault(address, {})
        if (port, proto) not in ports:
            self.size += 1
        ports[(port, proto)] = observation

    def observed(self, address: str, port: int, proto: Proto) -> ProbeAnswer | None:
        ports = self.by_address.get(address)
        return None if ports is None else ports.get((port, proto))

    def open_tcp_ports(self, address: str) -> tuple[int, ...]:
        ports = self.by_address.get(address, {})
        return tuple(
            sorted(
                port
                for (port, proto), (state, _) in ports.items()
                if proto is Proto.TCP and state is State.OPEN
            )
        )

    def probed_tcp_ports(self, address: str) -> tuple[int, ...]:
        ports = self.by_address.get(address, {})
        return tuple(sorted(port for port, proto in ports if proto is Proto.TCP))

    def other_addresses(self, endpoint: Endpoint, address: str) -> list[tuple[str, ProbeAnswer]]:
        key = (endpoint.host, endpoint.port, endpoint.proto)
        return [entry for entry in self.by_endpoint.get(key, []) if entry[0] != address]


@dataclass(slots=True)
class FollowUpPlan:
    """Probes to send, de-duplicated, within the budget."""

    budget: DiagnosisBudget
    targets: dict[ProbeKey, Target] = field(default_factory=dict)
    exhausted: bool = False

    def want(self, target: Target) -> bool:
        """Plan one probe; False when the run's budget is spent."""
        key = (target.address, target.endpoint.port, target.endpoint.proto)
        if key in self.targets:
            return True
        if len(self.targets) >= self.budget.per_run:
            self.exhausted = True
            return False
        self.targets[key] = target
        return True


def family_of(address: str) -> int:
    return ipaddress.ip_address(address).version


def follow_up_target(result: Result, address: str, port: int) -> Target:
    """A probe for evidence: no expectation, never reported as a result of its own."""
    endpoint = Endpoint(result.endpoint.host, port, result.endpoint.proto, expect=None)
    return Target(endpoint, address, family_of(address), ResolvedVia.LITERAL)
