"""Outputs and files behave: a full disk, umasks, and who may read the history.

- A results file on a full filesystem: exit 3, `cannot write results to PATH: No space
  left on device`, and the previous file at PATH untouched (the write goes to a temporary
  file that is thrown away). The filesystem is a tiny tmpfs mounted in a private mount
  namespace (`unshare --mount`), so nothing outside the test ever sees it.
- A history that refuses a batch mid-scan (a trigger stands in for a full disk or a
  corrupt page): exit 3 with SQLite's reason, the run stored `failed` with the whole
  batches before, the other outputs still committed; the same when the history writer
  process stores the results (5,000+ endpoints).
- File modes: output files follow the umask as `open(..., "w")` would (0644 under 022,
  0600 under 077, never world-writable under either); the history database and its
  directory are private (0600 / 0700) whatever the umask.

A closed stdout (`| head -1`) is covered by test_loopback_scan.py
(`test_a_closed_stdout_ends_the_scan_quietly`), not repeated here.
"""

from __future__ import annotations

import shlex
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest

from tests.hostile.hostile_support import (
    IS_ROOT,
    REPO_ROOT,
    Reachscan,
    history_runs,
    no_traceback,
    parse_records,
)
from tests.support.listeners import LoopbackServices

pytestmark = pytest.mark.hostile

PREVIOUS = b'{"previous": "complete file"}\n'


@pytest.mark.skipif(not IS_ROOT, reason="mounting a tmpfs needs root")
def test_a_full_filesystem_exits_3_and_leaves_the_previous_file_intact(
    reachscan: Reachscan, tmp_path: Path
) -> None:
    """A 256 KiB tmpfs, filled up after the previous results file was written; the scan's
    5,000 results are about a megabyte of JSONL."""
    mount_point = tmp_path / "full"
    mount_point.mkdir()
    results = mount_point / "results.jsonl"
    kept = tmp_path / "kept"
    command = reachscan.command(
        "-t", "127.77.70.1:20000-24999", "--no-diagnose", "--format", "jsonl", "-o", str(results)
    )
    script = "\n".join(
        [
            "set -e",
            f"mount -t tmpfs -o size=256k tmpfs {mount_point}",
            f"printf '%s\\n' {shlex.quote(PREVIOUS.decode().rstrip())} > {results}",
            f"dd if=/dev/zero of={mount_point}/filler bs=4k 2>/dev/null || true",
            "set +e",
            f"{shlex.join(command)} > {tmp_path / 'stdout'} 2> {tmp_path / 'stderr'}",
            f"echo $? > {tmp_path / 'status'}",
            f"cp {results} {kept}",
            f"ls -A {mount_point} > {tmp_path / 'listing'}",
        ]
    )

    completed = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    stderr = (tmp_path / "stderr").read_text()
    assert (tmp_path / "status").read_text().strip() == "3", stderr
    no_traceback(stderr)
    assert f"cannot write results to {results}: No space left on device" in stderr
    assert kept.read_bytes() == PREVIOUS
    assert (tmp_path / "listing").read_text().split() == ["filler", "results.jsonl"]


def umask_prefix(umask: str) -> tuple[str, ...]:
    return ("sh", "-c", f'umask {umask} && exec "$@"', "sh")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(
    ("umask", "output_mode"), [("022", 0o644), ("077", 0o600)], ids=["umask-022", "umask-077"]
)
def test_file_modes_follow_the_umask_and_the_history_stays_private(
    reachscan: Reachscan,
    services: LoopbackServices,
    tmp_path: Path,
    umask: str,
    output_mode: int,
) -> None:
    port = services.tcp("127.77.71.1")
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    database = tmp_path / "state" / "reachscan" / "history.sqlite"

    run = reachscan.run(
        "-t",
        f"127.77.71.1:{port}",
        "--format",
        "jsonl",
        "-o",
        str(outputs / "r.jsonl"),
        "--format",
        "prom",
        "-o",
        str(outputs / "m.prom"),
        "--format",
        "table",
        "-o",
        str(outputs / "t.txt"),
        "--db",
        str(database),
        prefix=umask_prefix(umask),
    )

    assert run.returncode == 0, run.stderr
    assert len(parse_records((outputs / "r.jsonl").read_text())) == 1
    assert {path.name: oct(mode(path)) for path in outputs.iterdir()} == {
        name: oct(output_mode) for name in ("r.jsonl", "m.prom", "t.txt")
    }
    assert mode(database.parent) == 0o700
    history_files = list(database.parent.iterdir())
    assert database in history_files
    assert {path.name: oct(mode(path)) for path in history_files} == {
        path.name: oct(0o600) for path in history_files
    }
    for path in [*outputs.iterdir(), *history_files]:
        assert not mode(path) & stat.S_IWOTH, path


REFUSING_ADDRESS = "127.77.72.1"  # nothing listens here: every port is refused at once


@pytest.mark.parametrize("ports", [2_000, 8_000], ids=["history-in-process", "history-writer"])
def test_a_history_that_refuses_a_batch_mid_scan_exits_3_with_the_reason(
    reachscan: Reachscan, tmp_path: Path, ports: int
) -> None:
    database = tmp_path / "history.sqlite"
    jsonl = tmp_path / "r.jsonl"
    first = reachscan.run("-t", f"{REFUSING_ADDRESS}:20000", "--db", str(database))
    assert first.returncode == 0, first.stderr
    refused_port = 20_000 + ports // 2
    with sqlite3.connect(database) as connection:
        connection.execute(
            f"CREATE TRIGGER refuse_one BEFORE INSERT ON results WHEN NEW.port = {refused_port} "
            "BEGIN SELECT RAISE(ABORT, 'disk trouble simulated by the test'); END"
        )
    connection.close()

    run = reachscan.run(
        "-t",
        f"{REFUSING_ADDRESS}:T:20000-{20_000 + ports - 1}",
        "--db",
        str(database),
        "--format",
        "jsonl",
        "-o",
        str(jsonl),
    )

    assert run.returncode == 3, run.stderr
    no_traceback(run.stderr)
    assert "disk trouble simulated by the test" in run.stderr
    assert str(database) in run.stderr
    records = parse_records(jsonl.read_text())  # committed whole, with what was done
    assert records and all(record["state"] == "refused" for record in records)
    (_, first_status, _), (_, status, stored) = history_runs(database)
    assert (first_status, status) == ("complete", "failed")
    assert 0 < stored < ports  # whole batches only: test_history_store.py, test_history_writer.py
