"""Evidence for refusals: what the scan already knows, plus a bounded set of follow-ups.

A refusal alone says only "nothing accepted on that address and port". To say *why*, we
need to know whether the same address answers on a related port (a wrong or byte-swapped
port), whether DNS today gives another address that answers (a stale hosts entry or pin),
whether the name's other address family answers, whether a listener on this machine is
bound to another address, and whether the host answers at all. Most of that the main scan
already measured; `ScanIndex` keeps it. The rest costs follow-up probes, so they are
de-duplicated across endpoints (ten refusals on one host share one liveness check) and
capped per endpoint and per run: a fleet with thousands of refusals still finishes
promptly, and endpoints past the run budget are explained with what is known, saying so.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import anyio

from scanner.diagnose import (
    COMMON_PORTS,
    AddressCheck,
    Evidence,
    History,
    LocalListener,
    PortCheck,
    diagnose,
    related_ports,
)
from scanner.host_sockets import is_local, listeners, local_addresses
from scanner.model import (
    Endpoint,
    Expect,
    Proto,
    Reason,
    ResolvedVia,
    Result,
    State,
    Target,
)
from scanner.resolve import Resolver

ProbeKey = tuple[str, int, Proto]
Observation = tuple[State, Reason]
ProbeRunner = Callable[[Sequence[Target]], Awaitable[dict[ProbeKey, Observation]]]
HistoryLookup = Callable[[str, str, int, Proto], History | None]
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
    by_address: dict[str, dict[tuple[int, Proto], Observation]] = field(default_factory=dict)
    by_endpoint: dict[tuple[str, int, Proto], list[tuple[str, Observation]]] = field(
        default_factory=dict
    )
    size: int = 0

    def add(self, result: Result) -> None:
        if result.address is None or result.endpoint.expect is None or self.size >= self.limit:
            return
        endpoint = result.endpoint
        observation = (result.state, result.reason)
        self.record(result.address, endpoint.port, endpoint.proto, observation)
        if result.resolved_via is not ResolvedVia.LITERAL:
            key = (endpoint.host, endpoint.port, endpoint.proto)
            self.by_endpoint.setdefault(key, []).append((result.address, observation))

    def record(self, address: str, port: int, proto: Proto, observation: Observation) -> None:
        ports = self.by_address.setdefault(address, {})
        if (port, proto) not in ports:
            self.size += 1
        ports[(port, proto)] = observation

    def observed(self, address: str, port: int, proto: Proto) -> Observation | None:
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

    def other_addresses(self, endpoint: Endpoint, address: str) -> list[tuple[str, Observation]]:
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


class EvidenceGatherer:
    """Explains refused endpoints: plans follow-ups, runs them, and asks `diagnose`."""

    def __init__(
        self,
        index: ScanIndex,
        resolver: Resolver,
        run_probes: ProbeRunner,
        budget: DiagnosisBudget,
        families: frozenset[int],
        history: HistoryLookup | None = None,
    ) -> None:
        self._index = index
        self._resolver = resolver
        self._run_probes = run_probes
        self._budget = budget
        self._families = families
        self._history = history
        self._fresh: dict[str, tuple[tuple[str, ...] | None, str | None]] = {}
        self._local_addresses = local_addresses()
        self._listeners: dict[tuple[int, Proto], tuple[LocalListener, ...]] = {}
        self.follow_up_probes = 0

    async def explain(self, refused: Sequence[Result]) -> list[Result]:
        """The same results, each with its cause."""
        await self._fresh_dns_for(refused)
        plan = FollowUpPlan(self._budget)
        cut_short: list[bool] = []
        for result in refused:
            self._plan_for(result, plan)
            cut_short.append(plan.exhausted)
        self.follow_up_probes += len(plan.targets)
        if plan.targets:
            for key, observation in (await self._run_probes(list(plan.targets.values()))).items():
                self._index.record(*key, observation)
        return [
            replace(result, cause=diagnose(self.evidence_for(result, budget_exhausted=cut)))
            for result, cut in zip(refused, cut_short, strict=True)
        ]

    # ------------------------------------------------------------------ planning

    async def _fresh_dns_for(self, refused: Iterable[Result]) -> None:
        names = {
            result.endpoint.host
            for result in refused
            if result.resolved_via in FRESH_ADDRESS_SOURCES
        }

        async def look_up(name: str) -> None:
            resolution = await self._resolver.fresh_dns(name)
            if resolution.addresses:
                self._fresh[name] = (tuple(item.address for item in resolution.addresses), None)
            else:
                self._fresh[name] = (None, resolution.message or str(resolution.failure))

        async with anyio.create_task_group() as group:
            for name in sorted(names):
                group.start_soon(look_up, name)

    def _plan_for(self, result: Result, plan: FollowUpPlan) -> None:
        assert result.address is not None
        address = result.address
        endpoint = result.endpoint
        allowance = self._budget.per_endpoint

        def probe(candidate: str, port: int) -> bool:
            nonlocal allowance
            if self._index.observed(candidate, port, endpoint.proto) is not None:
                return True
            if allowance <= 0:
                return False
            allowance -= 1
            return plan.want(follow_up_target(result, candidate, port))

        fresh, _failure = self._fresh.get(endpoint.host, (None, None))
        for candidate in fresh or ():
            if candidate != address and family_of(candidate) in self._families:
                probe(candidate, endpoint.port)
        for port, _relation in related_ports(endpoint.port, endpoint.service):
            if not probe(address, port):
                break
        if endpoint.proto is Proto.TCP and not self._index.open_tcp_ports(address):
            # Liveness: shared by every refusal on this address, so only the run's budget.
            unknown = [
                port
                for port in COMMON_PORTS
                if self._index.observed(address, port, Proto.TCP) is None
            ]
            for port in unknown:
                if not plan.want(follow_up_target(result, address, port)):
                    break

    # ------------------------------------------------------------------ evidence

    def evidence_for(self, result: Result, *, budget_exhausted: bool) -> Evidence:
        assert result.address is not None
        address = result.address
        endpoint = result.endpoint
        index = self._index
        is_name = result.resolved_via is not ResolvedVia.LITERAL
        fresh, failure = self._fresh.get(endpoint.host, (None, None))
        fresh_checks = tuple(
            AddressCheck(candidate, family_of(candidate), *observation)
            for candidate in fresh or ()
            if candidate != address
            and (observation := index.observed(candidate, endpoint.port, endpoint.proto))
        )
        family = family_of(address)
        other_family = tuple(
            AddressCheck(other, family_of(other), *observation)
            for other, observation in index.other_addresses(endpoint, address)
            if family_of(other) != family
        )
        port_checks = tuple(
            PortCheck(port, relation, *observation)
            for port, relation in related_ports(endpoint.port, endpoint.service)
            if (observation := index.observed(address, port, endpoint.proto))
        )
        local = is_local(address, self._local_addresses)
        return Evidence(
            result=result,
            name=endpoint.host if is_name else None,
            fresh_dns=fresh,
            fresh_dns_failure=failure,
            fresh_address_checks=fresh_checks,
            other_family_checks=other_family,
            related_port_checks=port_checks,
            alive_ports=index.open_tcp_ports(address),
            probed_ports=index.probed_tcp_ports(address),
            is_local_address=local,
            local_listeners=self._local_listeners(endpoint.port, endpoint.proto) if local else (),
            history=None
            if self._history is None
            else self._history(endpoint.host, address, endpoint.port, endpoint.proto),
            budget_exhausted=budget_exhausted,
        )

    def _local_listeners(self, port: int, proto: Proto) -> tuple[LocalListener, ...]:
        key = (port, proto)
        if key not in self._listeners:
            self._listeners[key] = listeners(port, proto)
        return self._listeners[key]
