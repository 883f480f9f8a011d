"""From inventory entries to results: resolution feeding the engine, with nothing dropped.

Three stages run concurrently under one task group, joined by bounded streams so memory
follows what is in flight, not the size of the inventory:

    inventory items --(literals, pins)-----------------------> targets --> engine --> results
                    \\--(names)--> resolver workers --(addresses)--/
                                                \\--(no address)--> `unresolved` results

Every endpoint leaves as at least one result: one per address it resolved to, or one
`unresolved` result saying why not. An address the scope forbids (--exclude, multicast,
broadcast) is not probed but still leaves as an `excluded` result.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from scanner.core.addresses import literal_address
from scanner.core.model import Endpoint, Proto, Reason, ResolvedVia, Result, State, Target
from scanner.core.scope import Scope
from scanner.engine.engine import Engine, EngineConfig, EngineStats, Job
from scanner.net.base import Connector
from scanner.net.routes import LinkPaths
from scanner.resolve import Resolver

RESOLVER_WORKERS = 32
STREAM_BUFFER = 16  # batches of targets
BATCH_SIZE = 256
BATCH_DELAY = 0.05  # seconds a partial batch may wait for more entries (slow stdin)


@dataclass(frozen=True, slots=True)
class ScanSettings:
    engine: EngineConfig
    families: frozenset[int] = frozenset({4, 6})
    scope: Scope = field(default_factory=Scope)


_EXCLUDED_MESSAGES = {
    Reason.EXCLUDE_LIST: "not probed: the address is in --exclude / --exclude-file",
    Reason.SPECIAL_ADDRESS: "not probed: a multicast, broadcast or unspecified address "
    "(--include-special to probe it)",
}


@lru_cache(maxsize=4096)
def parse_literal(host: str) -> tuple[str, int] | None:
    """(canonical address, family) for an IP literal (brackets and an IPv6 zone allowed,
    as `scanner.core.addresses` rules), else None; cached, as hosts repeat across ports."""
    return literal_address(host)


class Pipeline:
    """Wires the stages; results and warnings leave through callbacks."""

    def __init__(
        self,
        settings: ScanSettings,
        resolver: Resolver,
        connectors: dict[Proto, Connector[Job]],
        on_result: Callable[[Result], None],
        on_warning: Callable[[str], None],
        wall_clock: Callable[[], float],
    ) -> None:
        """One pipeline per process: a scan in shards runs one in each shard process
        (scanner/run/shard.py)."""
        self.settings = settings
        self._resolver = resolver
        self._on_result = on_result
        self._wall_clock = wall_clock
        self.engine = Engine(
            settings.engine, connectors, on_result, on_warning, paths=LinkPaths.load()
        )
        self.excluded = 0  # endpoint addresses reported `excluded` (--exclude, special)

    async def run(self, endpoints: Iterable[Endpoint]) -> EngineStats:
        target_send, target_receive = anyio.create_memory_object_stream[list[Target]](STREAM_BUFFER)
        name_send, name_receive = anyio.create_memory_object_stream[Endpoint](BATCH_SIZE)
        async with anyio.create_task_group() as group:

            async def probe_then_stop() -> None:
                await self.engine.run(target_receive)
                if self.engine.stats.out_of_time:
                    group.cancel_scope.cancel()  # --max-time: stop reading the inventory

            group.start_soon(probe_then_stop)
            try:
                async with target_send:
                    for _ in range(RESOLVER_WORKERS):
                        group.start_soon(
                            self._resolve_names, name_receive.clone(), target_send.clone()
                        )
                    name_receive.close()
                    await self._route(endpoints, target_send, name_send)
            except anyio.BrokenResourceError:
                pass  # the engine stopped taking targets (--max-time); it says so itself
        return self.engine.stats

    async def _route(
        self,
        endpoints: Iterable[Endpoint],
        targets: ObjectSendStream[list[Target]],
        names: ObjectSendStream[Endpoint],
    ) -> None:
        """Literals and pinned addresses go straight to the engine; names to the resolvers."""
        families = self.settings.families
        batch: list[Target] = []
        batch_started = 0.0
        async with names:
            for endpoint in endpoints:
                if batch and (
                    len(batch) >= BATCH_SIZE or time.monotonic() - batch_started > BATCH_DELAY
                ):
                    await targets.send(batch)
                    batch = []
                if endpoint.pinned_address is not None:
                    literal, via = parse_literal(endpoint.pinned_address), ResolvedVia.PINNED
                else:
                    literal, via = parse_literal(endpoint.host), ResolvedVia.LITERAL
                if literal is None:
                    await names.send(endpoint)
                    continue
                address, family = literal
                if family not in families:
                    self._unresolved(
                        endpoint,
                        Reason.NO_ADDRESS,
                        f"{address} is an IPv{family} address and -{6 if family == 4 else 4} "
                        "restricts the scan to the other family",
                    )
                    continue
                refusal = self.settings.scope.refusal(address)
                if refusal is not None:
                    self._excluded(Target(endpoint, address, family, via), refusal)
                    continue
                if not batch:
                    batch_started = time.monotonic()
                batch.append(Target(endpoint, address, family, via))
            if batch:
                await targets.send(batch)

    async def _resolve_names(
        self, names: ObjectReceiveStream[Endpoint], targets: ObjectSendStream[list[Target]]
    ) -> None:
        with contextlib.suppress(anyio.BrokenResourceError):  # the engine stopped early
            await self._resolve_each(names, targets)

    async def _resolve_each(
        self, names: ObjectReceiveStream[Endpoint], targets: ObjectSendStream[list[Target]]
    ) -> None:
        async with names, targets:
            async for endpoint in names:
                resolution = await self._resolver.resolve(endpoint.host)
                if not resolution.addresses:
                    self._unresolved(
                        endpoint,
                        resolution.failure or Reason.RESOLVER_ERROR,
                        resolution.message,
                    )
                    continue
                allowed: list[Target] = []
                for resolved in resolution.addresses:
                    target = Target(endpoint, resolved.address, resolved.family, resolved.via)
                    refusal = self.settings.scope.refusal(resolved.address)
                    if refusal is None:
                        allowed.append(target)
                    else:
                        self._excluded(target, refusal)
                if allowed:
                    await targets.send(allowed)

    def _excluded(self, target: Target, reason: Reason) -> None:
        """A result for an address the scope forbids: it is reported (and judged against
        its expectation) like any other, never silently dropped."""
        self.excluded += 1
        self._on_result(
            Result(
                endpoint=target.endpoint,
                address=target.address,
                resolved_via=target.resolved_via,
                state=State.EXCLUDED,
                reason=reason,
                rtt_ms=None,
                ts=self._wall_clock(),
                message=_EXCLUDED_MESSAGES[reason],
                attempts=0,
            )
        )

    def _unresolved(self, endpoint: Endpoint, reason: Reason, message: str | None) -> None:
        self._on_result(
            Result(
                endpoint=endpoint,
                address=None,
                resolved_via=ResolvedVia.NONE,
                state=State.UNRESOLVED,
                reason=reason,
                rtt_ms=None,
                ts=self._wall_clock(),
                message=message,
                attempts=0,
            )
        )
