"""The grouped report as styled text lines, for the table's footer."""

from __future__ import annotations

from collections.abc import Sequence

from scanner.outputs.report.records import FilteredGroup, HostEntry, RefusalGroup, Report
from scanner.outputs.styled import Line, render

ADVICE_MARK = "-> "


def render_text(report: Report, color: bool = False) -> str:
    """The report for people; empty when there is nothing to say. Plain text reads the
    same as the coloured form with the escape codes removed."""
    lines = render_lines(report)
    if not lines:
        return ""
    return render(lines, color=color)


def render_lines(report: Report) -> list[Line]:
    lines: list[Line] = []
    if report.refusals:
        total = sum(group.count for group in report.refusals)
        lines.append([(f"Why {_endpoints(total)} expected open {_are(total)} refused", "bold")])
        for group in report.refusals:
            lines.extend(_refusal_group_lines(group))
    if report.filtered:
        if lines:
            lines.append([])
        total = sum(group.count for group in report.filtered)
        lines.append([(f"Why {_endpoints(total)} expected open {_are(total)} filtered", "bold")])
        for filtered_group in report.filtered:
            lines.extend(_filtered_group_lines(filtered_group))
    if report.disagreements:
        if lines:
            lines.append([])
        lines.append([("Names whose addresses disagree", "bold")])
        lines.extend([("  " + item.summary, "yellow")] for item in report.disagreements)
    return lines


def _refusal_group_lines(group: RefusalGroup) -> list[Line]:
    heading = f"  {group.kind}: {_endpoints(group.count)}"
    confidence = group.confidence_range
    if confidence is not None:
        low, high = confidence
        heading += (
            f" (confidence {low:.2f})" if low == high else f" (confidence {low:.2f}-{high:.2f})"
        )
    lines: list[Line] = [[(heading, "bold yellow")]]
    if group.explanation:
        lines.append([("    " + group.explanation, "")])
    lines.extend(_host_lines(group.hosts, group.common_advice, with_evidence=True))
    return lines


def _filtered_group_lines(group: FilteredGroup) -> list[Line]:
    lines: list[Line] = [[(f"  {group.title}: {_endpoints(group.count)}", "bold magenta")]]
    lines.extend(_host_lines(group.hosts, group.common_advice, with_evidence=False))
    return lines


def _host_lines(
    hosts: Sequence[HostEntry], group_advice: str | None, *, with_evidence: bool
) -> list[Line]:
    """Hosts with their ports; the advice at the highest level where it is the same:
    once for the group, else once per host, else once per endpoint."""
    lines: list[Line] = []
    for host in hosts:
        lines.append([(f"    {_host_label(host)}: {host.ports}", "")])
        host_advice = host.common_advice if group_advice is None else None
        for entry in host.endpoints:
            if with_evidence:
                port = f"{entry.port}/{entry.proto.value}"
                lines.append([(f"      {port}  {entry.summary}", "")])
            if group_advice is None and host_advice is None and entry.advice:
                prefix = "        " if with_evidence else f"      {entry.port}/{entry.proto.value} "
                lines.append([(prefix + ADVICE_MARK + entry.advice, "cyan")])
        if host_advice:
            lines.append([("      " + ADVICE_MARK + host_advice, "cyan")])
    if group_advice:
        lines.append([("    " + ADVICE_MARK + group_advice, "cyan")])
    return lines


def _host_label(host: HostEntry) -> str:
    if host.address is None:
        return host.host
    if host.address == host.host:
        return host.address
    return f"{host.host} ({host.address} via {host.resolved_via.value})"


def _endpoints(count: int) -> str:
    return f"{count} endpoint" if count == 1 else f"{count} endpoints"


def _are(count: int) -> str:
    return "is" if count == 1 else "are"


# --- JSON ---------------------------------------------------------------------------------
