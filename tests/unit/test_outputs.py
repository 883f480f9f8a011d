"""The output formats: the stable JSONL schema, the human table, progress, the registry."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from scanner.core.model import (
    EVIDENCE_TYPES,
    Cause,
    CauseKind,
    Endpoint,
    Expect,
    FilteredEvidence,
    Proto,
    Reason,
    ResolvedVia,
    Result,
    State,
)
from scanner.core.sinks import (
    RunInfo,
    RunSummary,
    cause_from_record,
    cause_to_record,
    format_timestamp,
    result_to_record,
)
from scanner.outputs import FORMATS, make_sink
from scanner.outputs.atomic import StreamWriter
from scanner.outputs.jsonl import JsonLinesSink
from scanner.outputs.progress import Progress
from scanner.outputs.table import BORING_ROWS_SHOWN, NOT_OK_MARK, TableSink
from tests.support.causes import cause_of_kind

TS = 1795559401.123  # 2026-11-24T22:30:01.123Z
RUN = RunInfo(started=TS - 1.5, command="reachscan 127.0.0.1", version="0.1.0")
ISO_UTC_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def make_result(
    port: int = 443,
    state: State = State.OPEN,
    reason: Reason = Reason.SYN_ACK,
    *,
    host: str = "web-1",
    address: str | None = "10.0.0.5",
    proto: Proto = Proto.TCP,
    expect: Expect | None = Expect.OPEN,
    via: ResolvedVia = ResolvedVia.DNS,
    rtt_ms: float | None = 1.5,
    message: str | None = None,
    cause: Cause | None = None,
    labels: tuple[tuple[str, str], ...] = (),
) -> Result:
    endpoint = Endpoint(host=host, port=port, proto=proto, expect=expect, labels=labels)
    return Result(
        endpoint=endpoint,
        address=address,
        resolved_via=via,
        state=state,
        reason=reason,
        rtt_ms=rtt_ms,
        ts=TS,
        message=message,
        cause=cause,
    )


def summary_of(results: Sequence[Result], **overrides: object) -> RunSummary:
    counts: dict[State, int] = {}
    for result in results:
        counts[result.state] = counts.get(result.state, 0) + 1
    values: dict[str, object] = {
        "finished": TS,
        "counts": counts,
        "total": len(results),
        "not_ok": sum(not result.ok for result in results),
        "inventory_errors": 0,
        "interrupted": False,
    }
    values.update(overrides)
    return RunSummary(**values)  # type: ignore[arg-type]


class RecordingTarget:
    """An OutputTarget that remembers every call, to check how sinks use it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    def write(self, data: bytes | bytearray) -> None:
        self.calls.append(("write", bytes(data)))

    def flush(self) -> None:
        self.calls.append(("flush", b""))

    def commit(self) -> None:
        self.calls.append(("commit", b""))

    def discard(self) -> None:
        self.calls.append(("discard", b""))

    @property
    def written(self) -> bytes:
        return b"".join(data for name, data in self.calls if name == "write")

    def names(self) -> list[str]:
        return [name for name, _data in self.calls]


# --- the JSONL schema ---------------------------------------------------------------------

EXPECTED_KEYS = [
    "host",
    "address",
    "port",
    "proto",
    "state",
    "reason",
    "rtt_ms",
    "resolved_via",
    "expect",
    "ok",
    "labels",
    "cause",
    "ts",
    "vantage",
    "attempts",
]


def test_record_has_exactly_the_schema_keys_in_order_with_their_types() -> None:
    result = make_result(rtt_ms=1.23456, labels=(("env", "prod"), ("role", "web")))
    record = result_to_record(result, "site-a")
    assert list(record) == EXPECTED_KEYS
    assert record == {
        "host": "web-1",
        "address": "10.0.0.5",
        "port": 443,
        "proto": "tcp",
        "state": "open",
        "reason": "syn-ack",
        "rtt_ms": 1.235,
        "resolved_via": "dns",
        "expect": "open",
        "ok": True,
        "labels": {"env": "prod", "role": "web"},
        "cause": None,
        "ts": "2026-11-24T22:30:01.123Z",
        "vantage": "site-a",
        "attempts": 1,
    }
    # Plain types, not enums that merely compare equal to strings.
    for key in ("proto", "state", "reason", "resolved_via", "expect"):
        assert type(record[key]) is str
    assert type(record["port"]) is int
    assert type(record["ok"]) is bool
    assert type(record["rtt_ms"]) is float


