"""What changed between two runs: endpoints whose state or cause changed, appeared, vanished.

`compare` is pure (two runs' observations in, changes out); `diff_runs` only picks the
runs and reads them from the store. Each endpoint is reported once, under the most
telling change: a new state outranks a new cause (the cause is shown with it anyway).
Comparing a partial run (interrupted, failed) is allowed when asked for by id, and the
text says so, because endpoints it never reached show as vanished or appeared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from scanner.core.diagnose import iso_utc
from scanner.core.sinks import format_timestamp
from scanner.history.records import (
    EndpointKey,
    Observation,
    RunRecord,
    RunStatus,
    endpoint_label,
    sort_key,
)
from scanner.history.store import HistoryError, HistoryStore


class ChangeKind(StrEnum):
    """In report order."""

    STATE = "state"
    CAUSE = "cause"
    APPEARED = "appeared"
    VANISHED = "vanished"


_ORDER = {kind: position for position, kind in enumerate(ChangeKind)}


@dataclass(frozen=True, slots=True)
class EndpointChange:
    key: EndpointKey
    kind: ChangeKind
    before: Observation | None  # None: not in the earlier run
    after: Observation | None  # None: not in the later run


@dataclass(frozen=True, slots=True)
class RunDiff:
    before: RunRecord
    after: RunRecord
    changes: tuple[EndpointChange, ...]

    def count(self, kind: ChangeKind) -> int:
        return sum(1 for change in self.changes if change.kind is kind)


class NothingToCompare(HistoryError):
    """Fewer than two complete runs, and no run ids given."""


def classify_change(before: Observation | None, after: Observation | None) -> ChangeKind | None:
    """The change between two observations of one endpoint, None if there is none."""
    if before is None:
        return None if after is None else ChangeKind.APPEARED
    if after is None:
        return ChangeKind.VANISHED
    if before.state != after.state:
        return ChangeKind.STATE
    if before.cause_kind != after.cause_kind:
        return ChangeKind.CAUSE
    return None


def compare(
    before: Mapping[EndpointKey, Observation], after: Mapping[EndpointKey, Observation]
) -> tuple[EndpointChange, ...]:
    """Every endpoint that changed, in report order (by kind, then endpoint)."""
    changes = []
    for key in before.keys() | after.keys():
        kind = classify_change(before.get(key), after.get(key))
        if kind is not None:
            changes.append(EndpointChange(key, kind, before.get(key), after.get(key)))
    changes.sort(key=lambda change: (_ORDER[change.kind], sort_key(change.key)))
    return tuple(changes)


def pick_runs(
    store: HistoryStore, run_a: int | None, run_b: int | None
) -> tuple[RunRecord, RunRecord]:
    """The runs to compare: as given, else `run_b` the newest complete run and `run_a`
    the complete run before it (with only `run_a` given, it is compared to the newest)."""
    if run_a is not None and run_b is not None:
        return store.get_run(run_a), store.get_run(run_b)
    complete = store.last_complete_runs(2)
    if run_a is not None:
        if not complete:
            raise NothingToCompare(store.path, "no complete run to compare with yet")
        return store.get_run(run_a), complete[0]
    if len(complete) < 2:
        raise NothingToCompare(
            store.path,
            f"a diff needs two complete runs and there {'is' if complete else 'are'} "
            f"{len(complete)}: let another scan finish, or name runs by id",
        )
    return complete[1], complete[0]


def diff_runs(store: HistoryStore, run_a: int | None = None, run_b: int | None = None) -> RunDiff:
    """Compare two runs (by default the last two complete ones); `UnknownRun` for an id
    that is not stored, `NothingToCompare` when the defaults find too few runs."""
    before, after = pick_runs(store, run_a, run_b)
    return RunDiff(
        before=before,
        after=after,
        changes=compare(store.observations(before.id), store.observations(after.id)),
    )


# --- rendering ----------------------------------------------------------------------------


def describe_observation(observation: Observation | None) -> str:
    if observation is None:
        return "-"
    text = f"{observation.state.value} ({observation.reason.value})"
    if observation.cause_kind is not None:
        text += f", {observation.cause_kind}"
    return text


def _describe_run(run: RunRecord) -> str:
    return f"run {run.id} ({iso_utc(run.started)}, {run.status.value})"


def render_diff_text(diff: RunDiff) -> str:
    """A header, a one-line summary, then one aligned row per changed endpoint."""
    lines = [f"{_describe_run(diff.before)} -> {_describe_run(diff.after)}"]
    for run in (diff.before, diff.after):
        if run.status is not RunStatus.COMPLETE:
            lines.append(
                f"note: run {run.id} is {run.status.value}: endpoints it did not reach "
                "show as appeared or vanished"
            )
    if not diff.changes:
        lines.append("no changes")
        return "\n".join(lines) + "\n"
    summary = ", ".join(
        f"{diff.count(kind)} {kind.value}" for kind in ChangeKind if diff.count(kind)
    )
    total = len(diff.changes)
    lines.append(f"{total} {'change' if total == 1 else 'changes'}: {summary}")
    lines.append("")
    rows = [("CHANGE", "ENDPOINT", "BEFORE", "AFTER")]
    rows += [
        (
            change.kind.value,
            endpoint_label(change.key),
            describe_observation(change.before),
            describe_observation(change.after),
        )
        for change in diff.changes
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[3]]).rstrip())
    return "\n".join(lines) + "\n"


def run_to_json(run: RunRecord) -> dict[str, object]:
    return {
        "id": run.id,
        "started": format_timestamp(run.started),
        "finished": None if run.finished is None else format_timestamp(run.finished),
        "status": run.status.value,
        "command": run.command,
        "version": run.version,
        "counts": dict(run.counts),
    }


def observation_to_json(observation: Observation | None) -> dict[str, object] | None:
    if observation is None:
        return None
    return {
        "state": observation.state.value,
        "reason": observation.reason.value,
        "cause": observation.cause_kind,
    }


def diff_to_json(diff: RunDiff) -> dict[str, object]:
    """JSON-native: the two runs, then one object per change with before and after."""
    return {
        "before": run_to_json(diff.before),
        "after": run_to_json(diff.after),
        "changes": [
            {
                "change": change.kind.value,
                "host": change.key[0],
                "address": change.key[1],
                "port": change.key[2],
                "proto": change.key[3],
                "before": observation_to_json(change.before),
                "after": observation_to_json(change.after),
            }
            for change in diff.changes
        ],
    }
