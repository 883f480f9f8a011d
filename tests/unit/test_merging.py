"""The rules of `reachscan merge` as values (scanner/core/merging.py): what a line is, and
what a set of shard files lacks."""

from __future__ import annotations

import re

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.core.merging import (
    PROBLEM_EXAMPLES,
    MergeLedger,
    ProblemKind,
    ShardEnd,
    end_of_record,
    result_of_record,
)
from scanner.core.model import Endpoint, Proto, Reason, ResolvedVia, Result, State
from scanner.core.sharding import RunShard
from scanner.core.sinks import result_to_record
from tests.support.causes import SAMPLE_EVIDENCE
from tests.support.history import make_result


def record_of(result: Result, vantage: str = "a") -> dict[str, object]:
    """As JSON Lines carries it: through orjson and back (tuples become arrays)."""
    loaded = orjson.loads(orjson.dumps(result_to_record(result, vantage), default=str))
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.parametrize("kind", sorted(SAMPLE_EVIDENCE))
def test_a_record_comes_back_as_the_result_it_was_made_of(kind: str) -> None:
    result = make_result(port=5432, state=State.REFUSED, cause_kind=kind, ts=1_700_000_000.125)
    back, vantage = result_of_record(record_of(result, "dc1"))
    assert vantage == "dc1"
    assert back == result
    assert back.ok == result.ok and back.cause == result.cause


def test_a_pinned_address_comes_back_as_the_endpoint_pin() -> None:
    pinned = Result(
        Endpoint("db.example", 5432, Proto.TCP, None, (), "10.1.2.3"),
        "10.1.2.3",
        ResolvedVia.PINNED,
        State.FILTERED,
        Reason.NO_RESPONSE,
        None,
        1_700_000_000.0,
    )
    back, _vantage = result_of_record(record_of(pinned))
    assert back.endpoint.key == pinned.endpoint.key


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("port", "22", "`port` is not a port number"),
        ("port", 70_000, "`port` is not a port number"),
        ("state", "ajar", "`state` 'ajar' is none of ['error', 'excluded', 'filtered'"),
        ("proto", 6, "`proto` 6 is none of ['tcp', 'udp']"),
        ("host", None, "`host` is not text"),
        ("ts", "yesterday", "`ts` 'yesterday' is not an ISO 8601 time"),
        ("labels", {"env": 3}, "`labels` is not an object of text values"),
        ("rtt_ms", True, "`rtt_ms` is neither a number nor null"),
    ],
)
def test_a_wrong_field_is_named(field: str, value: object, message: str) -> None:
    record = record_of(make_result())
    record[field] = value
    with pytest.raises(ValueError, match=re.escape(message)):
        result_of_record(record)


def test_a_missing_field_is_named() -> None:
    record = record_of(make_result())
    del record["reason"]
    with pytest.raises(ValueError, match="a result without 'reason'"):
        result_of_record(record)


def test_end_lines_are_told_from_results() -> None:
    assert end_of_record(record_of(make_result())) is None
    assert end_of_record({"shard": "2/4", "vantage": "a", "results": 7}) == ShardEnd(
        RunShard(2, 4), "a", 7, complete=True
    )
    assert end_of_record({"incomplete": True, "results": 3}) == ShardEnd(
        RunShard(0, 1), "", 3, complete=False
    )
    for broken in ({"shard": "4/4", "vantage": "a", "results": 1}, {"shard": "x", "results": 1}):
        with pytest.raises(ValueError, match="shard"):
            end_of_record(broken)
    with pytest.raises(ValueError, match="count of `results`"):
        end_of_record({"shard": "0/2", "vantage": "a", "results": -1})
    with pytest.raises(ValueError, match="neither a result"):
        end_of_record({"what": 1})


def shard_file(
    ledger: MergeLedger,
    name: str,
    shard: RunShard,
    results: list[Result],
    *,
    vantage: str = "a",
    claimed: int | None = None,
    complete: bool = True,
) -> list[Result]:
    """Feed one shard file of `results` and its end line; the results the ledger kept."""
    kept = [
        result
        for number, result in enumerate(results, 1)
        if ledger.line_result(result, vantage, f"{name}:{number}")
    ]
    end = ShardEnd(shard, vantage, len(results) if claimed is None else claimed, complete)
    ledger.line_end(end, f"{name}:{len(results) + 1}", len(results) + 1)
    ledger.file_ended(name, len(results) + 1, cut=False)
    return kept


def results_on(ports: range) -> list[Result]:
    return [make_result(port=port) for port in ports]


def test_whole_shards_merge_without_a_word() -> None:
    ledger = MergeLedger()
    kept = [
        *shard_file(ledger, "s0", RunShard(0, 2), results_on(range(1, 4))),
        *shard_file(ledger, "s1", RunShard(1, 2), results_on(range(4, 9))),
    ]
    ledger.conclude()
    assert ledger.problems == [] and not ledger.partial
    assert len(kept) == 8 and ledger.vantage == "a"
    assert ledger.shards == (RunShard(0, 2), RunShard(1, 2))


def test_a_missing_shard_makes_the_run_partial() -> None:
    ledger = MergeLedger()
    shard_file(ledger, "s0", RunShard(0, 3), results_on(range(1, 4)))
    shard_file(ledger, "s2", RunShard(2, 3), results_on(range(4, 6)))
    ledger.conclude()
    assert [(problem.kind, str(problem)) for problem in ledger.problems] == [
        (
            ProblemKind.MISSING,
            "shard 1/3 is missing: no file ended with its line, so its share of the "
            "inventory is not in the merged run",
        )
    ]
    assert ledger.partial


