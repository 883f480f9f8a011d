"""`--format report-json`: the grouped diagnosis as one JSON document, written at the end.

For tickets and dashboards that want the "why" rather than every row: refusals grouped by
cause, filtered endpoints by who stopped them, names whose addresses disagree, and the
paths that lost probes (`lossy_paths`: scanner/core/loss.py). The
schema is `scanner.outputs.report.report_to_json`'s (also in docs/report-json.md). Results are
accumulated through `ReportBuilder`, which keeps only those not as expected.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from scanner.core.loss import LossTally
from scanner.core.model import Result
from scanner.core.sinks import OutputTarget, RunInfo, RunSummary
from scanner.outputs.report import ReportBuilder, report_to_json


class ReportJsonSink:
    """Collect results; write the report, indented, at `finish` (interrupted runs too)."""

    def __init__(self, target: OutputTarget, local_addresses: frozenset[str] = frozenset()):
        self._target = target
        self._builder = ReportBuilder(local_addresses)
        self._loss = LossTally()
        self._vantage = ""

    def start(self, run: RunInfo) -> None:
        """Nothing to write yet: the document is complete only at the end."""
        self._vantage = run.vantage

    def write(self, results: Sequence[Result]) -> None:
        self._builder.add_all(results)
        for result in results:
            self._loss.add(result)

    def finish(self, summary: RunSummary) -> None:
        document = report_to_json(self._builder.build())
        document["run"] = {
            "total": summary.total,
            "not_ok": summary.not_ok,
            "interrupted": summary.interrupted,
            "inventory_errors": summary.inventory_errors,
            "follow_up_probes": summary.follow_up_probes,
            "vantage": self._vantage,
        }
        document["lossy_paths"] = [
            {
                "address": host.address,
                "loss": round(host.rate, 4),
                "tries_lost": host.lost,
                "tries_answered": host.answered,
            }
            for host in self._loss.lossy()
        ]
        # `default=str` keeps an odd evidence value (an ip_address, a Path) from failing the
        # whole document, as in the JSONL sink.
        data = orjson.dumps(
            document, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE
        )
        self._target.write(data)
        self._target.commit()

    def verdict(self) -> None:
        """No exit status of its own: the run's results decide it."""
        return None

    def abort(self) -> None:
        self._target.discard()
