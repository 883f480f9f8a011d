"""What the hostile-conditions tests share: running the real CLI, and reading what it wrote.

Every run passes the tests' own `--hosts-file` and `--nameserver` (a DNS responder on
127.0.0.1 that answers NXDOMAIN), so no test can make reachscan ask the machine's resolver,
and `--no-progress`, so stderr carries only what the tests assert on.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cli import (
    RECORD_KEYS,
    REPO_ROOT,
    Reachscan,
    ScanRun,
    Verdicts,
    is_incomplete,
    parse_records,
    verdicts,
)

__all__ = [  # the shared CLI helpers, re-exported for the hostile tests
    "CAN_UNSHARE",
    "IN_PRIVATE_NETNS",
    "IS_ROOT",
    "RECORD_KEYS",
    "REPO_ROOT",
    "Reachscan",
    "ScanRun",
    "Verdicts",
    "history_runs",
    "is_incomplete",
    "needs_private_netns",
    "no_traceback",
    "parse_records",
    "verdicts",
    "wait_for",
]

IS_ROOT = os.geteuid() == 0
CAN_UNSHARE = IS_ROOT and shutil.which("unshare") is not None and shutil.which("ip") is not None
needs_private_netns = pytest.mark.skipif(
    not CAN_UNSHARE, reason="needs root, unshare and ip to make a private network namespace"
)

IN_PRIVATE_NETNS = ("unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh")
"""A `prefix` that runs the command in a new network namespace with only loopback up:
whatever it sends cannot leave the machine, so a guard that failed could harm nothing."""


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
