"""Several vantage points compared, as values (scanner/core/vantages.py), the comparison's
outputs (scanner/outputs/comparison.py), what travels to the workers
(scanner/distributed/protocol.py) and which scan options travel (commands/scan.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from scanner.commands.scan import add_scan_arguments, distributed_plan
from scanner.core.model import (
    Cause,
    Endpoint,
    Expect,
    FilteredEvidence,
    Proto,
    Reason,
    ResolvedVia,
    Result,
    State,
)
from scanner.core.vantages import Comparison, failed_by_quorum, summarize
from scanner.distributed.protocol import (
    FILE_MARK,
    BrokerError,
    ShardAnswer,
    ShardRequest,
    check_broker_url,
    queue_of,
)
from scanner.outputs.comparison import comparison_to_json, render_comparison_table
from scanner.status import UsageError


def result(
    port: int,
    state: State,
    reason: Reason,
    *,
    offender: str | None = None,
    expect: Expect | None = Expect.OPEN,
    address: str | None = "10.0.0.5",
) -> Result:
    cause = None
    if offender is not None:
        cause = Cause(0.8, FilteredEvidence(reason, offender, "router"), "ask the firewall")
    return Result(
        Endpoint("web.example", port, Proto.TCP, expect),
        address,
        ResolvedVia.DNS if address else ResolvedVia.NONE,
        state,
        reason,
        1.0 if state is State.OPEN else None,
        1_700_000_000.0,
        cause=cause,
    )


def compared(*seen: tuple[str, Result]) -> Comparison:
    comparison = Comparison()
    for vantage, item in seen:
        comparison.add(item, vantage)
    return comparison


def test_an_endpoint_open_from_one_vantage_and_filtered_from_another_is_path_dependent() -> None:
    comparison = compared(
        ("a", result(443, State.OPEN, Reason.SYN_ACK)),
        ("b", result(443, State.FILTERED, Reason.ADMIN_PROHIBITED, offender="10.1.0.1")),
        ("a", result(22, State.OPEN, Reason.SYN_ACK)),
        ("b", result(22, State.OPEN, Reason.SYN_ACK)),
    )
    (ssh, https) = comparison.endpoints()
    assert not ssh.path_dependent and ssh.evidence() is None
    assert https.path_dependent
    assert https.evidence() == (
        "open from a, filtered from b (admin-prohibited from 10.1.0.1): a firewall or a "
        "route between b and the target"
    )
    assert https.failing() == ("b",)


@pytest.mark.parametrize(
    ("other", "between"),
    [
        (
            result(443, State.FILTERED, Reason.NO_RESPONSE),
            "filtered from b (no-response): a firewall or a route between b and the target "
            "drops the probes",
        ),
        (
            result(443, State.REFUSED, Reason.CONN_REFUSED),
            "refused from b (conn-refused): the target, or a firewall on b's path, resets "
            "b's connections: a rule by source address",
        ),
        (
            result(443, State.FILTERED, Reason.HOST_PROHIBITED),
            "filtered from b (host-prohibited): a firewall or a route between b and the "
            "target rejects the probes",
        ),
    ],
)
def test_the_evidence_says_what_lies_on_the_other_path(other: Result, between: str) -> None:
    comparison = compared(("a", result(443, State.OPEN, Reason.SYN_ACK)), ("b", other))
    assert comparison.endpoints()[0].evidence() == f"open from a, {between}"


def test_the_vantage_that_got_furthest_is_the_reference_whatever_the_order() -> None:
    comparison = compared(
        ("b", result(443, State.FILTERED, Reason.NO_RESPONSE)),
        ("a", result(443, State.OPEN, Reason.SYN_ACK)),
    )
    evidence = comparison.endpoints()[0].evidence()
    assert evidence is not None and evidence.startswith("open from a, filtered from b")


def test_a_scanner_side_error_is_not_a_path() -> None:
    comparison = compared(
        ("a", result(443, State.OPEN, Reason.SYN_ACK)),
        ("b", result(443, State.ERROR, Reason.LOCAL_ERROR)),
    )
    (view,) = comparison.endpoints()
    assert not view.path_dependent
    assert view.failing() == ("b",)


def test_a_quorum_counts_the_vantages_that_see_an_endpoint_failed() -> None:
    comparison = compared(
        ("a", result(443, State.FILTERED, Reason.NO_RESPONSE)),
        ("b", result(443, State.FILTERED, Reason.NO_RESPONSE)),
        ("c", result(443, State.OPEN, Reason.SYN_ACK)),
        ("a", result(80, State.OPEN, Reason.SYN_ACK)),
        ("b", result(80, State.REFUSED, Reason.CONN_REFUSED)),
        ("c", result(80, State.OPEN, Reason.SYN_ACK)),
    )
    (http, https) = comparison.endpoints()
    assert [failed_by_quorum(http, k) for k in (1, 2, 3)] == [True, False, False]
    assert [failed_by_quorum(https, k) for k in (1, 2, 3)] == [True, True, False]
    assert not comparison.result_of(https, failing=True).ok
    assert comparison.result_of(https, failing=False).state is State.OPEN


def test_the_json_has_every_endpoint_and_the_table_the_interesting_ones() -> None:
    comparison = compared(
        ("a", result(443, State.OPEN, Reason.SYN_ACK)),
        ("b", result(443, State.FILTERED, Reason.NO_RESPONSE)),
        ("a", result(22, State.OPEN, Reason.SYN_ACK)),
        ("b", result(22, State.OPEN, Reason.SYN_ACK)),
        ("a", result(25, State.OPEN, Reason.SYN_ACK)),
    )
    views = comparison.endpoints()
    summary = summarize(comparison, views)
    document = comparison_to_json(views, summary)
    assert document["vantages"] == ["a", "b"]
    assert document["summary"] == {"endpoints": 3, "path-dependent": 1, "unseen": {"a": 0, "b": 1}}
    endpoints = document["endpoints"]
    assert isinstance(endpoints, list)
    assert [row["port"] for row in endpoints] == [22, 25, 443]
    assert endpoints[2]["path-dependent"] is True
    assert endpoints[2]["vantages"]["b"] == {
        "state": "filtered",
        "reason": "no-response",
        "ok": False,
        "offender": None,
    }
    assert endpoints[1]["vantages"] == {
        "a": {"state": "open", "reason": "syn-ack", "ok": True, "offender": None}
    }
    assert render_comparison_table(views, summary).splitlines() == [
        "ENDPOINT                        a               b",
        "web.example (10.0.0.5) 443/tcp  open (syn-ack)  filtered (no-response)  path-dependent",
        "    open from a, filtered from b (no-response): a firewall or a route between b and "
        "the target drops the probes",
        "Not shown: 2 endpoints every vantage sees alike and as expected",
        "",
        "3 endpoints from 2 vantages (a, b): 1 path-dependent; 1 not seen from b",
    ]


def test_shard_requests_and_answers_travel_as_plain_json() -> None:
    request = ShardRequest(("@file:fleet.yaml", "--timeout", "1"), {"fleet.yaml": "x"}, "1/4", "a")
    assert ShardRequest.from_json(request.to_json()) == request
    answer = ShardAnswer(1, b'{"shard":"1/4"}\n' * 1000, "oops", "a@host")
    travelled = answer.to_json()
    assert len(str(travelled["lines"])) < 200  # compressed
    assert ShardAnswer.from_json(travelled) == answer
    with pytest.raises(ValueError, match="not a reachscan shard request"):
        ShardRequest.from_json({"argv": "rm -rf /"})
    with pytest.raises(ValueError, match="cannot be read"):
        ShardAnswer.from_json({**travelled, "lines": "!!!"})
    assert queue_of("dc1.rack-7") == "reachscan.dc1.rack-7"


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://h/1", "redis+socket:///s"])
def test_redis_urls_are_brokers(url: str) -> None:
    assert check_broker_url(url) == url


@pytest.mark.parametrize("url", ["amqp://x", "127.0.0.1:6379", "redis//x", ""])
def test_other_urls_are_refused_before_anything_connects(url: str) -> None:
    with pytest.raises(BrokerError, match="not a Redis URL"):
        check_broker_url(url)


def parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_scan_arguments(parser)
    return parser.parse_args(argv)


def test_the_options_that_decide_the_probes_travel_and_the_outputs_do_not(tmp_path: Path) -> None:
    inventory = tmp_path / "fleet.txt"
    inventory.write_text("10.0.0.5:443\n")
    spread = distributed_plan(
        parsed(
            str(inventory), "-t", "10.0.0.6", "-p", "T:22,U:53", "--timeout", "2",
            "--no-diagnose", "--db", "h.sqlite", "--broker", "redis://127.0.0.1:6399/0",
            "--vantages", "a,b", "--shards", "3",
        )
    )  # fmt: skip
    assert spread is not None
    assert spread.vantages == ("a", "b") and spread.shards == 3
    assert spread.files == {str(inventory): "10.0.0.5:443\n"}
    argv = list(spread.argv)
    assert argv[0] == f"{FILE_MARK}{inventory}"
    assert argv[argv.index("-t") + 1] == "10.0.0.6"
    assert argv[argv.index("--ports") + 1] == "T:22,U:53"
    assert argv[argv.index("--timeout") + 1] == "2.0"
    assert "--no-diagnose" in argv
    assert not {"--db", "--broker", "--vantages", "--shards", "--format", "-o"} & set(argv)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--vantages", "a"), "--vantages distributes a scan: give --broker URL too"),
        (("--broker", "redis://127.0.0.1/0"), "name the vantage points with --vantages"),
        (("--broker", "redis://127.0.0.1/0", "--vantages", "a", "--shard", "0/2"), "--shard is"),
        (("--broker", "amqp://127.0.0.1/", "--vantages", "a"), "not a Redis URL"),
        (("--broker", "redis://127.0.0.1/0", "--vantages", "a", "-"), "save the inventory"),
    ],
)
def test_options_that_do_not_fit_a_distributed_scan_are_usage_errors(
    argv: tuple[str, ...], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        distributed_plan(parsed("-t", "10.0.0.5", *argv))


def test_a_vantage_named_twice_is_refused() -> None:
    with pytest.raises(SystemExit):
        parsed("--vantages", "a,a")


def test_a_quorum_beyond_the_vantages_is_refused() -> None:
    arguments = parsed("-t", "10.0.0.5", "--broker", "redis://127.0.0.1/0", "--vantages", "a,b")
    with pytest.raises(UsageError, match="--quorum 3: must be 1 to the 2 vantages"):
        distributed_plan(arguments, quorum=3)