def test_a_shard_twice_keeps_its_endpoints_once() -> None:
    ledger = MergeLedger()
    shard_file(ledger, "s0", RunShard(0, 2), results_on(range(1, 4)))
    shard_file(ledger, "s1", RunShard(1, 2), results_on(range(4, 6)))
    again = shard_file(ledger, "copy", RunShard(1, 2), results_on(range(4, 6)))
    ledger.conclude()
    assert again == []
    kinds = [problem.kind for problem in ledger.problems]
    assert kinds == [ProblemKind.DUPLICATE, ProblemKind.DUPLICATE, ProblemKind.TWICE]
    assert str(ledger.problems[0]).startswith("copy:1: db1.example 10.0.0.5 4/tcp came before")
    assert "shard 1/2 came already (s1:3)" in str(ledger.problems[2])
    assert not ledger.partial and ledger.problem_count == 3


def test_a_file_short_of_its_end_line_count_is_truncated() -> None:
    ledger = MergeLedger()
    shard_file(ledger, "s0", RunShard(0, 1), results_on(range(1, 4)), claimed=5)
    ledger.conclude()
    assert [str(problem) for problem in ledger.problems] == [
        "s0:4: shard 0/1 ends here with 5 results, but only 3 lines came before it: "
        "lines are missing"
    ]
    assert ledger.partial


def test_lines_without_an_end_line_among_shard_files_are_a_truncated_file() -> None:
    ledger = MergeLedger()
    shard_file(ledger, "s0", RunShard(0, 2), results_on(range(1, 4)))
    for number, result in enumerate(results_on(range(4, 6)), 1):
        ledger.line_result(result, "a", f"s1:{number}")
    ledger.file_ended("s1", 2, cut=False)
    ledger.conclude()
    assert [problem.kind for problem in ledger.problems] == [
        ProblemKind.TRUNCATED,
        ProblemKind.MISSING,
    ]
    assert str(ledger.problems[0]).startswith("s1:1: 2 lines from here on have no end line")


def test_whole_runs_need_no_end_line_but_a_cut_line_is_still_a_truncation() -> None:
    ledger = MergeLedger()
    for number, result in enumerate(results_on(range(1, 4)), 1):
        ledger.line_result(result, "a", f"run:{number}")
    ledger.file_ended("run", 4, cut=True)
    ledger.conclude()
    assert [str(problem) for problem in ledger.problems] == [
        "run:4: the last line is cut short: the file was truncated"
    ]


def test_an_interrupted_shard_is_kept_and_said_to_be_incomplete() -> None:
    ledger = MergeLedger()
    kept = shard_file(ledger, "s0", RunShard(0, 2), results_on(range(1, 3)), complete=False)
    shard_file(ledger, "s1", RunShard(1, 2), results_on(range(3, 5)))
    ledger.conclude()
    assert len(kept) == 2
    assert [problem.kind for problem in ledger.problems] == [ProblemKind.INCOMPLETE]
    assert ledger.partial


def test_shards_of_different_splits_do_not_make_one_run() -> None:
    ledger = MergeLedger()
    shard_file(ledger, "s0", RunShard(0, 2), results_on(range(1, 3)))
    shard_file(ledger, "t", RunShard(1, 4), results_on(range(3, 5)))
    ledger.conclude()
    assert [problem.kind for problem in ledger.problems] == [
        ProblemKind.SPLITS,
        ProblemKind.MISSING,
    ]


def test_one_run_is_one_vantage_unless_one_is_chosen() -> None:
    mixed = MergeLedger()
    shard_file(mixed, "a0", RunShard(0, 1), results_on(range(1, 3)), vantage="a")
    assert shard_file(mixed, "b0", RunShard(0, 1), results_on(range(1, 3)), vantage="b") == []
    mixed.conclude()
    assert [problem.kind for problem in mixed.problems] == [ProblemKind.VANTAGE]

    chosen = MergeLedger(only_vantage="b")
    assert shard_file(chosen, "a0", RunShard(0, 2), results_on(range(1, 3)), vantage="a") == []
    kept = shard_file(chosen, "b0", RunShard(0, 2), results_on(range(1, 3)), vantage="b")
    shard_file(chosen, "b1", RunShard(1, 2), results_on(range(3, 4)), vantage="b")
    chosen.conclude()
    assert len(kept) == 2 and chosen.problems == [] and chosen.vantage == "b"


def test_problems_of_one_kind_are_counted_past_the_examples() -> None:
    ledger = MergeLedger()
    for number in range(PROBLEM_EXAMPLES + 5):
        ledger.line_malformed(f"f:{number + 1}", "not JSON")
    ledger.file_ended("f", PROBLEM_EXAMPLES + 5, cut=False)
    ledger.conclude()
    assert len(ledger.problems) == PROBLEM_EXAMPLES + 1
    assert str(ledger.problems[-1]) == "... and 5 more malformed lines"
    assert ledger.problem_count == PROBLEM_EXAMPLES + 5


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a.example", "127.0.0.1", "::1", "0::1"]),
            st.integers(0, 3),
            st.sampled_from(list(Proto)),
        ),
        max_size=30,
    )
)
def test_duplicates_are_the_same_endpoint_at_the_same_address(
    endpoints: list[tuple[str, int, Proto]],
) -> None:
    """An endpoint at an address is kept exactly once, whatever the spelling of the
    address (`::1` and `0::1` are one address)."""
    ledger = MergeLedger()
    kept = set()
    for number, (address, port, proto) in enumerate(endpoints, 1):
        result = make_result(host="h", address=address, port=port, proto=proto)
        spelled = "::1" if address == "0::1" else address
        if ledger.line_result(result, "a", f"f:{number}"):
            assert (spelled, port, proto) not in kept
            kept.add((spelled, port, proto))
    assert kept == {("::1" if a == "0::1" else a, p, proto) for a, p, proto in endpoints}
