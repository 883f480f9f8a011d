"""Reading stored runs back: results rebuilt as the scan produced them, the run's summary
for replaying it into a sink, and the read-only opener `reachscan serve` uses."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scanner.core.model import (
    Cause,
    Endpoint,
    Expect,
    Proto,
    Reason,
    Relation,
    ResolvedVia,
    Result,
    State,
    WrongPortEvidence,
)
from scanner.core.sinks import RunInfo, RunSummary
from scanner.history import store as store_module
from scanner.history.records import RunStatus
from scanner.history.store import (
    MIGRATIONS,
    HistoryError,
    HistoryStore,
    UnknownRun,
    run_info_of,
    summary_of,
)
from tests.support.history import VANTAGE, make_result, store_run
from tests.support.history import summary_of as summary_from_results


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "history.sqlite"


@pytest.fixture
def store(db_path: Path) -> Iterator[HistoryStore]:
    with HistoryStore.open(db_path) as opened:
        yield opened


def varied_results() -> list[Result]:
    """One of each shape a stored row can take."""
    return [
        make_result(port=22, labels=(("env", "prod"), ("role", "db"))),
        make_result(port=5432, state=State.REFUSED, cause_kind="service-down", ts=1_001.5),
        make_result(host="gone.example", address=None, state=State.UNRESOLVED, labels=()),
        Result(
            endpoint=Endpoint(host="::1", port=53, proto=Proto.UDP, expect=None),
            address="::1",
            resolved_via=ResolvedVia.LITERAL,
            state=State.OPEN_FILTERED,
            reason=Reason.NO_RESPONSE,
            rtt_ms=None,
            ts=1_002.25,
        ),
        Result(
            endpoint=Endpoint(host="web.example", port=443, proto=Proto.TCP, expect=Expect.CLOSED),
            address="10.0.0.9",
            resolved_via=ResolvedVia.HOSTS_FILE,
            state=State.FILTERED,
            reason=Reason.ADMIN_PROHIBITED,
            rtt_ms=12.125,
            ts=1_003.0,
        ),
    ]


# --- results --------------------------------------------------------------------------


def test_results_come_back_equal_and_in_stored_order(store: HistoryStore) -> None:
    stored = varied_results()
    run_id = store_run(store, stored, started=1_000.0)
    assert list(store.results(run_id)) == stored


def test_results_are_only_those_of_the_run_asked_for(store: HistoryStore) -> None:
    first = store_run(store, [make_result(port=1)], started=1_000.0)
    second = store_run(store, [make_result(port=2), make_result(port=3)], started=2_000.0)
    assert [result.endpoint.port for result in store.results(first)] == [1]
    assert [result.endpoint.port for result in store.results(second)] == [2, 3]


@pytest.mark.parametrize("count", [0, 1, 2, 3, 6, 7])
def test_results_stream_across_fetch_batches(
    store: HistoryStore, monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    """Batch boundaries (exact multiples, one over, empty) lose and repeat nothing."""
    monkeypatch.setattr(store_module, "RESULT_FETCH_SIZE", 3)
    stored = [make_result(port=port) for port in range(1, count + 1)]
    run_id = store_run(store, stored, started=1_000.0)
    assert list(store.results(run_id)) == stored


def test_results_are_read_lazily(
    store: HistoryStore, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the batches the consumer reaches are fetched."""
    monkeypatch.setattr(store_module, "RESULT_FETCH_SIZE", 2)
    run_id = store_run(store, [make_result(port=port) for port in range(1, 11)], started=1.0)
    fetched: list[int] = []

    class CountingCursor(sqlite3.Cursor):
        def fetchmany(self, size: int | None = 1) -> list[Any]:
            rows = super().fetchmany(size)
            fetched.append(len(rows))
            return rows

    connection = sqlite3.connect(db_path, isolation_level=None)
    counting = HistoryStore(_CursorFactory(connection, CountingCursor), db_path, time.time)  # type: ignore[arg-type]
    try:
        results = counting.results(run_id)
        assert [next(results).endpoint.port for _ in range(3)] == [1, 2, 3]
        assert fetched == [2, 2]
        results.close()
    finally:
        connection.close()


