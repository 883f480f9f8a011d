"""The run history under attack and accident: planted lock files, runs killed outright,
read-only and full filesystems, corruption found late, a database deleted mid-run.

- The lock file `<db>.lock` is never followed through a symbolic link nor emptied when it
  is a hard link, a FIFO or another user's file: exit 3, a clear message, the file as it
  was (a root cron job must not be made to empty `/etc/shadow`).
- `--db DIR` is refused before the lock is taken: no `DIR.lock` is left beside it.
- A run killed by SIGKILL is closed `abandoned` by the next run that takes the lock, with
  the results it stored.
- A read-only history, a full disk when the lock's pid is written, corruption found by the
  diagnosis's reads, a database deleted mid-run: each is one message, exit 3, no
  traceback, no temporary file left, and no run left `running`.

Root-only cases (a read-only bind mount, a tiny tmpfs) run in private mount namespaces
(`unshare --mount`), so nothing outside the test ever sees the mounts.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hostile.hostile_support import (
    IS_ROOT,
    REPO_ROOT,
    Reachscan,
    history_runs,
    is_incomplete,
    no_traceback,
    parse_records,
    wait_for,
)

pytestmark = pytest.mark.hostile

REFUSING_ADDRESS = "127.77.74.1"  # nothing listens here: every port is refused at once
VICTIM = b"root:$6$precious:19000:0:99999:7:::\n"
CAN_MOUNT = IS_ROOT and shutil.which("unshare") is not None
needs_mount_namespace = pytest.mark.skipif(
    not CAN_MOUNT, reason="mounting needs root and unshare (os.geteuid() != 0)"
)


def plant_symlink(lock: Path, victim: Path) -> None:
    lock.symlink_to(victim)


def plant_hard_link(lock: Path, victim: Path) -> None:
    os.link(victim, lock)


def plant_fifo(lock: Path, victim: Path) -> None:
    os.mkfifo(lock)


@pytest.mark.parametrize(
    ("plant", "said"),
    [
        (plant_symlink, "the lock file is a symbolic link, which reachscan never follows"),
        (plant_hard_link, "the lock file has 2 names (hard links)"),
        (plant_fifo, "the lock file is not a regular file"),
    ],
    ids=["symlink", "hard-link", "fifo"],
)
def test_a_planted_lock_file_is_refused_and_what_it_points_at_is_untouched(
    reachscan: Reachscan, tmp_path: Path, plant: Callable[[Path, Path], None], said: str
) -> None:
    history = tmp_path / "history"
    history.mkdir()
    database = history / "h.sqlite"
    victim = history / "victim"
    victim.write_bytes(VICTIM)
    plant(history / "h.sqlite.lock", victim)
    output = history / "r.jsonl"

    run = reachscan.run(
        "-t", f"{REFUSING_ADDRESS}:9", "--db", str(database), "--format", "jsonl", "-o", str(output)
    )

    assert run.returncode == 3, run.stderr
    no_traceback(run.stderr)
    assert said in run.stderr
    assert f"{database}.lock" in run.stderr
    assert len(run.stderr.splitlines()) == 1, run.stderr
    assert victim.read_bytes() == VICTIM
    assert sorted(path.name for path in history.iterdir()) == ["h.sqlite.lock", "victim"]


def test_a_directory_as_the_history_is_refused_with_nothing_left_beside_it(
    reachscan: Reachscan, tmp_path: Path
) -> None:
    """The run lock was taken before the database was opened, so `--db DIR` left a
    `DIR.lock` behind although the run was refused."""
    directory = tmp_path / "parent" / "state"
    directory.mkdir(parents=True)

    run = reachscan.run("-t", f"{REFUSING_ADDRESS}:9", "--db", str(directory))

    assert run.returncode == 3, run.stderr
    no_traceback(run.stderr)
    assert f"{directory}: is a directory: --db takes the database file" in run.stderr
    assert sorted(path.name for path in directory.parent.iterdir()) == ["state"]
    assert list(directory.iterdir()) == []


def running_with_results(database: Path) -> bool:
    if not database.exists():
        return False
    try:
        runs = history_runs(database)
    except sqlite3.Error:  # created, schema not there yet
        return False
    return any(status == "running" and stored > 0 for _, status, stored in runs)


SLOW_SCAN = ("-t", f"{REFUSING_ADDRESS}:20000-20999", "--rate", "50")
"""About 20 s of refusals at 50 probes a second: long enough to be caught mid-run, with
batches stored as it goes."""


def test_a_run_killed_outright_is_closed_abandoned_by_the_next_run(
    reachscan: Reachscan, tmp_path: Path
) -> None:
    database = tmp_path / "h.sqlite"
    killed = reachscan.start(*SLOW_SCAN, "--db", str(database), "-o", str(tmp_path / "r.jsonl"))
    try:
        wait_for(lambda: running_with_results(database), within=60)
        killed.send_signal(signal.SIGKILL)
    finally:
        killed.kill()
        killed.communicate(timeout=30)
    [(killed_id, killed_status, stored)] = history_runs(database)
    assert killed_status == "running"

    next_run = reachscan.run("-t", f"{REFUSING_ADDRESS}:9", "--db", str(database))

    assert next_run.returncode == 0, next_run.stderr
    no_traceback(next_run.stderr)
    assert [(status, count) for _, status, count in history_runs(database)] == [
        ("abandoned", stored),
        ("complete", 1),
    ]
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        total, finished, message = connection.execute(
            "SELECT total, finished, message FROM runs WHERE id = ?", (killed_id,)
        ).fetchone()
    connection.close()
    assert total == stored and finished is not None
    assert "SIGKILL" in message


def in_mount_namespace(setup: list[str], command: list[str], tmp_path: Path) -> int:
    """Run `command` after `setup` (as root, in a mount namespace of its own); its stdout
    and stderr land in tmp_path/stdout and tmp_path/stderr. Returns its exit status."""
    script = "\n".join(
        [
            "set -e",
            *setup,
            "set +e",
            f"{shlex.join(command)} > {tmp_path / 'stdout'} 2> {tmp_path / 'stderr'}",
            f"echo $? > {tmp_path / 'status'}",
        ]
    )
    completed = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return int((tmp_path / "status").read_text())


@needs_mount_namespace
def test_a_read_only_history_exits_3_and_leaves_no_temporary_file(
    reachscan: Reachscan, tmp_path: Path
) -> None:
    """Root ignores file modes, so the file is made read-only by a read-only bind mount."""
    history = tmp_path / "history"
    history.mkdir()
    database = history / "h.sqlite"
    assert reachscan.run("-t", f"{REFUSING_ADDRESS}:9", "--db", str(database)).returncode == 0
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    command = reachscan.command(
        "-t", f"{REFUSING_ADDRESS}:9", "--db", str(database), "-o", str(outputs / "r.jsonl")
    )

    status = in_mount_namespace(
        [f"mount --bind {database} {database}", f"mount -o remount,ro,bind {database}"],
        command,
        tmp_path,
    )

    stderr = (tmp_path / "stderr").read_text()
    assert status == 3, stderr
    no_traceback(stderr)
    assert f"{database}: not writable" in stderr
    assert list(outputs.iterdir()) == []  # the output's temporary file was thrown away
    assert [status for _, status, _ in history_runs(database)] == ["complete"]


@needs_mount_namespace
def test_a_full_disk_when_the_lock_writes_its_pid_exits_3(
    reachscan: Reachscan, tmp_path: Path
) -> None:
    """A 64 KiB tmpfs, filled up: the lock file is created (an inode, no data), its pid
    cannot be written."""
    mount_point = tmp_path / "full"
    mount_point.mkdir()
    database = mount_point / "h.sqlite"
    command = reachscan.command("-t", f"{REFUSING_ADDRESS}:9", "--db", str(database))

    status = in_mount_namespace(
        [
            f"mount -t tmpfs -o size=64k tmpfs {mount_point}",
            f"dd if=/dev/zero of={mount_point}/filler bs=4k 2>/dev/null || true",
        ],
        command,
        tmp_path,
    )

    stderr = (tmp_path / "stderr").read_text()
    assert status == 3, stderr
    no_traceback(stderr)
    assert f"{database}.lock: cannot write the lock file: the disk is full" in stderr
    assert len(stderr.splitlines()) == 1, stderr


def corrupt_the_page_holding(database: Path, port: int) -> None:
    """Overwrite the `results` table leaf that holds the stored row of `port` (found with
    SQLite's dbstat: leaves in b-tree order hold rowids in order) with garbage."""
    with sqlite3.connect(database) as connection:
        (row_id,) = connection.execute("SELECT id FROM results WHERE port = ?", (port,)).fetchone()
        (before,) = connection.execute(
            "SELECT count(*) FROM results WHERE id < ?", (row_id,)
        ).fetchone()
        leaves = connection.execute(
            "SELECT pageno, ncell FROM dbstat WHERE name = 'results' AND pagetype = 'leaf' "
            "ORDER BY path"
        ).fetchall()
        (page_size,) = connection.execute("PRAGMA page_size").fetchone()
    connection.close()
    index = 0
    while before >= leaves[index][1]:
        before -= leaves[index][1]
        index += 1
    assert index < len(leaves) - 1, "the new run's rows would go onto this page"
    page_number = leaves[index][0]
    with database.open("r+b") as file:
        file.seek((page_number - 1) * page_size)
        file.write(b"\xff" * page_size)


def test_corruption_found_by_the_diagnosis_exits_3_with_every_other_output_written(
    reachscan: Reachscan, tmp_path: Path
) -> None:
    """The first run stores 1,000 refusals; one of their pages is then corrupted. The
    second run's writes never touch that page, but the diagnosis of its one expected-open
    refusal reads it."""
    database = tmp_path / "h.sqlite"
    first = reachscan.run(
        "-t", f"{REFUSING_ADDRESS}:20000-20999", "--no-diagnose", "--db", str(database)
    )
    assert first.returncode == 0, first.stderr
    corrupt_the_page_holding(database, 20_500)
    jsonl, prom = tmp_path / "r.jsonl", tmp_path / "r.prom"

    run = reachscan.run(
        "-t", f"{REFUSING_ADDRESS}:20500", "--expect", "open", "--db", str(database),
        "--format", "jsonl", "-o", str(jsonl), "--format", "prom", "-o", str(prom),
    )  # fmt: skip

    assert run.returncode == 3, run.stderr
    no_traceback(run.stderr)
    assert f"{database}: the file is corrupt" in run.stderr
    [record] = parse_records(jsonl.read_text())
    assert (record["port"], record["state"]) == (20_500, "refused")
    assert re.search(r"^reachscan_run_interrupted\{vantage=\"[^\"]*\"\} 1", prom.read_text(), re.M)
    assert sorted(path.name for path in tmp_path.iterdir() if ".tmp-" in path.name) == []
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        closed = connection.execute("SELECT status, message FROM runs ORDER BY id").fetchall()
    connection.close()
    assert [status for status, _ in closed] == ["complete", "failed"]
    assert "the file is corrupt" in closed[1][1]


def test_a_history_deleted_mid_run_exits_3_and_says_the_rows_went_with_it(
    reachscan: Reachscan, tmp_path: Path
) -> None:
    database = tmp_path / "h.sqlite"
    jsonl = tmp_path / "r.jsonl"
    scan = reachscan.start(*SLOW_SCAN, "--db", str(database), "-o", str(jsonl))
    try:
        wait_for(lambda: running_with_results(database), within=60)
        database.unlink()
        _, stderr_bytes = scan.communicate(timeout=120)
    finally:
        scan.kill()
    stderr = stderr_bytes.decode()

    assert scan.returncode == 3, stderr
    no_traceback(stderr)
    assert f"{database}: the file was deleted during the run" in stderr
    assert len(parse_records(jsonl.read_text())) == 1_000


def test_a_history_that_fills_up_mid_run_leaves_the_other_outputs_marked_partial(
    reachscan: Reachscan, tmp_path: Path
) -> None:
    """A trigger refusing one batch stands in for the full disk (or corrupt page) that
    stops the scan: JSON Lines ends with the partial-run marker, the .prom file says
    `reachscan_run_interrupted 1`, and the stored run is `failed` with the reason."""
    database = tmp_path / "h.sqlite"
    assert reachscan.run("-t", f"{REFUSING_ADDRESS}:9", "--db", str(database)).returncode == 0
    with sqlite3.connect(database) as connection:
        connection.execute(
            "CREATE TRIGGER full_disk BEFORE INSERT ON results WHEN NEW.port = 21000 "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full (simulated)'); END"
        )
    connection.close()
    jsonl, prom = tmp_path / "r.jsonl", tmp_path / "r.prom"

    run = reachscan.run(
        "-t", f"{REFUSING_ADDRESS}:20000-21999", "--db", str(database),
        "--format", "jsonl", "-o", str(jsonl), "--format", "prom", "-o", str(prom),
    )  # fmt: skip

    assert run.returncode == 3, run.stderr
    no_traceback(run.stderr)
    text = jsonl.read_text()
    records = parse_records(text)
    assert is_incomplete(text), text[-300:]
    assert 0 < len(records) < 2_000
    assert text.splitlines()[-1] == f'{{"incomplete":true,"results":{len(records)}}}'
    assert re.search(r"^reachscan_run_interrupted\{vantage=\"[^\"]*\"\} 1", prom.read_text(), re.M)
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        status, message = connection.execute(
            "SELECT status, message FROM runs ORDER BY id DESC LIMIT 1"
        ).fetchone()
    connection.close()
    assert (status, message) == ("failed", "database or disk is full (simulated)")
