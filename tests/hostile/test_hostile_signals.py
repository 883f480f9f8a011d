"""Every signal is obeyed in every phase: also while the outputs are being written, and
also the signals a scan never asked for (SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2).

The writing phase is made observable, not simulated: a full 65,535-port loopback sweep
with `--workers 2`, the history (through its writer process), JSON Lines and Prometheus
takes seconds to write its outputs once the last result is in. The test follows the
temporary JSON Lines file as it grows and signals once it holds all 65,535 lines: every
result is final then, whether the signal lands just before the scan's last step, while
the files are committed or while the history writer catches up, and the assertions hold
in all of those cases (scanner/run/interrupts.py, README "Interrupts and closed pipes").
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner.history.records import RunStatus
from scanner.history.store import HistoryStore
from scanner.procs.worker_pool import PARENT_DECIDES
from scanner.run.interrupts import HANDLED
from tests.hostile.hostile_support import (
    Reachscan,
    history_runs,
    no_traceback,
    parse_records,
    wait_for,
)
from tests.hostile.test_hostile_interrupts import Outputs, prom_samples, scan_arguments
from tests.support.cli import is_incomplete
from tests.support.listeners import LoopbackServices

pytestmark = pytest.mark.hostile

SWEEP_ADDRESS = "127.77.53.1"
SWEEP = 65_535


@pytest.fixture
def outputs(tmp_path: Path) -> Outputs:
    return Outputs.under(tmp_path)


def sweep_arguments(outputs: Outputs) -> list[str]:
    return ["-t", f"{SWEEP_ADDRESS}:1-65535", "--workers", "2", *outputs.arguments()]


def lines_in_growing_file(directory: Path, pattern: str, within: float) -> Iterator[int]:
    """The number of lines of the temporary file matching `pattern`, each time it grows:
    read incrementally (the file is only appended to until it is committed)."""
    wait_for(lambda: any(directory.glob(pattern)), within=within)
    (path,) = directory.glob(pattern)
    lines = 0
    with path.open("rb") as growing:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            chunk = growing.read(1 << 20)
            if chunk:
                lines += chunk.count(b"\n")
                yield lines
            else:
                time.sleep(0.01)
    pytest.fail(f"{pattern} did not grow to the expected size within {within} s")


MOMENTS = ["every-line", "jsonl-committed"]
"""When to signal: once the temporary JSON Lines file holds every result (the scan may
still be waiting for its workers' goodbye), or once that file has been committed (renamed
over run.jsonl): certainly while the .prom file and the history are being written."""


def signal_when_every_line_exists(
    process: subprocess.Popen[bytes], outputs: Outputs, moment: str, *signals: signal.Signals
) -> tuple[int, str]:
    """Send `signals` (50 ms apart) at `moment` (`MOMENTS`); the exit status and stderr."""
    assert process.stderr is not None
    try:
        for lines in lines_in_growing_file(outputs.directory, ".run.jsonl.tmp-*", within=240):
            if lines >= SWEEP:
                break
        if moment == "jsonl-committed":
            while any(outputs.directory.glob(".run.jsonl.tmp-*")) and process.poll() is None:
                time.sleep(0.002)
        assert process.poll() is None, "the run ended before it could be signalled"
        for index, signal_number in enumerate(signals):
            if index:
                time.sleep(0.05)
            process.send_signal(signal_number)
        returncode = process.wait(timeout=120)
    finally:
        process.kill()
        process.wait()
    stderr = process.stderr.read().decode("utf-8", "replace")
    process.stderr.close()
    return returncode, stderr


@pytest.mark.timeout(400)
@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT], ids=["term", "int"])
def test_a_signal_while_the_outputs_are_written_lets_them_finish_complete(
    reachscan: Reachscan, outputs: Outputs, signal_number: signal.Signals, moment: str
) -> None:
    """All results are final: the outputs are committed complete, the history run is
    `complete` with every row, the .prom is not marked interrupted, one line says what
    happened, and the exit status is 130 (the run was asked to stop)."""
    earlier = reachscan.run("-t", f"{SWEEP_ADDRESS}:9", *outputs.arguments())
    assert earlier.returncode in (0, 1), earlier.stderr

    process = reachscan.start(*sweep_arguments(outputs), stdout=subprocess.DEVNULL)
    returncode, stderr = signal_when_every_line_exists(process, outputs, moment, signal_number)

    assert returncode == 130, stderr
    no_traceback(stderr)
    assert f"interrupted by {signal_number.name}" in stderr, stderr
    assert sorted(entry.name for entry in outputs.directory.iterdir()) == ["m.prom", "run.jsonl"]
    assert len(parse_records(outputs.jsonl.read_text())) == SWEEP
    assert not is_incomplete(outputs.jsonl.read_text())
    samples = prom_samples(outputs.prom)
    assert samples["reachscan_run_interrupted"] == 0
    assert [(status, count) for _, status, count in history_runs(outputs.database)] == [
        ("complete", 1),
        ("complete", SWEEP),
    ]


HELD_ENDPOINTS = 20_000
"""Enough that their .prom (tens of bytes per endpoint) is far beyond a pipe's 64 KiB."""