class _CursorFactory:
    """Stands in for a connection, running every statement on a cursor of the given
    class (a real connection's attributes are read-only, so it cannot be patched)."""

    def __init__(self, connection: sqlite3.Connection, cursor_class: type[sqlite3.Cursor]):
        self._connection = connection
        self._cursor_class = cursor_class

    def execute(self, query: str, parameters: tuple[object, ...] = ()) -> sqlite3.Cursor:
        return self._connection.cursor(self._cursor_class).execute(query, parameters)


def test_unknown_run_is_reported_before_iterating(store: HistoryStore) -> None:
    with pytest.raises(UnknownRun, match="no run 7"):
        store.results(7)


def test_cause_evidence_comes_back_as_the_diagnosis_builds_it(store: HistoryStore) -> None:
    cause = Cause(
        confidence=0.75,
        evidence=WrongPortEvidence(
            expected_port=5432,
            answered_port=5433,
            relation=Relation.ADJACENT,
            also_answered=(5434, 5431),
        ),
        advice="use 5433",
    )
    result = make_result(state=State.REFUSED)
    with_cause = Result(
        endpoint=result.endpoint,
        address=result.address,
        resolved_via=result.resolved_via,
        state=result.state,
        reason=result.reason,
        rtt_ms=None,
        ts=result.ts,
        cause=cause,
    )
    run_id = store_run(store, [with_cause], started=1_000.0)
    (read,) = store.results(run_id)
    assert read.cause == cause
    assert read.cause is not None
    assert isinstance(read.cause.evidence, WrongPortEvidence)
    assert read.cause.evidence.relation is Relation.ADJACENT
    assert read.cause.evidence.also_answered == (5434, 5431)


def test_a_stored_value_this_version_does_not_know_is_an_error(
    store: HistoryStore, db_path: Path
) -> None:
    run_id = store_run(store, [make_result()], started=1_000.0)
    raw = sqlite3.connect(db_path)
    with raw:
        raw.execute("UPDATE results SET state = 'teleported'")
    raw.close()
    with pytest.raises(HistoryError, match=r"unknown State 'teleported'.*newer reachscan"):
        list(store.results(run_id))


def test_malformed_labels_are_an_error_naming_the_endpoint(
    store: HistoryStore, db_path: Path
) -> None:
    run_id = store_run(store, [make_result(port=5432)], started=1_000.0)
    raw = sqlite3.connect(db_path)
    with raw:
        raw.execute("UPDATE results SET labels = '[1, 2'")
    raw.close()
    with pytest.raises(HistoryError, match=r"db1\.example port 5432 is malformed"):
        list(store.results(run_id))


@pytest.mark.parametrize(
    "stored_cause",
    [
        '{"kind": "teleported", "confidence": 0.5, "evidence": {}, "advice": ""}',
        '{"kind": "wrong-port", "confidence": 0.5, "evidence": {}, "advice": ""}',
        '{"kind": "wrong-port", "confidence": 0.5, "advice": "", "evidence": {"expected_port":'
        ' "5432", "answered_port": 5433, "relation": "adjacent", "also_answered": []}}',
        '{"kind": "wrong-port", "confidence": 0.5, "advice": "", "evidence": {"expected_port":'
        ' 5432, "answered_port": 5433, "relation": "nearby", "also_answered": []}}',
        '["wrong-port"]',
    ],
)
def test_a_stored_cause_of_no_known_kind_or_shape_is_an_error_naming_the_endpoint(
    store: HistoryStore, db_path: Path, stored_cause: str
) -> None:
    run_id = store_run(store, [make_result(port=5432)], started=1_000.0)
    raw = sqlite3.connect(db_path)
    with raw:
        raw.execute("UPDATE results SET cause = ?", (stored_cause,))
    raw.close()
    with pytest.raises(HistoryError, match=r"db1\.example port 5432 is malformed"):
        list(store.results(run_id))


# --- summaries ------------------------------------------------------------------------


def test_summary_of_a_complete_run_is_the_one_the_sinks_saw(store: HistoryStore) -> None:
    stored = varied_results()
    run_id = store_run(store, stored, started=1_000.0)
    run = store.get_run(run_id)
    assert summary_of(run) == summary_from_results(stored, 1_005.0)
    assert run_info_of(run) == RunInfo(
        started=1_000.0, command="reachscan scan fleet.yaml", version="0.1.0", vantage=VANTAGE
    )


