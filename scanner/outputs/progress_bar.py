"""The rich progress bar itself, imported only when stderr is a terminal."""

from __future__ import annotations

import rich.progress
from rich.console import Console
from rich.text import Text


def make_bar(console: Console | None) -> rich.progress.Progress:
    return rich.progress.Progress(
        rich.progress.TextColumn("scanning"),
        rich.progress.BarColumn(),
        _DoneColumn(),
        _RateColumn(),
        rich.progress.TimeElapsedColumn(),
        rich.progress.TextColumn(
            "open {task.fields[open]}  refused {task.fields[refused]}  "
            "filtered {task.fields[filtered]}"
        ),
        console=console if console is not None else Console(stderr=True),
        transient=True,
        refresh_per_second=10,
        # Results may be streaming to stdout; never let the bar capture them.
        redirect_stdout=False,
    )


class _DoneColumn(rich.progress.ProgressColumn):
    """`done/total`, or just `done` while the total is unknown."""

    def render(self, task: rich.progress.Task) -> Text:
        done = int(task.completed)
        if task.total is None:
            return Text(f"{done}")
        return Text(f"{done}/{int(task.total)}")


class _RateColumn(rich.progress.ProgressColumn):
    """Results per second, averaged by rich over its speed-estimate window."""

    def render(self, task: rich.progress.Task) -> Text:
        speed = task.speed
        return Text("-/s" if speed is None else f"{speed:,.0f}/s")