def stderr_until(process: subprocess.Popen[bytes], text: str, within: float) -> str:
    """What the process wrote on stderr, read until it contains `text`."""
    assert process.stderr is not None
    os.set_blocking(process.stderr.fileno(), False)
    said = b""
    deadline = time.monotonic() + within
    while text.encode() not in said:
        assert time.monotonic() < deadline, f"{text!r} never came: {said!r}"
        said += process.stderr.read() or b""
        time.sleep(0.01)
    return said.decode("utf-8", "replace")


@pytest.mark.timeout(240)
def test_a_second_signal_while_the_outputs_are_written_quits_at_once_with_whole_files(
    reachscan: Reachscan, outputs: Outputs, tmp_path: Path
) -> None:
    """The writing is held open, not raced: the first output is a .prom into a FIFO whose
    reader takes one byte and then stops reading, so the run blocks inside the writing
    phase (every result in, no other output committed yet). The first SIGTERM is said
    and the writing goes on (still blocked); the second quits at once, without the FIFO
    ever being drained: the other outputs keep their previous files, no temporary file
    is left, and the history run is `interrupted`, counting what it holds."""
    earlier = reachscan.run("-t", f"{SWEEP_ADDRESS}:9", *outputs.arguments())
    assert earlier.returncode in (0, 1), earlier.stderr
    previous = {path: path.read_bytes() for path in (outputs.jsonl, outputs.prom)}
    fifo = tmp_path / "held.prom"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the reader, there before the run
    process = reachscan.start(
        "-t",
        f"{SWEEP_ADDRESS}:1-{HELD_ENDPOINTS}",
        "--format",
        "prom",
        "-o",
        str(fifo),
        *outputs.arguments(),
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: select.select([reader], [], [], 0)[0] != [], within=120)
        assert os.read(reader, 1) == b"#"  # the writing began; nothing more is read
        process.send_signal(signal.SIGTERM)
        said = stderr_until(process, "interrupted by SIGTERM while writing the outputs", 30)
        assert process.poll() is None, said  # blocked in the writing, as the first asked
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=30)  # the FIFO is still full and unread
        said += stderr_until(process, "interrupted again (SIGTERM): quit at once", 5)
    finally:
        process.kill()
        process.wait()
        os.close(reader)
        assert process.stderr is not None
        process.stderr.close()

    assert returncode == 130, said
    no_traceback(said)
    assert sorted(entry.name for entry in outputs.directory.iterdir()) == ["m.prom", "run.jsonl"]
    assert {path: path.read_bytes() for path in previous} == previous
    with HistoryStore.open(outputs.database) as store:
        latest = store.runs()[0]
        assert latest.status is RunStatus.INTERRUPTED, latest
        assert latest.total == len(store.observations(latest.id))


def test_every_signal_the_scan_decides_about_is_ignored_by_its_children() -> None:
    assert set(HANDLED) == PARENT_DECIDES


@pytest.mark.parametrize("signal_number", [signal.SIGUSR1, signal.SIGUSR2], ids=["usr1", "usr2"])
def test_sigusr_to_the_whole_group_never_kills_a_scan_and_usr1_reports_progress(
    reachscan: Reachscan,
    services: LoopbackServices,
    outputs: Outputs,
    signal_number: signal.Signals,
) -> None:
    """`kill -USR1` (dd's "how far are you?") prints one progress line on stderr; USR2
    is ignored; neither the scan nor a worker or the history writer dies of them."""
    arguments, _ = scan_arguments(services, 6_000)
    process = reachscan.start(
        *arguments, *outputs.arguments(), stdout=subprocess.DEVNULL, new_session=True
    )
    assert process.stderr is not None
    try:
        wait_for(lambda: any(outputs.directory.glob(".run.jsonl.tmp-*")), within=30)
        time.sleep(0.5)
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        for _ in range(3):
            os.killpg(process.pid, signal_number)
            time.sleep(0.1)
        returncode = process.wait(timeout=60)
    finally:
        process.kill()
        process.wait()
    stderr = process.stderr.read().decode("utf-8", "replace")
    process.stderr.close()

    assert children, "the scan was to run with workers and the history writer"
    assert returncode == 0, stderr
    no_traceback(stderr)
    progress_lines = [line for line in stderr.splitlines() if "results so far" in line]
    # Only the scan itself answers: a child that handled it as the parent does would
    # print lines of its own (or die, for want of a handler).
    assert [line for line in stderr.splitlines() if line not in progress_lines] == []
    if signal_number == signal.SIGUSR1:
        assert len(progress_lines) == 3, stderr
        assert all(line.startswith("reachscan: scanning for ") for line in progress_lines)
    else:
        assert progress_lines == [], stderr
    assert len(parse_records(outputs.jsonl.read_text())) == 6_000 + 500
    assert [status for _, status, _ in history_runs(outputs.database)] == ["complete"]
