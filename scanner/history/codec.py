"""The history's row codec: results into the rows the `results` table stores, and rows
back into records (`Result`, `RunRecord`, `HistoryEntry`) and the sink headers of a run.

Pure values in and out; a stored value this version does not know (a newer writer's)
raises `HistoryError` naming the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import orjson

from scanner.core.model import (
    Cause,
    Endpoint,
    Expect,
    Labels,
    Proto,
    Reason,
    ResolvedVia,
    Result,
    State,
)
from scanner.core.sinks import RunInfo, RunSummary, cause_from_record, cause_to_record
from scanner.history.errors import HistoryError
from scanner.history.records import HistoryEntry, Observation, RunRecord, RunStatus

__all__ = [
    "ROWS_PER_INSERT",
    "RUN_COLUMNS",
    "ResultRow",
    "decode",
    "history_entry",
    "insert_results",
    "result_from_row",
    "result_rows",
    "run_info_of",
    "run_record",
    "summary_of",
    "to_json",
]

_Stored = TypeVar("_Stored", RunStatus, State, Reason, Proto, Expect, ResolvedVia)

_RESULT_COLUMNS = (
    "run_id, host, address, port, proto, state, reason, rtt_ms, resolved_via, expect, ok, "
    "labels, cause_kind, cause, ts, attempts"
)
_RESULT_COLUMN_COUNT = len(_RESULT_COLUMNS.split(","))
ROWS_PER_INSERT = 62
"""Rows per INSERT statement: 62 x 16 parameters stays under 999, the limit of SQLite
builds before 3.32."""


@lru_cache(maxsize=8)
def insert_results(rows: int) -> str:
    """One INSERT of `rows` rows (the statement is prepared once and cached by sqlite3)."""
    row = f"({', '.join('?' * _RESULT_COLUMN_COUNT)})"
    return f"INSERT INTO results ({_RESULT_COLUMNS}) VALUES {', '.join([row] * rows)}"


RUN_COLUMNS = (
    "id, started, finished, status, command, version, counts, total, not_ok, "
    "inventory_errors, message, vantage"
)


def to_json(value: object) -> str:
    # default=str: an odd evidence value (an ip_address, a Path) must not lose the batch.
    return orjson.dumps(value, default=str).decode()


def _cause_json(result: Result) -> str | None:
    return None if result.cause is None else to_json(cause_to_record(result.cause))


ResultRow = tuple[object, ...]
"""One result as the `results` table stores it: plain values, in `_RESULT_COLUMNS` order."""


def result_rows(run_id: int, results: Sequence[Result]) -> list[ResultRow]:
    return [result_row(run_id, result) for result in results]


def result_row(run_id: int, result: Result) -> ResultRow:
    """One row per result, of plain values: sqlite3 binds exact `str`s directly, while a
    `StrEnum` member first goes through its adaptation lookup (a quarter of the time of
    an insert). `_value_` is the plain attribute behind the `value` property."""
    endpoint = result.endpoint
    expect = endpoint.expect
    return (
        run_id,
        endpoint.host,
        result.address,
        endpoint.port,
        endpoint.proto._value_,
        result.state._value_,
        result.reason._value_,
        result.rtt_ms,
        result.resolved_via._value_,
        None if expect is None else expect._value_,
        int(result.ok),
        to_json(dict(endpoint.labels)) if endpoint.labels else "{}",
        None if result.cause is None else result.cause.kind,
        _cause_json(result),
        result.ts,
        result.attempts,
    )


def _labels_from_json(text: str) -> Labels:
    """Labels as the model keeps them: sorted (key, value) pairs."""
    stored = orjson.loads(text)
    return tuple(sorted((str(key), str(value)) for key, value in stored.items()))


def _cause_from_json(text: str | None) -> Cause | None:
    """The inverse of `_cause_json`: the typed evidence record of the stored kind. Raises
    ValueError (or orjson's) for a row that is no cause of a kind this version knows."""
    if text is None:
        return None
    stored = orjson.loads(text)
    if not isinstance(stored, dict):
        raise ValueError("a stored cause that is no object")
    return cause_from_record(stored)


def run_info_of(run: RunRecord) -> RunInfo:
    """The header a sink saw when `run` started, for replaying a stored run into a sink."""
    return RunInfo(
        started=run.started, command=run.command, version=run.version, vantage=run.vantage
    )


_SUMMARISED = frozenset({RunStatus.COMPLETE, RunStatus.INTERRUPTED})


def summary_of(run: RunRecord) -> RunSummary:
    """The footer a sink saw when `run` finished, for replaying a stored run into a sink.

    Only complete and interrupted runs have one: a running run has not finished and a
    failed one stopped before its totals existed, so both raise ValueError. The number
    of follow-up probes is not stored and comes back as 0.
    """
    if run.finished is None or run.total is None or run.status not in _SUMMARISED:
        raise ValueError(f"run {run.id} is {run.status.value}: it has no totals to replay")
    return RunSummary(
        finished=run.finished,
        counts={State(state): count for state, count in run.counts.items()},
        total=run.total,
        not_ok=run.not_ok or 0,
        inventory_errors=run.inventory_errors or 0,
        interrupted=run.status is RunStatus.INTERRUPTED,
    )


def run_record(row: tuple[Any, ...], path: Path) -> RunRecord:
    (
        run_id,
        started,
        finished,
        status,
        command,
        version,
        counts,
        total,
        not_ok,
        inventory_errors,
        message,
        vantage,
    ) = row
    return RunRecord(
        id=int(run_id),
        started=float(started),
        finished=None if finished is None else float(finished),
        status=decode(RunStatus, status, path),
        command=command,
        version=version,
        counts={} if counts is None else orjson.loads(counts),
        total=None if total is None else int(total),
        not_ok=None if not_ok is None else int(not_ok),
        inventory_errors=None if inventory_errors is None else int(inventory_errors),
        message=message,
        vantage=vantage,
    )


def decode(kind: type[_Stored], value: object, path: Path) -> _Stored:
    """A stored enum value; one this version does not know means a newer writer."""
    try:
        return kind(str(value))
    except ValueError:
        raise HistoryError(
            path,
            f"unknown {kind.__name__} {value!r}, written by a newer reachscan: upgrade",
        ) from None


def result_from_row(row: tuple[Any, ...], path: Path) -> Result:
    (
        host,
        address,
        port,
        proto,
        state,
        reason,
        rtt_ms,
        resolved_via,
        expect,
        labels,
        cause,
        ts,
        attempts,
    ) = row
    try:
        stored_labels = _labels_from_json(labels)
        stored_cause = _cause_from_json(cause)
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
        raise HistoryError(
            path, f"a stored result of {host} port {port} is malformed: {row!r}"
        ) from None
    endpoint = Endpoint(
        host=host,
        port=int(port),
        proto=decode(Proto, proto, path),
        expect=None if expect is None else decode(Expect, expect, path),
        labels=stored_labels,
    )
    return Result(
        endpoint=endpoint,
        address=address,
        resolved_via=decode(ResolvedVia, resolved_via, path),
        state=decode(State, state, path),
        reason=decode(Reason, reason, path),
        rtt_ms=None if rtt_ms is None else float(rtt_ms),
        ts=float(ts),
        attempts=int(attempts),
        cause=stored_cause,
    )


def history_entry(row: tuple[Any, ...], path: Path) -> HistoryEntry:
    (
        run_id,
        started,
        status,
        host,
        address,
        port,
        proto,
        state,
        reason,
        cause_kind,
        rtt_ms,
        ts,
    ) = row
    return HistoryEntry(
        run_id=int(run_id),
        run_started=float(started),
        run_status=decode(RunStatus, status, path),
        host=host,
        address=address,
        port=int(port),
        proto=decode(Proto, proto, path),
        observation=Observation(
            decode(State, state, path),
            decode(Reason, reason, path),
            cause_kind,
        ),
        rtt_ms=None if rtt_ms is None else float(rtt_ms),
        ts=float(ts),
    )
