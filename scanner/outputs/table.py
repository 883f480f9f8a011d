"""The human format: results grouped by host, the boring majority summarised, a footer.

Buffered until the run finishes, because grouping needs every result. To keep a
65,535-port sweep from holding 65,535 rows, it keeps only what it will print: every row
that is open or not as expected, and, like nmap's "Not shown:", at most ten of the
"boring" rows (as expected and not open — a refused port in an ad hoc sweep). Once a group
has more than ten boring rows they are only counted, per state and reason.

After the rows and before the footer comes the grouped diagnosis (scanner/outputs/report/),
when there is anything to say: why the endpoints expected open are not.

Plain text first: marks like `!!` carry the meaning without colour, so output piped to a
file or a ticket reads the same. Colour (through rich) is an optional layer on top.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from scanner.core.loss import HostLoss, LossTally
from scanner.core.model import Reason, ResolvedVia, Result, State
from scanner.core.sinks import OutputTarget, RunInfo, RunSummary
from scanner.outputs.report import Report, ReportBuilder
from scanner.outputs.report import render_lines as report_lines
from scanner.outputs.styled import Line, render

BORING_ROWS_SHOWN = 10
"""A group shows up to this many as-expected, not-open rows; more are collapsed to a count."""

OK_MARK = "ok"
NOT_OK_MARK = "!!"

_STATE_STYLES = {
    State.OPEN: "green",
    State.REFUSED: "yellow",
    State.FILTERED: "magenta",
    State.OPEN_FILTERED: "magenta",
    State.UNRESOLVED: "red",
    State.ERROR: "red",
    State.EXCLUDED: "cyan",
}
_COLUMN_TITLES = ("PORT", "STATE", "REASON", "RTT", "EXPECT", "")
LOSSY_PATHS_SHOWN = 10


@dataclass(slots=True)
class HostGroup:
    """The rows of one (host, address) pair, with the boring ones bounded in memory."""

    host: str
    address: str | None
    resolved_via: ResolvedVia
    shown: list[Result] = field(default_factory=list)
    boring: list[Result] = field(default_factory=list)
    boring_counts: Counter[tuple[State, Reason]] = field(default_factory=Counter)

    def add(self, result: Result) -> None:
        if result.state is State.OPEN or not result.ok:
            self.shown.append(result)
            return
        self.boring_counts[(result.state, result.reason)] += 1
        if self.collapsed:
            self.boring.clear()  # from now on they are only counted
        else:
            self.boring.append(result)

    @property
    def collapsed(self) -> bool:
        return self.boring_counts.total() > BORING_ROWS_SHOWN

    @property
    def rows_held(self) -> int:
        return len(self.shown) + len(self.boring)

    def rows(self) -> list[Result]:
        """The rows to print, by port (then protocol)."""
        return sorted(
            [*self.shown, *self.boring],
            key=lambda result: (result.endpoint.port, result.endpoint.proto.value),
        )


class TableSink:
    """Collect results into host groups; render them all at `finish`."""

    def __init__(
        self,
        target: OutputTarget,
        *,
        color: bool = False,
        show_cause: bool = True,
        show_report: bool = True,
    ):
        self._target = target
        self._color = color
        self._show_cause = show_cause
        self._run: RunInfo | None = None
        self._groups: dict[tuple[str, str | None], HostGroup] = {}
        self._report = ReportBuilder() if show_report else None
        self._loss = LossTally()

    @property
    def rows_held(self) -> int:
        """How many results are kept in memory: bounded for sweeps of boring ports."""
        return sum(group.rows_held for group in self._groups.values())

    def start(self, run: RunInfo) -> None:
        self._run = run

    def write(self, results: Sequence[Result]) -> None:
        for result in results:
            key = (result.endpoint.host, result.address)
            group = self._groups.get(key)
            if group is None:
                group = HostGroup(result.endpoint.host, result.address, result.resolved_via)
                self._groups[key] = group
            group.add(result)
            self._loss.add(result)
            if self._report is not None:
                self._report.add(result)

    def finish(self, summary: RunSummary) -> None:
        report = self._report.build() if self._report is not None else None
        lines = render_lines(
            self._groups.values(), self._run, summary, self._show_cause, report, self._loss.lossy()
        )
        text = render(lines, color=self._color)
        self._target.write(text.encode("utf-8"))
        self._target.commit()

    def verdict(self) -> None:
        """No exit status of its own: the run's results decide it."""
        return None

    def abort(self) -> None:
        self._target.discard()


