"""`--workers N`: probing spread over processes must change nothing but the speed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import parse_records
from tests.support.listeners import LoopbackServices

REPO = Path(__file__).resolve().parents[2]
ADDRESSES = "127.81.0.1-4"


def reachscan_scan(*arguments: str) -> list[str]:
    """`reachscan scan` on literals only: no hosts file, a nameserver that is the discard
    port of loopback, no history, no progress bar."""
    return [
        sys.executable,
        "-m",
        "scanner",
        "scan",
        "--hosts-file",
        os.devnull,
        "--nameserver",
        "127.0.0.1:9",
        "--no-history",
        "--no-progress",
        *arguments,
    ]


def scan(
    *arguments: str, env: dict[str, str] | None = None
) -> dict[tuple[str, int, str], tuple[str, str]]:
    completed = subprocess.run(
        reachscan_scan("--format", "jsonl", *arguments),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    verdicts = {}
    for record in parse_records(completed.stdout):
        key = (str(record["address"]), int(str(record["port"])), str(record["proto"]))
        assert key not in verdicts, f"{key} reported twice"
        verdicts[key] = (str(record["state"]), str(record["reason"]))
    return verdicts


def test_two_workers_give_exactly_the_answers_of_one() -> None:
    with LoopbackServices() as services:
        opened = {services.tcp(f"127.81.0.{host}") for host in (1, 3)}
        udp_open = services.udp("127.81.0.2")
        ports = f"T:20000-21999,{','.join(map(str, sorted(opened)))},U:{udp_open},40999"
        alone = scan("-t", f"{ADDRESSES}:{ports}", "--workers", "1")
        sharded = scan("-t", f"{ADDRESSES}:{ports}", "--workers", "2")
    assert sharded == alone
    assert len(alone) == 4 * (2000 + len(opened) + 2)
    states = {verdict for verdict in alone.values()}
    assert ("open", "syn-ack") in states and ("refused", "conn-refused") in states
    assert ("open", "udp-response") in states and ("refused", "port-unreach") in states


def without_shard_indexes() -> dict[str, str]:
    """This environment without the schedulers' index variables (`--shard auto/N`)."""
    return {
        name: value
        for name, value in os.environ.items()
        if name not in ("JOB_COMPLETION_INDEX", "NOMAD_ALLOC_INDEX")
    }


def test_the_runs_of_a_split_scan_are_together_the_whole_scan() -> None:
    """`--shard I/N` in three runs (one process, two workers, and the index from a
    Kubernetes Indexed Job's variable): every endpoint in exactly one run, with the state
    the whole scan gives it; a swept host spread over the runs, a fleet host whole."""
    with LoopbackServices() as services:
        opened = {services.tcp(f"127.81.1.{host}") for host in (1, 3)}
        fleet_open = services.tcp("127.81.1.9")
        swept = f"127.81.1.1-4:T:20000-21023,{','.join(map(str, sorted(opened)))},U:40999"
        fleet = f"127.81.1.9:T:22,80,443,{fleet_open}"
        targets = ("-t", swept, "-t", fleet)
        whole = scan(*targets, "--workers", "1")
        environment = without_shard_indexes()
        runs = [
            scan(*targets, "--shard", "0/3", "--workers", "1"),
            scan(*targets, "--shard", "1/3", "--workers", "2"),
            scan(*targets, "--shard", "auto/3", env={**environment, "JOB_COMPLETION_INDEX": "2"}),
        ]
    assert len(whole) == 4 * (1024 + len(opened) + 1) + 4
    assert sum(len(run) for run in runs) == len(whole), "no endpoint in two runs"
    assert {key: verdict for run in runs for key, verdict in run.items()} == whole
    assert all(len([key for key in run if key[0] == "127.81.1.1"]) >= 256 for run in runs)
    holding_fleet = [run for run in runs if ("127.81.1.9", 22, "tcp") in run]
    assert len(holding_fleet) == 1
    assert holding_fleet[0][("127.81.1.9", fleet_open, "tcp")] == ("open", "syn-ack")
    assert len([key for key in holding_fleet[0] if key[0] == "127.81.1.9"]) == 4


