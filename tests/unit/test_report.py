"""The grouped report: grouping, ordering, collapsing, disagreeing addresses, JSON shape."""

from __future__ import annotations

import io
import re
from dataclasses import replace

import orjson

from scanner.core.diagnose import describe_filtered
from scanner.core.model import (
    Cause,
    CauseKind,
    Endpoint,
    Expect,
    Proto,
    Reason,
    Relation,
    ResolvedVia,
    Result,
    ServiceDownEvidence,
    State,
    WrongPortEvidence,
)
from scanner.core.sinks import RunInfo, RunSummary
from scanner.outputs import FORMATS, make_sink
from scanner.outputs.atomic import StreamWriter
from scanner.outputs.report import (
    SCHEMA,
    UNDIAGNOSED,
    ReportBuilder,
    build_report,
    collapse_ports,
    render_text,
    report_to_json,
)
from scanner.outputs.report_json import ReportJsonSink
from scanner.outputs.table import TableSink
from tests.support.causes import cause_of_kind

TS = 1795559401.0
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def result(
    host: str,
    address: str | None,
    port: int,
    state: State = State.REFUSED,
    reason: Reason = Reason.CONN_REFUSED,
    *,
    cause: Cause | None = None,
    expect: Expect | None = Expect.OPEN,
    via: ResolvedVia = ResolvedVia.DNS,
    offender: str | None = None,
    proto: Proto = Proto.TCP,
) -> Result:
    endpoint = Endpoint(host, port, proto, expect=expect)
    return Result(endpoint, address, via, state, reason, None, TS, offender=offender, cause=cause)


def service_down(address: str, port: int, confidence: float = 0.7) -> Cause:
    return Cause(
        confidence,
        ServiceDownEvidence(
            address=address,
            port=port,
            alive_ports=(22,),
            local=False,
            refusal=Reason.CONN_REFUSED,
        ),
        f"start it: `ss -ltnp 'sport = :{port}'` on {address}",
    )


def wrong_port(port: int, answered: int) -> Cause:
    return Cause(
        0.9,
        WrongPortEvidence(
            expected_port=port,
            answered_port=answered,
            relation=Relation.BYTE_SWAPPED,
            also_answered=(),
        ),
        "check the byte order of the port in the client/server code (htons/ntohs)",
    )


def open_result(host: str, address: str, port: int, **kwargs: object) -> Result:
    return result(host, address, port, State.OPEN, Reason.SYN_ACK, **kwargs)  # type: ignore[arg-type]


# --- refusal groups -----------------------------------------------------------------------


def test_refusals_are_grouped_by_cause_kind_largest_group_first() -> None:
    results = [
        result("app", "10.0.0.11", 8080, cause=wrong_port(8080, 36895)),
        result("db", "10.0.0.3", 5432, cause=service_down("10.0.0.3", 5432)),
        result("db", "10.0.0.3", 5433, cause=service_down("10.0.0.3", 5433)),
        result("web", "10.0.0.5", 80, cause=service_down("10.0.0.5", 80)),
        open_result("web", "10.0.0.5", 22),
    ]
    report = build_report(results)
    assert [(group.kind, group.count) for group in report.refusals] == [
        ("service-down", 3),
        ("wrong-port", 1),
    ]


def test_equal_groups_are_ordered_most_specific_kind_first() -> None:
    stale = replace(cause_of_kind(CauseKind.STALE_ADDRESS), advice="fix the hosts file")
    results = [
        result("db", "10.0.0.3", 5432, cause=service_down("10.0.0.3", 5432)),
        result("api", "10.0.0.9", 443, cause=stale),
    ]
    assert [group.kind for group in build_report(results).refusals] == [
        "stale-address",
        "service-down",
    ]


