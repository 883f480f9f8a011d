"""A connector that answers from a script, on the loop's clock: the engine's logic without
the kernel.

Each port answers with the outcomes its script lists, one per attempt (the last repeats),
after `delay` seconds of loop time; `None` is silence, which the engine must expire itself.
On the virtual-time loop (tests/support/virtual_time.py) every answer comes at an exact
time, so scheduling tests can assert times rather than bounds. The kernel's side is tested
against real sockets in tests/integration.
"""

from __future__ import annotations

import asyncio
import errno
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from scanner.core.model import (
    Endpoint,
    Event,
    IcmpOrigin,
    IcmpReport,
    Offender,
    Outcome,
    Proto,
    ResolvedVia,
    Target,
)
from scanner.engine.engine import Job

RST = Outcome(Event.ERROR, errno=errno.ECONNREFUSED, rtt=0.001)
OPEN = Outcome(Event.CONNECTED, rtt=0.001)
SILENT = None  # never answers: the engine must expire it
EMFILE = Outcome(Event.ERROR, errno=errno.EMFILE, immediate=True, message="EMFILE")
SELF = Outcome(Event.SELF_CONNECT)
ICMP_CLOSED = Outcome(
    Event.ERROR,
    errno=errno.ECONNREFUSED,
    icmp=IcmpReport(IcmpOrigin.ICMP4, 3, 3, errno.ECONNREFUSED, "10.0.0.1", Offender.TARGET),
)


@dataclass
class FakeProbe:
    connector: FakeConnector
    timer: asyncio.TimerHandle | None = None

    def expire(self) -> Outcome:
        self._stop()
        return Outcome(Event.SILENCE)

    def cancel(self) -> None:
        self.connector.cancelled += 1
        self._stop()

    def _stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.connector.inflight -= 1


@dataclass
class FakeConnector:
    """Answers each port from a script; a missing entry means `default`."""

    script: dict[int, Sequence[Outcome | None]] = field(default_factory=dict)
    default: Outcome | None = RST
    delay: float = 0.002
    inflight: int = 0
    max_inflight: int = 0
    max_per_host: Counter[str] = field(default_factory=Counter)
    per_host: Counter[str] = field(default_factory=Counter)
    starts: list[tuple[float, Target]] = field(default_factory=list)
    attempts: Counter[tuple[str, int]] = field(default_factory=Counter)
    cancelled: int = 0

    def start(
        self, target: Target, token: Job, on_outcome: Callable[[Job, Outcome], None]
    ) -> FakeProbe | Outcome:
        loop = asyncio.get_running_loop()
        key = (target.address, target.endpoint.port)
        attempt = self.attempts[key]
        self.attempts[key] += 1
        self.starts.append((loop.time(), target))
        plan = self.script.get(target.endpoint.port)
        outcome = self.default if plan is None else plan[min(attempt, len(plan) - 1)]
        if outcome is not None and outcome.immediate:
            return outcome
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        self.per_host[target.address] += 1
        self.max_per_host[target.address] = max(
            self.max_per_host[target.address], self.per_host[target.address]
        )
        probe = FakeProbe(self)
        if outcome is not None:

            def finish() -> None:
                self.inflight -= 1
                self.per_host[target.address] -= 1
                on_outcome(token, outcome)

            probe.timer = loop.call_later(self.delay, finish)
        original_stop = probe._stop

        def stop() -> None:
            self.per_host[target.address] -= 1
            original_stop()

        probe._stop = stop  # type: ignore[method-assign]
        return probe


def make_targets(
    addresses: Sequence[str], ports: Sequence[int], proto: Proto = Proto.TCP
) -> list[Target]:
    return [
        Target(Endpoint(address, port, proto, None), address, 4, ResolvedVia.LITERAL)
        for address in addresses
        for port in ports
    ]
