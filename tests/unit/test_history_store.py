"""The history store against real SQLite files: what is stored comes back, the schema
upgrades, retention, permissions, and every way the file can be unusable."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import overload

import orjson
import pytest

from scanner.core.model import Proto, Reason, Result, State
from scanner.core.sinks import OutputError, RunInfo
from scanner.history import store as history_store
from scanner.history.codec import run_info_of
from scanner.history.paths import default_db_path
from scanner.history.records import Observation, RunStatus
from scanner.history.sink import HistorySink
from scanner.history.store import (
    MIGRATIONS,
    ROWS_PER_INSERT,
    HistoryError,
    HistoryStore,
    ResultRow,
    UnknownRun,
)
from tests.support.history import make_result, store_run, summary_of

DAY = 86_400.0


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "reachscan" / "history.sqlite"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(100 * DAY)


@pytest.fixture
def store(db_path: Path, clock: FakeClock) -> Iterator[HistoryStore]:
    with HistoryStore.open(db_path, clock=clock) as opened:
        yield opened


def raw_rows(path: Path, query: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(query).fetchall()
    finally:
        connection.close()


# --- round trip -------------------------------------------------------------------------


def test_a_run_and_its_results_read_back(store: HistoryStore, db_path: Path) -> None:
    results = [
        make_result(port=22),
        make_result(port=5432, state=State.REFUSED, cause_kind="service-down", ts=1_001.5),
        make_result(host="gone.example", address=None, state=State.UNRESOLVED),
    ]
    run_id = store_run(store, results, started=1_000.0)

    (run,) = store.runs()
    assert run.id == run_id
    assert run.status is RunStatus.COMPLETE
    assert (run.started, run.finished) == (1_000.0, 1_005.0)
    assert run.command == "reachscan scan fleet.yaml"
    assert run.counts == {"open": 1, "refused": 1, "unresolved": 1}
    assert (run.total, run.not_ok, run.inventory_errors) == (3, 2, 0)
    assert store.observations(run_id) == {
        ("db1.example", "10.0.0.5", 22, "tcp"): Observation(State.OPEN, Reason.SYN_ACK, None),
        ("db1.example", "10.0.0.5", 5432, "tcp"): Observation(
            State.REFUSED, Reason.CONN_REFUSED, "service-down"
        ),
        ("gone.example", None, 5432, "tcp"): Observation(State.UNRESOLVED, Reason.NXDOMAIN, None),
    }
    (row,) = raw_rows(
        db_path,
        "SELECT labels, cause, ok, rtt_ms, resolved_via, expect, ts FROM results "
        "WHERE port = 5432 AND address IS NOT NULL",
    )
    labels, cause, ok, rtt_ms, resolved_via, expect, ts = row
    assert orjson.loads(str(labels)) == {"env": "prod"}
    assert orjson.loads(str(cause))["kind"] == "service-down"
    assert orjson.loads(str(cause))["evidence"] == {
        "address": "10.0.0.5",
        "port": 5432,
        "alive_ports": [22, 80],
        "local": False,
        "refusal": "conn-refused",
    }
    assert (ok, rtt_ms, resolved_via, expect, ts) == (0, None, "dns", "open", 1_001.5)


def test_wal_mode_and_foreign_keys(store: HistoryStore, db_path: Path) -> None:
    assert raw_rows(db_path, "PRAGMA journal_mode") == [("wal",)]
    with pytest.raises(HistoryError, match="FOREIGN KEY"):
        store.add_results(999, [make_result()])  # no such run: rejected, not orphaned


def test_runs_are_listed_newest_first_and_complete_ones_apart(store: HistoryStore) -> None:
    first = store_run(store, [make_result()], started=1_000.0)
    interrupted = store_run(store, [make_result()], started=2_000.0, interrupted=True)
    second = store_run(store, [make_result()], started=3_000.0)
    running = store_run(store, [make_result()], started=4_000.0, finish=False)
    assert [run.id for run in store.runs()] == [running, second, interrupted, first]
    assert [run.id for run in store.runs(limit=2)] == [running, second]
    assert [run.id for run in store.last_complete_runs(5)] == [second, first]
    assert store.get_run(running).status is RunStatus.RUNNING
    assert store.get_run(running).finished is None


def test_previous_observations_come_from_the_last_complete_run(store: HistoryStore) -> None:
    assert store.previous_observations() == {}
    first = store_run(store, [make_result(port=1)], started=1_000.0)
    second = store_run(store, [make_result(port=2)], started=2_000.0)
    store_run(store, [make_result(port=3)], started=3_000.0, interrupted=True)
    store_run(store, [make_result(port=4)], started=4_000.0, finish=False)
    assert [key[2] for key in store.previous_observations()] == [2]
    assert [key[2] for key in store.previous_observations(before_run=second)] == [1]
    assert store.previous_observations(before_run=first) == {}


def test_unknown_run_ids_are_reported(store: HistoryStore) -> None:
    with pytest.raises(UnknownRun, match="no run 42"):
        store.get_run(42)
    with pytest.raises(UnknownRun):
        store.finish_run(42, summary_of([], 1.0))
    with pytest.raises(UnknownRun):
        store.fail_run(42, "boom")


def test_endpoint_history_matches_the_host_or_its_address(store: HistoryStore) -> None:
    store_run(store, [make_result(port=22), make_result(port=53, proto=Proto.UDP)], 1_000.0)
    store_run(
        store, [make_result(port=22, state=State.REFUSED), make_result(host="other")], 2_000.0
    )
    by_name = store.endpoint_history("db1.example")
    assert [(entry.run_id, entry.port) for entry in by_name] == [(2, 22), (1, 22), (1, 53)]
    assert by_name[0].observation.state is State.REFUSED
    by_address = store.endpoint_history("10.0.0.5", port=5432)
    assert [(entry.run_id, entry.host) for entry in by_address] == [(2, "other")]
    assert [entry.port for entry in store.endpoint_history("db1.example", proto=Proto.UDP)] == [53]
    assert [entry.run_id for entry in store.endpoint_history("db1.example", limit=1)] == [2]


def test_a_batch_across_several_insert_statements_reads_back_exactly(
    store: HistoryStore,
) -> None:
    """Rows go in 64 to a statement: every type, NULL, nested JSON text and float of a
    batch that spans several statements (and a short last one) must come back intact."""
    varied = [
        make_result(port=22, rtt_ms=0.123, ts=1_764_032_465.123_456_7),
        make_result(port=5432, state=State.REFUSED, cause_kind="service-down", ts=1.5e9),
        make_result(host="gone.example", address=None, state=State.UNRESOLVED, labels=()),
        make_result(host='odd "name"\\', port=1, rtt_ms=1e-05, labels=(("k", "ü\n"),)),
    ]
    results = [*varied, *(make_result(port=port) for port in range(1000, 1000 + 2 * 64 + 3))]
    run_id = store_run(store, results, started=1_000.0)
    assert list(store.results(run_id)) == results
    rows = raw_rows(store.path, "SELECT port, rtt_ms, address, ts FROM results ORDER BY id")
    assert len(rows) == len(results)
    assert rows[:4] == [
        (22, 0.123, "10.0.0.5", 1_764_032_465.123_456_7),
        (5432, None, "10.0.0.5", 1.5e9),
        (5432, None, None, 1_000.0),
        (1, 1e-05, "10.0.0.5", 1_000.0),
    ]


# --- runs written by the sink ------------------------------------------------------------


def test_an_interrupted_run_keeps_every_result_written(store: HistoryStore) -> None:
    sink = HistorySink(store)
    first = [make_result(port=port) for port in range(1, 11)]
    second = [make_result(port=port, state=State.REFUSED) for port in range(11, 16)]
    sink.start(RunInfo(started=1_000.0, command="reachscan scan x", version="0.1.0"))
    sink.write(first)
    sink.write(second)
    sink.finish(summary_of([*first, *second], 1_002.0, interrupted=True))

    assert sink.run_id is not None
    run = store.get_run(sink.run_id)
    assert run.status is RunStatus.INTERRUPTED
    assert run.total == 15
    assert len(store.observations(sink.run_id)) == 15
    assert store.last_complete_runs(1) == []  # partial runs are no baseline


def test_abort_marks_the_run_failed_and_is_safe_to_repeat(
    store: HistoryStore, clock: FakeClock
) -> None:
    sink = HistorySink(store)
    sink.abort()  # before start: nothing to mark
    assert store.runs() == []
    sink.start(RunInfo(started=1_000.0, command="reachscan scan x", version="0.1.0"))
    sink.write([make_result()])
    sink.abort()
    sink.abort()
    assert sink.run_id is not None
    run = store.get_run(sink.run_id)
    assert (run.status, run.finished) == (RunStatus.FAILED, clock.now)
    assert run.message is not None and "fatal" in run.message
    assert len(store.observations(sink.run_id)) == 1


def test_quitting_at_once_marks_the_run_interrupted_with_what_was_stored(
    store: HistoryStore, clock: FakeClock
) -> None:
    """A second Ctrl-C: not a failure; the run is `interrupted`, counted from the stored
    results."""
    sink = HistorySink(store)
    sink.start(RunInfo(started=1_000.0, command="reachscan scan x", version="0.1.0"))
    sink.write([make_result(port=1), make_result(port=2, state=State.REFUSED)])
    assert sink.run_id is not None
    sink.quit()
    sink.quit()  # safe to repeat
    sink.abort()  # and closed for good
    run = store.get_run(sink.run_id)
    assert (run.status, run.finished) == (RunStatus.INTERRUPTED, clock.now)
    assert run.message is not None and "interrupted twice" in run.message
    assert (run.counts, run.total, run.not_ok) == ({"open": 1, "refused": 1}, 2, 1)


class ProcessExited(BaseException):
    """Stands for `os._exit` after a second interrupt: the interrupted code never resumes."""


class SecondInterruptAmidTheBatch(Sequence[ResultRow]):
    """A batch whose second chunk, read inside `add_rows`' transaction once the first
    chunk is inserted, runs what a second interrupt's handler runs there: the sink's
    `quit` (or `abort`), then the exit, which never returns to the transaction."""

    def __init__(self, rows: list[ResultRow], close_run: Callable[[], None]) -> None:
        self._rows = rows
        self._close_run = close_run
        self._chunks_read = 0

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> ResultRow: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[ResultRow]: ...
    def __getitem__(self, index: int | slice) -> ResultRow | Sequence[ResultRow]:
        if isinstance(index, slice):
            self._chunks_read += 1
            if self._chunks_read == 2:
                self._close_run()
                raise ProcessExited
        return self._rows[index]


@pytest.mark.parametrize(
    ("close", "status"),
    [("quit", RunStatus.INTERRUPTED), ("abort", RunStatus.FAILED)],
)
def test_a_run_closed_from_a_signal_handler_amid_a_transaction_is_never_left_running(
    store: HistoryStore, db_path: Path, close: str, status: RunStatus
) -> None:
    """The handler lands inside an open transaction (a batch stored in this process):
    closing the run rolls it back first, and the run counts what was committed."""
    sink = HistorySink(store)
    sink.start(RunInfo(started=1_000.0, command="reachscan scan x", version="0.1.0"))
    sink.write([make_result(port=1)])
    assert sink.run_id is not None
    batch = history_store.result_rows(
        sink.run_id, [make_result(port=port) for port in range(2, 100)]
    )
    assert len(batch) > ROWS_PER_INSERT  # a second chunk, read mid-transaction
    with pytest.raises(ProcessExited):
        store.add_rows(SecondInterruptAmidTheBatch(batch, getattr(sink, close)))
    assert raw_rows(db_path, "SELECT id, status FROM runs") == [(sink.run_id, status.value)]
    assert raw_rows(db_path, "SELECT count(*) FROM results") == [(1,)]


def test_a_batch_is_stored_whole_or_not_at_all(store: HistoryStore, db_path: Path) -> None:
    run_id = store_run(store, [], started=1_000.0, finish=False)
    saboteur = sqlite3.connect(db_path)
    saboteur.execute(
        "CREATE TRIGGER refuse_666 BEFORE INSERT ON results WHEN NEW.port = 666 "
        "BEGIN SELECT RAISE(ABORT, 'port 666 refused by test'); END"
    )
    saboteur.close()
    with pytest.raises(HistoryError, match="port 666"):
        store.add_results(run_id, [make_result(port=1), make_result(port=2), make_result(port=666)])
    assert store.observations(run_id) == {}
    store.add_results(run_id, [make_result(port=1)])  # the store is usable afterwards
    assert len(store.observations(run_id)) == 1


def test_a_locked_database_is_an_output_error_for_the_sink(db_path: Path) -> None:
    with HistoryStore.open(db_path, busy_timeout=0.05) as store:
        sink = HistorySink(store)
        sink.start(RunInfo(started=1_000.0, command="reachscan scan x", version="0.1.0"))
        other_writer = sqlite3.connect(db_path, isolation_level=None)
        other_writer.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(OutputError, match="locked by another process"):
                sink.write([make_result()])
            sink.abort()  # cannot write either, and must not raise
        finally:
            other_writer.execute("ROLLBACK")
            other_writer.close()
        assert sink.run_id is not None
        assert store.get_run(sink.run_id).status is RunStatus.RUNNING


# --- history_for -------------------------------------------------------------------------

ENDPOINT = ("db1.example", "10.0.0.5", 5432, Proto.TCP)


def test_history_for_an_endpoint_never_seen(store: HistoryStore) -> None:
    history = store.history_for(*ENDPOINT)
    assert (history.last_open, history.first_refused, history.host_ever_answered) == (
        None,
        None,
        False,
    )


def test_history_for_a_service_that_stopped(store: HistoryStore) -> None:
    store_run(store, [make_result(ts=100.0)], started=100.0)
    store_run(store, [make_result(ts=200.0)], started=200.0)
    store_run(store, [make_result(state=State.REFUSED, ts=300.0)], started=300.0)
    store_run(store, [make_result(port=22, ts=400.0)], started=400.0)  # did not scan 5432
    store_run(store, [make_result(state=State.REFUSED, ts=500.0)], started=500.0)
    current = store_run(store, [], started=600.0, finish=False)
    store.add_results(current, [make_result(state=State.REFUSED, ts=601.0)])

    history = store.history_for(*ENDPOINT)
    assert history.last_open == 200.0
    assert history.first_refused == 300.0  # the streak runs through the run that skipped it
    assert history.host_ever_answered


def test_a_filtered_result_breaks_the_refusal_streak(store: HistoryStore) -> None:
    store_run(store, [make_result(state=State.REFUSED, ts=100.0)], started=100.0)
    store_run(store, [make_result(state=State.FILTERED, ts=200.0)], started=200.0)
    store_run(store, [make_result(state=State.REFUSED, ts=300.0)], started=300.0)
    store_run(store, [make_result(state=State.REFUSED, ts=400.0)], started=400.0)
    history = store.history_for(*ENDPOINT)
    assert history.first_refused == 300.0
    assert history.last_open is None
    assert not history.host_ever_answered


def test_no_streak_when_the_newest_result_is_not_a_refusal(store: HistoryStore) -> None:
    store_run(store, [make_result(state=State.REFUSED, ts=100.0)], started=100.0)
    store_run(store, [make_result(ts=200.0)], started=200.0)
    history = store.history_for(*ENDPOINT)
    assert (history.first_refused, history.last_open) == (None, 200.0)


def test_host_ever_answered_is_about_the_address_on_any_port(store: HistoryStore) -> None:
    store_run(
        store,
        [
            make_result(port=22, ts=50.0),  # another port of the same address answered
            make_result(state=State.REFUSED, ts=51.0),
            make_result(host="db2.example", address="10.0.0.6", port=80, state=State.REFUSED),
        ],
        started=50.0,
    )
    assert store.history_for(*ENDPOINT).host_ever_answered
    assert store.history_for(*ENDPOINT).last_open is None
    assert not store.history_for("db2.example", "10.0.0.6", 80, Proto.TCP).host_ever_answered


def test_history_for_keeps_endpoints_with_other_addresses_apart(store: HistoryStore) -> None:
    store_run(store, [make_result(address="10.0.0.9", ts=100.0)], started=100.0)
    store_run(store, [make_result(address="10.0.0.5", state=State.REFUSED, ts=200.0)], 200.0)
    history = store.history_for(*ENDPOINT)
    assert history.last_open is None
    assert history.first_refused == 200.0


# --- retention ---------------------------------------------------------------------------


def result_rows(path: Path) -> int:
    return int(str(raw_rows(path, "SELECT count(*) FROM results")[0][0]))


def test_retain_by_count_keeps_the_newest_runs(store: HistoryStore, db_path: Path) -> None:
    ids = [store_run(store, [make_result(), make_result(port=22)], float(day)) for day in range(5)]
    assert store.retain(keep_runs=2) == 3
    assert [run.id for run in store.runs()] == ids[:1:-1][:2]
    assert result_rows(db_path) == 4  # the deleted runs' results went with them


def test_retain_by_count_never_deletes_a_running_run(store: HistoryStore) -> None:
    running = store_run(store, [make_result()], started=1.0, finish=False)
    for started in (2.0, 3.0):
        store_run(store, [make_result()], started)
    assert store.retain(keep_runs=1) == 1
    assert running in {run.id for run in store.runs()}


def test_retain_by_age(store: HistoryStore, clock: FakeClock, db_path: Path) -> None:
    old = store_run(store, [make_result()], started=clock.now - 40 * DAY)
    stale_running = store_run(store, [make_result()], clock.now - 35 * DAY, finish=False)
    recent = store_run(store, [make_result()], started=clock.now - 10 * DAY)
    assert store.retain(keep_days=30) == 2
    assert [run.id for run in store.runs()] == [recent]
    assert old != stale_running
    assert result_rows(db_path) == 1


def test_retain_with_both_limits_deletes_what_either_says(
    store: HistoryStore, clock: FakeClock
) -> None:
    for days_ago in (50, 20, 10, 5):
        store_run(store, [make_result()], started=clock.now - days_ago * DAY)
    assert store.retain(keep_runs=3, keep_days=15) == 2
    assert [run.started for run in store.runs()] == [clock.now - 5 * DAY, clock.now - 10 * DAY]


def test_retain_rejects_negative_limits(store: HistoryStore) -> None:
    with pytest.raises(ValueError, match="keep_runs"):
        store.retain(keep_runs=-1)
    with pytest.raises(ValueError, match="keep_days"):
        store.retain(keep_days=-1.0)


# --- schema versions ---------------------------------------------------------------------

NEXT_FOR_TEST = (
    "ALTER TABLE runs ADD COLUMN note TEXT",
    "CREATE TABLE annotations (run_id INTEGER REFERENCES runs (id) ON DELETE CASCADE, text TEXT)",
)


def add_results_before_attempts(
    store: HistoryStore, run_id: int, results: Sequence[Result]
) -> None:
    """`HistoryStore.add_results` as reachscan wrote it before schema v4 (no `attempts`)."""
    connection = sqlite3.connect(store.path)
    with contextlib.closing(connection), connection:
        connection.executemany(
            "INSERT INTO results (run_id, host, address, port, proto, state, reason, rtt_ms, "
            "resolved_via, expect, ok, labels, cause_kind, cause, ts) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [row[:-1] for row in history_store.result_rows(run_id, results)],
        )


def begin_run_before_vantage(store: HistoryStore, run: RunInfo) -> int:
    """`HistoryStore.begin_run` as reachscan wrote it before schema v3 (no `vantage`): to
    write the files an older reachscan left behind."""
    connection = sqlite3.connect(store.path)
    with contextlib.closing(connection), connection:
        cursor = connection.execute(
            "INSERT INTO runs (started, status, command, version) VALUES (?, ?, ?, ?)",
            (run.started, RunStatus.RUNNING.value, run.command, run.version),
        )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def test_a_run_keeps_where_it_probed_from(store: HistoryStore) -> None:
    run_id = store.begin_run(RunInfo(1_000.0, "reachscan scan x", "0.1.0", vantage="site-a"))
    assert store.get_run(run_id).vantage == "site-a"
    assert run_info_of(store.get_run(run_id)).vantage == "site-a"


def test_a_new_file_is_at_the_current_version(store: HistoryStore, db_path: Path) -> None:
    assert raw_rows(db_path, "PRAGMA user_version") == [(len(MIGRATIONS),)]


def test_a_new_migration_applies_once_and_keeps_the_runs(db_path: Path) -> None:
    with HistoryStore.open(db_path) as current:
        run_id = store_run(current, [make_result()], started=1_000.0)
    assert raw_rows(db_path, "PRAGMA user_version") == [(len(MIGRATIONS),)]

    with HistoryStore.open(db_path, migrations=(*MIGRATIONS, NEXT_FOR_TEST)) as upgraded:
        assert upgraded.get_run(run_id).status is RunStatus.COMPLETE
        assert len(upgraded.observations(run_id)) == 1
    assert raw_rows(db_path, "PRAGMA user_version") == [(len(MIGRATIONS) + 1,)]
    assert raw_rows(db_path, "SELECT note FROM runs") == [(None,)]
    # Opening again applies nothing twice (ALTER TABLE would fail on a second run).
    HistoryStore.open(db_path, migrations=(*MIGRATIONS, NEXT_FOR_TEST)).close()


def test_the_v2_upgrade_keeps_every_run_result_and_id_and_allows_abandoned(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v2 rebuilds `runs` (a CHECK constraint cannot be altered): the results must not be
    cascaded away with the old table, and a pruned newest id must not be reused."""
    with monkeypatch.context() as older:
        older.setattr(HistoryStore, "begin_run", begin_run_before_vantage)
        older.setattr(HistoryStore, "add_results", add_results_before_attempts)
        with HistoryStore.open(db_path, migrations=MIGRATIONS[:1]) as version_one:
            kept = [
                store_run(version_one, [make_result(), make_result(port=22)], 1_000.0 * n)
                for n in (1, 2)
            ]
            pruned = store_run(version_one, [make_result()], started=3_000.0)
    with sqlite3.connect(db_path) as raw:  # the newest run pruned, as retention could
        raw.execute("PRAGMA foreign_keys = ON")
        raw.execute("DELETE FROM runs WHERE id = ?", (pruned,))
    raw.close()

    with HistoryStore.open(db_path) as upgraded:
        assert [run.id for run in upgraded.runs()] == list(reversed(kept))
        assert all(len(upgraded.observations(run_id)) == 2 for run_id in kept)
        running = store_run(upgraded, [make_result()], started=4_000.0, finish=False)
        assert running == pruned + 1  # AUTOINCREMENT's high-water mark survived
        assert upgraded.abandon_running_runs("killed") == [running]
        assert upgraded.get_run(running).status is RunStatus.ABANDONED
        assert {upgraded.get_run(run_id).vantage for run_id in kept} == {""}  # before v3
        assert {r.attempts for run_id in kept for r in upgraded.results(run_id)} == {1}  # v4
    assert raw_rows(db_path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    assert raw_rows(db_path, "PRAGMA foreign_key_check") == []


def test_runs_left_running_are_closed_abandoned_with_what_they_stored(
    store: HistoryStore,
) -> None:
    complete = store_run(store, [make_result()], started=1_000.0)
    killed = store_run(
        store,
        [make_result(ts=2_001.0), make_result(port=22, state=State.REFUSED, ts=2_003.0)],
        started=2_000.0,
        finish=False,
    )

    assert store.abandon_running_runs("its process died") == [killed]
    assert store.abandon_running_runs("its process died") == []  # closed once

    run = store.get_run(killed)
    assert (run.status, run.total, run.not_ok) == (RunStatus.ABANDONED, 2, 1)
    assert run.counts == {"open": 1, "refused": 1}
    assert run.finished == 2_003.0  # last seen alive: its newest result
    assert run.message == "its process died"
    assert store.get_run(complete).status is RunStatus.COMPLETE
    assert store.latest_complete_run() is not None
    assert store.latest_complete_run().id == complete  # type: ignore[union-attr]


def test_a_history_deleted_or_replaced_under_the_store_is_noticed(db_path: Path) -> None:
    with HistoryStore.open(db_path) as store:
        store.check_still_in_place()
        db_path.unlink()
        with pytest.raises(HistoryError, match="deleted during the run"):
            store.check_still_in_place()
        HistoryStore.open(db_path).close()  # another file at the same path
        with pytest.raises(HistoryError, match="replaced during the run"):
            store.check_still_in_place()


def test_a_file_from_a_newer_version_is_refused(db_path: Path) -> None:
    HistoryStore.open(db_path, migrations=(*MIGRATIONS, NEXT_FOR_TEST)).close()
    with pytest.raises(HistoryError, match="newer reachscan"):
        HistoryStore.open(db_path, migrations=MIGRATIONS)


# --- files, permissions and unusable databases ------------------------------------------


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield int(request.param)
    finally:
        os.umask(previous)


def test_files_are_private_whatever_the_umask(umask: int, db_path: Path) -> None:
    with HistoryStore.open(db_path) as store:
        store_run(store, [make_result()], started=1.0)
        files = [db_path, *db_path.parent.glob("history.sqlite-*")]
        assert len(files) == 3  # the database, -wal and -shm while open
        for path in files:
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == 0o600, f"{path.name}: {oct(mode)}"
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700


def test_an_existing_file_keeps_its_mode(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.touch(mode=0o640)
    os.chmod(db_path, 0o640)
    HistoryStore.open(db_path).close()
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o640


def test_a_file_that_is_not_sqlite_is_a_history_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not a database, it is a shopping list\n" * 100)
    with pytest.raises(HistoryError, match="not an SQLite database") as caught:
        HistoryStore.open(path)
    assert str(path) in str(caught.value)


def test_a_corrupt_header_is_a_history_error(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    with HistoryStore.open(path) as store:
        store_run(store, [make_result()], started=1.0)
    with path.open("r+b") as handle:
        handle.write(b"\x00" * 100)  # wipe the header
    with pytest.raises(HistoryError):
        HistoryStore.open(path)


def test_another_programs_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE customers (name TEXT)")
    connection.commit()
    connection.close()
    with pytest.raises(HistoryError, match="another program"):
        HistoryStore.open(path)
    assert raw_rows(path, "PRAGMA journal_mode") == [("delete",)]
    assert raw_rows(path, "PRAGMA user_version") == [(0,)]


def test_a_directory_in_place_of_the_file_is_a_history_error(tmp_path: Path) -> None:
    """Said as such, not SQLite's "unable to open" (scan) or "disk I/O error" (serve)."""
    with pytest.raises(HistoryError, match="is a directory: --db takes the database file"):
        HistoryStore.open(tmp_path)
    with pytest.raises(HistoryError, match="is a directory: --db takes the database file"):
        HistoryStore.open_readonly(tmp_path)


ADDRESS_SPACE_LIMITED = """
import resource, sys
from pathlib import Path
from scanner.history.store import HistoryError, HistoryStore
in_use = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (in_use, in_use))
try:
    HistoryStore.open(Path(sys.argv[1])).close()
except HistoryError as error:
    print(error)
"""


def test_an_address_space_limit_is_said_as_out_of_memory_not_disk_io(db_path: Path) -> None:
    """Under `ulimit -v` SQLite cannot map the WAL index and says "disk I/O error"."""
    completed = subprocess.run(
        [sys.executable, "-c", ADDRESS_SPACE_LIMITED, str(db_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert completed.returncode == 0, completed.stderr
    assert "out of memory: raise the memory limit (ulimit -v)" in completed.stdout
    assert "input/output error" not in completed.stdout


def test_a_database_locked_by_a_writer_is_a_history_error(db_path: Path) -> None:
    with HistoryStore.open(db_path, busy_timeout=0.05) as store:
        other_writer = sqlite3.connect(db_path, isolation_level=None)
        other_writer.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(HistoryError, match="locked by another process"):
                store.begin_run(RunInfo(started=1.0, command="x", version="0.1.0"))
        finally:
            other_writer.execute("ROLLBACK")
            other_writer.close()
        store.begin_run(RunInfo(started=1.0, command="x", version="0.1.0"))


# --- the default location ----------------------------------------------------------------


def test_default_path_follows_xdg_state_home() -> None:
    environ = {"XDG_STATE_HOME": "/srv/state", "HOME": "/home/ops"}
    assert default_db_path(environ) == Path("/srv/state/reachscan/history.sqlite")


@pytest.mark.parametrize("state_home", [None, "", "relative/state"])
def test_default_path_falls_back_to_local_state(state_home: str | None) -> None:
    environ = {"HOME": "/home/ops"}
    if state_home is not None:
        environ["XDG_STATE_HOME"] = state_home  # relative: invalid per the spec, ignored
    assert default_db_path(environ) == Path("/home/ops/.local/state/reachscan/history.sqlite")


def test_the_tries_each_verdict_took_are_stored_and_read_back(store: HistoryStore) -> None:
    """Schema v4: `attempts`, from which the loss on a path is read (scanner/core/loss.py)."""
    from dataclasses import replace

    results = [replace(make_result(port=22), attempts=3), make_result(port=80)]
    run_id = store_run(store, results, started=1_000.0)
    assert [r.attempts for r in store.results(run_id)] == [3, 1]