def test_endpoints_are_collapsed_per_host_with_sorted_ports() -> None:
    results = [
        result("db", "10.0.0.3", port, cause=service_down("10.0.0.3", port))
        for port in (5434, 22, 5432, 5433, 80)
    ]
    (group,) = build_report(results).refusals
    (host,) = group.hosts
    assert (host.host, host.address) == ("db", "10.0.0.3")
    assert [entry.port for entry in host.endpoints] == [22, 80, 5432, 5433, 5434]
    assert host.ports == "22/tcp, 80/tcp, 5432-5434/tcp"


def test_collapse_ports_joins_runs_of_three_and_separates_protocols() -> None:
    ports = [(53, Proto.UDP), (1, Proto.TCP), (2, Proto.TCP), (4, Proto.TCP), (5, Proto.TCP)]
    ports += [(6, Proto.TCP), (53, Proto.TCP)]
    assert collapse_ports(ports) == "1/tcp, 2/tcp, 4-6/tcp, 53/tcp, 53/udp"


def test_text_shows_one_evidence_line_per_endpoint_and_shared_advice_once() -> None:
    results = [
        result("app", "10.0.0.11", 8080, cause=wrong_port(8080, 36895)),
        result("app2", "10.0.0.12", 8080, cause=wrong_port(8080, 36895)),
    ]
    text = render_text(build_report(results))
    lines = text.splitlines()
    assert lines[0] == "Why 2 endpoints expected open are refused"
    assert lines[1] == "  wrong-port: 2 endpoints (confidence 0.90)"
    assert text.count("8080/tcp  port 36895 accepts (byte-swapped)") == 2
    assert text.count("htons/ntohs") == 1  # the same advice for both: said once
    assert "    app (10.0.0.11 via dns): 8080/tcp" in lines


def test_text_gives_per_endpoint_advice_when_it_differs() -> None:
    results = [
        result("db", "10.0.0.3", 5432, cause=service_down("10.0.0.3", 5432, 0.9)),
        result("db", "10.0.0.3", 5433, cause=service_down("10.0.0.3", 5433, 0.7)),
    ]
    text = render_text(build_report(results))
    assert "(confidence 0.70-0.90)" in text
    assert "The host is up but nothing listens on the port" in text  # the generic advice
    assert "-> start it: `ss -ltnp 'sport = :5432'` on 10.0.0.3" in text
    assert "-> start it: `ss -ltnp 'sport = :5433'` on 10.0.0.3" in text


def test_refusals_without_a_cause_are_grouped_as_undiagnosed() -> None:
    report = build_report([result("db", "10.0.0.3", 5432)])
    (group,) = report.refusals
    assert group.kind == UNDIAGNOSED
    assert "no diagnosis" in render_text(report)


def test_only_endpoints_expected_open_are_explained() -> None:
    results = [
        result("db", "10.0.0.3", 5432, expect=None),
        result("db", "10.0.0.3", 5433, expect=Expect.CLOSED),
        open_result("db", "10.0.0.3", 5434, expect=Expect.CLOSED, via=ResolvedVia.LITERAL),
    ]
    report = build_report(results)
    assert report.refusals == ()
    assert report.empty
    assert render_text(report) == ""


# --- filtered -----------------------------------------------------------------------------


def test_filtered_grouped_by_reason_and_offender() -> None:
    results = [
        result("fw", "10.1.2.3", port, State.FILTERED, Reason.ADMIN_PROHIBITED, offender="10.1.0.1")
        for port in (443, 8443, 9000)
    ]
    results.append(result("fw", "10.1.2.3", 22, State.FILTERED, Reason.NO_RESPONSE))
    report = build_report(results)
    assert [(group.title, group.count) for group in report.filtered] == [
        ("rejected by 10.1.0.1 (admin-prohibited)", 3),
        ("no response (dropped silently, or a UDP service that did not answer)", 1),
    ]
    text = render_text(report)
    assert "  rejected by 10.1.0.1 (admin-prohibited): 3 endpoints" in text.splitlines()
    assert text.count("check the firewall rules on 10.1.0.1") == 1
    assert "traceroute -T -p 22 10.1.2.3" in text


