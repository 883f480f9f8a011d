"""Timelines of one host over the last runs, flapping, and the `history` command."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from scanner.commands import history as history_command
from scanner.commands.history import parse_endpoint_query
from scanner.core.model import Proto, Reason, State
from scanner.history.records import Observation
from scanner.history.store import HistoryStore
from scanner.history.timeline import (
    count_state_changes,
    endpoint_timeline,
    render_timeline_text,
    timeline_to_json,
)
from tests.support.history import make_result, store_run

OPEN = Observation(State.OPEN, Reason.SYN_ACK, None)
REFUSED = Observation(State.REFUSED, Reason.CONN_REFUSED, None)
FILTERED = Observation(State.FILTERED, Reason.NO_RESPONSE, None)


def test_count_state_changes_skips_gaps() -> None:
    assert count_state_changes([]) == 0
    assert count_state_changes([OPEN, OPEN, OPEN]) == 0
    assert count_state_changes([OPEN, REFUSED, OPEN, FILTERED]) == 3
    assert count_state_changes([OPEN, None, OPEN, None, REFUSED]) == 1
    cause_only = Observation(State.OPEN, Reason.SYN_ACK, "something")
    assert count_state_changes([OPEN, cause_only]) == 0


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "history.sqlite"


@pytest.fixture
def store(db_path: Path) -> Iterator[HistoryStore]:
    with HistoryStore.open(db_path) as opened:
        yield opened


def scan_states(store: HistoryStore, states: str, *, first_run: float = 1_000.0) -> None:
    """One complete run per letter: o open, r refused, f filtered, - not scanned; port
    5432 takes the letters, port 22 is open throughout."""
    letters = {"o": State.OPEN, "r": State.REFUSED, "f": State.FILTERED}
    for index, letter in enumerate(states):
        results = [make_result(port=22)]
        if letter != "-":
            results.append(make_result(port=5432, state=letters[letter]))
        store_run(store, results, started=first_run + index)


def test_flapping_is_k_changes_within_the_last_n_runs(store: HistoryStore) -> None:
    scan_states(store, "ooorororoo")  # 6 changes in the last 10 runs
    timeline = endpoint_timeline(store, "db1.example", runs=10, flap_threshold=3)
    steady, flappy = timeline.endpoints
    assert steady.key[2] == 22 and not steady.flapping and steady.changes == 0
    assert flappy.key[2] == 5432 and flappy.flapping and flappy.changes == 6
    assert not endpoint_timeline(store, "db1.example", flap_threshold=7).endpoints[1].flapping


def test_changes_older_than_the_window_do_not_count(store: HistoryStore) -> None:
    scan_states(store, "ororor" + "oooo")
    timeline = endpoint_timeline(store, "db1.example", runs=4)
    assert [run.id for run in timeline.runs] == [7, 8, 9, 10]  # oldest first
    assert timeline.endpoints[1].changes == 0
    assert not timeline.endpoints[1].flapping
    assert endpoint_timeline(store, "db1.example", runs=10).endpoints[1].flapping


def test_gaps_and_partial_runs(store: HistoryStore) -> None:
    scan_states(store, "o-r")
    store_run(store, [make_result(port=5432)], started=5_000.0, interrupted=True)
    timeline = endpoint_timeline(store, "db1.example", port=5432, proto=Proto.TCP)
    (endpoint,) = timeline.endpoints
    assert len(timeline.runs) == 3  # the interrupted run is left out
    assert endpoint.states == (OPEN, None, REFUSED)
    assert endpoint.latest == REFUSED
    assert endpoint.changes == 1


def test_text_shows_marks_per_run_and_flags_flapping(store: HistoryStore) -> None:
    scan_states(store, "orofo")
    text = render_timeline_text(endpoint_timeline(store, "db1.example", runs=5))
    rows = {line.split()[2]: line for line in text.splitlines() if "/tcp" in line}
    assert rows["22/tcp"].split()[3:] == ["OOOOO", "open", "0"]
    assert rows["5432/tcp"].split()[3:] == ["OROFO", "open", "4", "flapping"]
    assert "1 flapping: the state changed at least 3 times in 5 runs" in text


def test_json(store: HistoryStore) -> None:
    scan_states(store, "or")
    document = orjson.loads(orjson.dumps(timeline_to_json(endpoint_timeline(store, "10.0.0.5"))))
    assert [run["id"] for run in document["runs"]] == [1, 2]
    assert document["flap_threshold"] == 3
    flapping = document["endpoints"][1]
    assert flapping["port"] == 5432 and flapping["changes"] == 1 and not flapping["flapping"]
    assert [state["state"] for state in flapping["states"]] == ["open", "refused"]


def test_invalid_parameters(store: HistoryStore) -> None:
    with pytest.raises(ValueError, match="runs"):
        endpoint_timeline(store, "db1.example", runs=0)
    with pytest.raises(ValueError, match="flap_threshold"):
        endpoint_timeline(store, "db1.example", flap_threshold=0)


# --- the command -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("db1", ("db1", None, None)),
        ("db1:5432", ("db1", 5432, None)),
        ("db1:53/UDP", ("db1", 53, Proto.UDP)),
        ("10.0.0.5:22/tcp", ("10.0.0.5", 22, Proto.TCP)),
        ("::1", ("::1", None, None)),
        ("[::1]", ("::1", None, None)),
        ("[2001:db8::1]:443/tcp", ("2001:db8::1", 443, Proto.TCP)),
    ],
)
def test_parse_endpoint_query(text: str, expected: tuple[str, int | None, Proto | None]) -> None:
    assert parse_endpoint_query(text) == expected


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "no host"),
        (":22", "no host"),
        ("db1:", "port"),
        ("db1:http", "port"),
        ("db1:70000", "port"),
        ("db1:22/sctp", "tcp or udp"),
        ("[::1", "without ']'"),
        ("[::1]22", "':PORT'"),
    ],
)
def test_parse_endpoint_query_errors(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint.replace("[", r"\[")):
        parse_endpoint_query(text)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="reachscan")
    history_command.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_command_table_and_json(
    store: HistoryStore, db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scan_states(store, "ororo")
    args = parse(["history", "db1.example:5432/tcp", "--db", str(db_path), "--runs", "5"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "ORORO" in out and "flapping" in out and "22/tcp" not in out
    args = parse(["history", "db1.example", "--db", str(db_path), "--flap-threshold", "5"])
    args.format = "json"
    assert args.handler(args) == 0
    document = orjson.loads(capsys.readouterr().out)
    assert [endpoint["flapping"] for endpoint in document["endpoints"]] == [False, False]


def test_command_errors_exit_2(
    store: HistoryStore, db_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scan_states(store, "o")
    args = parse(["history", "nobody.example", "--db", str(db_path)])
    assert args.handler(args) == 2
    assert "no stored results for nobody.example" in capsys.readouterr().err
    args = parse(["history", "db1.example", "--db", str(tmp_path / "missing.sqlite3")])
    assert args.handler(args) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        parse(["history", "db1.example:99999"])
    assert caught.value.code == 2
    with pytest.raises(SystemExit):
        parse(["history", "db1.example", "--runs", "0"])
