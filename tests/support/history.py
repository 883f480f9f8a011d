"""Builders for the history tests: results with just the fields a test cares about, and
whole runs stored in one call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from scanner.core.model import (
    Cause,
    CauseEvidence,
    CauseKind,
    Endpoint,
    Expect,
    Proto,
    Reason,
    ResolvedVia,
    Result,
    ServiceDownEvidence,
    State,
)
from scanner.core.sinks import RunInfo, RunSummary
from scanner.history.store import HistoryStore
from tests.support.causes import SAMPLE_EVIDENCE
from tests.support.summaries import summarize

DEFAULT_REASON = {
    State.OPEN: Reason.SYN_ACK,
    State.REFUSED: Reason.CONN_REFUSED,
    State.FILTERED: Reason.NO_RESPONSE,
    State.OPEN_FILTERED: Reason.NO_RESPONSE,
    State.UNRESOLVED: Reason.NXDOMAIN,
    State.ERROR: Reason.LOCAL_ERROR,
}

VANTAGE = "site-a"
"""Where the runs `store_run` stores probed from."""


def make_result(
    host: str = "db1.example",
    port: int = 5432,
    state: State = State.OPEN,
    *,
    address: str | None = "10.0.0.5",
    proto: Proto = Proto.TCP,
    reason: Reason | None = None,
    cause_kind: str | None = None,
    ts: float = 1_000.0,
    labels: tuple[tuple[str, str], ...] = (("env", "prod"),),
    rtt_ms: float | None = 0.4,
) -> Result:
    cause = None
    if cause_kind is not None:
        evidence: CauseEvidence = SAMPLE_EVIDENCE[CauseKind(cause_kind)]
        if isinstance(evidence, ServiceDownEvidence):
            evidence = replace(evidence, address=address, port=port, alive_ports=(22, 80))
        cause = Cause(confidence=0.9, evidence=evidence, advice="start it")
    return Result(
        endpoint=Endpoint(host=host, port=port, proto=proto, expect=Expect.OPEN, labels=labels),
        address=address,
        resolved_via=ResolvedVia.DNS if address is not None else ResolvedVia.NONE,
        state=state,
        reason=reason or DEFAULT_REASON[state],
        rtt_ms=rtt_ms if state is State.OPEN else None,
        ts=ts,
        cause=cause,
    )


def summary_of(
    results: Sequence[Result], finished: float, *, interrupted: bool = False
) -> RunSummary:
    return summarize(results, finished=finished, interrupted=interrupted)


def store_run(
    store: HistoryStore,
    results: Sequence[Result],
    started: float,
    *,
    interrupted: bool = False,
    finish: bool = True,
) -> int:
    """Store a run whose results all carry `started` as their time unless they say
    otherwise (ts=None is not allowed, so pass ts explicitly for time-sensitive tests)."""
    run_id = store.begin_run(
        RunInfo(
            started=started,
            command="reachscan scan fleet.yaml",
            version="0.1.0",
            vantage=VANTAGE,
        )
    )
    store.add_results(run_id, results)
    if finish:
        store.finish_run(run_id, summary_of(results, started + 5, interrupted=interrupted))
    return run_id