def test_filtered_uses_the_who_of_an_existing_cause() -> None:
    filtered = result(
        "fw", "10.1.2.3", 443, State.FILTERED, Reason.HOST_UNREACH, offender="10.1.2.1"
    )
    cause = describe_filtered(filtered, local_addresses=("10.1.2.1",))
    report = build_report([replace(filtered, cause=cause)])
    (group,) = report.filtered
    assert group.who == "this machine"
    assert group.title == "host-unreach from this machine (10.1.2.1)"


# --- names whose addresses disagree -------------------------------------------------------


def test_a_dead_member_behind_round_robin_dns() -> None:
    results = [
        open_result("db.example.com", "10.0.0.1", 5432),
        result("db.example.com", "10.0.0.3", 5432, cause=service_down("10.0.0.3", 5432)),
        open_result("db.example.com", "10.0.0.2", 5432),
    ]
    report = build_report(results)
    (item,) = report.disagreements
    assert item.summary == "db.example.com:5432/tcp: 1 of 3 addresses refuses (10.0.0.3)"
    assert item.as_expected == ("10.0.0.1", "10.0.0.2")
    assert "Names whose addresses disagree" in render_text(report)


def test_addresses_that_all_refuse_do_not_disagree() -> None:
    results = [result("db.example.com", address, 5432) for address in ("10.0.0.1", "10.0.0.2")]
    assert build_report(results).disagreements == ()


def test_two_different_failures_disagree() -> None:
    results = [
        result("db.example.com", "10.0.0.1", 5432),
        result("db.example.com", "10.0.0.2", 5432, State.FILTERED, Reason.NO_RESPONSE),
    ]
    (item,) = build_report(results).disagreements
    assert item.summary == (
        "db.example.com:5432/tcp: 1 of 2 addresses refuses (10.0.0.1), 1 is filtered (10.0.0.2)"
    )


def test_a_single_address_name_never_disagrees() -> None:
    results = [
        result("db.example.com", "10.0.0.1", 5432),
        open_result("db.example.com", "10.0.0.1", 22),
    ]
    assert build_report(results).disagreements == ()


# --- memory -------------------------------------------------------------------------------


def test_a_sweep_where_everything_is_as_expected_keeps_nothing() -> None:
    builder = ReportBuilder()
    for port in range(1, 65536):
        state = State.OPEN if port in (22, 80) else State.REFUSED
        reason = Reason.SYN_ACK if state is State.OPEN else Reason.CONN_REFUSED
        builder.add(result("localhost", "127.0.0.1", port, state, reason, expect=None))
        builder.add(result("10.0.0.1", "10.0.0.1", port, state, reason, expect=None,
                           via=ResolvedVia.LITERAL))  # fmt: skip
    assert builder.results_held == 0
    assert builder.build().empty


def test_the_builder_keeps_only_results_not_as_expected() -> None:
    builder = ReportBuilder()
    builder.add(open_result("db", "10.0.0.3", 22))
    builder.add(result("db", "10.0.0.3", 5432))
    builder.add(result("db", "10.0.0.3", 5433, expect=Expect.REFUSED))
    assert builder.results_held == 1


# --- JSON ---------------------------------------------------------------------------------


def mixed_results() -> list[Result]:
    return [
        result("db.example.com", "10.0.0.3", 5432, cause=service_down("10.0.0.3", 5432)),
        open_result("db.example.com", "10.0.0.4", 5432),
        result("app", "10.0.0.11", 8080, cause=wrong_port(8080, 36895)),
        result("fw", "10.1.2.3", 443, State.FILTERED, Reason.ADMIN_PROHIBITED, offender="10.1.0.1"),
    ]