def test_record_of_an_unresolved_name_has_nulls_and_is_not_ok() -> None:
    result = make_result(
        state=State.UNRESOLVED,
        reason=Reason.NXDOMAIN,
        address=None,
        via=ResolvedVia.NONE,
        rtt_ms=None,
        expect=None,
        proto=Proto.UDP,
    )
    record = result_to_record(result, "site-a")
    assert record["address"] is None
    assert record["rtt_ms"] is None
    assert record["expect"] is None
    assert record["proto"] == "udp"
    assert record["resolved_via"] == "none"
    assert record["ok"] is False


def test_record_cause_is_an_object_with_evidence_from_the_pairs() -> None:
    cause = Cause(
        confidence=0.9,
        evidence=FilteredEvidence(Reason.ADMIN_PROHIBITED, "10.0.0.254", "router"),
        advice="ask the network team about the rule on 10.0.0.254",
    )
    result = make_result(state=State.FILTERED, reason=Reason.ADMIN_PROHIBITED, cause=cause)
    record = result_to_record(result, "site-a")
    assert record["ok"] is False
    assert record["cause"] == {
        "kind": "filtered",
        "confidence": 0.9,
        "evidence": {"reason": "admin-prohibited", "offender": "10.0.0.254", "who": "router"},
        "advice": "ask the network team about the rule on 10.0.0.254",
    }
    cause_record = record["cause"]
    assert isinstance(cause_record, dict)
    assert list(cause_record) == ["kind", "confidence", "evidence", "advice"]


def test_timestamps_are_iso_utc_with_milliseconds_and_z() -> None:
    assert format_timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert format_timestamp(TS) == "2026-11-24T22:30:01.123Z"


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
def test_timestamps_parse_back_to_within_a_millisecond(epoch_seconds: float) -> None:
    text = format_timestamp(epoch_seconds)
    assert ISO_UTC_MS.fullmatch(text)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None
    assert parsed.utcoffset() == UTC.utcoffset(None)
    assert abs(parsed.timestamp() - epoch_seconds) < 0.001 + 1e-6


# --- JsonLinesSink ------------------------------------------------------------------------


def test_jsonl_round_trips_every_record_through_orjson() -> None:
    results = [
        make_result(22),
        make_result(443, State.REFUSED, Reason.CONN_REFUSED, rtt_ms=0.2),
        make_result(
            53,
            State.UNRESOLVED,
            Reason.NXDOMAIN,
            address=None,
            via=ResolvedVia.NONE,
            rtt_ms=None,
        ),
    ]
    target = RecordingTarget()
    sink = JsonLinesSink(target)
    sink.start(RUN)
    sink.write(results)
    sink.finish(summary_of(results))
    lines = target.written.split(b"\n")
    assert lines[-1] == b""  # newline-terminated, nothing after the last line
    assert [orjson.loads(line) for line in lines[:-1]] == [
        result_to_record(r, RUN.vantage) for r in results
    ]


def test_jsonl_writes_each_batch_in_one_call_flushes_it_and_commits_at_finish() -> None:
    target = RecordingTarget()
    sink = JsonLinesSink(target)
    sink.start(RUN)
    sink.write([make_result(1), make_result(2)])
    sink.write([])
    sink.write([make_result(3)])
    assert target.names() == ["write", "flush", "write", "flush"]
    first_batch = target.calls[0][1]
    assert first_batch.count(b"\n") == 2 and first_batch.endswith(b"\n")
    sink.finish(summary_of([]))
    assert target.names()[-1] == "commit"


