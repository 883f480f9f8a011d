"""One host's endpoints across the last N complete runs, and which of them flap.

An endpoint flaps when its state changed at least K times within the window (defaults:
K=3 in N=10): once is an event (a service stopped), K times is an unstable service, an
overloaded listener or a lossy path, which wants a different fix. Runs that did not scan
the endpoint are shown as gaps and neither add nor break a change. Only complete runs
count, so an interrupted run cannot look like a gap that is not there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scanner.core.diagnose import iso_utc
from scanner.core.model import Proto, State
from scanner.history.diff import observation_to_json, run_to_json
from scanner.history.records import (
    EndpointKey,
    HistoryEntry,
    Observation,
    RunRecord,
    endpoint_label,
    sort_key,
)
from scanner.history.store import HistoryStore

DEFAULT_RUNS = 10
DEFAULT_FLAP_THRESHOLD = 3

STATE_MARKS = {
    State.OPEN: "O",
    State.REFUSED: "R",
    State.FILTERED: "F",
    State.OPEN_FILTERED: "?",
    State.UNRESOLVED: "U",
    State.ERROR: "E",
    State.EXCLUDED: "X",
}
GAP_MARK = "."


@dataclass(frozen=True, slots=True)
class EndpointTimeline:
    key: EndpointKey
    states: tuple[Observation | None, ...]  # one per run of the timeline, oldest first
    changes: int  # state changes between consecutive observations
    flapping: bool

    @property
    def latest(self) -> Observation | None:
        return next((state for state in reversed(self.states) if state is not None), None)


@dataclass(frozen=True, slots=True)
class Timeline:
    host: str
    port: int | None
    proto: Proto | None
    runs: tuple[RunRecord, ...]  # oldest first
    endpoints: tuple[EndpointTimeline, ...]
    flap_threshold: int


def count_state_changes(states: Sequence[Observation | None]) -> int:
    """How often the state differs from the previous observation, skipping gaps."""
    changes = 0
    previous: Observation | None = None
    for observation in states:
        if observation is None:
            continue
        if previous is not None and observation.state != previous.state:
            changes += 1
        previous = observation
    return changes


def build_timeline(
    host: str,
    port: int | None,
    proto: Proto | None,
    runs: Sequence[RunRecord],
    entries: Sequence[HistoryEntry],
    flap_threshold: int = DEFAULT_FLAP_THRESHOLD,
) -> Timeline:
    """Pure: lay the entries out per endpoint against `runs` (oldest first)."""
    position = {run.id: index for index, run in enumerate(runs)}
    grid: dict[EndpointKey, list[Observation | None]] = {}
    for entry in entries:
        column = position.get(entry.run_id)
        if column is None:
            continue  # a run outside the window (finished while we were reading)
        grid.setdefault(entry.key, [None] * len(runs))[column] = entry.observation
    endpoints = []
    for key in sorted(grid, key=sort_key):
        states = tuple(grid[key])
        changes = count_state_changes(states)
        endpoints.append(EndpointTimeline(key, states, changes, changes >= flap_threshold))
    return Timeline(host, port, proto, tuple(runs), tuple(endpoints), flap_threshold)


def endpoint_timeline(
    store: HistoryStore,
    host: str,
    port: int | None = None,
    proto: Proto | None = None,
    runs: int = DEFAULT_RUNS,
    flap_threshold: int = DEFAULT_FLAP_THRESHOLD,
) -> Timeline:
    """The timeline of `host` (as written or as an address) over the last `runs`
    complete runs, optionally one port and protocol."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, not {runs}")
    if flap_threshold < 1:
        raise ValueError(f"flap_threshold must be at least 1, not {flap_threshold}")
    window = list(reversed(store.last_complete_runs(runs)))
    entries = store.endpoint_history(host, port, proto, limit=runs, complete_only=True)
    return build_timeline(host, port, proto, window, entries, flap_threshold)


# --- rendering ----------------------------------------------------------------------------


def _query_label(timeline: Timeline) -> str:
    label = timeline.host
    if timeline.port is not None:
        label += f":{timeline.port}"
        if timeline.proto is not None:
            label += f"/{timeline.proto.value}"
    elif timeline.proto is not None:
        label += f" ({timeline.proto.value})"
    return label


def render_timeline_text(timeline: Timeline) -> str:
    """One row per endpoint: a mark per run (oldest left), the state it was last seen
    in, and how often its state changed."""
    runs = timeline.runs
    if not runs:
        return f"{_query_label(timeline)}: no complete runs stored yet\n"
    span = f"run {runs[0].id}" if len(runs) == 1 else f"runs {runs[0].id}-{runs[-1].id}"
    count = len(timeline.endpoints)
    lines = [
        f"{_query_label(timeline)}: {count} {'endpoint' if count == 1 else 'endpoints'} "
        f"over the last {len(runs)} complete runs ({span}, {iso_utc(runs[0].started)} to "
        f"{iso_utc(runs[-1].started)}), oldest first"
    ]
    if not timeline.endpoints:
        lines.append("no stored results for it in these runs")
        return "\n".join(lines) + "\n"
    rows = [("ENDPOINT", "RUNS", "LAST SEEN", "CHANGES")]
    for endpoint in timeline.endpoints:
        marks = "".join(
            GAP_MARK if state is None else STATE_MARKS.get(state.state, "*")
            for state in endpoint.states
        )
        latest = endpoint.latest
        changes = str(endpoint.changes)
        if endpoint.flapping:
            changes += "  flapping"
        rows.append(
            (
                endpoint_label(endpoint.key),
                marks,
                "-" if latest is None else latest.state.value,
                changes,
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines.append("")
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[3]]).rstrip())
    legend = ", ".join(f"{mark} {state.value}" for state, mark in STATE_MARKS.items())
    flapping = sum(1 for endpoint in timeline.endpoints if endpoint.flapping)
    lines.append("")
    lines.append(f"{legend}, {GAP_MARK} not scanned")
    if flapping:
        lines.append(
            f"{flapping} flapping: the state changed at least {timeline.flap_threshold} "
            f"times in {len(runs)} runs"
        )
    return "\n".join(lines) + "\n"


def timeline_to_json(timeline: Timeline) -> dict[str, object]:
    return {
        "host": timeline.host,
        "port": timeline.port,
        "proto": None if timeline.proto is None else timeline.proto.value,
        "flap_threshold": timeline.flap_threshold,
        "runs": [run_to_json(run) for run in timeline.runs],
        "endpoints": [
            {
                "host": endpoint.key[0],
                "address": endpoint.key[1],
                "port": endpoint.key[2],
                "proto": endpoint.key[3],
                "states": [observation_to_json(state) for state in endpoint.states],
                "changes": endpoint.changes,
                "flapping": endpoint.flapping,
            }
            for endpoint in timeline.endpoints
        ],
    }
