"""The history writer: a forked process storing the batches it is handed (real processes,
a real database; no network)."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner.core.model import Result, State
from scanner.core.sinks import RunInfo
from scanner.history.records import RunStatus
from scanner.history.sink import HistorySink
from scanner.history.store import HistoryError, HistoryStore, result_rows
from scanner.history.writer import HistoryWriter
from scanner.procs.worker_pool import WorkerPool, WorkersUnavailable
from tests.support.history import make_result, summary_of
from tests.support.proc_fds import pipes_held, serve_until_input_ends

RUN = RunInfo(started=1_000.0, command="reachscan scan fleet.yaml", version="0.1.0")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "history.sqlite"


@pytest.fixture
def writer(db_path: Path) -> Iterator[HistoryWriter]:
    """Forked before this process opens the database, as the scan command does."""
    with HistoryWriter.fork(db_path) as forked:
        yield forked


def varied_results(count: int) -> list[Result]:
    """Every kind of value a row holds: NULLs, floats, labels, a cause's nested JSON."""
    return [
        make_result(
            port=port,
            state=(State.OPEN, State.REFUSED, State.FILTERED)[port % 3],
            cause_kind="service-down" if port % 7 == 0 else None,
            labels=(("env", "prod"), ("rack", str(port % 5))) if port % 2 else (),
            ts=1_000.0 + port / 1_000,
        )
        for port in range(1, count + 1)
    ]


def stored_rows(path: Path, run_id: int) -> list[tuple[object, ...]]:
    """Every column but the row id, in insertion order."""
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute(
            "SELECT * FROM results WHERE run_id = ? ORDER BY id", (run_id,)
        ).fetchall()
    finally:
        connection.close()
    return [row[1:] for row in rows]


def test_batches_handed_to_the_writer_are_stored_exactly_as_written_here(
    writer: HistoryWriter, db_path: Path, tmp_path: Path
) -> None:
    results = varied_results(1_500)
    with HistoryStore.open(db_path) as store:
        run_id = store.begin_run(RUN)
        for start in range(0, len(results), 512):
            writer.write(result_rows(run_id, results[start : start + 512]))
        writer.close()
        writer.close()  # safe to repeat
    # The same results written by this process into another database.
    direct_path = tmp_path / "direct.sqlite"
    with HistoryStore.open(direct_path) as direct:
        direct_run = direct.begin_run(RUN)
        direct.add_results(direct_run, results)
    assert direct_run == run_id
    assert stored_rows(db_path, run_id) == stored_rows(direct_path, direct_run)
    assert len(stored_rows(db_path, run_id)) == 1_500


def test_a_writer_with_nothing_to_write_never_opens_the_database(
    writer: HistoryWriter, db_path: Path
) -> None:
    """As when the run lock is busy: the writer ends without creating the file."""
    writer.close()
    assert not db_path.exists()


def test_a_batch_the_database_refuses_is_reported_with_its_reason_and_not_half_stored(
    writer: HistoryWriter, db_path: Path
) -> None:
    with HistoryStore.open(db_path) as store:
        run_id = store.begin_run(RUN)
        saboteur = sqlite3.connect(db_path)
        saboteur.execute(
            "CREATE TRIGGER refuse_666 BEFORE INSERT ON results WHEN NEW.port = 666 "
            "BEGIN SELECT RAISE(ABORT, 'port 666 refused by test'); END"
        )
        saboteur.close()
        writer.write(result_rows(run_id, [make_result(port=1), make_result(port=2)]))
        writer.write(result_rows(run_id, [make_result(port=3), make_result(port=666)]))
        with pytest.raises(HistoryError, match="port 666 refused by test"):
            for _ in range(100):  # reported on a later write, or at the latest by close
                writer.write(result_rows(run_id, [make_result(port=4)]))
                time.sleep(0.01)
            writer.close()
    assert [row[3] for row in stored_rows(db_path, run_id)] == [1, 2]


def test_a_writer_that_was_killed_is_an_error_not_silence(
    writer: HistoryWriter, db_path: Path
) -> None:
    with HistoryStore.open(db_path) as store:
        run_id = store.begin_run(RUN)
        writer.write(result_rows(run_id, [make_result(port=1)]))
        os.kill(writer.pid, signal.SIGKILL)
        with pytest.raises(HistoryError, match="history writer"):
            for _ in range(100):  # a write into the closed pipe, or close, says so
                writer.write(result_rows(run_id, [make_result(port=2)]))
                time.sleep(0.01)
            writer.close()
    assert not Path(f"/proc/{writer.pid}").exists(), "reaped"


