"""Running `reachscan scan` as a subprocess the way every CLI test does.

`--hosts-file` and `--nameserver` go first on every run, so no test can fall back to
/etc/hosts or /etc/resolv.conf (the machine's nameserver must never be asked).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Self

REPO_ROOT = Path(__file__).resolve().parents[2]

RECORD_KEYS = [
    "host", "address", "port", "proto", "state", "reason", "rtt_ms", "resolved_via",
    "expect", "ok", "labels", "cause", "ts", "vantage", "attempts",
]  # fmt: skip
"""The JSONL schema, in order: scripts parse this, so it may only change on purpose."""

Record = dict[str, object]
Verdicts = dict[tuple[object, object, object], tuple[object, object]]


INCOMPLETE_KEYS = ["incomplete", "results"]
"""The one line that is not a result: last, in a partial run's JSONL (scanner/outputs/jsonl.py)."""
SHARD_INCOMPLETE_KEYS = [*INCOMPLETE_KEYS, "shard", "vantage"]
"""... and in a partial `--shard I/N` run's, which also says which shard, from where."""
SHARD_END_KEYS = ["shard", "vantage", "results"]
"""The last line of a whole `--shard I/N` run (what `reachscan merge` counts on)."""


def is_incomplete(text: str) -> bool:
    """Whether JSONL output ends with the marker of a partial run."""
    lines = text.splitlines()
    if not lines:
        return False
    last = json.loads(lines[-1])
    return isinstance(last, dict) and list(last) in (INCOMPLETE_KEYS, SHARD_INCOMPLETE_KEYS)


def shard_end(text: str) -> Record | None:
    """The end line of a whole `--shard` run's JSONL, if it ends with one."""
    lines = text.splitlines()
    last = json.loads(lines[-1]) if lines else None
    return last if isinstance(last, dict) and list(last) == SHARD_END_KEYS else None


def parse_records(text: str) -> list[Record]:
    """Every JSONL line as a dict with exactly the schema's keys; a partial or invalid line
    fails the test here. A partial run's last line, the marker, and a shard's end line are
    checked (each counts the results before it) and left out (`is_incomplete` and
    `shard_end` tell whether they are there)."""
    records = []
    lines = text.splitlines()
    if is_incomplete(text) or shard_end(text) is not None:
        marker = json.loads(lines.pop())
        assert marker.get("incomplete", True) is True and marker["results"] == len(lines), marker
    for line in lines:
        record = json.loads(line)
        assert isinstance(record, dict), line
        assert list(record) == RECORD_KEYS, line
        records.append(record)
    return records


def verdicts(records: Sequence[Record]) -> Verdicts:
    """(address, port, proto) -> (state, reason); a repeated key fails the test."""
    found: Verdicts = {}
    for record in records:
        key = (record["address"], record["port"], record["proto"])
        assert key not in found, f"{key} reported twice"
        found[key] = (record["state"], record["reason"])
    return found


@dataclass(frozen=True, slots=True)
class ScanRun:
    """A finished `reachscan scan` subprocess."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def records(self) -> list[Record]:
        return parse_records(self.stdout)


@dataclass(frozen=True, slots=True)
class Reachscan:
    """`python -m scanner scan` with the tests' own resolver sources always given."""

    hosts_file: str
    nameserver: str

    def with_hosts(self, hosts_file: str) -> Self:
        return replace(self, hosts_file=hosts_file)

    def command(self, *args: str) -> list[str]:
        return [
            sys.executable, "-m", "scanner", "scan",
            "--hosts-file", self.hosts_file, "--nameserver", self.nameserver,
            "--no-progress", *args,
        ]  # fmt: skip

    def run(
        self,
        *args: str,
        timeout: float = 90,
        prefix: Sequence[str] = (),
        cwd: Path = REPO_ROOT,
        env: dict[str, str] | None = None,
    ) -> ScanRun:
        """Run to completion; `prefix` goes before the interpreter (prlimit, unshare)."""
        environment = dict(os.environ if env is None else env)
        environment["PYTHONPATH"] = str(REPO_ROOT)  # found from any working directory
        completed = subprocess.run(
            [*prefix, *self.command(*args)],
            cwd=cwd,
            capture_output=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
            env=environment,
        )
        return ScanRun(
            completed.returncode,
            completed.stdout.decode("utf-8", "replace"),
            completed.stderr.decode("utf-8", "replace"),
        )

    def start(
        self, *args: str, stdout: int | None = subprocess.PIPE, new_session: bool = False
    ) -> subprocess.Popen[bytes]:
        """Start a scan; `new_session`: in a process group of its own, for signals sent
        to the whole group (as a terminal or a service manager does)."""
        return subprocess.Popen(
            self.command(*args),
            cwd=REPO_ROOT,
            stdout=stdout,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=new_session,
        )
