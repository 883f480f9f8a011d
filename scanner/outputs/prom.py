"""`--format prom`: the run as Prometheus metrics for node_exporter's textfile collector.

For cron-driven checks: point `-o` at `<textfile dir>/reachscan.prom` and alert on the
metrics. The whole file is written at `finish` through the sink's target, which for a path
is `AtomicWriter`: a hidden temporary file in the same directory, named `.NAME.tmp-XXXX`
(never ending in `.prom`, so the collector cannot read it half-written), fsynced and renamed
over the target. `prometheus_client.write_to_textfile` is not used: it writes
`NAME.prom.<pid>.<thread>` without an fsync and cannot write to standard output.

Metric names echo blackbox_exporter's (`probe_success`, `probe_duration_seconds`) under a
`reachscan_` prefix, so they never collide with a blackbox exporter scraped alongside.
No sample carries a timestamp: the collector stamps them at scrape time, and stale explicit
timestamps would make Prometheus drop the samples.

Every series carries `vantage`, where the run probed from (`--vantage`), so that the
metrics of several vantage points can be scraped side by side.

Per endpoint and address (left out with `aggregates_only=True`), labelled
`host, address, port, proto, vantage` and the inventory's labels:
  reachscan_probe_success           1 when the result meets its expectation, else 0
  reachscan_endpoint_up             1 when the endpoint is open, else 0
  reachscan_probe_duration_seconds  the round trip; no series when there was none (silence)
Cardinality: one series per endpoint-address for each of these three metrics (a /24 sweep
of 20 ports is 5,120 series per metric), so use `aggregates_only` for large sweeps.
Label keys are sanitised to `[a-zA-Z_][a-zA-Z0-9_]*`; keys that would start with `__`
(reserved by Prometheus) or clash with our own label names get a `label_` prefix, and keys
that then collide with each other get a numeric suffix (`a-b` and `a_b`: `a_b`, `a_b_2`).
Every series of a metric carries the same label names (missing values are empty), as
node_exporter expects.

Aggregates, always present:
  reachscan_endpoints{state}                  results per state (every state, zeros too)
  reachscan_refused_endpoints{cause}          refused results per diagnosed cause ("none")
  reachscan_failed_endpoints                  results not as expected
  reachscan_run_duration_seconds              from start to finish
  reachscan_last_run_timestamp_seconds        when this run finished
  reachscan_last_success_timestamp_seconds    when a run last ended with every endpoint as
      expected, no inventory errors and no interrupt: this run's finish time if so, else
      carried forward from the previous file at the same path; absent until the first
      success (alert on `absent()` as well as on age)
  reachscan_inventory_errors                  malformed inventory entries
  reachscan_run_interrupted                   1 when the run was interrupted

An interrupted run still writes the file, marked `reachscan_run_interrupted 1`: its
results are real measurements, and keeping the previous file would hide that the last run
did not complete. Endpoints it did not reach have no per-endpoint series in it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from scanner.core.model import Labels, Result, State
from scanner.core.sinks import OutputTarget, RunInfo, RunSummary
from scanner.outputs.atomic import AtomicWriter

PREFIX = "reachscan_"
LAST_SUCCESS = f"{PREFIX}last_success_timestamp_seconds"
ENDPOINT_LABELS: tuple[str, ...] = ("host", "address", "port", "proto", "vantage")
NO_CAUSE = "none"

_INVALID_LABEL_CHARACTERS = re.compile(r"[^a-zA-Z0-9_]")


def sanitize_label_names(keys: Iterable[str]) -> dict[str, str]:
    """Map inventory label keys to valid Prometheus label names, distinct from each other
    and from `ENDPOINT_LABELS`.

    Deterministic for a given set of keys (they are processed sorted), so the same
    inventory always produces the same series.
    """
    taken = set(ENDPOINT_LABELS)
    names: dict[str, str] = {}
    for key in sorted(set(keys)):
        name = _INVALID_LABEL_CHARACTERS.sub("_", key)
        if not name or name[0].isdigit():
            name = f"_{name}"
        if name.startswith("__") or name in ENDPOINT_LABELS:
            name = f"label_{name}"
        # "_" + "_2" would start with the reserved "__", so no second underscore after one
        separator = "" if name.endswith("_") else "_"
        unique, suffix = name, 2
        while unique in taken:
            unique, suffix = f"{name}{separator}{suffix}", suffix + 1
        taken.add(unique)
        names[key] = unique
    return names


@dataclass(frozen=True, slots=True)
class _EndpointRow:
    """What the per-endpoint metrics need from one result; the rest is dropped."""

    labels: Labels
    success: bool
    up: bool
    rtt_seconds: float | None


_SeriesKey = tuple[str, str, str, str]  # host, address, port, proto


class _Snapshot:
    """A collector that yields metric families built beforehand (prometheus_client's
    `Collector` protocol): the registry only has to serialise them."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)


