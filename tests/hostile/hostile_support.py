"""What the hostile-conditions tests share: running the real CLI, and reading what it wrote.

Every run passes the tests' own `--hosts-file` and `--nameserver` (a DNS responder on
127.0.0.1 that answers NXDOMAIN), so no test can make reachscan ask the machine's resolver,
and `--no-progress`, so stderr carries only what the tests assert on.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

RECORD_KEYS = [
    "host",
    "address",
    "port",
    "proto",
    "state",
    "reason",
    "rtt_ms",
    "resolved_via",
    "expect",
    "ok",
    "labels",
    "cause",
    "ts",
]

IS_ROOT = os.geteuid() == 0
CAN_UNSHARE = IS_ROOT and shutil.which("unshare") is not None and shutil.which("ip") is not None
needs_private_netns = pytest.mark.skipif(
    not CAN_UNSHARE, reason="needs root, unshare and ip to make a private network namespace"
)

IN_PRIVATE_NETNS = ("unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh")
"""A `prefix` that runs the command in a new network namespace with only loopback up:
whatever it sends cannot leave the machine, so a guard that failed could harm nothing."""

Verdicts = dict[tuple[object, object, object], tuple[object, object]]


@dataclass(frozen=True, slots=True)
class ScanRun:
    """A finished `reachscan scan` subprocess."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def records(self) -> list[dict[str, object]]:
        return parse_records(self.stdout)


@dataclass(frozen=True, slots=True)
class Reachscan:
    """`python -m scanner scan` with the tests' resolver sources always given."""

    hosts_file: str
    nameserver: str

    def command(self, *args: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "scanner",
            "scan",
            "--hosts-file",
            self.hosts_file,
            "--nameserver",
            self.nameserver,
            "--no-progress",
            *args,
        ]

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

    def start(self, *args: str, stdout: int | None = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.command(*args),
            cwd=REPO_ROOT,
            stdout=stdout,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )


def parse_records(text: str) -> list[dict[str, object]]:
    """Every JSONL line as a dict; a partial or invalid line fails the test here."""
    records = []
    for line in text.splitlines():
        record = json.loads(line)
        assert isinstance(record, dict), line
        assert list(record) == RECORD_KEYS, line
        records.append(record)
    return records


def verdicts(records: Sequence[dict[str, object]]) -> Verdicts:
    """(address, port, proto) -> (state, reason); a repeated key fails the test."""
    found: Verdicts = {}
    for record in records:
        key = (record["address"], record["port"], record["proto"])
        assert key not in found, f"{key} reported twice"
        found[key] = (record["state"], record["reason"])
    return found


def no_traceback(stderr: str) -> None:
    """No Python exception reached the user: neither a traceback nor its last line."""
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "Error:" not in stderr, stderr[-3000:]  # e.g. "RecursionError: ..."; ours are lower case


def wait_for(condition: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {within} s")
        time.sleep(0.02)


def history_runs(database: Path) -> list[tuple[int, str, int]]:
    """(run id, status, results stored) for every run in a history database."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        rows = connection.execute(
            "SELECT runs.id, runs.status, COUNT(results.id) FROM runs "
            "LEFT JOIN results ON results.run_id = runs.id GROUP BY runs.id ORDER BY runs.id"
        ).fetchall()
    connection.close()
    return [(int(run_id), str(status), int(count)) for run_id, status, count in rows]
