"""--changes-only: a result passes when its endpoint is new or its state or cause changed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from scanner.core.model import Reason, Result, State
from scanner.core.sinks import RunInfo, RunSummary
from scanner.history.changes import ChangeFilter, ChangesOnlySink
from scanner.history.records import Observation, endpoint_key
from scanner.history.store import HistoryStore
from tests.support.history import make_result, store_run, summary_of

PREVIOUS = {
    endpoint_key(make_result(port=22)): Observation(State.OPEN, Reason.SYN_ACK, None),
    endpoint_key(make_result(port=80)): Observation(
        State.REFUSED, Reason.CONN_REFUSED, "wrong-port"
    ),
    endpoint_key(make_result(port=161)): Observation(State.FILTERED, Reason.NO_RESPONSE, None),
}


def test_unchanged_results_are_not_changes() -> None:
    changes = ChangeFilter(PREVIOUS)
    assert not changes.changed(make_result(port=22))
    assert not changes.changed(make_result(port=80, state=State.REFUSED, cause_kind="wrong-port"))


def test_a_new_endpoint_is_a_change() -> None:
    changes = ChangeFilter(PREVIOUS)
    assert changes.changed(make_result(port=8080))
    assert changes.changed(make_result(port=22, address="10.0.0.6"))  # another address
    assert ChangeFilter({}).changed(make_result(port=22))  # first run: everything is new


def test_a_different_state_or_cause_is_a_change() -> None:
    changes = ChangeFilter(PREVIOUS)
    assert changes.changed(make_result(port=22, state=State.REFUSED))
    assert changes.changed(make_result(port=80, state=State.REFUSED, cause_kind="service-down"))
    assert changes.changed(make_result(port=80, state=State.REFUSED))  # the cause went away


def test_a_different_reason_alone_is_not_a_change() -> None:
    changes = ChangeFilter(PREVIOUS)
    assert not changes.changed(
        make_result(port=161, state=State.FILTERED, reason=Reason.ADMIN_PROHIBITED)
    )


class RecordingSink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.written: list[Result] = []

    def start(self, run: RunInfo) -> None:
        self.calls.append(("start", run))

    def write(self, results: Sequence[Result]) -> None:
        self.calls.append(("write", len(results)))
        self.written.extend(results)

    def finish(self, summary: RunSummary) -> None:
        self.calls.append(("finish", summary))

    def verdict(self) -> None:
        """No exit status of its own: the run's results decide it."""
        return None

    def abort(self) -> None:
        self.calls.append(("abort", None))


def test_the_sink_passes_only_changes_and_everything_else_through() -> None:
    inner = RecordingSink()
    sink = ChangesOnlySink(inner, ChangeFilter(PREVIOUS))
    run = RunInfo(started=1.0, command="reachscan scan --changes-only", version="0.1.0")
    unchanged = make_result(port=22)
    stopped = make_result(port=22, address="10.0.0.7", state=State.REFUSED)
    summary = summary_of([unchanged, stopped], 2.0)
    sink.start(run)
    sink.write([unchanged])  # nothing changed: the inner sink is not bothered
    sink.write([unchanged, stopped])
    sink.finish(summary)
    sink.abort()
    assert inner.calls == [
        ("start", run),
        ("write", 1),
        ("finish", summary),
        ("abort", None),
    ]
    assert inner.written == [stopped]


def test_against_the_stored_previous_run(tmp_path: Path) -> None:
    with HistoryStore.open(tmp_path / "history.sqlite") as store:
        store_run(store, [make_result(port=22), make_result(port=443)], started=1.0)
        store_run(store, [make_result(port=22, state=State.REFUSED)], started=2.0, interrupted=True)
        changes = ChangeFilter(store.previous_observations())
    assert not changes.changed(make_result(port=22))  # the interrupted run is no baseline
    assert changes.changed(make_result(port=443, state=State.FILTERED))
