"""`--format prom`: node_exporter textfile metrics, read back with prometheus_client's parser."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from scanner.core.model import Endpoint, Expect, Proto, Reason, ResolvedVia, Result, State
from scanner.core.sinks import RunInfo, RunSummary
from scanner.outputs import make_sink
from scanner.outputs.atomic import AtomicWriter
from scanner.outputs.prom import ENDPOINT_LABELS, PromSink, sanitize_label_names
from tests.support.causes import cause_of_kind
from tests.support.summaries import summarize

STARTED = 1795559400.0
FINISHED = 1795559412.5
RUN = RunInfo(
    started=STARTED, command="reachscan scan fleet.yaml", version="0.1.0", vantage="site-a"
)
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
PER_ENDPOINT = {
    "reachscan_probe_success",
    "reachscan_endpoint_up",
    "reachscan_probe_duration_seconds",
}


def result(
    host: str,
    port: int,
    state: State,
    reason: Reason,
    *,
    address: str | None = "10.0.0.5",
    proto: Proto = Proto.TCP,
    expect: Expect | None = Expect.OPEN,
    rtt_ms: float | None = 2.5,
    labels: tuple[tuple[str, str], ...] = (),
    cause: str | None = None,
) -> Result:
    return Result(
        endpoint=Endpoint(host=host, port=port, proto=proto, expect=expect, labels=labels),
        address=address,
        resolved_via=ResolvedVia.DNS if address else ResolvedVia.NONE,
        state=state,
        reason=reason,
        rtt_ms=rtt_ms,
        ts=FINISHED - 1,
        cause=None if cause is None else cause_of_kind(cause),
    )


def summary_of(results: Sequence[Result], **overrides: object) -> RunSummary:
    return summarize(results, **{"finished": FINISHED, **overrides})  # type: ignore[arg-type]


def run_to_file(
    path: Path, results: Sequence[Result], *, aggregates_only: bool = False, **summary: object
) -> str:
    """One run through the sink into a real atomic file at `path`; the file's text."""
    sink = PromSink(AtomicWriter(str(path)), aggregates_only=aggregates_only)
    sink.start(RUN)
    sink.write(results)
    sink.finish(summary_of(results, **summary))
    return path.read_text(encoding="utf-8")