def render_lines(
    groups: Iterable[HostGroup],
    run: RunInfo | None,
    summary: RunSummary,
    show_cause: bool,
    report: Report | None = None,
    lossy: Sequence[HostLoss] = (),
) -> list[Line]:
    """Lay out the whole report as styled lines; colour or not is decided afterwards."""
    group_rows = [(group, group.rows()) for group in groups]
    cells_by_group = [
        [_row_cells(result, show_cause) for result in rows] for _group, rows in group_rows
    ]
    widths = _column_widths([cells for group_cells in cells_by_group for cells in group_cells])
    lines: list[Line] = []
    if run is not None and run.vantage:
        # Which vantage point saw this: reachability depends on where one stands.
        lines += [[(f"Probed from {run.vantage}", "bold")], []]
    for (group, rows), group_cells in zip(group_rows, cells_by_group, strict=True):
        lines.append([(_group_header(group, rows), "bold")])
        if rows:
            lines.append([("  " + _join_cells(_COLUMN_TITLES, widths), "dim")])
        for result, cells in zip(rows, group_cells, strict=True):
            lines.append(_row_line(result, cells, widths))
        if group.collapsed:
            lines.append([("  " + _not_shown(group.boring_counts), "dim")])
        lines.append([])
    if report is not None and not report.empty:
        lines.extend(report_lines(report))
        lines.append([])
    for host in lossy[:LOSSY_PATHS_SHOWN]:
        # Silence there was retried as the loss asked (scanner/core/loss.py); say so.
        lines.append([(f"Lossy path: {host}", "yellow")])
    if len(lossy) > LOSSY_PATHS_SHOWN:
        lines.append([(f"... and {len(lossy) - LOSSY_PATHS_SHOWN} more lossy paths", "yellow")])
    if lossy:
        lines.append([])
    lines.extend(_footer(run, summary))
    return lines


def _group_header(group: HostGroup, rows: Sequence[Result]) -> str:
    if group.address is not None:
        return f"{group.host} ({group.address} via {group.resolved_via.value})"
    reason = rows[0].reason.value if rows else "no address"
    return f"{group.host} (unresolved: {reason})"


def _row_cells(result: Result, show_cause: bool) -> tuple[str, ...]:
    endpoint = result.endpoint
    reason = result.reason.value
    if show_cause and result.cause is not None:
        reason = f"{reason} [{result.cause.kind}]"
    rtt = "-" if result.rtt_ms is None else f"{result.rtt_ms:.2f} ms"
    expect = "-" if endpoint.expect is None else endpoint.expect.value
    mark = OK_MARK if result.ok else NOT_OK_MARK
    return (
        f"{endpoint.port}/{endpoint.proto.value}",
        result.state.value,
        reason,
        rtt,
        expect,
        mark,
    )


def _column_widths(rows: Sequence[tuple[str, ...]]) -> list[int]:
    widths = [len(title) for title in _COLUMN_TITLES]
    for cells in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, cells, strict=True)]
    return widths


def _join_cells(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()


def _row_line(result: Result, cells: tuple[str, ...], widths: Sequence[int]) -> Line:
    """One row, with the state and the mark styled; the plain text is the same either way."""
    port, state, reason, rtt, expect, mark = (
        cell.ljust(width) for cell, width in zip(cells, widths, strict=True)
    )
    line: Line = [
        ("  " + port + "  ", ""),
        (state, _STATE_STYLES[result.state]),
        ("  " + reason + "  " + rtt + "  " + expect + "  ", ""),
        (mark, "green" if result.ok else "bold red"),
    ]
    if result.message:
        line.append(("  " + result.message, ""))
    return line


def _not_shown(counts: Counter[tuple[State, Reason]]) -> str:
    parts = [
        f"{count} {state.value} ({reason.value})" for (state, reason), count in counts.most_common()
    ]
    return "Not shown: " + ", ".join(parts)


def _footer(run: RunInfo | None, summary: RunSummary) -> list[Line]:
    noun = "endpoint" if summary.total == 1 else "endpoints"
    text = f"{summary.total} {noun}"
    states = [
        f"{summary.counts[state]} {state.value}" for state in State if summary.counts.get(state, 0)
    ]
    if states:
        text += ": " + ", ".join(states)
    if summary.not_ok:
        text += f" ({summary.not_ok} not as expected)"
    if run is not None:
        text += f" in {max(0.0, summary.finished - run.started):.2f} s"
    if summary.follow_up_probes:
        text += f"; {summary.follow_up_probes} follow-up probes to explain refusals"
    lines: list[Line] = [[(text, "bold red" if summary.not_ok else "bold")]]
    if summary.inventory_errors:
        noun = "error" if summary.inventory_errors == 1 else "errors"
        message = f"{summary.inventory_errors} inventory {noun}: those entries were not scanned"
        lines.append([(message, "bold red")])
    if summary.interrupted:
        lines.append([("INTERRUPTED — partial results", "bold red")])
    return lines
