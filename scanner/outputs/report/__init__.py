"""The grouped diagnosis: what is wrong across a run, said once per cause, not once per row.

The table lists endpoints; this report answers the on-call question "why": refusals grouped
by cause (largest group first), each with the endpoints collapsed per host, one evidence
line per endpoint and the advice said once where it is the same; filtered endpoints grouped
by who stopped them; and names whose addresses disagree (a dead member behind round-robin
DNS). Pure: `Result`s in, a `Report` value out, then text or a JSON-ready dict.

Only endpoints expected open appear in the refused and filtered sections: that is what the
diagnosis explains. Other mismatches show in the table, and in the disagreements.

Memory stays bounded for big sweeps: the builder keeps only results that are not as
expected (which every output shows anyway), plus the set of addresses seen per name. A
65,535-port sweep where everything is as expected keeps no result at all.
"""

from __future__ import annotations

from scanner.outputs.report.as_json import report_to_json
from scanner.outputs.report.grouping import ReportBuilder, build_report, evidence_summary
from scanner.outputs.report.records import (
    GROUP_EXPLANATIONS,
    LIST_LIMIT,
    SCHEMA,
    UNDIAGNOSED,
    Disagreement,
    EndpointEntry,
    FilteredGroup,
    HostEntry,
    RefusalGroup,
    Report,
    collapse_ports,
    common_advice,
    filtered_title,
    limited,
)
from scanner.outputs.report.text import ADVICE_MARK, render_lines, render_text

__all__ = [
    "ADVICE_MARK",
    "GROUP_EXPLANATIONS",
    "LIST_LIMIT",
    "SCHEMA",
    "UNDIAGNOSED",
    "Disagreement",
    "EndpointEntry",
    "FilteredGroup",
    "HostEntry",
    "RefusalGroup",
    "Report",
    "ReportBuilder",
    "build_report",
    "collapse_ports",
    "common_advice",
    "evidence_summary",
    "filtered_title",
    "limited",
    "render_lines",
    "render_text",
    "report_to_json",
]
