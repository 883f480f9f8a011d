"""A live progress bar on stderr, and the one place warnings are printed during a scan.

Results go to stdout (or a file), so the bar lives on stderr and only when stderr is a
terminal; the caller decides and passes `enabled`. It is transient: when the scan ends it
disappears and leaves the terminal to the report. Warnings printed while it runs
("lowering concurrency...") must go above the bar, not through it, so they go through
`log`, which falls back to plain stderr when the bar is off.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self

from scanner.core.model import Result, State

if TYPE_CHECKING:
    import rich.progress
    from rich.console import Console

_COUNTED_STATES = {
    State.OPEN: "open",
    State.REFUSED: "refused",
    State.FILTERED: "filtered",
    State.OPEN_FILTERED: "filtered",  # silence on UDP: closer to filtered than to anything else
}


class Progress:
    """Done/total (or done and rate, while the total is unknown) with running state counts.

    Usable whether enabled or not, so the engine calls it unconditionally; disabled, it
    still counts, and `log` writes to stderr.
    """

    def __init__(self, enabled: bool, total: int | None, *, console: Console | None = None):
        self.enabled = enabled
        self.total = total
        self.done = 0
        self.counts = {"open": 0, "refused": 0, "filtered": 0}
        self._bar: rich.progress.Progress | None = None
        self._task: rich.progress.TaskID | None = None
        if enabled:  # rich is imported only for a terminal: it is slow to import
            from scanner.outputs.progress_bar import make_bar

            self._bar = make_bar(console)

    def __enter__(self) -> Self:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(
                "scanning",
                total=self.total,
                open=self.counts["open"],
                refused=self.counts["refused"],
                filtered=self.counts["filtered"],
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._task = None

    def advance(self, results: Sequence[Result]) -> None:
        self.advance_counts(len(results), Counter(result.state for result in results))

    def advance_counts(self, done: int, states: Mapping[State, int]) -> None:
        """`done` more results, of which `states` by state (results counted elsewhere:
        a shard process sends its counts, not its results)."""
        self.done += done
        for state, count in states.items():
            name = _COUNTED_STATES.get(state)
            if name is not None:
                self.counts[name] += count
        if self._bar is not None and self._task is not None:
            self._bar.update(
                self._task,
                advance=done,
                open=self.counts["open"],
                refused=self.counts["refused"],
                filtered=self.counts["filtered"],
            )

    def set_total(self, total: int) -> None:
        """The total becomes known late when names resolve to several addresses."""
        self.total = total
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, total=total)

    def log(self, message: str) -> None:
        """Print a line above the bar, or to stderr when there is no bar."""
        if self._bar is not None and self._task is not None:
            self._bar.console.print(message, markup=False, highlight=False, emoji=False)
        else:
            print(message, file=sys.stderr, flush=True)
