"""What one scan holds around the engine: the run lock and the history database.

Taken before the event loop starts (the lock waits by sleeping) and released after the
outputs are committed, so two cron runs can never interleave: the second waits up to
`--wait-lock` seconds, then gives up with its own exit status. The history store records
the run as it streams (a sink like any output), remembers what was open for the cause
analysis, tells `--changes-only` what the previous run saw, and prunes old runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from scanner.core.diagnose import PastObservations
from scanner.core.model import Proto
from scanner.history.changes import ChangeFilter
from scanner.history.errors import HistoryError
from scanner.history.lock import RunLock
from scanner.history.paths import default_db_path
from scanner.history.sink import HistorySink
from scanner.history.store import HistoryStore, refuse_directory
from scanner.history.writer import HistoryWriter

ABANDONED_MESSAGE = (
    "its process ended without closing the run (killed by SIGKILL, the OOM killer or a "
    "power cut): the results it stored are kept"
)


@dataclass(frozen=True, slots=True)
class HistoryPlan:
    """--db, --keep, --keep-days, --wait-lock; None in ScanPlan means --no-history."""

    path: Path | None = None  # None: $XDG_STATE_HOME/reachscan/history.sqlite
    keep_runs: int | None = None
    keep_days: float | None = None
    wait_lock: float = 0.0

    def database(self) -> Path:
        return self.path if self.path is not None else default_db_path()


class HistorySession:
    """The open store of one run (and the lock that keeps the run alone)."""

    def __init__(
        self, plan: HistoryPlan, store: HistoryStore, writer: HistoryWriter | None = None
    ) -> None:
        self.plan = plan
        self.store = store
        self.sink = HistorySink(store, writer)
        self.failed = False

    def change_filter(self) -> ChangeFilter:
        """What the last complete run saw, for --changes-only."""
        return ChangeFilter(self.store.previous_observations())

    def history_for(
        self, host: str, address: str, port: int, proto: Proto
    ) -> PastObservations | None:
        """What the history remembers of an endpoint, for the diagnosis; None once the
        history has failed (a corrupt page found by this read): the diagnosis goes on
        without its memory, the other outputs are written, and the sink reports the
        failure (exit 3) and closes the run `failed` with the reason."""
        if self.failed:
            return None
        try:
            return self.store.history_for(host, address, port, proto)
        except HistoryError as error:
            self.failed = True
            self.sink.fail(error)
            return None

    def prune(self) -> int:
        if self.plan.keep_runs is None and self.plan.keep_days is None:
            return 0
        return self.store.retain(keep_runs=self.plan.keep_runs, keep_days=self.plan.keep_days)


@contextmanager
def history_session(
    plan: HistoryPlan | None, writer: HistoryWriter | None = None
) -> Iterator[HistorySession | None]:
    """Lock, open, yield, close. Raises LockBusy or HistoryError. `writer`, forked before
    the history is opened, stores the results (scanner/history/writer.py)."""
    if plan is None:
        yield None
        return
    database = plan.database()
    refuse_directory(database)  # before the lock, which would create `DIR.lock` beside it
    with RunLock(database, plan.wait_lock):
        store = HistoryStore.open(database)
        try:
            # We hold the lock, so no run is still running: one stored as `running` died
            # without closing it (SIGKILL, a power cut).
            store.abandon_running_runs(ABANDONED_MESSAGE)
            yield HistorySession(plan, store, writer)
        finally:
            # The sink has ended the writer unless something went wrong; either way it
            # must not write on once the lock is released.
            if writer is not None:
                writer.stop()
            store.close()