def test_summary_of_an_interrupted_run_says_so(store: HistoryStore) -> None:
    run_id = store_run(store, [make_result()], started=1_000.0, interrupted=True)
    summary = summary_of(store.get_run(run_id))
    assert summary == RunSummary(
        finished=1_005.0,
        counts={State.OPEN: 1},
        total=1,
        not_ok=0,
        inventory_errors=0,
        interrupted=True,
    )


def test_runs_without_totals_have_no_summary(store: HistoryStore) -> None:
    running = store_run(store, [make_result()], started=1_000.0, finish=False)
    failed = store_run(store, [make_result()], started=2_000.0, finish=False)
    store.fail_run(failed, "boom")
    with pytest.raises(ValueError, match="is running"):
        summary_of(store.get_run(running))
    with pytest.raises(ValueError, match="is failed"):
        summary_of(store.get_run(failed))


# --- what serve asks of the runs table --------------------------------------------------


def test_run_counts_latest_complete_and_last_success(store: HistoryStore) -> None:
    assert store.run_counts() == dict.fromkeys(RunStatus, 0)
    assert store.latest_complete_run() is None
    assert store.last_success_time() is None

    good = store_run(store, [make_result()], started=1_000.0)
    bad = store_run(store, [make_result(state=State.REFUSED)], started=2_000.0)
    store_run(store, [make_result()], started=3_000.0, interrupted=True)
    store_run(store, [make_result()], started=4_000.0, finish=False)

    assert store.run_counts() == {
        RunStatus.RUNNING: 1,
        RunStatus.COMPLETE: 2,
        RunStatus.INTERRUPTED: 1,
        RunStatus.FAILED: 0,
        RunStatus.ABANDONED: 0,
    }
    latest = store.latest_complete_run()
    assert latest is not None
    assert latest.id == bad
    assert store.last_success_time() == store.get_run(good).finished == 1_005.0


# --- the read-only opener ---------------------------------------------------------------


def test_readonly_reads_what_the_writer_stored(store: HistoryStore, db_path: Path) -> None:
    stored = varied_results()
    run_id = store_run(store, stored, started=1_000.0)
    with HistoryStore.open_readonly(db_path) as reader:
        assert list(reader.results(run_id)) == stored


def test_readonly_never_waits_for_a_writer(store: HistoryStore, db_path: Path) -> None:
    run_id = store_run(store, [make_result()], started=1_000.0)
    writer = sqlite3.connect(db_path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("DELETE FROM results")
    try:
        with HistoryStore.open_readonly(db_path, busy_timeout=0.0) as reader:
            assert len(list(reader.results(run_id))) == 1  # the last committed state
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_readonly_cannot_write(store: HistoryStore, db_path: Path) -> None:
    run_id = store_run(store, [make_result()], started=1_000.0)
    with (
        HistoryStore.open_readonly(db_path) as reader,
        pytest.raises(HistoryError, match=r"readonly|not writable"),
    ):
        reader.add_results(run_id, [make_result()])


def test_readonly_does_not_create_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here.sqlite"
    with pytest.raises(HistoryError):
        HistoryStore.open_readonly(missing)
    assert os.listdir(tmp_path) == []


def test_readonly_refuses_another_programs_database(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    raw = sqlite3.connect(other)
    raw.execute("CREATE TABLE notes (text TEXT)")
    raw.close()
    with pytest.raises(HistoryError, match="another program"):
        HistoryStore.open_readonly(other)


def test_readonly_says_an_empty_file_holds_no_history(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    with pytest.raises(HistoryError, match="no history stored yet"):
        HistoryStore.open_readonly(empty)


def test_readonly_refuses_other_schema_versions_without_migrating(
    store: HistoryStore, db_path: Path
) -> None:
    newer = (*MIGRATIONS, ("CREATE TABLE future (x)",))
    with pytest.raises(HistoryError, match=r"older reachscan.*next scan upgrades it"):
        HistoryStore.open_readonly(db_path, migrations=newer)
    with pytest.raises(HistoryError, match="newer reachscan"):
        HistoryStore.open_readonly(db_path, migrations=())
    raw = sqlite3.connect(db_path)
    assert raw.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    raw.close()
