"""Out of memory, out of descriptors: a clean failure, never a spin, a traceback or an abort.

A real `reachscan` sweeps 65,535 loopback ports with two workers, the history and two
output files, under an address-space limit (`ulimit -v`, set with `prlimit` before the
interpreter starts) at levels that run out in different phases: while starting, in the
scan's callbacks, while writing the outputs. And under descriptor limits (`ulimit -n`)
too low for five outputs, the history and four workers. Each must end with one line on
stderr and exit 3, leave no temporary file, and never leave the history run `running`;
a descriptor limit says how many descriptors the run needs, and that number suffices.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostile.hostile_support import REPO_ROOT, Reachscan, no_traceback, parse_records

pytestmark = pytest.mark.hostile

ADDRESS = "127.77.61.1"
SWEEP = f"{ADDRESS}:1-65535"
FIVE_FORMATS = (("jsonl", "jsonl"), ("prom", "prom"), ("table", "txt"), ("nmap-xml", "xml"),
                ("report-json", "json"))  # fmt: skip
PREVIOUS = b"previous whole file\n"


def run_limited(
    reachscan: Reachscan, limit: str, *args: str, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """The scan under `prlimit --LIMIT` (e.g. `--as=50000000`, `--nofile=24`). The
    timeout only keeps a spinning run from hanging the suite."""
    return subprocess.run(
        ["prlimit", limit, "--", *reachscan.command(*args)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
    )


def outputs_arguments(directory: Path, count: int) -> list[str]:
    arguments = []
    for name, suffix in FIVE_FORMATS[:count]:
        path = directory / f"out.{suffix}"
        path.write_bytes(PREVIOUS)
        arguments += ["--format", name, "-o", str(path)]
    return arguments


def temporary_files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if ".tmp-" in path.name)


def run_statuses(database: Path) -> list[str]:
    if not database.exists():
        return []
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        tables = connection.execute("SELECT name FROM sqlite_master WHERE name = 'runs'")
        if tables.fetchone() is None:
            return []
        statuses = [status for (status,) in connection.execute("SELECT status FROM runs")]
    connection.close()
    return statuses


needs_prlimit = pytest.mark.skipif(
    sys.platform != "linux" or not Path("/usr/bin/prlimit").exists(),
    reason="needs Linux and prlimit (util-linux) to limit the scan's resources",
)


@needs_prlimit
@pytest.mark.parametrize(
    "kilobytes",
    [45_000, 100_000, 150_000],
    ids=["45MB", "100MB", "150MB"],  # here: in the pipe callbacks; storing; rendering .prom
)
def test_out_of_memory_is_one_line_and_exit_3_wherever_it_strikes(
    reachscan: Reachscan, tmp_path: Path, kilobytes: int
) -> None:
    """Once a MemoryError in the worker-pipe callback re-fired at once: 233,010
    tracebacks (104 MB of stderr) a minute at 98 % CPU; elsewhere it was a traceback and
    exit 1 with temporary files left behind."""
    database = tmp_path / "history.sqlite"
    run = run_limited(
        reachscan,
        f"--as={kilobytes * 1024}",
        "-t", SWEEP, "--workers", "2", "--db", str(database),
        *outputs_arguments(tmp_path, 2),
    )  # fmt: skip
    assert len(run.stderr) < 4096, run.stderr[-3000:]
    no_traceback(run.stderr)
    if run.returncode in (0, 1):  # this machine had room after all: everything written
        assert len(parse_records((tmp_path / "out.jsonl").read_text())) == 65_535
        return
    assert run.returncode == 3, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("reachscan: out of memory"), run.stderr
    assert temporary_files(tmp_path) == []
    assert "running" not in run_statuses(database)
    for suffix in ("jsonl", "prom"):  # the previous file, or (written before) the new one
        content = (tmp_path / f"out.{suffix}").read_bytes()
        assert content == PREVIOUS or content.endswith(b"\n"), suffix


@needs_prlimit
@pytest.mark.parametrize("descriptors", [8, 16, 24, 28])
def test_too_few_descriptors_say_how_many_are_needed_and_that_many_suffice(
    reachscan: Reachscan, tmp_path: Path, descriptors: int
) -> None:
    """Once: `OSError: [Errno 24]` while loading an output module (24, 28, 32), and an
    abort (exit 134) in uvloop at 8."""
    database = tmp_path / "history.sqlite"
    arguments = [
        "-t", f"{ADDRESS}:1-6000", "--workers", "4", "--db", str(database),
        *outputs_arguments(tmp_path, 5),
    ]  # fmt: skip
    refused = run_limited(reachscan, f"--nofile={descriptors}", *arguments, timeout=120)
    no_traceback(refused.stderr)
    assert refused.returncode == 3, refused.stderr
    said = re.fullmatch(
        rf"reachscan: needs at least (\d+) file descriptors \(ulimit -n is {descriptors}\): "
        r".*nothing was scanned\n",
        refused.stderr,
    )
    assert said is not None, refused.stderr
    assert temporary_files(tmp_path) == []
    assert not database.exists()  # refused before the history was touched
    needed = int(said.group(1))

    enough = run_limited(reachscan, f"--nofile={needed}", *arguments, timeout=120)
    no_traceback(enough.stderr)
    assert enough.returncode in (0, 1), enough.stderr
    assert "probing in this process instead" in enough.stderr
    assert len(parse_records((tmp_path / "out.jsonl").read_text())) == 6000
    assert temporary_files(tmp_path) == []


@needs_prlimit
def test_a_limit_short_of_four_workers_probes_in_fewer(
    reachscan: Reachscan, tmp_path: Path
) -> None:
    """Room for the outputs and two workers' pipes, not four: two workers, said once."""
    arguments = [
        "-t", f"{ADDRESS}:1-6000", "--workers", "4", "--db", str(tmp_path / "history.sqlite"),
        *outputs_arguments(tmp_path, 5),
    ]  # fmt: skip
    refused = run_limited(reachscan, "--nofile=8", *arguments, timeout=120)
    said = re.search(r"needs at least (\d+) file descriptors", refused.stderr)
    assert said is not None, refused.stderr
    two_workers = int(said.group(1)) + 4  # each worker: the parent's ends of two pipes

    run = run_limited(reachscan, f"--nofile={two_workers}", *arguments, timeout=120)
    no_traceback(run.stderr)
    assert run.returncode in (0, 1), run.stderr
    assert "probing in 2 worker processes instead" in run.stderr
    assert len(parse_records((tmp_path / "out.jsonl").read_text())) == 6000
