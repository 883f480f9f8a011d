"""`--format nagios`: the plugin line, its performance data, thresholds and exit status."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import pytest

from scanner.core.model import Endpoint, Expect, Proto, Reason, ResolvedVia, Result, State
from scanner.core.sinks import RunInfo, RunSummary
from scanner.outputs.nagios import (
    DEFAULT_CRITICAL,
    FAILURES_SHOWN,
    NagiosSink,
    Status,
    Threshold,
    status_for,
)
from tests.support.causes import cause_of_kind
from tests.support.summaries import summarize

STARTED = 1795559400.0
FINISHED = 1795559401.234
RUN = RunInfo(started=STARTED, command="reachscan scan fleet.yaml", version="0.1.0")

# Performance data per the plugin guidelines: 'label'=value[UOM];[warn];[crit];[min];[max]
PERFDATA_ITEM = re.compile(
    r"'(?P<label>[^'=]+)'=(?P<value>-?[0-9.]+)(?P<uom>s|%|B|KB|MB|TB|c)?"
    r";(?P<warn>[^;]*);(?P<crit>[^;]*);(?P<min>[^;]*);(?P<max>[^;]*)\Z"
)


class MemoryTarget:
    """An OutputTarget keeping what was committed."""

    def __init__(self) -> None:
        self.pending = b""
        self.committed: bytes | None = None

    def write(self, data: bytes | bytearray) -> None:
        self.pending += data

    def flush(self) -> None:
        pass

    def commit(self) -> None:
        self.committed = self.pending

    def discard(self) -> None:
        self.pending = b""


def result(
    host: str,
    port: int,
    state: State,
    reason: Reason,
    *,
    address: str | None = "10.0.0.5",
    proto: Proto = Proto.TCP,
    cause: str | None = None,
) -> Result:
    return Result(
        endpoint=Endpoint(host=host, port=port, proto=proto, expect=Expect.OPEN),
        address=address,
        resolved_via=ResolvedVia.DNS if address else ResolvedVia.NONE,
        state=state,
        reason=reason,
        rtt_ms=1.0,
        ts=FINISHED,
        cause=None if cause is None else cause_of_kind(cause),
    )


def summary_of(results: Sequence[Result], **overrides: object) -> RunSummary:
    return summarize(results, **{"finished": FINISHED, **overrides})  # type: ignore[arg-type]


def run(
    results: Sequence[Result],
    *,
    warning: Threshold | None = None,
    critical: Threshold | None = DEFAULT_CRITICAL,
    **summary: object,
) -> tuple[str, int]:
    target = MemoryTarget()
    sink = NagiosSink(target, warning=warning, critical=critical)
    sink.start(RUN)
    for each in results:
        sink.write([each])
    sink.finish(summary_of(results, **summary))
    assert target.committed is not None
    return target.committed.decode(), sink.exit_status()


def split_line(output: str) -> tuple[str, dict[str, re.Match[str]]]:
    """Text and performance data of exactly one line, checked against the guidelines."""
    assert output.endswith("\n")
    assert output.count("\n") == 1
    text, separator, perfdata = output.rstrip("\n").partition(" | ")
    assert separator
    assert "|" not in text
    items = {}
    for item in perfdata.split(" "):
        match = PERFDATA_ITEM.match(item)
        assert match, item
        items[match["label"]] = match
    return text, items


def opens(count: int) -> list[Result]:
    return [result(f"web{n}", 443, State.OPEN, Reason.SYN_ACK) for n in range(count)]


def test_all_as_expected_is_ok() -> None:
    results = [*opens(10), result("db1", 23, State.OPEN, Reason.SYN_ACK)]

    output, status = run(results)

    text, perfdata = split_line(output)
    assert status == 0
    assert text == "REACHSCAN OK - 11/11 endpoints as expected"
    assert perfdata["ok"]["value"] == "11"
    assert (perfdata["ok"]["min"], perfdata["ok"]["max"]) == ("0", "11")
    assert perfdata["failed"]["value"] == "0"
    assert (perfdata["failed"]["warn"], perfdata["failed"]["crit"]) == ("", "0")
    assert perfdata["open"]["value"] == "11"
    assert perfdata["refused"]["value"] == "0"
    assert perfdata["open_filtered"]["value"] == "0"
    assert set(perfdata) == {
        "ok",
        "failed",
        "open",
        "refused",
        "filtered",
        "open_filtered",
        "unresolved",
        "error",
        "excluded",
        "time",
    }
    assert perfdata["time"]["uom"] == "s"
    assert float(perfdata["time"]["value"]) == pytest.approx(1.234)


def test_failures_are_critical_and_named_with_their_cause() -> None:
    results = [
        *opens(10),
        result("db1", 5432, State.REFUSED, Reason.CONN_REFUSED, cause="service-down"),
        result("gone", 22, State.UNRESOLVED, Reason.NXDOMAIN, address=None),
    ]

    output, status = run(results)

    text, perfdata = split_line(output)
    assert status == 2
    assert text == (
        "REACHSCAN CRITICAL - 2/12 endpoints not as expected: "
        "db1:5432/tcp (10.0.0.5) refused (service-down), gone:22/tcp unresolved (nxdomain)"
    )
    assert (perfdata["ok"]["value"], perfdata["failed"]["value"]) == ("10", "2")
    assert perfdata["refused"]["value"] == "1"
    assert perfdata["unresolved"]["value"] == "1"


def test_only_the_first_few_failures_are_named_in_a_stable_order() -> None:
    failures = [
        result(f"h{n:03d}", 80, State.FILTERED, Reason.NO_RESPONSE, address=f"10.0.1.{n}")
        for n in reversed(range(100))
    ]

    output, _ = run(failures)

    text, _ = split_line(output)
    named = re.findall(r"h(\d{3}):80/tcp", text)
    assert named == [f"{n:03d}" for n in range(FAILURES_SHOWN)]
    assert text.endswith(f", and {100 - FAILURES_SHOWN} more")


def test_an_ipv6_host_is_bracketed_and_open_filtered_has_no_pipe() -> None:
    output, _ = run(
        [result("::1", 53, State.OPEN_FILTERED, Reason.NO_RESPONSE, address="::1", proto=Proto.UDP)]
    )

    text, _ = split_line(output)
    assert "[::1]:53/udp open/filtered (no-response)" in text
    assert "(::1)" not in text  # the address is the host: not repeated


@pytest.mark.parametrize(
    ("failed", "expected"),
    [
        (0, Status.OK),
        (2, Status.OK),
        (3, Status.WARNING),
        (5, Status.WARNING),
        (6, Status.CRITICAL),
    ],
)
def test_thresholds_decide_the_status(failed: int, expected: Status) -> None:
    results = [
        *opens(4),
        *(result(f"x{n}", 1, State.REFUSED, Reason.CONN_REFUSED) for n in range(failed)),
    ]

    output, status = run(results, warning=Threshold.parse("2"), critical=Threshold.parse("5"))

    assert status == expected
    text, perfdata = split_line(output)
    assert text.startswith(f"REACHSCAN {expected.name} - ")
    assert (perfdata["failed"]["warn"], perfdata["failed"]["crit"]) == ("2", "5")


def test_no_thresholds_is_always_ok() -> None:
    _, status = run(
        [result("x", 1, State.REFUSED, Reason.CONN_REFUSED)], warning=None, critical=None
    )

    assert status == Status.OK


@pytest.mark.parametrize(
    ("summary", "words"),
    [
        ({"interrupted": True}, "scan interrupted"),
        ({"inventory_errors": 2}, "2 inventory error(s)"),
    ],
)
def test_a_run_that_cannot_vouch_for_the_fleet_is_unknown(
    summary: dict[str, object], words: str
) -> None:
    output, status = run(opens(3), **summary)  # type: ignore[arg-type]

    text, _ = split_line(output)
    assert status == 3
    assert text.startswith("REACHSCAN UNKNOWN - ")
    assert words in text
    assert "3/3 endpoints as expected" in text


def test_an_empty_run_is_unknown() -> None:
    output, status = run([])

    assert status == 3
    assert "no endpoints were scanned" in output


def test_exit_status_is_unknown_until_finish() -> None:
    sink = NagiosSink(MemoryTarget())
    sink.start(RUN)
    sink.write(opens(1))

    assert sink.exit_status() == 3


def test_the_default_critical_threshold_is_any_failure() -> None:
    target = MemoryTarget()
    sink = NagiosSink(target)
    sink.start(RUN)
    sink.write([*opens(5), result("x", 1, State.FILTERED, Reason.NO_RESPONSE)])
    sink.finish(summary_of([*opens(5), result("x", 1, State.FILTERED, Reason.NO_RESPONSE)]))

    assert sink.exit_status() == 2


def test_abort_discards() -> None:
    target = MemoryTarget()
    sink = NagiosSink(target)
    sink.start(RUN)
    sink.abort()

    assert target.committed is None


# --- Nagios ranges (plugin guidelines, "Threshold and ranges") ------------------------------

INF = math.inf


@pytest.mark.parametrize(
    ("text", "start", "end", "inside"),
    [
        ("10", 0, 10, False),
        ("10:", 10, INF, False),
        ("~:10", -INF, 10, False),
        ("10:20", 10, 20, False),
        ("@10:20", 10, 20, True),
        ("@10", 0, 10, True),
        ("0", 0, 0, False),
        (":5", 0, 5, False),
        ("-5:-1", -5, -1, False),
        ("1.5:2.5", 1.5, 2.5, False),
        (" 3 ", 0, 3, False),
    ],
)
def test_ranges_parse(text: str, start: float, end: float, inside: bool) -> None:
    threshold = Threshold.parse(text)

    assert (threshold.start, threshold.end, threshold.inside) == (start, end, inside)


@pytest.mark.parametrize(
    ("text", "alerting", "quiet"),
    [
        # the guidelines' own examples
        ("10", [-1, 10.5, 11, 1000], [0, 5, 10]),
        ("10:", [-1, 0, 9.9], [10, 11, 1e12]),
        ("~:10", [10.1, 11], [-1e12, 0, 10]),
        ("10:20", [9, 21], [10, 15, 20]),
        ("@10:20", [10, 15, 20], [9, 21]),
        ("0", [1, -1], [0]),
        ("@0", [0], [1, -1]),
    ],
)
def test_ranges_alert_outside_or_with_at_inside(
    text: str, alerting: list[float], quiet: list[float]
) -> None:
    threshold = Threshold.parse(text)

    assert [value for value in alerting if not threshold.alerts(value)] == []
    assert [value for value in quiet if threshold.alerts(value)] == []


@pytest.mark.parametrize(
    "text", ["", "@", "abc", "20:10", "1:2:3", "~", "10:~", "nan", "inf", "1;2", "@@1"]
)
def test_malformed_ranges_are_rejected_with_the_range_named(text: str) -> None:
    with pytest.raises(ValueError, match="threshold"):
        Threshold.parse(text)


def test_the_range_is_kept_as_written_for_the_performance_data() -> None:
    assert str(Threshold.parse("@10:20")) == "@10:20"


def test_status_for_checks_critical_before_warning() -> None:
    summary = summary_of([result("x", 1, State.REFUSED, Reason.CONN_REFUSED)])

    assert status_for(summary, Threshold.parse("0"), Threshold.parse("0")) is Status.CRITICAL
    assert status_for(summary, Threshold.parse("0"), Threshold.parse("5")) is Status.WARNING