def test_jsonl_abort_discards() -> None:
    target = RecordingTarget()
    sink = JsonLinesSink(target)
    sink.write([make_result(1)])
    sink.abort()
    assert target.names()[-1] == "discard"
    assert "commit" not in target.names()


def test_jsonl_file_appears_only_at_finish_and_keeps_an_interrupted_runs_lines(
    tmp_path: Path,
) -> None:
    """...ending with the marker of a partial run, so a file read later says so."""
    path = tmp_path / "results.jsonl"
    sink = make_sink("jsonl", str(path))
    sink.start(RUN)
    written = [make_result(1), make_result(2), make_result(3)]
    sink.write(written[:2])
    sink.write(written[2:])
    assert not path.exists()
    sink.finish(summary_of(written, interrupted=True))
    *lines, last = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [line["port"] for line in lines] == [1, 2, 3]
    assert last == {"incomplete": True, "results": 3}
    assert [entry.name for entry in tmp_path.iterdir()] == ["results.jsonl"]


def test_jsonl_abort_on_a_file_leaves_the_previous_results(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_bytes(b'{"previous": true}\n')
    sink = make_sink("jsonl", str(path))
    sink.write([make_result(1)])
    sink.abort()
    assert path.read_bytes() == b'{"previous": true}\n'
    assert [entry.name for entry in tmp_path.iterdir()] == ["results.jsonl"]


def test_jsonl_to_stdout_streams(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    sink = make_sink("jsonl", "-")
    sink.write([make_result(7)])
    assert orjson.loads(capsysbinary.readouterr().out)["port"] == 7


# --- TableSink ----------------------------------------------------------------------------


def render(
    results: Sequence[Result], *, color: bool = False, run: RunInfo = RUN, **summary: object
) -> str:
    buffer = io.BytesIO()
    sink = TableSink(StreamWriter(buffer), color=color)
    sink.start(run)
    sink.write(results)
    sink.finish(summary_of(results, **summary))
    return buffer.getvalue().decode("utf-8")


def test_table_groups_by_host_and_address_in_first_seen_order_sorted_by_port() -> None:
    results = [
        make_result(443, host="db", address="10.0.0.9"),
        make_result(80, host="web-1", address="10.0.0.5"),
        make_result(22, host="db", address="10.0.0.9"),
        make_result(80, host="web-1", address="2001:db8::5"),
        make_result(8080, host="web-1", address="10.0.0.5"),
    ]
    lines = render(results).splitlines()
    headers = [line for line in lines if line and not line.startswith(" ")]
    assert headers[:3] == [
        "db (10.0.0.9 via dns)",
        "web-1 (10.0.0.5 via dns)",
        "web-1 (2001:db8::5 via dns)",
    ]
    db_start = lines.index("db (10.0.0.9 via dns)")
    db_ports = [line.split()[0] for line in lines[db_start + 2 : db_start + 4]]
    assert db_ports == ["22/tcp", "443/tcp"]


def test_table_row_has_port_state_reason_rtt_expect_and_mark() -> None:
    text = render([make_result(443, rtt_ms=1.5)])
    row = next(line for line in text.splitlines() if line.strip().startswith("443/tcp"))
    assert row.split() == ["443/tcp", "open", "syn-ack", "1.50", "ms", "open", "ok"]


def test_table_marks_not_ok_rows_without_colour() -> None:
    text = render([make_result(443, State.FILTERED, Reason.NO_RESPONSE, rtt_ms=None)])
    assert "\x1b[" not in text
    row = next(line for line in text.splitlines() if "443/tcp" in line)
    assert row.split()[-1] == NOT_OK_MARK
    assert "(1 not as expected)" in text


def test_table_collapses_a_full_sweep_and_holds_few_rows() -> None:
    open_ports = {22, 80, 443}
    sink_target = io.BytesIO()
    sink = TableSink(StreamWriter(sink_target))
    sink.start(RUN)
    batch: list[Result] = []
    for port in range(1, 65536):
        if port in open_ports:
            result = make_result(port, expect=None, address="127.0.0.1", via=ResolvedVia.LITERAL)
        elif port == 5000:  # an error is never collapsed
            result = make_result(
                port,
                State.ERROR,
                Reason.LOCAL_ERROR,
                expect=None,
                address="127.0.0.1",
                via=ResolvedVia.LITERAL,
                message="too many open files",
            )
        else:
            result = make_result(
                port,
                State.REFUSED,
                Reason.CONN_REFUSED,
                expect=None,
                address="127.0.0.1",
                via=ResolvedVia.LITERAL,
            )
        batch.append(result)
        if len(batch) == 1000:
            sink.write(batch)
            batch = []
            assert sink.rows_held <= BORING_ROWS_SHOWN + len(open_ports) + 1
    sink.write(batch)
    assert sink.rows_held == len(open_ports) + 1
    sink.finish(
        RunSummary(
            finished=TS,
            counts={State.OPEN: 3, State.REFUSED: 65531, State.ERROR: 1},
            total=65535,
            not_ok=1,
            inventory_errors=0,
            interrupted=False,
        )
    )
    text = sink_target.getvalue().decode()
    assert "  Not shown: 65531 refused (conn-refused)" in text.splitlines()
    row_ports = [line.split()[0] for line in text.splitlines() if re.match(r"\s+\d+/tcp\s", line)]
    assert row_ports == ["22/tcp", "80/tcp", "443/tcp", "5000/tcp"]
    assert "too many open files" in text
    assert "65535 endpoints: 3 open, 65531 refused, 1 error (1 not as expected) in 1.50 s" in text


@pytest.mark.parametrize(("boring", "collapsed"), [(BORING_ROWS_SHOWN, False), (11, True)])
def test_table_shows_up_to_ten_boring_rows_and_collapses_more(boring: int, collapsed: bool) -> None:
    results = [
        make_result(port, State.REFUSED, Reason.CONN_REFUSED, expect=None)
        for port in range(1000, 1000 + boring)
    ]
    text = render(results)
    rows = [line for line in text.splitlines() if "/tcp" in line]
    if collapsed:
        assert rows == []
        assert f"  Not shown: {boring} refused (conn-refused)" in text.splitlines()
    else:
        assert len(rows) == boring
        assert "Not shown" not in text


def test_table_counts_several_boring_kinds_in_one_not_shown_line() -> None:
    results = [
        make_result(port, State.REFUSED, Reason.CONN_REFUSED, expect=Expect.CLOSED)
        for port in range(1, 21)
    ]
    results += [
        make_result(port, State.FILTERED, Reason.NO_RESPONSE, expect=Expect.CLOSED)
        for port in range(21, 26)
    ]
    text = render(results)
    assert "  Not shown: 20 refused (conn-refused), 5 filtered (no-response)" in text.splitlines()


def test_table_unresolved_group_shows_reason_and_message() -> None:
    result = make_result(
        443,
        State.UNRESOLVED,
        Reason.NXDOMAIN,
        host="nosuch.example",
        address=None,
        via=ResolvedVia.NONE,
        rtt_ms=None,
        message="NXDOMAIN from 127.0.0.1:5353",
    )
    text = render([result])
    lines = text.splitlines()
    assert lines[0] == "nosuch.example (unresolved: nxdomain)"
    row = next(line for line in lines if "443/tcp" in line)
    assert row.split()[:3] == ["443/tcp", "unresolved", "nxdomain"]
    assert row.endswith(f"{NOT_OK_MARK}  NXDOMAIN from 127.0.0.1:5353")


def test_table_shows_the_cause_kind_after_the_reason() -> None:
    cause = cause_of_kind(CauseKind.WRONG_HOST, 0.8, "check the rule")
    text = render([make_result(443, State.REFUSED, Reason.PORT_UNREACH, cause=cause)])
    assert "port-unreach [wrong-host]" in text


def test_table_footer_reports_interruption_and_inventory_errors() -> None:
    results = [make_result(1), make_result(2, State.REFUSED, Reason.CONN_REFUSED)]
    text = render(results, interrupted=True, inventory_errors=2)
    assert text.splitlines()[-3:] == [
        "2 endpoints: 1 open, 1 refused (1 not as expected) in 1.50 s",
        "2 inventory errors: those entries were not scanned",
        "INTERRUPTED — partial results",
    ]


def test_table_footer_without_results() -> None:
    assert render([]).splitlines() == ["0 endpoints in 1.50 s"]


def test_the_table_says_where_the_run_probed_from() -> None:
    at_site = RunInfo(RUN.started, RUN.command, RUN.version, vantage="site-a")
    assert render([], run=at_site).splitlines() == [
        "Probed from site-a",
        "",
        "0 endpoints in 1.50 s",
    ]


def test_table_colour_adds_only_escape_codes() -> None:
    results = [
        make_result(22),
        make_result(443, State.FILTERED, Reason.NO_RESPONSE, rtt_ms=None),
    ]
    coloured = render(results, color=True)
    assert "\x1b[" in coloured
    assert ANSI_ESCAPE.sub("", coloured) == render(results)


def test_table_abort_writes_nothing() -> None:
    target = RecordingTarget()
    sink = TableSink(target)
    sink.start(RUN)
    sink.write([make_result(1)])
    sink.abort()
    assert target.names() == ["discard"]


# --- registry -----------------------------------------------------------------------------


def test_registry_knows_jsonl_and_table() -> None:
    assert set(FORMATS) >= {"jsonl", "table"}


def test_unknown_format_lists_the_known_ones_and_creates_no_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown output format 'xml'; known formats: jsonl"):
        make_sink("xml", str(tmp_path / "out.xml"))
    assert list(tmp_path.iterdir()) == []


def test_table_to_a_file(tmp_path: Path) -> None:
    path = tmp_path / "report.txt"
    sink = make_sink("table", str(path))
    sink.start(RUN)
    sink.write([make_result(22)])
    sink.finish(summary_of([make_result(22)]))
    assert path.read_text().startswith("web-1 (10.0.0.5 via dns)\n")


# --- Progress -----------------------------------------------------------------------------


def test_disabled_progress_counts_and_logs_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with Progress(enabled=False, total=None) as progress:
        progress.advance([make_result(1), make_result(2, State.REFUSED, Reason.CONN_REFUSED)])
        progress.advance([make_result(3, State.OPEN_FILTERED, Reason.NO_RESPONSE)])
        progress.set_total(10)
        progress.log("lowering concurrency to 512: out of file descriptors")
    assert progress.done == 3
    assert progress.total == 10
    assert progress.counts == {"open": 1, "refused": 1, "filtered": 1}
    captured = capsys.readouterr()
    assert captured.err == "lowering concurrency to 512: out of file descriptors\n"
    assert captured.out == ""


def test_enabled_progress_draws_on_its_console_and_logs_above_the_bar() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    with Progress(enabled=True, total=None, console=console) as progress:
        progress.advance([make_result(1)])
        progress.set_total(4)
        progress.advance([make_result(2), make_result(3)])
        progress.log("lowering concurrency to 512: [out of file descriptors]")
    # Stopping draws the final state once more before erasing it (transient).
    drawn = ANSI_ESCAPE.sub("", screen.getvalue())
    assert "lowering concurrency to 512: [out of file descriptors]" in drawn
    assert "3/4" in drawn
    assert "open 3" in drawn


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_the_fast_timestamp_matches_datetime_formatting(epoch: float) -> None:
    """format_timestamp caches the seconds part; it must still print what datetime would."""
    from datetime import UTC, datetime

    expected = datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds")
    assert format_timestamp(epoch) == expected.removesuffix("+00:00") + "Z"


@pytest.mark.parametrize("kind", list(CauseKind))
def test_every_cause_kind_has_its_evidence_record_and_comes_back_from_its_json(
    kind: CauseKind,
) -> None:
    assert EVIDENCE_TYPES[kind].KIND is kind
    cause = cause_of_kind(kind)
    record = orjson.loads(orjson.dumps(cause_to_record(cause)))
    assert record["kind"] == kind.value
    assert list(record["evidence"]) == [name for name, _value in cause.evidence.pairs()]
    assert cause_from_record(record) == cause
