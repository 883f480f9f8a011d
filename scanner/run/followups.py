"""Follow-up probes for refusals: what the scan already knows, plus a bounded set of follow-ups.

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

from collections.abc import Iterable, Sequence
from dataclasses import replace

import anyio

from scanner.core.diagnose import (
    COMMON_PORTS,
    AddressCheck,
    Evidence,
    LocalListener,
    PortCheck,
    diagnose,
    related_ports,
)
from scanner.core.evidence import (
    FRESH_ADDRESS_SOURCES,
    DiagnosisBudget,
    FollowUpPlan,
    HistoryLookup,
    ProbeRunner,
    ScanIndex,
    family_of,
    follow_up_target,
)
from scanner.core.model import (
    Proto,
    ResolvedVia,
    Result,
)
from scanner.net.host_sockets import is_local, listeners, local_addresses
from scanner.resolve import Resolver


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
