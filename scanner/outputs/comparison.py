"""What several vantage points saw, side by side: `reachscan compare`'s table and JSON (and
a distributed scan's `--format json`).

The table shows, by default, only the endpoints worth a look: path-dependent ones (with
the evidence under each) and those some vantage sees not as expected; an endpoint every
vantage sees alike and as expected is counted, not shown (`--all` shows every row). The
JSON has every endpoint: `port`, the per-vantage states, and `"path-dependent"`.
"""

from __future__ import annotations

from collections.abc import Sequence

from scanner.core.vantages import ComparisonSummary, EndpointView

NOT_SEEN = "-"


def comparison_to_json(
    views: Sequence[EndpointView], summary: ComparisonSummary
) -> dict[str, object]:
    """The comparison document: stable keys, every endpoint."""
    return {
        "vantages": list(summary.vantages),
        "summary": {
            "endpoints": summary.endpoints,
            "path-dependent": summary.path_dependent,
            "unseen": dict(summary.unseen),
        },
        "endpoints": [
            {
                "host": view.host,
                "address": view.address,
                "port": view.port,
                "proto": view.proto.value,
                "expect": None if view.expect is None else view.expect.value,
                "vantages": {
                    vantage: {
                        "state": sighting.state.value,
                        "reason": sighting.reason.value,
                        "ok": sighting.ok,
                        "offender": sighting.offender,
                    }
                    for vantage, sighting in view.seen.items()
                },
                "path-dependent": view.path_dependent,
                "evidence": view.evidence(),
            }
            for view in views
        ],
    }


def render_comparison_table(
    views: Sequence[EndpointView], summary: ComparisonSummary, every_row: bool = False
) -> str:
    """The table: an ENDPOINT column, one column per vantage, a flag; the evidence of
    each path-dependent endpoint on the line under it; a summary line last."""
    shown = [view for view in views if every_row or view.path_dependent or view.failing()]
    header = ["ENDPOINT", *summary.vantages, ""]
    rows = [
        [
            _endpoint(view),
            *(str(view.seen.get(vantage, NOT_SEEN)) for vantage in summary.vantages),
            "path-dependent" if view.path_dependent else "",
        ]
        for view in shown
    ]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    lines = [_line(header, widths)] if shown else []
    for view, row in zip(shown, rows, strict=True):
        lines.append(_line(row, widths))
        evidence = view.evidence()
        if evidence is not None:
            lines.append(f"    {evidence}")
    hidden = len(views) - len(shown)
    if hidden:
        lines.append(f"Not shown: {hidden:,} endpoints every vantage sees alike and as expected")
    unseen = ", ".join(
        f"{count:,} not seen from {vantage}" for vantage, count in summary.unseen.items() if count
    )
    lines.append("")
    lines.append(
        f"{summary.endpoints:,} endpoints from {len(summary.vantages)} vantages "
        f"({', '.join(summary.vantages)}): {summary.path_dependent:,} path-dependent"
        + (f"; {unseen}" if unseen else "")
    )
    return "\n".join(lines) + "\n"


def _endpoint(view: EndpointView) -> str:
    where = view.host if view.address in (None, view.host) else f"{view.host} ({view.address})"
    return f"{where} {view.port}/{view.proto}"


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