def samples(text: str) -> list[Sample]:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def value_of(text: str, name: str, **labels: str) -> float:
    matching = [
        sample.value
        for sample in samples(text)
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(matching) == 1, (name, labels, matching)
    return matching[0]


def names_in(text: str) -> set[str]:
    return {sample.name for sample in samples(text)}


FLEET = [
    result(
        "web1",
        443,
        State.OPEN,
        Reason.SYN_ACK,
        address="10.0.0.1",
        rtt_ms=1.5,
        labels=(("env", "prod"),),
    ),
    result("db1", 5432, State.REFUSED, Reason.CONN_REFUSED, rtt_ms=0.25, cause="service-down"),
    result("db1", 23, State.REFUSED, Reason.CONN_REFUSED, expect=Expect.CLOSED, rtt_ms=0.5),
    result("dns1", 53, State.OPEN_FILTERED, Reason.NO_RESPONSE, proto=Proto.UDP, rtt_ms=None),
    result("gone.example", 22, State.UNRESOLVED, Reason.NXDOMAIN, address=None, rtt_ms=None),
]


def test_values_match_the_run(tmp_path: Path) -> None:
    text = run_to_file(tmp_path / "reachscan.prom", FLEET, inventory_errors=2)

    def endpoint(host: str, address: str, port: int, proto: str = "tcp") -> dict[str, str]:
        return {"host": host, "address": address, "port": str(port), "proto": proto}

    web = endpoint("web1", "10.0.0.1", 443)
    db = endpoint("db1", "10.0.0.5", 5432)
    telnet = endpoint("db1", "10.0.0.5", 23)
    dns = endpoint("dns1", "10.0.0.5", 53, "udp")
    gone = endpoint("gone.example", "", 22)
    assert value_of(text, "reachscan_probe_success", **web, env="prod") == 1
    assert value_of(text, "reachscan_probe_success", **db) == 0
    assert value_of(text, "reachscan_probe_success", **telnet) == 1  # expected closed
    assert value_of(text, "reachscan_probe_success", **dns) == 0
    assert value_of(text, "reachscan_probe_success", **gone) == 0
    assert value_of(text, "reachscan_endpoint_up", **web) == 1
    assert value_of(text, "reachscan_endpoint_up", **telnet) == 0
    assert value_of(text, "reachscan_probe_duration_seconds", **web) == pytest.approx(0.0015)
    assert value_of(text, "reachscan_probe_duration_seconds", **db) == pytest.approx(0.00025)

    assert value_of(text, "reachscan_endpoints", state="open") == 1
    assert value_of(text, "reachscan_endpoints", state="refused") == 2
    assert value_of(text, "reachscan_endpoints", state="open|filtered") == 1
    assert value_of(text, "reachscan_endpoints", state="unresolved") == 1
    assert value_of(text, "reachscan_endpoints", state="filtered") == 0  # present, as zero
    assert value_of(text, "reachscan_endpoints", state="error") == 0
    assert value_of(text, "reachscan_refused_endpoints", cause="service-down") == 1
    assert value_of(text, "reachscan_refused_endpoints", cause="none") == 1
    assert value_of(text, "reachscan_failed_endpoints") == 3
    assert value_of(text, "reachscan_run_duration_seconds") == pytest.approx(12.5)
    assert value_of(text, "reachscan_last_run_timestamp_seconds") == FINISHED
    assert value_of(text, "reachscan_inventory_errors") == 2
    assert value_of(text, "reachscan_run_interrupted") == 0


def test_silence_has_no_duration_series_and_nothing_is_nan(tmp_path: Path) -> None:
    text = run_to_file(tmp_path / "r.prom", FLEET)

    durations = [s for s in samples(text) if s.name == "reachscan_probe_duration_seconds"]
    assert {s.labels["host"] for s in durations} == {"web1", "db1"}
    assert len(durations) == 3
    assert all(math.isfinite(sample.value) for sample in samples(text))


def test_no_sample_carries_a_timestamp(tmp_path: Path) -> None:
    text = run_to_file(tmp_path / "r.prom", FLEET)

    assert samples(text)
    assert all(sample.timestamp is None for sample in samples(text))


def test_every_metric_is_ours_and_documented(tmp_path: Path) -> None:
    text = run_to_file(tmp_path / "r.prom", FLEET)

    families = list(text_string_to_metric_families(text))
    assert {family.name for family in families} >= PER_ENDPOINT
    for family in families:
        assert family.name.startswith("reachscan_")
        assert family.type == "gauge"
        assert family.documentation
    # blackbox_exporter's own help texts, which ours must not copy
    helps = {family.documentation for family in families}
    assert "Displays whether or not the probe was a success" not in helps
    assert "Returns how long the probe took to complete in seconds" not in helps


def test_every_series_says_where_the_run_probed_from(tmp_path: Path) -> None:
    """Several vantage points' files, scraped side by side, never share a series."""
    text = run_to_file(tmp_path / "r.prom", FLEET)
    assert samples(text)
    assert {sample.labels.get("vantage") for sample in samples(text)} == {"site-a"}


def test_the_temporary_file_never_ends_in_prom(tmp_path: Path) -> None:
    """node_exporter reads `*.prom`: a half-written file must not match that pattern."""
    path = tmp_path / "reachscan.prom"
    sink = make_sink("prom", str(path))
    sink.start(RUN)
    sink.write(FLEET)

    pending = os.listdir(tmp_path)
    assert len(pending) == 1
    assert not pending[0].endswith(".prom")
    assert not path.exists()

    sink.finish(summary_of(FLEET))
    assert os.listdir(tmp_path) == ["reachscan.prom"]


def test_abort_leaves_the_previous_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "reachscan.prom"
    path.write_text("# previous\n", encoding="utf-8")
    sink = make_sink("prom", str(path))
    sink.start(RUN)
    sink.write(FLEET)
    sink.abort()

    assert os.listdir(tmp_path) == ["reachscan.prom"]
    assert path.read_text(encoding="utf-8") == "# previous\n"


def test_inventory_labels_are_sanitised_and_never_clash(tmp_path: Path) -> None:
    odd_labels = (
        ("9lives", "a"),
        ("a-b", "b"),
        ("__meta", "c"),
        ("host", "d"),
        ("label_host", "e"),
        ("proto", "f"),
        ("vantage", "g"),
        ("zone.name", 'quote " back \\ newline \n end'),
    )
    text = run_to_file(
        tmp_path / "r.prom",
        [result("web1", 443, State.OPEN, Reason.SYN_ACK, labels=odd_labels)],
    )

    success = [s for s in samples(text) if s.name == "reachscan_probe_success"]
    assert len(success) == 1
    labels = success[0].labels
    for name in labels:
        assert LABEL_NAME.match(name), name
        assert not name.startswith("__"), name
    assert labels["host"] == "web1"  # ours, not the inventory's "host"
    assert labels["proto"] == "tcp"
    assert labels["vantage"] == "site-a"  # ours, not the inventory's "vantage"
    assert sorted(labels.values()) == sorted(
        ["web1", "10.0.0.5", "443", "tcp", "site-a", *(value for _, value in odd_labels)]
    )
    assert labels["zone_name"] == 'quote " back \\ newline \n end'


def test_label_name_mapping_is_exact_and_deterministic() -> None:
    keys = ["host", "label_host", "9lives", "a-b", "a_b", "__meta", "", "env", "é"]

    names = sanitize_label_names(keys)

    assert names == {
        "": "_",
        "9lives": "_9lives",
        "__meta": "label___meta",
        "a-b": "a_b",
        "a_b": "a_b_2",
        "env": "env",
        "host": "label_host",
        "label_host": "label_host_2",
        "é": "_2",
    }
    assert sanitize_label_names(reversed(keys)) == names
    assert not set(names.values()) & set(ENDPOINT_LABELS)
    assert len(set(names.values())) == len(names)


def test_every_series_of_a_metric_has_the_same_label_names(tmp_path: Path) -> None:
    text = run_to_file(
        tmp_path / "r.prom",
        [
            result("a", 1, State.OPEN, Reason.SYN_ACK, labels=(("env", "prod"),)),
            result("b", 2, State.OPEN, Reason.SYN_ACK, labels=(("team", "data"),)),
        ],
    )

    # the parser drops empty label values, so compare through the raw lines
    series = [line for line in text.splitlines() if line.startswith("reachscan_endpoint_up{")]
    label_sets = {tuple(re.findall(r'([a-zA-Z_]\w*)="', line)) for line in series}
    assert len(series) == 2
    assert len(label_sets) == 1
    assert set(next(iter(label_sets))) == {*ENDPOINT_LABELS, "env", "team"}


def test_a_repeated_endpoint_address_gives_one_series(tmp_path: Path) -> None:
    first = result("web1", 443, State.REFUSED, Reason.CONN_REFUSED)
    again = result("web1", 443, State.OPEN, Reason.SYN_ACK)
    sink = make_sink("prom", str(tmp_path / "r.prom"))
    sink.start(RUN)
    sink.write([first])
    sink.write([again])
    sink.finish(summary_of([again]))

    text = (tmp_path / "r.prom").read_text(encoding="utf-8")
    assert value_of(text, "reachscan_probe_success", host="web1") == 1


def test_aggregates_only_leaves_out_every_per_endpoint_series(tmp_path: Path) -> None:
    text = run_to_file(tmp_path / "r.prom", FLEET, aggregates_only=True)

    assert not names_in(text) & PER_ENDPOINT
    assert value_of(text, "reachscan_endpoints", state="refused") == 2
    assert value_of(text, "reachscan_refused_endpoints", cause="service-down") == 1
    assert value_of(text, "reachscan_failed_endpoints") == 3
    assert "web1" not in text


def test_an_interrupted_run_is_written_and_marked(tmp_path: Path) -> None:
    partial = [FLEET[0]]
    text = run_to_file(tmp_path / "r.prom", partial, interrupted=True)

    assert value_of(text, "reachscan_run_interrupted") == 1
    assert value_of(text, "reachscan_probe_success", host="web1") == 1
    # every result was fine, but an interrupted run is not a success
    assert "reachscan_last_success_timestamp_seconds" not in names_in(text)


def test_last_success_is_this_run_when_all_is_as_expected(tmp_path: Path) -> None:
    text = run_to_file(tmp_path / "r.prom", [FLEET[0]])

    assert value_of(text, "reachscan_last_success_timestamp_seconds") == FINISHED


def test_last_success_is_carried_forward_from_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "reachscan.prom"
    run_to_file(path, [FLEET[0]])  # a success at FINISHED

    later = FINISHED + 3600
    text = run_to_file(path, FLEET, finished=later)  # a failure an hour later

    assert value_of(text, "reachscan_last_run_timestamp_seconds") == later
    assert value_of(text, "reachscan_last_success_timestamp_seconds") == FINISHED
    text = run_to_file(path, FLEET, finished=later + 60)  # and it keeps being carried
    assert value_of(text, "reachscan_last_success_timestamp_seconds") == FINISHED
    text = run_to_file(path, [FLEET[0]], finished=later + 120)  # until the next success
    assert value_of(text, "reachscan_last_success_timestamp_seconds") == later + 120


def test_inventory_errors_are_not_a_success(tmp_path: Path) -> None:
    text = run_to_file(tmp_path / "r.prom", [FLEET[0]], inventory_errors=1)

    assert "reachscan_last_success_timestamp_seconds" not in names_in(text)


@pytest.mark.parametrize(
    "previous",
    [
        "",
        "garbage that is not the exposition format\n",
        "reachscan_last_success_timestamp_seconds{oops\n",
        "reachscan_last_success_timestamp_seconds NaN\n",
        "\udcff",
    ],
)
def test_an_unreadable_previous_file_carries_nothing_forward(tmp_path: Path, previous: str) -> None:
    path = tmp_path / "r.prom"
    path.write_bytes(previous.encode("utf-8", "surrogateescape"))

    text = run_to_file(path, FLEET)

    assert "reachscan_last_success_timestamp_seconds" not in names_in(text)
    assert value_of(text, "reachscan_failed_endpoints") == 3


def test_previous_path_can_be_given_explicitly(tmp_path: Path) -> None:
    elsewhere = tmp_path / "before.prom"
    elsewhere.write_text(
        "# TYPE reachscan_last_success_timestamp_seconds gauge\n"
        "reachscan_last_success_timestamp_seconds 1.7e+09\n",
        encoding="utf-8",
    )
    sink = PromSink(AtomicWriter(str(tmp_path / "now.prom")), previous_path=str(elsewhere))
    sink.start(RUN)
    sink.write(FLEET)
    sink.finish(summary_of(FLEET))

    text = (tmp_path / "now.prom").read_text(encoding="utf-8")
    assert value_of(text, "reachscan_last_success_timestamp_seconds") == 1.7e9


@given(st.lists(st.text(max_size=12), max_size=12))
def test_any_label_keys_become_valid_distinct_names(keys: list[str]) -> None:
    names = sanitize_label_names(keys)

    assert set(names) == set(keys)
    assert len(set(names.values())) == len(names)
    for name in names.values():
        assert LABEL_NAME.match(name), name
        assert not name.startswith("__"), name
        assert name not in ENDPOINT_LABELS
