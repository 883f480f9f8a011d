"""Run history: every scan stored in SQLite, for `diff`, `history`, `--changes-only` and
the diagnosis's memory of what used to answer. See store.py for what is kept and why."""

from __future__ import annotations

from scanner.history.changes import ChangeFilter, ChangesOnlySink
from scanner.history.diff import ChangeKind, NothingToCompare, RunDiff, diff_runs
from scanner.history.lock import LockBusy, RunLock
from scanner.history.paths import default_db_path, lock_path_for
from scanner.history.records import (
    EndpointKey,
    HistoryEntry,
    Observation,
    RunRecord,
    RunStatus,
    endpoint_key,
)
from scanner.history.sink import HistorySink
from scanner.history.store import HistoryError, HistoryStore, UnknownRun
from scanner.history.timeline import Timeline, endpoint_timeline

__all__ = [
    "ChangeFilter",
    "ChangeKind",
    "ChangesOnlySink",
    "EndpointKey",
    "HistoryEntry",
    "HistoryError",
    "HistorySink",
    "HistoryStore",
    "LockBusy",
    "NothingToCompare",
    "Observation",
    "RunDiff",
    "RunLock",
    "RunRecord",
    "RunStatus",
    "Timeline",
    "UnknownRun",
    "default_db_path",
    "diff_runs",
    "endpoint_key",
    "endpoint_timeline",
    "lock_path_for",
]
