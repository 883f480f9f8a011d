"""`--format nagios`: one Nagios/Icinga plugin status line, and the plugin's exit status.

For running reachscan as a check command. At `finish` it writes, per the Nagios plugin
development guidelines ("Plugin output", "Performance data"):

    REACHSCAN CRITICAL - 2/12 endpoints not as expected: db1:5432/tcp refused
    (service-down), ... | 'ok'=10;;;0;12 'failed'=2;;0;0;12 'open'=10;;;0; ... 'time'=1.234s;;;0;

(one line in reality, wrapped here).

The status comes from the number of endpoints not as expected, checked against the warning
and critical `Threshold`s (critical first). It is UNKNOWN (3) when the run cannot vouch for
the fleet: it was interrupted, the inventory had errors, or nothing was scanned. Only the
first few failures are named (sorted, so the line is stable between runs); Nagios keeps a
limited length of plugin output, and the counts are in the performance data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from scanner.core.model import Result, State
from scanner.core.sinks import OutputTarget, RunInfo, RunSummary

SERVICE = "REACHSCAN"
FAILURES_SHOWN = 5


class Status(IntEnum):
    """The plugin return codes, which are also the service states."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


def _number(text: str, threshold: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"threshold {threshold!r}: {text!r} is not a number; expected e.g. 10, 10:, "
            "~:10, @10:20"
        ) from None
    if not math.isfinite(value):
        raise ValueError(f"threshold {threshold!r}: {text!r} is not a finite number")
    return value


@dataclass(frozen=True, slots=True)
class Threshold:
    """A Nagios range, `[@]start:end`, and whether a value raises an alert against it.

    From the guidelines ("Threshold and ranges"): start <= end; start and ":" may be left
    out when start is 0; an empty end after ":" is +infinity; "~" as start is -infinity.
    An alert is raised when the value is *outside* start..end (inclusive), or *inside* it
    when the range begins with "@". So `10` alerts above 10 (or below 0), `10:` below 10,
    `~:10` above 10, `10:20` outside 10..20, `@10:20` within 10..20.
    """

    start: float
    end: float
    inside: bool  # "@": alert when start <= value <= end
    text: str  # as written, for the performance data

    @classmethod
    def parse(cls, text: str) -> Threshold:
        """Parse a range; ValueError says what is wrong in the user's terms."""
        body = text.strip()
        inside = body.startswith("@")
        if inside:
            body = body[1:]
        if not body:
            raise ValueError(f"threshold {text!r} is empty; expected e.g. 10, 10:, ~:10, @10:20")
        if ":" in body:
            start_text, _, end_text = body.partition(":")
        else:
            start_text, end_text = "0", body
        start = -math.inf if start_text == "~" else _number(start_text or "0", text)
        end = math.inf if end_text == "" else _number(end_text, text)
        if start > end:
            raise ValueError(f"threshold {text!r}: start {start_text} is greater than end")
        return cls(start=start, end=end, inside=inside, text=text.strip())

    def alerts(self, value: float) -> bool:
        within = self.start <= value <= self.end
        return within if self.inside else not within

    def __str__(self) -> str:
        return self.text


DEFAULT_CRITICAL = Threshold.parse("0")
"""Any endpoint not as expected is critical, unless the caller says otherwise."""


def status_for(
    summary: RunSummary, warning: Threshold | None, critical: Threshold | None
) -> Status:
    """The plugin status of a finished run (see the module docstring)."""
    if summary.interrupted or summary.inventory_errors or summary.total == 0:
        return Status.UNKNOWN
    if critical is not None and critical.alerts(summary.not_ok):
        return Status.CRITICAL
    if warning is not None and warning.alerts(summary.not_ok):
        return Status.WARNING
    return Status.OK


# Performance-data labels for the states; `open|filtered` would put a `|` into the
# performance data, which some graphing add-ons split on.
_STATE_LABELS = {state: state.value.replace("|", "_") for state in State}


@dataclass(frozen=True, slots=True, order=True)
class _Failure:
    """One endpoint not as expected, sortable so the line names the same ones each run."""

    host: str
    port: int
    proto: str
    address: str
    text: str


class NagiosSink:
    """Count results and remember the first few failures; write the line at `finish`."""

    def __init__(
        self,
        target: OutputTarget,
        warning: Threshold | None = None,
        critical: Threshold | None = DEFAULT_CRITICAL,
    ) -> None:
        self._target = target
        self._warning = warning
        self._critical = critical
        self._started: float | None = None
        self._failures: list[_Failure] = []
        self._status: Status | None = None

    def start(self, run: RunInfo) -> None:
        self._started = run.started

    def write(self, results: Sequence[Result]) -> None:
        for result in results:
            if not result.ok:
                self._failures.append(_failure(result))
        # Keep memory bounded on a sweep where everything fails: only the first few by
        # sort order are ever shown.
        if len(self._failures) > 4 * FAILURES_SHOWN:
            self._failures = sorted(self._failures)[:FAILURES_SHOWN]

    def finish(self, summary: RunSummary) -> None:
        self._status = status_for(summary, self._warning, self._critical)
        line = f"{SERVICE} {self._status.name} - {self._text(summary)} | {self._perfdata(summary)}"
        self._target.write(f"{line}\n".encode())
        self._target.commit()

    def abort(self) -> None:
        self._target.discard()

    def verdict(self) -> int:
        """A plugin's exit status is the verdict of the run (the Sink protocol)."""
        return self.exit_status()

    def exit_status(self) -> int:
        """0-3 for the plugin's exit; UNKNOWN until `finish` has run."""
        return int(Status.UNKNOWN if self._status is None else self._status)

    def _text(self, summary: RunSummary) -> str:
        problems = []
        if summary.interrupted:
            problems.append("scan interrupted, results are partial")
        if summary.inventory_errors:
            problems.append(f"{summary.inventory_errors} inventory error(s)")
        if summary.total == 0:
            problems.append("no endpoints were scanned")
        failures = sorted(self._failures)[:FAILURES_SHOWN]
        if summary.not_ok:
            counts = f"{summary.not_ok}/{summary.total} endpoints not as expected"
            named = ", ".join(failure.text for failure in failures)
            more = summary.not_ok - len(failures)
            if more > 0:
                named += f", and {more} more"
            counts += f": {named}"
        else:
            counts = f"{summary.total}/{summary.total} endpoints as expected"
        return "; ".join([*problems, counts])

    def _perfdata(self, summary: RunSummary) -> str:
        total = summary.total
        ok = total - summary.not_ok
        warning = "" if self._warning is None else str(self._warning)
        critical = "" if self._critical is None else str(self._critical)
        items = [
            f"'ok'={ok};;;0;{total}",
            f"'failed'={summary.not_ok};{warning};{critical};0;{total}",
        ]
        items += [
            f"'{_STATE_LABELS[state]}'={summary.counts.get(state, 0)};;;0;" for state in State
        ]
        elapsed = 0.0 if self._started is None else max(0.0, summary.finished - self._started)
        items.append(f"'time'={elapsed:.3f}s;;;0;")
        return " ".join(items)


def _failure(result: Result) -> _Failure:
    endpoint = result.endpoint
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    where = f"{host}:{endpoint.port}/{endpoint.proto.value}"
    if result.address is not None and result.address != endpoint.host:
        where += f" ({result.address})"
    why = result.cause.kind if result.cause is not None else result.reason.value
    # `|` separates performance data from text for Nagios; keep it out of the text.
    text = f"{where} {result.state.value} ({why})".replace("|", "/")
    return _Failure(endpoint.host, endpoint.port, endpoint.proto.value, result.address or "", text)
