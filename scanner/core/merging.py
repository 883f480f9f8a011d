"""Putting shard files back together: what each line of JSON Lines says, and what a set of
shard files lacks (a shard missing, one given twice, a file cut short, an endpoint twice).

`reachscan merge` (scanner/run/merge.py) reads the files and hands each decoded line here;
everything it decides is decided here, without I/O, so every rule is tested as values.

A run with `--shard I/N` ends its JSON Lines with an end line,
`{"shard":"I/N","vantage":"V","results":R}` (`{"incomplete":true,...}` when the run was
cut short: scanner/outputs/jsonl.py). The end line is what makes the rules exact:

- **a section** is the lines up to an end line; files may hold several (`cat shard-*`);
- **truncated**: a section with fewer lines than its end line counts, a last line cut
  mid-way (not JSON, or no newline), or, once shard files are being merged, lines with no
  end line after them (the file lost its tail at a line boundary);
- **missing**: a shard I of N that no section ended with; **twice**: one that two did;
- **duplicate**: an endpoint at an address twice (the first is kept, never counted twice);
- **incomplete**: a shard whose run was interrupted or ran out of time: its results are
  kept, the rest of its share was never probed.

A problem that leaves the merged run short of the whole inventory (missing, truncated,
incomplete) makes it *partial*: stored as `interrupted` in the history, so `diff` never
mistakes it for a whole run, and its JSON Lines output ends with the incomplete line.

One run is one vantage point: lines probed from another vantage than the first are
skipped and reported (merge each vantage on its own with `--vantage`; `reachscan compare`
puts vantages side by side).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache

from scanner.core.addresses import address_value
from scanner.core.model import Endpoint, Expect, Proto, Reason, ResolvedVia, Result, State
from scanner.core.sharding import RunShard
from scanner.core.sinks import cause_from_record

PROBLEM_EXAMPLES = 20
"""Problems of one kind reported one by one; past this, only counted (a shard file given
twice would otherwise print every one of its endpoints)."""


class ProblemKind(StrEnum):
    MALFORMED = "malformed"
    TRUNCATED = "truncated"
    MISSING = "missing"
    TWICE = "twice"
    SPLITS = "splits"  # shards of different splits (I/4 beside J/8)
    INCOMPLETE = "incomplete"
    DUPLICATE = "duplicate"
    VANTAGE = "vantage"

    @property
    def makes_partial(self) -> bool:
        """Does a problem of this kind leave the merged run short of the inventory?"""
        return self in _PARTIAL


_PARTIAL = frozenset(
    {ProblemKind.TRUNCATED, ProblemKind.MISSING, ProblemKind.SPLITS, ProblemKind.INCOMPLETE}
)


@dataclass(frozen=True, slots=True)
class Problem:
    kind: ProblemKind
    where: str  # FILE:LINE, or FILE, or "" for the set of files as a whole
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


@dataclass(frozen=True, slots=True)
class ShardEnd:
    """The end line of a `--shard` run: which shard, from where, how many results."""

    shard: RunShard
    vantage: str
    results: int
    complete: bool


def end_of_record(record: Mapping[str, object]) -> ShardEnd | None:
    """The end line `record` is, or None for a result line. An incomplete line without a
    shard (an unsharded run cut short) is a ShardEnd of shard 0/1. Raises ValueError for
    an end line that does not say what it must."""
    if "host" in record:
        return None
    complete = record.get("incomplete") is not True
    if complete and "shard" not in record:
        raise ValueError("neither a result (no `host`) nor an end line (no `shard`)")
    shard_text = record.get("shard", "0/1")
    vantage = record.get("vantage", "")
    results = record.get("results")
    if not isinstance(shard_text, str) or not isinstance(vantage, str):
        raise ValueError("an end line whose `shard` or `vantage` is not text")
    if not isinstance(results, int) or isinstance(results, bool) or results < 0:
        raise ValueError("an end line without a count of `results`")
    index_text, _slash, count_text = shard_text.partition("/")
    try:
        shard = RunShard(int(index_text), int(count_text))
    except ValueError:
        raise ValueError(f"an end line with shard {shard_text!r}: not I/N") from None
    return ShardEnd(shard, vantage, results, complete)


_PROTOS: dict[object, Proto] = {member.value: member for member in Proto}
_STATES: dict[object, State] = {member.value: member for member in State}
_REASONS: dict[object, Reason] = {member.value: member for member in Reason}
_RESOLVED_VIA: dict[object, ResolvedVia] = {member.value: member for member in ResolvedVia}
_EXPECTS: dict[object, Expect | None] = {member.value: member for member in Expect}
_EXPECTS[None] = None
_NO_LABELS: tuple[tuple[str, str], ...] = ()


def result_of_record(record: Mapping[str, object]) -> tuple[Result, str]:
    """The result a JSON Lines record describes, and its vantage (the inverse of
    `result_to_record`: what it does not record, the ICMP offender and an error's message,
    stays unknown). Raises ValueError saying which field is wrong.

    A merge reads every line of every shard through here, so the vocabularies are looked
    up in plain dicts (an enum's own lookup costs three times as much) and the checks
    are one `isinstance` each; `_explain` says what was wrong only once something was."""
    try:
        host = record["host"]
        address = record["address"]
        port = record["port"]
        proto = _PROTOS[record["proto"]]
        state = _STATES[record["state"]]
        reason = _REASONS[record["reason"]]
        resolved_via = _RESOLVED_VIA[record["resolved_via"]]
        expect = _EXPECTS[record["expect"]]
        rtt_ms = record["rtt_ms"]
        labels = record["labels"]
        cause = record["cause"]
        ts = record["ts"]
        vantage = record["vantage"]
    except (KeyError, TypeError):
        raise ValueError(_explain(record)) from None
    if not (
        type(host) is str
        and (address is None or type(address) is str)
        and type(port) is int
        and 0 <= port <= 65535
        and (rtt_ms is None or type(rtt_ms) is float or type(rtt_ms) is int)
        and type(labels) is dict
        and (cause is None or type(cause) is dict)
        and type(ts) is str
        and type(vantage) is str
    ):
        raise ValueError(_explain(record))
    if labels:
        if not all(type(value) is str for value in labels.values()):
            raise ValueError("`labels` is not an object of text values")
        pairs = tuple(sorted(labels.items()))
    else:
        pairs = _NO_LABELS
    endpoint = Endpoint(
        host,
        port,
        proto,
        expect,
        pairs,
        address if resolved_via is ResolvedVia.PINNED else None,
    )
    result = Result(
        endpoint,
        address,
        resolved_via,
        state,
        reason,
        None if rtt_ms is None else float(rtt_ms),
        _epoch_seconds(ts),
        attempts=_attempts(record),
        cause=None if cause is None else cause_from_record(cause),
    )
    return result, vantage


def _attempts(record: Mapping[str, object]) -> int:
    """`attempts` (tries the verdict took; files written before it was recorded: 1)."""
    attempts = record.get("attempts", 1)
    if type(attempts) is not int or attempts < 0:
        raise ValueError("`attempts` is not a count of tries")
    return attempts


_VOCABULARIES: tuple[tuple[str, Mapping[object, object]], ...] = (  # the fields' order
    ("proto", _PROTOS),
    ("state", _STATES),
    ("reason", _REASONS),
    ("resolved_via", _RESOLVED_VIA),
    ("expect", _EXPECTS),
)


def _explain(record: Mapping[str, object]) -> str:
    """What is wrong with a record `result_of_record` refused: the first field at fault."""
    for key in ("host", "address", "port", "proto", "state", "reason", "resolved_via",
                "expect", "rtt_ms", "labels", "cause", "ts", "vantage"):  # fmt: skip
        if key not in record:
            return f"a result without {key!r}"
    for key, vocabulary in _VOCABULARIES:
        value = record[key]
        if not isinstance(value, str | None) or value not in vocabulary:
            return f"`{key}` {value!r} is none of {sorted(map(str, vocabulary))}"
    port, rtt_ms = record["port"], record["rtt_ms"]
    checks = (
        ("`host` is not text", isinstance(record["host"], str)),
        ("`address` is neither text nor null", isinstance(record["address"], str | None)),
        (
            "`port` is not a port number",
            type(port) is int and 0 <= port <= 65535,
        ),
        (
            "`rtt_ms` is neither a number nor null",
            rtt_ms is None or type(rtt_ms) in (int, float),
        ),
        ("`labels` is not an object of text values", isinstance(record["labels"], dict)),
        ("`cause` is neither an object nor null", isinstance(record["cause"], dict | None)),
        ("`ts` is not text", isinstance(record["ts"], str)),
        ("`vantage` is not text", isinstance(record["vantage"], str)),
    )
    return next((message for message, fine in checks if not fine), "not a result record")


@lru_cache(maxsize=64)
def _epoch_second(text: str) -> float:
    """`YYYY-MM-DDTHH:MM:SS` (UTC) as seconds since the epoch; results come tens of
    thousands a second, nearly all within the same second: parsed once per second."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _epoch_seconds(text: str) -> float:
    """`format_timestamp`'s text back to seconds: `2026-11-24T22:30:01.123Z`; any other
    ISO 8601 time the slow way."""
    try:
        if len(text) == 24 and text[19] == "." and text[23] == "Z":
            return _epoch_second(text[:19]) + int(text[20:23]) / 1000
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(f"`ts` {text!r} is not an ISO 8601 time") from None


def endpoint_identity(result: Result) -> int:
    """What makes two lines the same endpoint (the host, the address, the port and the
    protocol), as one number: a merge of a million endpoints keeps a million of them, and
    an int costs a third of a tuple of strings. IPv6 addresses are compared as numbers
    (`::1` and `0::1` agree); the hash is Python's, salted per process, 64 bits: two
    endpoints of a million share one with a chance of about 1 in 30 million."""
    endpoint = result.endpoint
    address = result.address
    if address is not None and ":" in address:
        _version, value = address_value(address)
        address = address if value is None else str(value)
    return hash((endpoint.host, address, endpoint.port, endpoint.proto is Proto.UDP))


@dataclass(slots=True)
class _Section:
    """The lines read since the last end line (or the start of the file)."""

    first_line: int
    lines: int = 0


@dataclass(slots=True)
class MergeLedger:
    """What a merge has seen so far, fed line by line; `problems` says what is wrong.

    `only_vantage`: keep that vantage's lines and pass over the others without a word.
    Call `line_result` for each result line (True: keep it), `line_end` for each end
    line, `line_malformed` for a line that is not a record, `file_ended` at the end of
    each file, and `conclude` once at the end.
    """

    only_vantage: str | None = None
    vantage: str | None = None
    problems: list[Problem] = field(default_factory=list)
    _counts: dict[ProblemKind, int] = field(default_factory=dict)
    _seen: set[int] = field(default_factory=set)
    _shards: dict[RunShard, str] = field(default_factory=dict)  # each shard: where it ended
    _split: int | None = None  # the N of the shards seen, and where it was first seen
    _split_where: str = ""
    _unended: list[tuple[str, int]] = field(default_factory=list)  # (where, lines)
    _section: _Section = field(default_factory=lambda: _Section(1))
    _other_vantages: dict[str, int] = field(default_factory=dict)

    def report(self, kind: ProblemKind, where: str, message: str) -> None:
        count = self._counts.get(kind, 0) + 1
        self._counts[kind] = count
        if count <= PROBLEM_EXAMPLES:
            self.problems.append(Problem(kind, where, message))

    def line_result(self, result: Result, vantage: str, where: str) -> bool:
        """A result line: keep it (True), or not: another vantage, or a duplicate."""
        self._section.lines += 1
        if self.only_vantage is not None and vantage != self.only_vantage:
            return False
        if self.vantage is None:
            self.vantage = vantage
        elif vantage != self.vantage:
            self._other_vantages[vantage] = self._other_vantages.get(vantage, 0) + 1
            if self._other_vantages[vantage] == 1:
                self.report(
                    ProblemKind.VANTAGE,
                    where,
                    f"probed from {vantage!r}, earlier lines from {self.vantage!r}: one run "
                    "is one vantage point; lines from others are skipped (merge each with "
                    "--vantage NAME; `reachscan compare` puts vantages side by side)",
                )
            return False
        identity = endpoint_identity(result)
        if identity in self._seen:
            endpoint = result.endpoint
            self.report(
                ProblemKind.DUPLICATE,
                where,
                f"{endpoint.host} {result.address or ''} {endpoint.port}/{endpoint.proto} "
                "came before: a duplicate, kept once",
            )
            return False
        self._seen.add(identity)
        return True

    def line_malformed(self, where: str, why: str) -> None:
        self._section.lines += 1
        self.report(ProblemKind.MALFORMED, where, f"not a result or an end line: {why}")

    def line_end(self, end: ShardEnd, where: str, line: int) -> None:
        """An end line: closes the section before it."""
        section, self._section = self._section, _Section(line + 1)
        if self.only_vantage is not None and end.vantage and end.vantage != self.only_vantage:
            return
        if section.lines < end.results:
            self.report(
                ProblemKind.TRUNCATED,
                where,
                f"shard {end.shard} ends here with {end.results:,} results, but only "
                f"{section.lines:,} lines came before it: lines are missing",
            )
        if not end.complete:
            self.report(
                ProblemKind.INCOMPLETE,
                where,
                f"shard {end.shard}'s run was cut short (interrupted, out of time, or a "
                f"failure) after {end.results:,} results: the rest of its share was never "
                "probed",
            )
        if end.shard.count == 1:
            return  # a whole run (cut short or not): no shards to account for
        if self._split is None:
            self._split, self._split_where = end.shard.count, where
        elif end.shard.count != self._split:
            self.report(
                ProblemKind.SPLITS,
                where,
                f"shard {end.shard} is of a split in {end.shard.count}, but {self._split_where} "
                f"ended a shard of a split in {self._split}: shards of different splits",
            )
            return
        earlier = self._shards.get(end.shard)
        if earlier is not None:
            self.report(
                ProblemKind.TWICE,
                where,
                f"shard {end.shard} came already ({earlier}"
                f"{', in the same file given twice?' if earlier == where else ''}): the same "
                "shard twice; its endpoints are kept once",
            )
            return
        self._shards[end.shard] = where

    def file_ended(self, name: str, last_line: int, cut: bool) -> None:
        """The end of a file; `cut`: its last line had no newline or was no JSON."""
        section, self._section = self._section, _Section(1)
        if cut:
            self.report(
                ProblemKind.TRUNCATED,
                f"{name}:{last_line}",
                "the last line is cut short: the file was truncated",
            )
        if section.lines:
            self._unended.append((f"{name}:{section.first_line}", section.lines))

    def conclude(self) -> None:
        """Once every file is read: the shards no file ended with, and the lines that no
        end line closed although shard files were merged (a file that lost its tail)."""
        if self._split is not None:
            for where, lines in self._unended:
                self.report(
                    ProblemKind.TRUNCATED,
                    where,
                    f"{lines:,} lines from here on have no end line: truncated, or not "
                    "from a `--shard` run",
                )
            for index in range(self._split):
                shard = RunShard(index, self._split)
                if shard not in self._shards:
                    self.report(
                        ProblemKind.MISSING,
                        "",
                        f"shard {shard} is missing: no file ended with its line, so its "
                        "share of the inventory is not in the merged run",
                    )
        for kind, count in self._counts.items():
            if count > PROBLEM_EXAMPLES:
                self.problems.append(
                    Problem(kind, "", f"... and {count - PROBLEM_EXAMPLES:,} more {kind} lines")
                )

    @property
    def problem_count(self) -> int:
        return sum(self._counts.values())

    @property
    def partial(self) -> bool:
        """Is the merged run short of the whole inventory?"""
        return any(kind.makes_partial for kind in self._counts)

    @property
    def shards(self) -> tuple[RunShard, ...]:
        return tuple(sorted(self._shards, key=lambda shard: shard.index))


@dataclass(slots=True)
class VantageLedgers:
    """One `MergeLedger` per vantage, for files from several (`reachscan compare`, a
    distributed scan): each line goes to its vantage's ledger, so each vantage's shards
    are accounted for on their own (one missing from b is said, whatever a has)."""

    by_vantage: dict[str, MergeLedger] = field(default_factory=dict)
    general: MergeLedger = field(default_factory=MergeLedger)  # lines of no vantage
    _current: MergeLedger | None = None  # the ledger of the file's latest good line

    def ledger(self, vantage: str) -> MergeLedger:
        ledger = self.by_vantage.get(vantage)
        if ledger is None:
            ledger = self.by_vantage[vantage] = MergeLedger(only_vantage=vantage)
        return ledger

    def line_result(self, result: Result, vantage: str, where: str) -> bool:
        self._current = self.ledger(vantage)
        return self._current.line_result(result, vantage, where)

    def line_end(self, end: ShardEnd, where: str, line: int) -> None:
        self.ledger(end.vantage).line_end(end, where, line)
        self._current = None

    def line_malformed(self, where: str, why: str) -> None:
        """Counted in the section it interrupts (else that shard would look cut short)."""
        (self._current or self.general).line_malformed(where, why)

    def file_ended(self, name: str, last_line: int, cut: bool) -> None:
        self._current = None
        self.general.file_ended(name, last_line, cut)
        for ledger in self.by_vantage.values():
            ledger.file_ended(name, last_line, cut=False)

    def conclude(self) -> None:
        self.general.conclude()
        for ledger in self.by_vantage.values():
            ledger.conclude()

    @property
    def problems(self) -> list[Problem]:
        return [
            *self.general.problems,
            *(problem for ledger in self.by_vantage.values() for problem in ledger.problems),
        ]

    @property
    def problem_count(self) -> int:
        return self.general.problem_count + sum(
            ledger.problem_count for ledger in self.by_vantage.values()
        )

    @property
    def partial(self) -> bool:
        return self.general.partial or any(ledger.partial for ledger in self.by_vantage.values())
