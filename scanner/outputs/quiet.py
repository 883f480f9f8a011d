"""`-q/--quiet`: say nothing when all is well, so cron mails only on trouble.

Wraps the output that goes to stdout: it sees only the results that are not as expected,
and it writes anything at all only when the run had trouble (something not as expected,
an inventory error, an interrupt). File outputs (`-o PATH`) are not wrapped: a metrics
file or a JSONL log must be complete whatever happened.
"""

from __future__ import annotations

from collections.abc import Sequence

from scanner.core.model import Result
from scanner.core.sinks import RunInfo, RunSummary, Sink, Wanted


def run_had_trouble(summary: RunSummary) -> bool:
    return bool(summary.not_ok or summary.inventory_errors or summary.interrupted)


class QuietSink:
    """Passes on only the results that are not as expected; finishes only on trouble."""

    results_wanted = Wanted.TROUBLE

    def __init__(self, inner: Sink) -> None:
        self._inner = inner

    def start(self, run: RunInfo) -> None:
        self._inner.start(run)

    def write(self, results: Sequence[Result]) -> None:
        trouble = [result for result in results if not result.ok]
        if trouble:
            self._inner.write(trouble)

    def finish(self, summary: RunSummary) -> None:
        if run_had_trouble(summary):
            self._inner.finish(summary)
        else:
            self._inner.abort()

    def verdict(self) -> None:
        """None, as for every output but a bare Nagios one: a filtered plugin output is no
        plugin's verdict (the run's exit status stays the results')."""
        return None

    def abort(self) -> None:
        self._inner.abort()