class PromSink:
    """Collect results; write node_exporter textfile metrics at `finish`.

    `previous_path` is the file whose `reachscan_last_success_timestamp_seconds` is carried
    forward after an unsuccessful run; by default the file the target will replace.
    """

    def __init__(
        self,
        target: OutputTarget,
        *,
        aggregates_only: bool = False,
        previous_path: str | None = None,
    ) -> None:
        self._target = target
        self._aggregates_only = aggregates_only
        if previous_path is None and isinstance(target, AtomicWriter):
            previous_path = target.path
        self._previous_path = previous_path
        self._started: float | None = None
        self._vantage = ""
        self._rows: dict[_SeriesKey, _EndpointRow] = {}
        self._refused_by_cause: Counter[str] = Counter()

    def start(self, run: RunInfo) -> None:
        self._started = run.started
        self._vantage = run.vantage

    def write(self, results: Sequence[Result]) -> None:
        for result in results:
            if result.state is State.REFUSED:
                cause = result.cause.kind if result.cause is not None else NO_CAUSE
                self._refused_by_cause[cause] += 1
            if self._aggregates_only:
                continue
            endpoint = result.endpoint
            key = (endpoint.host, result.address or "", str(endpoint.port), endpoint.proto.value)
            # Keyed by the series' identity: a duplicate would make node_exporter reject the
            # whole file, so a repeated endpoint-address keeps its latest result.
            self._rows[key] = _EndpointRow(
                labels=endpoint.labels,
                success=result.ok,
                up=result.state is State.OPEN,
                rtt_seconds=None if result.rtt_ms is None else result.rtt_ms / 1000,
            )

    def finish(self, summary: RunSummary) -> None:
        families = [*self._aggregate_families(summary), *self._endpoint_families()]
        registry = CollectorRegistry()
        registry.register(_Snapshot(families))
        self._target.write(generate_latest(registry))
        self._target.commit()

    def verdict(self) -> None:
        """No exit status of its own: the run's results decide it."""
        return None

    def abort(self) -> None:
        self._target.discard()

    def _aggregate_families(self, summary: RunSummary) -> list[Metric]:
        by_state = GaugeMetricFamily(
            f"{PREFIX}endpoints",
            "Endpoint-addresses reachscan found in each state in its last run.",
            labels=["state", "vantage"],
        )
        vantage = self._vantage
        for state in State:
            by_state.add_metric([state.value, vantage], summary.counts.get(state, 0))
        refused = GaugeMetricFamily(
            f"{PREFIX}refused_endpoints",
            "Refused endpoint-addresses in reachscan's last run, by diagnosed cause.",
            labels=["cause", "vantage"],
        )
        for cause, count in sorted(self._refused_by_cause.items()):
            refused.add_metric([cause, vantage], count)
        started = summary.finished if self._started is None else self._started
        families: list[Metric] = [
            by_state,
            refused,
            run_gauge(
                "failed_endpoints", "Endpoint-addresses not as expected.", vantage, summary.not_ok
            ),
            run_gauge(
                "run_duration_seconds",
                "Wall-clock seconds reachscan's last run took.",
                vantage,
                max(0.0, summary.finished - started),
            ),
            run_gauge(
                "last_run_timestamp_seconds",
                "Unix time reachscan's last run finished.",
                vantage,
                summary.finished,
            ),
        ]
        last_success = (
            summary.finished if run_succeeded(summary) else read_last_success(self._previous_path)
        )
        if last_success is not None:
            families.append(
                run_gauge(
                    "last_success_timestamp_seconds",
                    "Unix time a reachscan run last found every endpoint as expected.",
                    vantage,
                    last_success,
                )
            )
        families += [
            run_gauge(
                "inventory_errors",
                "Malformed inventory entries in reachscan's last run.",
                vantage,
                summary.inventory_errors,
            ),
            run_gauge(
                "run_interrupted",
                "1 when reachscan's last run was interrupted and its results are partial.",
                vantage,
                int(summary.interrupted),
            ),
        ]
        return families

    def _endpoint_families(self) -> list[Metric]:
        if self._aggregates_only:
            return []
        label_names = sanitize_label_names(
            key for row in self._rows.values() for key, _ in row.labels
        )
        names = [*ENDPOINT_LABELS, *label_names.values()]
        success = GaugeMetricFamily(
            f"{PREFIX}probe_success",
            "1 when reachscan found the endpoint-address as its inventory expects.",
            labels=names,
        )
        up = GaugeMetricFamily(
            f"{PREFIX}endpoint_up",
            "1 when reachscan found the endpoint-address open.",
            labels=names,
        )
        duration = GaugeMetricFamily(
            f"{PREFIX}probe_duration_seconds",
            "Seconds from reachscan issuing the deciding probe to its answer.",
            labels=names,
        )
        for key in sorted(self._rows):
            row = self._rows[key]
            values = [*key, self._vantage, *_label_values(row.labels, label_names)]
            success.add_metric(values, int(row.success))
            up.add_metric(values, int(row.up))
            if row.rtt_seconds is not None:
                duration.add_metric(values, row.rtt_seconds)
        return [success, up, duration]


def run_succeeded(summary: RunSummary) -> bool:
    """The run that would exit 0: complete, a clean inventory, every endpoint as expected."""
    return not summary.interrupted and summary.inventory_errors == 0 and summary.not_ok == 0


def read_last_success(path: str | None) -> float | None:
    """The last-success timestamp in a previous metrics file, or None if it has none.

    A missing, unreadable or malformed file is not an error: the value is then simply not
    carried forward. Only the lines of the one metric are handed to the parser, so a file
    with a series per endpoint costs a line scan, not a full parse.
    """
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as previous:
            lines = [line for line in previous if LAST_SUCCESS in line]
    except (OSError, UnicodeDecodeError):
        return None
    try:
        for family in text_string_to_metric_families("".join(lines)):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS and sample.value == sample.value:  # not NaN
                    return float(sample.value)
    except ValueError:
        return None
    return None


def run_gauge(name: str, documentation: str, vantage: str, value: float) -> GaugeMetricFamily:
    """One of a run's own metrics: a single series, labelled with the run's vantage (also
    what `reachscan serve` carries forward from the history)."""
    gauge = GaugeMetricFamily(f"{PREFIX}{name}", documentation, labels=["vantage"])
    gauge.add_metric([vantage], value)
    return gauge


def _label_values(labels: Labels, names: Mapping[str, str]) -> list[str]:
    """This row's values in the order of `names`, empty for labels it does not have."""
    own = dict(labels)
    return [own.get(key, "") for key in names]
