"""The run history: every scan's results in one SQLite file, for diffs, timelines and diagnosis.

Why SQLite from the standard library: one file, no server, transactions, and readers that
never block the writer in WAL mode, so `reachscan history` works while a cron scan writes.
`synchronous=NORMAL` is the WAL setting SQLite recommends: a commit is durable against a
crash of reachscan; a power cut may lose the last commits but never corrupts the file,
and the scan is spared an fsync per batch on the event loop's thread.

This module holds the connection, its transactions and the queries. The schema and its
migrations are in `schema.py`, results to rows and rows to records in `codec.py`, and the
one place a sqlite3 error becomes `HistoryError` (with what the user can do about it) in
`errors.py`: nothing else in reachscan sees a sqlite3 exception.

What counts as "seen": each stored result is a measurement, true at its time whatever
became of its run afterwards, so `history_for` and `endpoint_history` use the results of
every run (interrupted and failed ones too). Comparisons between whole runs
(`previous_observations`, the diff's defaults, the timeline) use complete runs only, since
an endpoint missing from a partial run was merely not scanned.

Reading a run back (`results`, `summary_of`) replays it into any sink, e.g. the Prometheus
exposition `reachscan serve` renders; `open_readonly` is for such readers, which must
never create, upgrade or write the file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from itertools import chain
from pathlib import Path
from types import TracebackType
from typing import Self

from scanner.core.diagnose import PastObservations
from scanner.core.model import Proto, Reason, Result, State
from scanner.core.sinks import RunInfo, RunSummary
from scanner.history.codec import (
    ROWS_PER_INSERT,
    RUN_COLUMNS,
    ResultRow,
    decode,
    history_entry,
    insert_results,
    result_from_row,
    result_rows,
    run_info_of,
    run_record,
    summary_of,
    to_json,
)
from scanner.history.errors import HistoryError, UnknownRun, translated
from scanner.history.paths import (
    DB_NAME,
    create_private_file,
    default_db_path,
    ensure_parent_directory,
)
from scanner.history.records import EndpointKey, HistoryEntry, Observation, RunRecord, RunStatus
from scanner.history.schema import (
    MIGRATIONS,
    Migration,
    check_ownership,
    check_readable_schema,
    migrate,
)

__all__ = [
    "MIGRATIONS",
    "ROWS_PER_INSERT",
    "HistoryError",
    "HistoryStore",
    "Migration",
    "ResultRow",
    "UnknownRun",
    "default_db_path",
    "migrate",
    "refuse_directory",
    "result_rows",
    "run_info_of",
    "summary_of",
]

DEFAULT_BUSY_TIMEOUT = 5.0  # seconds to wait for another writer before giving up
RESULT_FETCH_SIZE = 1_000  # rows per fetchmany: memory stays flat for any run size


def refuse_directory(path: Path) -> None:
    """SQLite says only "unable to open database file" (or "disk I/O error", read-only)
    for a directory: say what it is."""
    if path.is_dir():
        raise HistoryError(
            path, f"is a directory: --db takes the database file, e.g. {path / DB_NAME}"
        )


class HistoryStore:
    """Runs and their results in one SQLite file. Open it with `HistoryStore.open`.

    Not thread-safe: use it from the thread that opened it (sqlite3's default check).
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        path: Path,
        clock: Callable[[], float],
        identity: tuple[int, int] | None = None,
    ) -> None:
        self._connection = connection
        self.path = path
        self._clock = clock
        self._identity = identity  # (st_dev, st_ino) of the file opened, for writers

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        clock: Callable[[], float] = time.time,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> Self:
        """Open (creating, private, or upgrading) the history at `path`.

        Raises `HistoryError` when the file is not a reachscan history, is newer than this
        version, stays locked longer than `busy_timeout` seconds, or cannot be written.
        `migrations` is for tests and future versions; the default is the real schema.
        """
        refuse_directory(path)
        with translated(path):
            ensure_parent_directory(path)
            create_private_file(path)
            connection = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
        try:
            with translated(path):
                check_ownership(connection, path)
                connection.execute("PRAGMA journal_mode = WAL")
                connection.execute("PRAGMA synchronous = NORMAL")
                migrate(connection, migrations, path)
                opened = os.stat(path)
        except BaseException:
            connection.close()
            raise
        return cls(connection, path, clock, (opened.st_dev, opened.st_ino))

    @classmethod
    def open_readonly(
        cls,
        path: Path,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        clock: Callable[[], float] = time.time,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> Self:
        """Open an existing history for reading only: never created, migrated or written.

        For readers that must not change the file (`reachscan serve`, possibly running as
        another user with read access only). A WAL reader never waits for the writer, so
        a scan in progress does not delay it. A missing file, a file that is not a
        reachscan history, and one whose schema differs from this version's raise
        `HistoryError` (an older one is upgraded by the next scan).
        """
        refuse_directory(path)
        uri = f"{path.absolute().as_uri()}?mode=ro"
        with translated(path):
            connection = sqlite3.connect(uri, uri=True, timeout=busy_timeout, isolation_level=None)
        try:
            with translated(path):
                check_readable_schema(connection, migrations, path)
        except BaseException:
            connection.close()
            raise
        return cls(connection, path, clock)

    def close(self) -> None:
        self._connection.close()

    def check_still_in_place(self) -> None:
        """Raise `HistoryError` when the file at `path` is no longer the one this store
        opened: deleted or replaced mid-run, it took this run's rows with it (SQLite
        writes on into the open file, unlinked, and says nothing). A read-only store
        does not check."""
        if self._identity is None:
            return
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            raise HistoryError(
                self.path,
                "the file was deleted during the run, and this run's results went with it: "
                "they are in the other outputs only",
            ) from None
        except OSError as error:
            raise HistoryError(self.path, error.strerror or str(error)) from error
        if (now.st_dev, now.st_ino) != self._identity:
            raise HistoryError(
                self.path,
                "the file was replaced during the run: this run's results went to the "
                "file it replaced, and are in the other outputs only",
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- transactions ---------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """One transaction: committed whole or rolled back whole, also on Ctrl-C.

        IMMEDIATE takes the write lock up front, so a busy database fails at BEGIN (after
        the busy timeout) rather than halfway; DEFERRED gives reads one snapshot.
        """
        connection = self._connection
        with translated(self.path):
            connection.execute(f"BEGIN {mode}")
            try:
                yield connection
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    # --- writing a run --------------------------------------------------------------

    def begin_run(self, run: RunInfo) -> int:
        """Store a new run as `running`; returns its id."""
        with self._transaction() as connection:
            cursor = connection.execute(
                "INSERT INTO runs (started, status, command, version, vantage)"
                " VALUES (?, ?, ?, ?, ?)",
                (run.started, RunStatus.RUNNING.value, run.command, run.version, run.vantage),
            )
            run_id = cursor.lastrowid
        assert run_id is not None
        return run_id

    def add_results(self, run_id: int, results: Sequence[Result]) -> None:
        """Store one batch in one transaction: a crash keeps whole batches only."""
        self.add_rows(result_rows(run_id, results))

    def add_rows(self, rows: Sequence[ResultRow]) -> None:
        """Store rows made by `result_rows` in one transaction (the history writer
        process gets them made).

        Rows go in 62 to a statement rather than one at a time (`executemany`): a third
        less time for the same rows (65,535 results: 0.21 s against 0.31 s).
        """
        if not rows:
            return
        with self._transaction() as connection:
            for start in range(0, len(rows), ROWS_PER_INSERT):
                chunk = rows[start : start + ROWS_PER_INSERT]
                connection.execute(insert_results(len(chunk)), list(chain.from_iterable(chunk)))

    def finish_run(self, run_id: int, summary: RunSummary) -> None:
        """Close the run as `complete`, or `interrupted` when the summary says so."""
        status = RunStatus.INTERRUPTED if summary.interrupted else RunStatus.COMPLETE
        counts = {State(state).value: count for state, count in summary.counts.items()}
        self._close_run(
            run_id,
            "UPDATE runs SET finished = ?, status = ?, counts = ?, total = ?, not_ok = ?, "
            "inventory_errors = ? WHERE id = ?",
            (
                summary.finished,
                status.value,
                to_json(counts),
                summary.total,
                summary.not_ok,
                summary.inventory_errors,
                run_id,
            ),
        )

    def fail_run(self, run_id: int, message: str) -> None:
        """Close the run as `failed`, keeping the results stored so far and why. Also
        from a signal handler, amid a transaction: `_roll_back_interrupted`."""
        self._roll_back_interrupted()
        self._close_run(
            run_id,
            "UPDATE runs SET finished = ?, status = ?, message = ? WHERE id = ?",
            (self._clock(), RunStatus.FAILED.value, message, run_id),
        )

    def interrupt_run(self, run_id: int, message: str) -> None:
        """Close the run as `interrupted` when there is no summary to close it with (a
        second Ctrl-C quits at once): its counts are those of the results stored. Also
        from a signal handler, amid a transaction: `_roll_back_interrupted`."""
        self._roll_back_interrupted()
        with self._transaction() as connection:
            counts = dict(
                connection.execute(
                    "SELECT state, count(*) FROM results WHERE run_id = ? GROUP BY state",
                    (run_id,),
                ).fetchall()
            )
            (not_ok,) = connection.execute(
                "SELECT count(*) FROM results WHERE run_id = ? AND ok = 0", (run_id,)
            ).fetchone()
            updated = connection.execute(
                "UPDATE runs SET finished = ?, status = ?, counts = ?, total = ?, not_ok = ?, "
                "message = ? WHERE id = ?",
                (
                    self._clock(),
                    RunStatus.INTERRUPTED.value,
                    to_json(counts),
                    sum(counts.values()),
                    not_ok,
                    message,
                    run_id,
                ),
            ).rowcount
        if updated != 1:
            raise UnknownRun(self.path, run_id)

    def abandon_running_runs(self, message: str) -> list[int]:
        """Close every `running` run as `abandoned`, counted from the results it stored;
        returns their ids. Only for the holder of the run lock: while it is held no other
        run can be writing, so a `running` run is one whose process died without closing
        it (SIGKILL, the OOM killer, a power cut). Its end time is that of its last stored
        result (or its start): when it was last seen alive, not when it was found."""
        with self._transaction() as connection:
            abandoned = [
                int(run_id)
                for (run_id,) in connection.execute(
                    "SELECT id FROM runs WHERE status = 'running' ORDER BY id"
                ).fetchall()
            ]
            for run_id in abandoned:
                counts = dict(
                    connection.execute(
                        "SELECT state, count(*) FROM results WHERE run_id = ? GROUP BY state",
                        (run_id,),
                    ).fetchall()
                )
                connection.execute(
                    "UPDATE runs SET status = ?, counts = ?, total = ?, message = ?, "
                    "not_ok = (SELECT count(*) FROM results WHERE run_id = runs.id AND ok = 0), "
                    "finished = coalesce((SELECT max(ts) FROM results WHERE run_id = runs.id), "
                    "started) WHERE id = ?",
                    (
                        RunStatus.ABANDONED.value,
                        to_json(counts),
                        sum(counts.values()),
                        message,
                        run_id,
                    ),
                )
        return abandoned

    def _roll_back_interrupted(self) -> None:
        """Roll back a transaction that the code a signal handler interrupted left open.

        A second interrupt while the outputs are written closes the run from the handler
        itself (scanner/run/interrupts.py), which can land inside `_transaction` (a batch,
        or `finish_run`). There `BEGIN` would fail ("cannot start a transaction within a
        transaction") and the process then exits without unwinding, which rolls the
        open transaction back with the run's closing in it: the run would stay
        `running`. A Python handler runs between two bytecodes, never amid an sqlite3
        call, so the open transaction is idle and rolling it back is safe; its batch is
        lost whole, as at a crash, and the run is counted from what was committed."""
        if self._connection.in_transaction:
            with translated(self.path):
                self._connection.execute("ROLLBACK")

    def _close_run(self, run_id: int, statement: str, parameters: tuple[object, ...]) -> None:
        with self._transaction() as connection:
            updated = connection.execute(statement, parameters).rowcount
        if updated != 1:
            raise UnknownRun(self.path, run_id)

    def retain(self, *, keep_runs: int | None = None, keep_days: float | None = None) -> int:
        """Delete runs (and their results) beyond the newest `keep_runs` or older than
        `keep_days`; either limit alone, or both (a run goes if either says so).

        Returns how many runs were deleted. Counting never deletes a `running` run (it may
        be the current one); age does, since a run that "runs" for days was killed.
        """
        if keep_runs is not None and keep_runs < 0:
            raise ValueError(f"keep_runs must be 0 or more, not {keep_runs}")
        if keep_days is not None and keep_days < 0:
            raise ValueError(f"keep_days must be 0 or more, not {keep_days}")
        deleted = 0
        with self._transaction() as connection:
            if keep_runs is not None:
                deleted += connection.execute(
                    "DELETE FROM runs WHERE status != 'running' AND id NOT IN "
                    "(SELECT id FROM runs ORDER BY id DESC LIMIT ?)",
                    (keep_runs,),
                ).rowcount
            if keep_days is not None:
                cutoff = self._clock() - keep_days * 86_400
                deleted += connection.execute(
                    "DELETE FROM runs WHERE started < ?", (cutoff,)
                ).rowcount
        return deleted

    # --- reading runs ---------------------------------------------------------------

    def runs(self, limit: int = 20) -> list[RunRecord]:
        """The newest `limit` runs of any status, newest first."""
        return self._select_runs("SELECT {} FROM runs ORDER BY id DESC LIMIT ?", (limit,))

    def last_complete_runs(self, n: int) -> list[RunRecord]:
        """The newest `n` complete runs, newest first."""
        return self._select_runs(
            "SELECT {} FROM runs WHERE status = 'complete' ORDER BY id DESC LIMIT ?", (n,)
        )

    def latest_complete_run(self) -> RunRecord | None:
        """The newest complete run, or None when no run has completed yet."""
        found = self.last_complete_runs(1)
        return found[0] if found else None

    def run_counts(self) -> dict[RunStatus, int]:
        """How many runs are stored in each status (every status, zeros included)."""
        with translated(self.path):
            rows = self._connection.execute(
                "SELECT status, count(*) FROM runs GROUP BY status"
            ).fetchall()
        counts = dict.fromkeys(RunStatus, 0)
        for status, count in rows:
            counts[decode(RunStatus, status, self.path)] = int(count)
        return counts

    def last_success_time(self) -> float | None:
        """When a stored run last ended with every endpoint as expected and a clean
        inventory (what `reachscan_last_success_timestamp_seconds` means); None when no
        stored run did, including when retention has deleted the ones that did."""
        with translated(self.path):
            row = self._connection.execute(
                "SELECT max(finished) FROM runs "
                "WHERE status = 'complete' AND not_ok = 0 AND inventory_errors = 0"
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def get_run(self, run_id: int) -> RunRecord:
        """One run by id; `UnknownRun` if there is none."""
        found = self._select_runs("SELECT {} FROM runs WHERE id = ?", (run_id,))
        if not found:
            raise UnknownRun(self.path, run_id)
        return found[0]

    def _select_runs(self, query: str, parameters: tuple[object, ...]) -> list[RunRecord]:
        with translated(self.path):
            rows = self._connection.execute(query.format(RUN_COLUMNS), parameters).fetchall()
        return [run_record(row, self.path) for row in rows]

    # --- reading observations -------------------------------------------------------

    def observations(self, run_id: int) -> dict[EndpointKey, Observation]:
        """What run `run_id` saw of each endpoint it stored."""
        self.get_run(run_id)
        with translated(self.path):
            rows = self._connection.execute(
                "SELECT host, address, port, proto, state, reason, cause_kind "
                "FROM results WHERE run_id = ? ORDER BY id",
                (run_id,),
            ).fetchall()
        return {
            (host, address, port, proto): Observation(
                decode(State, state, self.path), decode(Reason, reason, self.path), cause_kind
            )
            for host, address, port, proto, state, reason, cause_kind in rows
        }

    def results(self, run_id: int) -> Generator[Result]:
        """Rebuild run `run_id`'s results, in the order they were stored, a batch of rows
        at a time: a run of a million results never sits in memory whole.

        `UnknownRun` is raised here, before iterating. What the table does not keep comes
        back as the model's defaults: the endpoint's pinned address (None; the probed
        `address` is kept), service name, inventory origin, the ICMP offender, the
        message. Iterate in the thread that opened the store.
        """
        self.get_run(run_id)
        return self._stream_results(run_id)

    def _stream_results(self, run_id: int) -> Generator[Result]:
        with translated(self.path):
            cursor = self._connection.execute(
                "SELECT host, address, port, proto, state, reason, rtt_ms, resolved_via, "
                "expect, labels, cause, ts, attempts FROM results WHERE run_id = ? ORDER BY id",
                (run_id,),
            )
        try:
            while True:
                with translated(self.path):
                    rows = cursor.fetchmany(RESULT_FETCH_SIZE)
                if not rows:
                    return
                for row in rows:
                    yield result_from_row(row, self.path)
        finally:
            cursor.close()

    def previous_observations(
        self, before_run: int | None = None
    ) -> dict[EndpointKey, Observation]:
        """What the last complete run (before `before_run`, if given) saw of each endpoint;
        empty when there is none yet, so every endpoint of a first run counts as new."""
        query = "SELECT max(id) FROM runs WHERE status = 'complete'"
        parameters: tuple[object, ...] = ()
        if before_run is not None:
            query += " AND id < ?"
            parameters = (before_run,)
        with translated(self.path):
            row = self._connection.execute(query, parameters).fetchone()
        if row is None or row[0] is None:
            return {}
        return self.observations(int(row[0]))

    def endpoint_history(
        self,
        host: str,
        port: int | None = None,
        proto: Proto | None = None,
        limit: int = 50,
        *,
        complete_only: bool = False,
    ) -> list[HistoryEntry]:
        """What the newest `limit` runs saw of `host` (matched as written in the inventory
        or as the probed address), optionally one port and protocol; newest run first.

        A run that did not scan the endpoint contributes nothing. `complete_only` limits
        the window to complete runs, as a timeline of whole runs wants.
        """
        statuses = "WHERE status = 'complete'" if complete_only else ""
        conditions = ["(r.host = ? OR r.address = ?)"]
        parameters: list[object] = [limit, host, host]
        if port is not None:
            conditions.append("r.port = ?")
            parameters.append(port)
        if proto is not None:
            conditions.append("r.proto = ?")
            parameters.append(proto.value)
        query = (
            f"WITH recent AS (SELECT id FROM runs {statuses} ORDER BY id DESC LIMIT ?) "
            "SELECT r.run_id, runs.started, runs.status, r.host, r.address, r.port, r.proto, "
            "r.state, r.reason, r.cause_kind, r.rtt_ms, r.ts "
            "FROM results AS r JOIN runs ON runs.id = r.run_id "
            f"WHERE r.run_id IN (SELECT id FROM recent) AND {' AND '.join(conditions)} "
            "ORDER BY r.run_id DESC, r.host, r.address, r.port, r.proto, r.ts"
        )
        with translated(self.path):
            rows = self._connection.execute(query, parameters).fetchall()
        return [history_entry(row, self.path) for row in rows]

    def history_for(self, host: str, address: str, port: int, proto: Proto) -> PastObservations:
        """What earlier measurements say about one endpoint, for the diagnosis.

        - `last_open`: when this endpoint was last seen open (the result's time);
        - `first_refused`: when the current streak of refusals began: walking back from
          the newest stored result of the endpoint (the current run's, if stored) while
          the state is `refused`; runs that did not scan it neither extend nor break the
          streak, and None when the newest result is not a refusal;
        - `host_ever_answered`: whether any port of this address was ever seen open.
        """
        endpoint = (host, address, port, proto.value)
        with self._transaction("DEFERRED") as connection:
            last_open = connection.execute(
                "SELECT max(ts) FROM results WHERE host = ? AND address IS ? AND port = ? "
                "AND proto = ? AND state = 'open'",
                endpoint,
            ).fetchone()[0]
            newest_first = connection.execute(
                "SELECT state, ts FROM results WHERE host = ? AND address IS ? AND port = ? "
                "AND proto = ? ORDER BY run_id DESC, ts DESC",
                endpoint,
            )
            first_refused: float | None = None
            for state, ts in newest_first:
                if state != State.REFUSED.value:
                    break
                first_refused = float(ts)
            newest_first.close()
            answered = connection.execute(
                "SELECT EXISTS (SELECT 1 FROM results WHERE address = ? AND state = 'open')",
                (address,),
            ).fetchone()[0]
        return PastObservations(
            last_open=None if last_open is None else float(last_open),
            first_refused=first_refused,
            host_ever_answered=bool(answered),
        )
