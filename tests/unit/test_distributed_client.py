"""How a distributed scan takes a shard's answer (scanner/distributed/client.py), on
answers made here: the Celery result is a stand-in with its two methods."""

from __future__ import annotations

import pytest

from scanner.core.merging import VantageLedgers
from scanner.core.model import State
from scanner.core.sinks import RunInfo, RunSummary
from scanner.distributed.client import Outputs, VantageTally, take_answer
from scanner.distributed.protocol import DistributedPlan, ShardAnswer
from scanner.outputs.jsonl import encode_lines, incomplete_marker, shard_end_line
from tests.support.history import make_result

SPREAD = DistributedPlan("redis://127.0.0.1:1/0", ("a",), 2, (), {}, 1.0)


class Answered:
    """A Celery AsyncResult's `get` and `forget`, answering `value` (or raising it)."""

    id = "reachscan-a-0"

    def __init__(self, value: object) -> None:
        self.value = value
        self.forgotten = False

    def get(self, **options: object) -> object:
        if isinstance(self.value, Exception):
            raise self.value
        return self.value

    def forget(self) -> None:
        self.forgotten = True


def outputs() -> Outputs:
    return Outputs([], {"a": []}, {"a": VantageTally({})}, None)


def test_a_shard_answer_is_counted_once_and_its_end_line_accounted_for() -> None:
    results = [make_result(port=port) for port in (22, 80)]
    lines = bytes(encode_lines(results, "a")) + shard_end_line(
        RunSummary(0.0, {}, 2, 0, 0, False), RunInfo(0.0, "", "", "a", "0/2")
    )
    answer = Answered(ShardAnswer(0, lines, "", "a@host").to_json())
    ledgers, written = VantageLedgers(), outputs()
    assert take_answer(("a", 0), answer, SPREAD, ledgers, written) == 0  # type: ignore[arg-type]
    assert answer.forgotten
    assert written._tallies["a"].total == 2
    assert written._tallies["a"].counts == {State.OPEN: 2}
    assert ledgers.problems == []


def test_a_task_that_failed_at_the_worker_is_a_lost_shard_and_said(
    capsys: pytest.CaptureFixture[str],
) -> None:
    answer = Answered(RuntimeError("the worker's disk is full"))
    written = outputs()
    status = take_answer(("a", 1), answer, SPREAD, VantageLedgers(), written)  # type: ignore[arg-type]
    assert status is None
    assert capsys.readouterr().err == (
        "reachscan: a shard 1/2: the worker failed: the worker's disk is full\n"
    )
    assert written._tallies["a"].total == 0


def test_a_shard_scan_that_failed_at_the_worker_says_its_last_words(
    capsys: pytest.CaptureFixture[str],
) -> None:
    answer = Answered(ShardAnswer(3, b"", "line one\nreachscan: cannot write\n", "a@h").to_json())
    status = take_answer(("a", 0), answer, SPREAD, VantageLedgers(), outputs())  # type: ignore[arg-type]
    assert status == 3
    assert capsys.readouterr().err == (
        "reachscan: a shard 0/2 at a@h: the scan there ended with exit status 3: "
        "reachscan: cannot write\n"
    )


def test_a_shard_out_of_time_keeps_what_it_probed_and_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    results = [make_result(port=22)]
    lines = bytes(encode_lines(results, "a")) + incomplete_marker(
        RunSummary(0.0, {}, 1, 0, 0, True), RunInfo(0.0, "", "", "a", "1/2")
    )
    written = outputs()
    answer = Answered(ShardAnswer(4, lines, "", "a@h").to_json())
    status = take_answer(("a", 1), answer, SPREAD, VantageLedgers(), written)  # type: ignore[arg-type]
    assert status == 4
    assert written._tallies["a"].total == 1
    assert "a shard 1/2 at a@h: --max-time ran out" in capsys.readouterr().err
