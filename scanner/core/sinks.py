"""The contract between a run and every sink (each output format, the history, the
changes-only filter), and the one stable record schema. Here, below both outputs/ and
history/, because both implement it.

Results stream out of the engine in batches as probes finish; a `Sink` turns them into a
format. Sinks never see sockets or the engine, only `Result` values and two small records
about the run. Every machine-readable format builds on `result_to_record`, so the field
names and types users script against are defined once, here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import Enum
from functools import lru_cache
from types import UnionType
from typing import Protocol, cast, get_args, get_origin, get_type_hints, runtime_checkable

from scanner.core.model import EVIDENCE_TYPES, Cause, CauseEvidence, CauseKind, Result, State


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What is known when a run starts: enough for a report header."""

    started: float  # seconds since the epoch
    command: str  # the command line, as the user typed it
    version: str
    vantage: str = ""  # where the run probed from (`--vantage`; this machine's name)
    shard: str | None = None  # "I/N" for a run with `--shard I/N` (its JSON Lines end line)


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


class Wanted(Enum):
    """Which results a sink needs as `Result` objects when a scan runs in shard processes
    (scanner/run/shard.py), where turning each one into an object in the coordinator is
    the work the shards exist to spare it."""

    NONE = "none"  # it takes its records already encoded (`EncodedSink`)
    TROUBLE = "trouble"  # only those not as expected (-q's table)
    ALL = "all"


class Encoding(Enum):
    """A format a shard can encode its results into, so that they reach the sink as bytes."""

    JSON_LINES = "json-lines"  # outputs/jsonl.py: `encode_lines`
    HISTORY_ROWS = "history-rows"  # history/writer.py: `rows_frame`


@runtime_checkable
class EncodedSink(Sink, Protocol):
    """A sink that also takes its records encoded elsewhere (by a shard process), as the
    bytes its own `write` would have produced from the same results."""

    @property
    def encoding(self) -> Encoding: ...

    def write_encoded(self, data: bytes | bytearray) -> None: ...


def wanted(sink: Sink) -> Wanted:
    """What `sink` needs as objects: nothing if it takes encoded records, else what it
    declares (`results_wanted`), else every result."""
    if isinstance(sink, EncodedSink):
        return Wanted.NONE
    declared = getattr(sink, "results_wanted", Wanted.ALL)
    return declared if isinstance(declared, Wanted) else Wanted.ALL


def result_to_record(result: Result, vantage: str) -> dict[str, object]:
    """The stable JSONL record for one result: these keys, in this order, these types.

    Scripts and dashboards parse this, so changing a key or a type is a breaking change
    (`vantage`, where the run probed from, came after `ts`; `attempts`, the tries the
    verdict took, after it). Enums become their
    string values, so the record holds only JSON-native types.
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
        "vantage": vantage,
        "attempts": result.attempts,
    }


def cause_to_record(cause: Cause) -> dict[str, object]:
    """A cause as JSON Lines records it (and the history stores it, in `results.cause`):
    the evidence record's fields as an object, enum members as their values."""
    return {
        "kind": cause.kind._value_,
        "confidence": cause.confidence,
        "evidence": {name: _plain(value) for name, value in cause.evidence.pairs()},
        "advice": cause.advice,
    }


def _plain(value: object) -> object:
    return value._value_ if isinstance(value, Enum) else value


def cause_from_record(record: Mapping[str, object]) -> Cause:
    """The inverse of `cause_to_record`, from its JSON form (arrays for tuples).

    Raises ValueError when the record is not a cause of a known kind with the fields that
    kind declares (an old or damaged row in the history).
    """
    try:
        kind = CauseKind(str(record["kind"]))
        confidence = record["confidence"]
        advice = record["advice"]
        stored = record["evidence"]
    except KeyError as missing:
        raise ValueError(f"a cause record without {missing}") from None
    if not isinstance(confidence, int | float) or not isinstance(advice, str):
        raise ValueError("a cause record with a confidence that is no number, or no advice")
    if not isinstance(stored, Mapping):
        raise ValueError("a cause record whose evidence is no object")
    evidence_type = EVIDENCE_TYPES[kind]
    hints = get_type_hints(evidence_type)
    values: dict[str, object] = {}
    for declared in fields(evidence_type):
        if declared.name in stored:
            values[declared.name] = _typed(hints[declared.name], stored[declared.name])
        elif declared.name not in evidence_type.OMITTED_WHEN_NONE:
            raise ValueError(f"{kind} evidence without {declared.name!r}")
    # Each value was converted to its field's declared type above; mypy cannot follow that
    # through `**values`, hence the cast.
    build = cast("Callable[..., CauseEvidence]", evidence_type)
    return Cause(float(confidence), build(**values), advice)


def _typed(hint: object, value: object) -> object:
    """A JSON value as the field declares it: arrays back to tuples, strings to enums.
    Raises ValueError when the value is not of the declared type."""
    if isinstance(value, list):
        value = tuple(value)
    for member_type in get_args(hint) or (hint,):
        if isinstance(member_type, type) and issubclass(member_type, Enum) and value is not None:
            value = member_type(value)
    if not _matches(hint, value):
        raise ValueError(f"{value!r} is no {hint}")
    return value


def _matches(hint: object, value: object) -> bool:
    origin = get_origin(hint)
    if origin is UnionType:
        return any(_matches(member_type, value) for member_type in get_args(hint))
    if origin is tuple:
        (item_type, _ellipsis) = get_args(hint)
        return isinstance(value, tuple) and all(_matches(item_type, item) for item in value)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float)
    return isinstance(hint, type) and isinstance(value, hint)


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
