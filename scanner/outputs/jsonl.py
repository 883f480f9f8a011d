"""JSON Lines: one stable record per result, streamed as results finish.

The format for pipes and scripts (`reachscan ... | jq`). Each batch is serialised whole and
handed over in a single write, so a reader never sees a partial line; on standard output
each batch is flushed at once, so results appear while the scan runs. Into a file, lines go
to the atomic temporary file and become visible at `finish`, which an interrupted run also
reaches, so it still leaves every completed line.

A partial run (interrupted, stopped by an output that failed such as a full history,
`--max-time`, a worker that died: `RunSummary.interrupted`) ends with one line that is not
a result, `{"incomplete": true, "results": N}`: a file read later has no exit status or
stderr beside it, and results that merely stop look like a complete run. Every other line
keeps the result schema; a complete run has no such line, unless it is one shard of a
split scan (`--shard I/N`): that ends with `{"shard": "I/N", "vantage": V, "results": N}`,
which `reachscan merge` needs to tell a shard missing or cut short.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import orjson

from scanner.core.model import Result
from scanner.core.sinks import Encoding, OutputTarget, RunInfo, RunSummary, result_to_record


def incomplete_marker(summary: RunSummary, run: RunInfo | None = None) -> bytes:
    """The last line of a partial run's JSON Lines: how many results the run finished
    (and, for a `--shard` run, which shard and from where, as its end line says)."""
    line: dict[str, object] = {"incomplete": True, "results": summary.total}
    if run is not None and run.shard is not None:
        line |= {"shard": run.shard, "vantage": run.vantage}
    return orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)


def shard_end_line(summary: RunSummary, run: RunInfo) -> bytes:
    """The last line of a whole `--shard I/N` run: which shard, from where, and how many
    results came before it, so that `reachscan merge` can tell a missing shard, one given
    twice and a file cut short at a line boundary (scanner/core/merging.py)."""
    return orjson.dumps(
        {"shard": run.shard, "vantage": run.vantage, "results": summary.total},
        option=orjson.OPT_APPEND_NEWLINE,
    )


def encode_lines(
    results: Iterable[Result], vantage: str, into: bytearray | None = None
) -> bytearray:
    """The JSON Lines of `results` probed from `vantage`, appended to `into` (a new
    buffer by default).

    `default=str` keeps an odd evidence value (an ip_address, a Path) from failing the
    whole batch; every field of the schema itself is JSON-native already. Each line is
    appended and dropped at once: a list of the lines, joined, costs five times as much
    (orjson's buffers are too big for Python's small-object allocator, so keeping
    hundreds alive sends every one to malloc).
    """
    lines = bytearray() if into is None else into
    for result in results:
        lines += orjson.dumps(
            result_to_record(result, vantage), default=str, option=orjson.OPT_APPEND_NEWLINE
        )
    return lines


class JsonLinesSink:
    """Write each result as one `result_to_record` JSON object per line."""

    def __init__(self, target: OutputTarget) -> None:
        self._target = target
        self._run: RunInfo | None = None
        self._vantage = ""

    @property
    def encoding(self) -> Encoding:
        return Encoding.JSON_LINES

    def start(self, run: RunInfo) -> None:
        """No header: every line is a result, so `jq` and line counts stay simple (each
        carries the run's vantage)."""
        self._run = run
        self._vantage = run.vantage

    def write(self, results: Sequence[Result]) -> None:
        if results:
            self.write_encoded(encode_lines(results, self._vantage))

    def write_encoded(self, lines: bytes | bytearray) -> None:
        """Take lines `encode_lines` made elsewhere (a shard process encodes its own
        results: scanner/run/shard.py), as one write, flushed at once."""
        if lines:
            self._target.write(lines)
            self._target.flush()

    def finish(self, summary: RunSummary) -> None:
        if summary.interrupted:
            self._target.write(incomplete_marker(summary, self._run))
        elif self._run is not None and self._run.shard is not None:
            self._target.write(shard_end_line(summary, self._run))
        self._target.commit()

    def verdict(self) -> None:
        """No exit status of its own: the run's results decide it."""
        return None

    def abort(self) -> None:
        self._target.discard()
