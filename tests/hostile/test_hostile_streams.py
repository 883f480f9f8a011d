"""Closed standard streams: `>&-`, `2>&-`, `<&-` (a careless supervisor or crontab).

With every output in a file, a scan runs as usual and its file holds only results (no
file may take over descriptor 1 or 2 and receive stray text); with results meant for a
closed stdout, nothing is scanned and one line says why (exit 3); with stderr closed, the
messages are dropped, never printed into the results on stdout.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.hostile.hostile_support import (
    REPO_ROOT,
    Reachscan,
    no_traceback,
    parse_records,
    verdicts,
)
from tests.support.listeners import LoopbackServices

pytestmark = pytest.mark.hostile

ADDRESS = "127.77.54.1"


def closing(*redirections: str) -> tuple[str, ...]:
    """A `prefix` that starts reachscan with the given standard streams closed."""
    return ("sh", "-c", f'exec "$@" {" ".join(redirections)}', "sh")


@pytest.mark.parametrize(
    "redirections",
    [(">&-",), (">&-", "2>&-", "<&-")],
    ids=["stdout", "all-three"],
)
def test_a_closed_stdout_does_not_matter_when_every_output_goes_to_a_file(
    reachscan: Reachscan, services: LoopbackServices, tmp_path: Path, redirections: tuple[str]
) -> None:
    port = services.tcp(ADDRESS)
    results = tmp_path / "results.jsonl"
    report = tmp_path / "report.txt"
    run = reachscan.run(
        "-t", f"{ADDRESS}:{port}", "--db", str(tmp_path / "h.sqlite"),
        "--format", "jsonl", "-o", str(results), "--format", "table", "-o", str(report),
        prefix=closing(*redirections),
    )  # fmt: skip

    assert run.returncode == 0, run.stderr
    no_traceback(run.stderr)
    # Only results in the file: no stray print reached it through descriptor 1.
    assert verdicts(parse_records(results.read_text())) == {
        (ADDRESS, port, "tcp"): ("open", "syn-ack")
    }
    assert f"{ADDRESS}" in report.read_text()


def test_results_for_a_closed_stdout_are_refused_before_any_probe(
    reachscan: Reachscan, services: LoopbackServices, tmp_path: Path
) -> None:
    port = services.tcp(ADDRESS)
    run = reachscan.run(
        "-t", f"{ADDRESS}:{port}", "--db", str(tmp_path / "h.sqlite"), prefix=closing(">&-")
    )

    assert run.returncode == 3, run.stderr
    no_traceback(run.stderr)
    [line] = run.stderr.splitlines()
    assert "standard output" in line and "-o FILE" in line, line
    assert services.accepted(ADDRESS, port) == 0
    assert not list(tmp_path.glob(".*tmp-*"))


def test_a_closed_stderr_drops_the_messages_and_keeps_stdout_pure(
    reachscan: Reachscan, services: LoopbackServices, tmp_path: Path
) -> None:
    """An inventory error is reported on stderr: closed, it must not land in the results
    on stdout (print to a missing sys.stderr prints to stdout)."""
    port = services.tcp(ADDRESS)
    run = reachscan.run(
        "-t", f"{ADDRESS}:{port}", "-t", f"{ADDRESS}:notaport", "--format", "jsonl",
        "--db", str(tmp_path / "h.sqlite"), prefix=closing("2>&-"),
    )  # fmt: skip

    assert run.returncode == 2  # the inventory error, as with stderr open
    assert verdicts(parse_records(run.stdout)) == {(ADDRESS, port, "tcp"): ("open", "syn-ack")}


def test_a_command_that_prints_its_answer_to_a_closed_stdout_says_so(
    reachscan: Reachscan, tmp_path: Path
) -> None:
    database = tmp_path / "h.sqlite"
    scanned = reachscan.run("-t", f"{ADDRESS}:9", "--db", str(database), "--format", "jsonl")
    assert scanned.returncode in (0, 1), scanned.stderr
    command = reachscan.command()
    history = [*command[: command.index("scan")], "history", "--db", str(database), ADDRESS]
    completed = subprocess.run(
        [*closing(">&-"), *history],
        capture_output=True,
        timeout=60,
        check=False,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    stderr = completed.stderr.decode()
    assert completed.returncode == 3, stderr
    no_traceback(stderr)
    assert "standard output" in stderr
