"""A run's summary computed from its results, as the runner would count them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from scanner.core.model import Result
from scanner.core.sinks import RunSummary


def summarize(results: Sequence[Result], *, finished: float, **overrides: object) -> RunSummary:
    """Counts per state, totals and not-ok from `results`; `overrides` replace fields
    (`interrupted=True`, `inventory_errors=2`, ...)."""
    summary = RunSummary(
        finished=finished,
        counts=dict(Counter(result.state for result in results)),
        total=len(results),
        not_ok=sum(not result.ok for result in results),
        inventory_errors=0,
        interrupted=False,
    )
    return replace(summary, **overrides)  # type: ignore[arg-type]
