"""The values the run history speaks: stored runs, what an endpoint was, and its identity.

Pure: no database, no sockets. The store builds these from rows; the diff, the timeline
and the changes-only filter compare them, so they can be tested without a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from scanner.core.model import Proto, Reason, Result, State

EndpointKey = tuple[str, str | None, int, str]
"""An endpoint's identity across runs: host (as the inventory wrote it), address (None
when the name did not resolve), port, protocol ("tcp"/"udp").

The address is part of it because a name with two addresses is two things that can each
break; a name that moves to a new address therefore shows as one endpoint vanishing and
another appearing, which is what happened on the wire."""


class RunStatus(StrEnum):
    """How a stored run ended. `running` is also what a run killed outright leaves behind,
    until the next run takes the lock: nothing can still be running then, so it closes
    such runs as `abandoned` (partial, like `interrupted`; their results are kept)."""

    RUNNING = "running"
    COMPLETE = "complete"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    ABANDONED = "abandoned"


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One stored run: the header and footer a sink saw, and how it ended."""

    id: int
    started: float  # seconds since the epoch
    finished: float | None  # None while running (or if the process died)
    status: RunStatus
    command: str
    version: str
    counts: Mapping[str, int]  # state value -> results; empty until the run finishes
    total: int | None
    not_ok: int | None
    inventory_errors: int | None
    message: str | None  # why the run failed, for `failed` runs
    vantage: str = ""  # where it probed from; '' for runs stored before reachscan said


@dataclass(frozen=True, slots=True)
class Observation:
    """What one run saw of one endpoint: the parts a change is judged on."""

    state: State
    reason: Reason
    cause_kind: str | None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One stored result of one endpoint, with the run it belongs to."""

    run_id: int
    run_started: float
    run_status: RunStatus
    host: str
    address: str | None
    port: int
    proto: Proto
    observation: Observation
    rtt_ms: float | None
    ts: float  # when the verdict was reached, seconds since the epoch

    @property
    def key(self) -> EndpointKey:
        return (self.host, self.address, self.port, self.proto.value)


def endpoint_key(result: Result) -> EndpointKey:
    """The identity a result is stored and compared under."""
    endpoint = result.endpoint
    return (endpoint.host, result.address, endpoint.port, endpoint.proto.value)


def observation_of(result: Result) -> Observation:
    return Observation(
        state=result.state,
        reason=result.reason,
        cause_kind=None if result.cause is None else result.cause.kind,
    )


def endpoint_label(key: EndpointKey) -> str:
    """How reports name an endpoint: `host (address) port/proto`, the address only when
    it adds something (a name that resolved)."""
    host, address, port, proto = key
    shown = host if address is None or address == host else f"{host} ({address})"
    return f"{shown} {port}/{proto}"


def sort_key(key: EndpointKey) -> tuple[str, str, int, str]:
    """Orders endpoints for reports: by host, address, port, protocol (None sorts first)."""
    host, address, port, proto = key
    return (host, address or "", port, proto)