def test_json_shape() -> None:
    document = report_to_json(build_report(mixed_results()))
    assert orjson.loads(orjson.dumps(document)) == document  # JSON-native all the way down
    assert set(document) == {"schema", "refused", "filtered", "disagreements"}
    assert document["schema"] == SCHEMA
    refused = document["refused"]
    assert isinstance(refused, dict)
    assert refused["count"] == 2
    # one endpoint each: the more specific cause comes first
    assert [group["kind"] for group in refused["groups"]] == ["wrong-port", "service-down"]
    first = refused["groups"][1]
    assert set(first) == {"kind", "count", "confidence", "explanation", "advice", "hosts"}
    host = first["hosts"][0]
    assert set(host) == {"host", "address", "resolved_via", "ports", "endpoints"}
    endpoint = host["endpoints"][0]
    assert set(endpoint) == {"port", "proto", "confidence", "evidence", "summary", "advice"}
    assert endpoint["evidence"]["alive_ports"] == [22]
    filtered = document["filtered"]
    assert isinstance(filtered, dict)
    (group,) = filtered["groups"]
    assert group["who"] == "router"
    assert group["offender"] == "10.1.0.1"
    assert group["reason"] == "admin-prohibited"
    disagreements = document["disagreements"]
    assert isinstance(disagreements, list)
    (disagreement,) = disagreements
    assert disagreement["not_as_expected"] == {"refused": ["10.0.0.3"]}
    assert disagreement["as_expected"] == ["10.0.0.4"]


def test_report_json_sink_writes_the_document_at_finish() -> None:
    buffer = io.BytesIO()
    sink = ReportJsonSink(StreamWriter(buffer))
    sink.start(RunInfo(started=TS, command="reachscan", version="0", vantage="site-a"))
    sink.write(mixed_results())
    assert buffer.getvalue() == b""
    sink.finish(RunSummary(TS, {}, 4, 3, 0, False, follow_up_probes=9))
    document = orjson.loads(buffer.getvalue())
    run = document.pop("run")
    assert document.pop("lossy_paths") == []  # every port answered its first try
    assert document == report_to_json(build_report(mixed_results()))
    assert run == {
        "total": 4,
        "not_ok": 3,
        "interrupted": False,
        "inventory_errors": 0,
        "follow_up_probes": 9,
        "vantage": "site-a",
    }
    assert buffer.getvalue().startswith(b"{\n  ")  # indented


def test_report_json_names_the_paths_that_lost_probes() -> None:
    buffer = io.BytesIO()
    sink = ReportJsonSink(StreamWriter(buffer))
    sink.start(RunInfo(started=TS, command="reachscan", version="0"))
    answered = [result for result in mixed_results() if result.state is State.REFUSED]
    sink.write([replace(result, attempts=3) for result in answered[:1]] + answered[1:])
    sink.finish(RunSummary(TS, {}, 4, 3, 0, False))
    (path,) = orjson.loads(buffer.getvalue())["lossy_paths"]
    assert path["tries_lost"] == 2 and path["address"] == answered[0].address


def test_report_json_is_a_registered_format() -> None:
    assert "report-json" in FORMATS
    sink = make_sink("report-json", "-")
    assert isinstance(sink, ReportJsonSink)


# --- the table's tail ---------------------------------------------------------------------


def render_table(results: list[Result], color: bool = False) -> str:
    buffer = io.BytesIO()
    sink = TableSink(StreamWriter(buffer), color=color)
    sink.start(RunInfo(started=TS, command="reachscan", version="0"))
    sink.write(results)
    sink.finish(RunSummary(TS, {State.REFUSED: len(results)}, len(results), 0, 0, False))
    return buffer.getvalue().decode()


def test_table_appends_the_report_before_the_footer() -> None:
    lines = render_table(mixed_results()).splitlines()
    heading = lines.index("Why 2 endpoints expected open are refused")
    assert heading < len(lines) - 1
    assert lines[-1].startswith("4 endpoints")
    assert lines[heading - 1] == ""


def test_table_has_no_tail_when_there_is_nothing_to_say() -> None:
    text = render_table([open_result("db", "10.0.0.3", 22)])
    assert "Why" not in text


def test_colour_adds_only_escape_codes() -> None:
    report = build_report(mixed_results())
    coloured = render_text(report, color=True)
    assert "\x1b[" in coloured
    assert ANSI_ESCAPE.sub("", coloured) == render_text(report)
