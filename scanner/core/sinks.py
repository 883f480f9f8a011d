"""The contract between a run and every sink (each output format, the history, the
changes-only filter), and the one stable record schema. Here, below both outputs/ and
history/, because both implement it.

Results stream out of the engine in batches as probes finish; a `Sink` turns them into a
format. Sinks never see sockets or the engine, only `Result` values and two small records
about the run. Every machine-readable format builds on `result_to_record`, so the field
names and types users script against are defined once, here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Protocol

from scanner.core.model import Cause, Result, State


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What is known when a run starts: enough for a report header."""

    started: float  # seconds since the epoch
    command: str  # the command line, as the user typed it
    version: str


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What is known when a run ends (or is interrupted): the totals a footer needs.

    `counts` is a plain dict; the dataclass is frozen so no sink can change the totals the
    next sink will print.
    """

    finished: float  # seconds since the epoch
    counts: Mapping[State, int]
    total: int
    not_ok: int  # results whose `ok` is False
    inventory_errors: int
    interrupted: bool
    follow_up_probes: int = 0  # extra probes the cause analysis sent


class OutputError(Exception):
    """Results could not be written to `path`; the previous file there is left intact.

    Raised for conditions the user can fix (a full disk, a missing directory, no
    permission), so the message names the path and the operating system's reason.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot write results to {path}: {reason}")
        self.path = path
        self.reason = reason


class OutputClosed(Exception):
    """The reader of standard output went away (a closed pipe, e.g. `| head`).

    Kept apart from `OutputError` because it is not a failure to report: the CLI should
    stop quietly and point stdout at /dev/null, as the Python docs advise for SIGPIPE.
    """


class OutputTarget(Protocol):
    """Where a sink's bytes go: an atomically replaced file or standard output."""

    def write(self, data: bytes | bytearray) -> None:
        """Write all of `data`, raising `OutputError` or `OutputClosed`."""
        ...

    def flush(self) -> None:
        """Hand what was written so far to the reader (a no-op for files)."""
        ...

    def commit(self) -> None:
        """Make everything written visible at the destination, durably where possible."""
        ...

    def discard(self) -> None:
        """Drop what was written, leaving the destination as it was; safe to repeat."""
        ...


class Sink(Protocol):
    """One output format. The engine calls start, write (zero or more times), then finish.

    `finish` is also called after an interrupt with the summary of what was done, so an
    interrupted run still leaves complete output; `abort` is for fatal errors before
    `finish` and must leave no half-written file behind.
    """

    def start(self, run: RunInfo) -> None: ...

    def write(self, results: Sequence[Result]) -> None:
        """Take one batch, in completion order."""
        ...

    def finish(self, summary: RunSummary) -> None: ...

    def abort(self) -> None: ...

    def verdict(self) -> int | None:
        """The exit status this output decides for the whole run (a Nagios plugin's 0-3,
        once `finish` has run), or None to leave it to the results."""
        ...


def result_to_record(result: Result) -> dict[str, object]:
    """The stable JSONL record for one result: these keys, in this order, these types.

    Scripts and dashboards parse this, so changing a key or a type is a breaking change.
    Enums become their string values, so the record holds only JSON-native types.
    """
    endpoint = result.endpoint
    expect = endpoint.expect
    rtt_ms = result.rtt_ms
    # `_value_`, the plain attribute behind the `value` property: half the cost, and this
    # runs once per endpoint.
    return {
        "host": endpoint.host,
        "address": result.address,
        "port": endpoint.port,
        "proto": endpoint.proto._value_,
        "state": result.state._value_,
        "reason": result.reason._value_,
        "rtt_ms": None if rtt_ms is None else round(rtt_ms, 3),
        "resolved_via": result.resolved_via._value_,
        "expect": None if expect is None else expect._value_,
        "ok": result.ok,
        "labels": dict(endpoint.labels) if endpoint.labels else {},
        "cause": None if result.cause is None else cause_to_record(result.cause),
        "ts": format_timestamp(result.ts),
    }


def cause_to_record(cause: Cause) -> dict[str, object]:
    """A cause as JSON Lines records it (and the history stores it, in `results.cause`)."""
    return {
        "kind": cause.kind,
        "confidence": cause.confidence,
        "evidence": dict(cause.evidence),
        "advice": cause.advice,
    }


def format_timestamp(epoch_seconds: float) -> str:
    """ISO 8601 in UTC with milliseconds and a `Z`: sortable as text, unambiguous in logs.

    Results arrive tens of thousands a second, nearly all within the same second: the
    date and time part is formatted once per second, the milliseconds appended."""
    whole = int(epoch_seconds // 1)
    microseconds = round((epoch_seconds - whole) * 1_000_000)  # as datetime rounds
    if microseconds == 1_000_000:
        whole, microseconds = whole + 1, 0
    return _second(whole) + _MILLISECONDS[microseconds // 1000]


_MILLISECONDS = tuple(f".{milliseconds:03d}Z" for milliseconds in range(1000))


@lru_cache(maxsize=64)
def _second(epoch_second: int) -> str:
    return datetime.fromtimestamp(epoch_second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
