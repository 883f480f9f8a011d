"""`--workers N`: probing spread over processes must change nothing but the speed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.listeners import LoopbackServices

REPO = Path(__file__).resolve().parents[2]
ADDRESSES = "127.81.0.1-4"


def scan(tmp_path: Path, *arguments: str) -> dict[tuple[str, int, str], tuple[str, str]]:
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "scanner",
            "scan",
            "--format",
            "jsonl",
            "--hosts-file",
            str(hosts),
            "--nameserver",
            "127.0.0.1:9",
            "--no-history",
            "--no-progress",
            *arguments,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    verdicts = {}
    for line in completed.stdout.splitlines():
        record = json.loads(line)
        key = (record["address"], record["port"], record["proto"])
        assert key not in verdicts, f"{key} reported twice"
        verdicts[key] = (record["state"], record["reason"])
    return verdicts


def test_two_workers_give_exactly_the_answers_of_one(tmp_path: Path) -> None:
    with LoopbackServices() as services:
        opened = {services.tcp(f"127.81.0.{host}") for host in (1, 3)}
        udp_open = services.udp("127.81.0.2")
        ports = f"T:20000-21999,{','.join(map(str, sorted(opened)))},U:{udp_open},40999"
        alone = scan(tmp_path, "-t", f"{ADDRESSES}:{ports}", "--workers", "1")
        sharded = scan(tmp_path, "-t", f"{ADDRESSES}:{ports}", "--workers", "2")
    assert sharded == alone
    assert len(alone) == 4 * (2000 + len(opened) + 2)
    states = {verdict for verdict in alone.values()}
    assert ("open", "syn-ack") in states and ("refused", "conn-refused") in states
    assert ("open", "udp-response") in states and ("refused", "port-unreach") in states


def test_an_interrupt_stops_the_workers_too(tmp_path: Path) -> None:
    """SIGTERM to the parent: it exits 130 at once and leaves no worker behind."""
    with LoopbackServices() as services:
        silent = [services.udp("127.81.1.1", answer=False) for _ in range(200)]
        output = tmp_path / "out" / "partial.jsonl"
        output.parent.mkdir()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scanner",
                "scan",
                "-t",
                f"127.81.1.1:U:{','.join(map(str, silent))}",
                "--timeout",
                "5",
                "--min-timeout",
                "5",
                "--workers",
                "2",
                "--no-history",
                "--no-progress",
                "--hosts-file",
                os.devnull,
                "--nameserver",
                "127.0.0.1:9",
                "-o",
                str(output),
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(2.0)
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        assert len(children) == 2, "two worker processes were started"
        process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout=5)
        finally:
            process.kill()
        assert process.stderr is not None
        stderr = process.stderr.read().decode()
        process.stderr.close()
    assert status == 130, stderr
    assert "Traceback" not in stderr
    time.sleep(0.5)
    for child in children:
        assert not Path(f"/proc/{child}").exists() or is_zombie(int(child)), f"{child} runs on"
    assert output.exists()


@pytest.mark.parametrize("workers", ["0", "65", "many"])
def test_a_bad_worker_count_is_a_usage_error(tmp_path: Path, workers: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "scanner", "scan", "-t", "127.81.2.1:1", "--workers", workers],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert "--workers" in completed.stderr


def test_max_time_with_workers_reports_what_finished_and_stops(tmp_path: Path) -> None:
    """Out of time in the workers: the parent stops reading the inventory, exits 4, and
    every record it wrote is whole; silent probes come back unconfirmed, never guessed."""
    with LoopbackServices() as services:
        silent = [services.udp("127.81.3.1", answer=False) for _ in range(100)]
        hosts = tmp_path / "hosts"
        hosts.write_text("")
        started = time.monotonic()
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "scanner",
                "scan",
                "--format",
                "jsonl",
                "--hosts-file",
                str(hosts),
                "--nameserver",
                "127.0.0.1:9",
                "--no-history",
                "--no-progress",
                "-t",
                f"127.81.3.1:U:{','.join(map(str, silent))}",
                "-t",
                "127.81.4.0/24:1-2000",
                "--max-endpoints",
                "1000000",
                "--workers",
                "2",
                "--timeout",
                "3",
                "--min-timeout",
                "3",
                "--retries",
                "5",
                "--max-time",
                "1.5",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        elapsed = time.monotonic() - started
    assert completed.returncode == 4, completed.stderr
    assert "--max-time" in completed.stderr and "Traceback" not in completed.stderr
    assert elapsed < 15
    states = {
        (record["state"], record["reason"])
        for record in map(json.loads, completed.stdout.splitlines())
    }
    assert ("open|filtered", "no-response") in states
    assert states <= {
        ("open|filtered", "no-response"),
        ("refused", "conn-refused"),
        ("open", "syn-ack"),
    }


def test_a_worker_that_dies_is_reachscans_failure_and_the_finished_results_are_kept(
    tmp_path: Path,
) -> None:
    """A worker killed mid-scan: exit 5 (the scanner failed, no target state is made up),
    the results finished before are written, and the other worker is not left behind."""
    with LoopbackServices() as services:
        silent = [services.udp("127.81.5.1", answer=False) for _ in range(100)]
        output = tmp_path / "out" / "partial.jsonl"
        output.parent.mkdir()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scanner",
                "scan",
                "-t",
                "127.81.5.2:T:20000-20999",  # refused at once: finished before the kill
                "-t",
                f"127.81.5.1:U:{','.join(map(str, silent))}",  # silent: still waiting
                "--timeout",
                "20",
                "--min-timeout",
                "20",
                "--workers",
                "2",
                "--no-history",
                "--no-progress",
                "--hosts-file",
                os.devnull,
                "--nameserver",
                "127.0.0.1:9",
                "--format",
                "jsonl",
                "-o",
                str(output),
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            time.sleep(2.0)
            workers = children_of(process.pid)
            assert len(workers) == 2, "two worker processes were started"
            busy = [pid for pid in workers if not is_zombie(pid)]
            assert busy, "the worker with the silent ports is still waiting"
            for pid in busy:
                os.kill(pid, signal.SIGKILL)
            status = process.wait(timeout=10)
        finally:
            process.kill()
        assert process.stderr is not None
        stderr = process.stderr.read().decode()
        process.stderr.close()
    assert status == 5, stderr
    assert "a scan worker exited early" in stderr
    assert "Traceback" not in stderr
    records = [json.loads(line) for line in output.read_text().splitlines()]
    refused = [record for record in records if record["state"] == "refused"]
    assert len(refused) == 1000, "every refusal finished before the kill is written"
    assert all(record["address"] == "127.81.5.2" for record in records)
    time.sleep(0.5)
    for worker in workers:
        assert not Path(f"/proc/{worker}").exists() or is_zombie(worker), f"{worker} runs on"


def children_of(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def is_zombie(pid: int) -> bool:
    try:
        return "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return True  # reaped already


def test_workers_of_a_parent_killed_outright_stop_at_once(tmp_path: Path) -> None:
    """SIGKILL leaves the parent no chance to clean up: its workers see their input end
    without an "end" and stop, rather than wait out their probes' 20 s timeouts."""
    with LoopbackServices() as services:
        silent = [services.udp("127.81.6.1", answer=False) for _ in range(50)]
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scanner",
                "scan",
                "-t",
                f"127.81.6.1:U:{','.join(map(str, silent))}",
                "-t",
                f"127.81.6.2:U:{','.join(map(str, silent))}",
                "--timeout",
                "20",
                "--min-timeout",
                "20",
                "--workers",
                "2",
                "--no-history",
                "--no-progress",
                "--hosts-file",
                os.devnull,
                "--nameserver",
                "127.0.0.1:9",
                "-o",
                str(tmp_path / "out.jsonl"),
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(2.0)
            workers = children_of(process.pid)
            assert len(workers) == 2, "two worker processes were started"
        finally:
            process.kill()
            process.wait(timeout=10)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in workers):
            time.sleep(0.05)
        running = [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    assert not running, f"workers {running} outlived their parent by 5 s"