@pytest.mark.parametrize("workers", ["1", "2"])
def test_every_json_line_says_where_the_run_probed_from(workers: str) -> None:
    def vantages(*options: str) -> set[str]:
        completed = subprocess.run(
            reachscan_scan("--format", "jsonl", "-t", "127.81.2.1:T:20000-25999", *options),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return {str(record["vantage"]) for record in parse_records(completed.stdout)}

    assert vantages("--workers", workers, "--vantage", "dc1.rack-7") == {"dc1.rack-7"}
    assert vantages("--workers", workers) == {os.uname().nodename}


def test_shard_auto_without_a_scheduler_index_is_a_usage_error() -> None:
    completed = subprocess.run(
        reachscan_scan("-t", "127.81.1.1:80", "--shard", "auto/4"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=without_shard_indexes(),
    )
    assert completed.returncode == 2
    assert "--shard auto/4: neither JOB_COMPLETION_INDEX" in completed.stderr
    assert "Traceback" not in completed.stderr and completed.stdout == ""


def test_an_interrupt_stops_the_workers_too(tmp_path: Path) -> None:
    """SIGTERM to the parent: it exits 130 at once and leaves no worker behind."""
    with LoopbackServices() as services:
        silent = [services.udp("127.81.1.1", answer=False) for _ in range(200)]
        output = tmp_path / "out" / "partial.jsonl"
        output.parent.mkdir()
        ports = ",".join(map(str, silent))
        with scan_with_two_workers(
            "-t", f"127.81.1.1:U:{ports}", "--timeout", "5", "--min-timeout", "5", "-o", str(output)
        ) as (process, workers):
            process.send_signal(signal.SIGTERM)
            status = process.wait(timeout=5)
            stderr = read_stderr(process)
    assert status == 130, stderr
    assert "Traceback" not in stderr
    assert_ended(workers)
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


def test_max_time_with_workers_reports_what_finished_and_stops() -> None:
    """Out of time in the workers: the parent stops reading the inventory, exits 4, and
    every record it wrote is whole; silent probes come back unconfirmed, never guessed."""
    with LoopbackServices() as services:
        silent = [services.udp("127.81.3.1", answer=False) for _ in range(100)]
        completed = subprocess.run(
            reachscan_scan(
                "--format",
                "jsonl",
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
            ),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert completed.returncode == 4, completed.stderr
    assert "--max-time" in completed.stderr and "Traceback" not in completed.stderr
    states = {
        (record["state"], record["reason"])
        for record in parse_records(completed.stdout)  # ends with the partial-run marker
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
        with scan_with_two_workers(
            "-t",
            "127.81.5.2:T:20000-20999",  # refused at once: finished before the kill
            "-t",
            f"127.81.5.1:U:{','.join(map(str, silent))}",  # silent: still waiting
            "--timeout",
            "20",
            "--min-timeout",
            "20",
            "--format",
            "jsonl",
            "-o",
            str(output),
        ) as (process, workers):
            busy = [pid for pid in workers if not is_zombie(pid)]
            assert busy, "the worker with the silent ports is still waiting"
            for pid in busy:
                os.kill(pid, signal.SIGKILL)
            status = process.wait(timeout=10)
            stderr = read_stderr(process)
    assert status == 5, stderr
    assert "a scan worker exited early" in stderr
    assert "Traceback" not in stderr
    records = parse_records(output.read_text())  # the partial-run marker left out
    refused = [record for record in records if record["state"] == "refused"]
    assert len(refused) == 1000, "every refusal finished before the kill is written"
    assert all(record["address"] == "127.81.5.2" for record in records)
    assert_ended(workers)


def test_workers_of_a_parent_killed_outright_stop_at_once(tmp_path: Path) -> None:
    """SIGKILL leaves the parent no chance to clean up: its workers see their input end
    before their work is done and stop, rather than wait out their probes' 20 s timeouts."""
    with LoopbackServices() as services:
        ports = ",".join(str(services.udp("127.81.6.1", answer=False)) for _ in range(50))
        with scan_with_two_workers(
            "-t",
            f"127.81.6.1:U:{ports}",
            "-t",
            f"127.81.6.2:U:{ports}",
            "--timeout",
            "20",
            "--min-timeout",
            "20",
            "-o",
            str(tmp_path / "out.jsonl"),
        ) as (process, workers):
            process.kill()
            process.wait(timeout=10)
        assert_ended(workers, within=5.0)


@contextlib.contextmanager
def scan_with_two_workers(*arguments: str) -> Iterator[tuple[subprocess.Popen[bytes], list[int]]]:
    """A scan with `--workers 2`, given two seconds to get going; killed on the way out."""
    process = subprocess.Popen(
        reachscan_scan("--workers", "2", *arguments),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(2.0)
        workers = children_of(process.pid)
        assert len(workers) == 2, "two worker processes were started"
        yield process, workers
    finally:
        process.kill()
        process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()


def read_stderr(process: subprocess.Popen[bytes]) -> str:
    assert process.stderr is not None
    return process.stderr.read().decode()


def assert_ended(workers: list[int], within: float = 0.5) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and not all(map(is_zombie, workers)):
        time.sleep(0.05)
    running = [pid for pid in workers if not is_zombie(pid)]
    assert not running, f"workers {running} still running {within} s later"


def children_of(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def is_zombie(pid: int) -> bool:
    try:
        return "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return True  # reaped already