def test_the_writer_ignores_the_signals_that_stop_a_scan(
    writer: HistoryWriter, db_path: Path
) -> None:
    """A Ctrl-C reaches the whole process group, and so does a service manager's stop:
    the writer must keep storing what the parent hands it until its input ends."""
    with HistoryStore.open(db_path) as store:
        run_id = store.begin_run(RUN)
        writer.write(result_rows(run_id, [make_result(port=1)]))
        os.kill(writer.pid, signal.SIGINT)
        os.kill(writer.pid, signal.SIGTERM)
        time.sleep(0.1)
        writer.write(result_rows(run_id, [make_result(port=2)]))
        writer.close()
    assert [row[3] for row in stored_rows(db_path, run_id)] == [1, 2]


@pytest.mark.timeout(60)  # the hang guard: a leaked pipe makes `writer.close()` wait forever
def test_workers_forked_later_hold_none_of_the_writers_pipes(writer: HistoryWriter) -> None:
    """Else the writer would not see the end of its input until the workers end (and
    `close`, which waits for it, would never return while they run)."""
    writer_pipes = {
        os.stat(fd).st_ino for fd in (writer.process.to_worker, writer.process.from_worker)
    }
    with WorkerPool.fork(2, serve_until_input_ends) as pool:
        for process in pool.processes:
            deadline = time.monotonic() + 5  # the child closes them as it starts
            while pipes_held(process.pid) & writer_pipes and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not pipes_held(process.pid) & writer_pipes
        writer.close()  # while the workers still run
        assert writer.process.exit_status == 0
        assert [process.exit_status for process in pool.processes] == [None, None]
        assert all(Path(f"/proc/{process.pid}").exists() for process in pool.processes)


def test_the_sink_ends_the_writer_before_it_closes_the_run(
    writer: HistoryWriter, db_path: Path
) -> None:
    results = varied_results(2_000)
    with HistoryStore.open(db_path) as store:
        sink = HistorySink(store, writer)
        sink.start(RUN)
        for start in range(0, len(results), 512):
            sink.write(results[start : start + 512])
        sink.finish(summary_of(results, 1_005.0))
        assert sink.run_id is not None
        (run,) = store.runs()
        assert (run.status, run.total) == (RunStatus.COMPLETE, 2_000)
        assert len(store.observations(sink.run_id)) == 2_000


def test_quitting_stores_what_the_writer_was_handed_and_counts_it(
    writer: HistoryWriter, db_path: Path
) -> None:
    results = varied_results(1_000)
    with HistoryStore.open(db_path) as store:
        sink = HistorySink(store, writer)
        sink.start(RUN)
        sink.write(results)
        sink.quit()
        (run,) = store.runs()
        assert (run.status, run.total) == (RunStatus.INTERRUPTED, 1_000)
    assert not Path(f"/proc/{writer.pid}").exists(), "reaped"


def test_a_writer_that_cannot_be_forked_is_reported(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    descriptors_before = set(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(os, "fork", no_fork)
    with pytest.raises(WorkersUnavailable, match="cannot start 1 history writer"):
        HistoryWriter.fork(db_path)
    assert set(os.listdir("/proc/self/fd")) <= descriptors_before, "no pipe left open"


def test_a_second_ctrl_c_while_the_writer_finishes_stops_it_and_counts_what_it_stored(
    writer: HistoryWriter, db_path: Path
) -> None:
    """The first Ctrl-C let the scan end and the sink wait for the writer to store its
    backlog; a second one lands in that wait. The writer is then stopped and reaped (it
    must not write on behind an `interrupted` run), and the run counts what is stored."""

    def second_ctrl_c(_number: int, _frame: object) -> None:
        raise KeyboardInterrupt

    results = varied_results(512)
    with HistoryStore.open(db_path) as store:
        sink = HistorySink(store, writer)
        sink.start(RUN)
        for _ in range(120):  # ~60,000 rows: a backlog of a good fraction of a second
            sink.write(results)
        previous = signal.signal(signal.SIGALRM, second_ctrl_c)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.02)
            with pytest.raises(KeyboardInterrupt):
                sink.finish(summary_of(results, 1_005.0))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        sink.quit()
        assert not Path(f"/proc/{writer.pid}").exists(), "stopped and reaped"
        assert sink.run_id is not None
        stored = len(stored_rows(db_path, sink.run_id))
        (run,) = store.runs()
        assert (run.status, run.total) == (RunStatus.INTERRUPTED, stored)
    time.sleep(0.2)
    assert len(stored_rows(db_path, sink.run_id)) == stored, "nothing written afterwards"
