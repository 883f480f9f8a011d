"""`scan --changes-only`: pass on only the results that differ from the last complete run.

A cron job that mails its output should stay quiet while nothing changes. A result is a
change when its endpoint was not in the previous run, or its state or its cause kind
differs (a reason alone, such as one ICMP code for another, is not). Pure: it compares
values, the previous run's observations are handed in.

Endpoints that vanished cannot be reported here (no result arrives for them); the `diff`
command shows those.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from scanner.core.model import Result
from scanner.core.sinks import RunInfo, RunSummary, Sink
from scanner.history.records import EndpointKey, Observation, endpoint_key, observation_of


def is_change(before: Observation | None, after: Observation) -> bool:
    """New, or a different state, or a different cause kind."""
    if before is None:
        return True
    return before.state != after.state or before.cause_kind != after.cause_kind


class ChangeFilter:
    """Judges results against what the previous complete run saw."""

    def __init__(self, previous: Mapping[EndpointKey, Observation]) -> None:
        self._previous = previous

    def changed(self, result: Result) -> bool:
        return is_change(self._previous.get(endpoint_key(result)), observation_of(result))


class ChangesOnlySink:
    """Wraps a sink so that it sees only changed results; start, finish and abort pass
    through unchanged, so its header and totals still describe the whole run."""

    def __init__(self, inner: Sink, change_filter: ChangeFilter) -> None:
        self._inner = inner
        self._filter = change_filter

    def start(self, run: RunInfo) -> None:
        self._inner.start(run)

    def write(self, results: Sequence[Result]) -> None:
        changed = [result for result in results if self._filter.changed(result)]
        if changed:
            self._inner.write(changed)

    def finish(self, summary: RunSummary) -> None:
        self._inner.finish(summary)

    def verdict(self) -> None:
        """None, as for every output but a bare Nagios one: a filtered plugin output is no
        plugin's verdict (the run's exit status stays the results')."""
        return None

    def abort(self) -> None:
        self._inner.abort()
