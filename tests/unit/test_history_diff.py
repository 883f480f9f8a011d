"""Diffs between stored runs: the pure comparison, picking runs, rendering, the command."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from scanner.commands import diff as diff_command
from scanner.core.model import Reason, State
from scanner.history.diff import (
    ChangeKind,
    NothingToCompare,
    compare,
    diff_runs,
    diff_to_json,
    render_diff_text,
)
from scanner.history.records import Observation
from scanner.history.store import HistoryStore, UnknownRun
from tests.support.history import make_result, store_run

OPEN = Observation(State.OPEN, Reason.SYN_ACK, None)
REFUSED_DOWN = Observation(State.REFUSED, Reason.CONN_REFUSED, "service-down")
REFUSED_PORT = Observation(State.REFUSED, Reason.CONN_REFUSED, "wrong-port")


def key(port: int, host: str = "db1.example") -> tuple[str, str | None, int, str]:
    return (host, "10.0.0.5", port, "tcp")


def test_compare_finds_each_kind_of_change() -> None:
    before = {key(22): OPEN, key(5432): OPEN, key(80): REFUSED_PORT, key(443): OPEN}
    after = {key(22): OPEN, key(5432): REFUSED_DOWN, key(80): REFUSED_DOWN, key(8443): OPEN}
    changes = compare(before, after)
    assert [(change.kind, change.key[2]) for change in changes] == [
        (ChangeKind.STATE, 5432),  # the service stopped
        (ChangeKind.CAUSE, 80),
        (ChangeKind.APPEARED, 8443),
        (ChangeKind.VANISHED, 443),
    ]
    stopped = changes[0]
    assert (stopped.before, stopped.after) == (OPEN, REFUSED_DOWN)
    assert changes[2].before is None and changes[3].after is None


def test_a_reason_alone_is_not_a_change() -> None:
    filtered_silent = Observation(State.FILTERED, Reason.NO_RESPONSE, "filtered")
    filtered_icmp = Observation(State.FILTERED, Reason.ADMIN_PROHIBITED, "filtered")
    assert compare({key(1): filtered_silent}, {key(1): filtered_icmp}) == ()


def test_identical_runs_have_no_changes() -> None:
    runs = {key(22): OPEN, key(80): REFUSED_DOWN}
    assert compare(runs, dict(runs)) == ()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "history.sqlite"


@pytest.fixture
def store(db_path: Path) -> Iterator[HistoryStore]:
    with HistoryStore.open(db_path) as opened:
        yield opened


def two_runs(store: HistoryStore) -> tuple[int, int]:
    first = store_run(
        store,
        [
            make_result(port=22),
            make_result(port=5432),
            make_result(port=80, state=State.REFUSED, cause_kind="wrong-port"),
            make_result(port=443),
        ],
        started=1_000.0,
    )
    second = store_run(
        store,
        [
            make_result(port=22),
            make_result(port=5432, state=State.REFUSED, cause_kind="service-down"),
            make_result(port=80, state=State.REFUSED, cause_kind="service-down"),
            make_result(port=8443),
        ],
        started=2_000.0,
    )
    return first, second


def test_diff_defaults_to_the_last_two_complete_runs(store: HistoryStore) -> None:
    first, second = two_runs(store)
    store_run(store, [make_result(port=22)], started=3_000.0, interrupted=True)
    diff = diff_runs(store)
    assert (diff.before.id, diff.after.id) == (first, second)
    assert {change.kind for change in diff.changes} == set(ChangeKind)


def test_diff_of_named_runs_and_one_against_the_newest(store: HistoryStore) -> None:
    first, second = two_runs(store)
    partial = store_run(store, [make_result(port=22)], started=3_000.0, interrupted=True)
    named = diff_runs(store, second, partial)
    assert (named.before.id, named.after.id) == (second, partial)
    assert "is interrupted" in render_diff_text(named)
    assert sorted(change.key[2] for change in named.changes) == [80, 5432, 8443]
    one = diff_runs(store, first)
    assert (one.before.id, one.after.id) == (first, second)


def test_diff_errors(store: HistoryStore) -> None:
    with pytest.raises(NothingToCompare, match="are 0"):
        diff_runs(store)
    with pytest.raises(NothingToCompare, match="no complete run"):
        diff_runs(store, 1)
    store_run(store, [make_result()], started=1.0)
    with pytest.raises(NothingToCompare, match="is 1"):
        diff_runs(store)
    with pytest.raises(UnknownRun, match="no run 7"):
        diff_runs(store, 7, 1)


def test_text_rendering_shows_every_change_with_before_and_after(store: HistoryStore) -> None:
    two_runs(store)
    text = render_diff_text(diff_runs(store))
    lines = text.splitlines()
    assert lines[0].startswith("run 1 (1970-01-01T00:16:40Z, complete) -> run 2 ")
    assert lines[1] == "4 changes: 1 state, 1 cause, 1 appeared, 1 vanished"
    rows = {line.split()[0]: line for line in lines[3:]}
    assert "db1.example (10.0.0.5) 5432/tcp" in rows["state"]
    assert rows["state"].index("open (syn-ack)") < rows["state"].index("refused (conn-refused)")
    assert rows["cause"].endswith("refused (conn-refused), service-down")
    assert "wrong-port" in rows["cause"]
    assert rows["appeared"].split()[-3:] == ["-", "open", "(syn-ack)"]
    # columns line up: every row's BEFORE starts where the header's does
    before_column = lines[3].index("BEFORE")
    assert all(line[before_column - 2 : before_column] == "  " for line in lines[4:])


def test_no_changes_says_so(store: HistoryStore) -> None:
    store_run(store, [make_result()], started=1.0)
    store_run(store, [make_result()], started=2.0)
    assert render_diff_text(diff_runs(store)).splitlines()[-1] == "no changes"


def test_json_is_native_and_complete(store: HistoryStore) -> None:
    two_runs(store)
    document = orjson.loads(orjson.dumps(diff_to_json(diff_runs(store))))
    assert document["before"]["id"] == 1 and document["after"]["status"] == "complete"
    assert document["after"]["started"] == "1970-01-01T00:33:20.000Z"
    state_change = document["changes"][0]
    assert state_change == {
        "change": "state",
        "host": "db1.example",
        "address": "10.0.0.5",
        "port": 5432,
        "proto": "tcp",
        "before": {"state": "open", "reason": "syn-ack", "cause": None},
        "after": {"state": "refused", "reason": "conn-refused", "cause": "service-down"},
    }


# --- the command -------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="reachscan")
    diff_command.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_command_prints_the_diff(
    store: HistoryStore, db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    two_runs(store)
    args = parse(["diff", "--db", str(db_path)])
    assert args.handler(args) == 0
    assert "4 changes" in capsys.readouterr().out
    args = parse(["diff", "1", "2", "--db", str(db_path), "--format", "json"])
    assert args.handler(args) == 0
    assert len(orjson.loads(capsys.readouterr().out)["changes"]) == 4


def test_exit_code_says_whether_anything_changed(
    store: HistoryStore, db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    two_runs(store)
    args = parse(["diff", "--db", str(db_path), "--exit-code"])
    assert args.handler(args) == 1  # four changes
    args = parse(["diff", "2", "2", "--db", str(db_path), "--exit-code"])
    assert args.handler(args) == 0  # a run against itself: nothing changed
    capsys.readouterr()


def test_command_usage_errors_exit_2(
    store: HistoryStore, db_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    two_runs(store)
    args = parse(["diff", "1", "9", "--db", str(db_path)])
    assert args.handler(args) == 2
    assert "no run 9" in capsys.readouterr().err
    missing = tmp_path / "nowhere" / "history.sqlite"
    args = parse(["diff", "--db", str(missing)])
    assert args.handler(args) == 2
    error = capsys.readouterr().err
    assert str(missing) in error and "no such file" in error
    assert not missing.exists()  # a typo in --db creates nothing


def test_command_reads_the_default_location(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with HistoryStore.open(tmp_path / "state" / "reachscan" / "history.sqlite") as store:
        two_runs(store)
    args = parse(["diff"])
    assert args.handler(args) == 0
    assert "4 changes" in capsys.readouterr().out


def test_command_rejects_a_malformed_run_id(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parse(["diff", "last"])
    assert caught.value.code == 2
    assert "must be a whole number from 1 to 9,223,372,036,854,775,807, not 'last'" in (
        capsys.readouterr().err
    )


def test_command_rejects_a_run_id_past_sqlites_integers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A 20-digit run id was an OverflowError traceback from SQLite."""
    with pytest.raises(SystemExit) as caught:
        parse(["diff", "1", "99999999999999999999"])
    assert caught.value.code == 2
    assert "argument RUN_B: must be a whole number from 1 to" in capsys.readouterr().err
