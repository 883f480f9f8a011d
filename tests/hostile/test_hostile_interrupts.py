"""Interrupts lose nothing: SIGINT or SIGTERM mid-scan, with every kind of output open.

A real `reachscan` scans 3,000 loopback endpoints: 2,500 closed TCP ports (answered at
once) and 500 bound-but-silent UDP ports on another address (each probe waits 5 s, and
again on its retry), writing JSONL and Prometheus files and the history database. Interrupted once
every TCP answer is written, with the 500 silent probes in flight, it must stop at once
(none of them is waited for, so none is reported) and exit 130, and every output must
agree on what was finished: JSONL lines whole and valid, the history
holding the run as `interrupted` with exactly as many results as the JSONL file, the
.prom file parseable and marked `reachscan_run_interrupted 1`. A second Ctrl-C exits at
once, and even then no file at an output path is ever half-written.

(test_loopback_scan.py's signal test covers the JSONL file alone; this is the set.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scanner.history.records import RunStatus
from scanner.history.store import HistoryStore
from scanner.history.writer import WRITER_FROM
from scanner.run.preflight import choose_workers
from tests.hostile.hostile_support import (
    Reachscan,
    history_runs,
    no_traceback,
    parse_records,
    verdicts,
    wait_for,
)
from tests.support.listeners import LoopbackServices
from tests.support.proc_net import bound_sockets, ports_reaching

pytestmark = pytest.mark.hostile

ADDRESS = "127.77.50.1"
SILENT_ADDRESS = "127.77.50.2"
SILENT_UDP = ("open|filtered", "no-response")
REFUSED_TCP = ("refused", "conn-refused")


@dataclass(frozen=True, slots=True)
class Outputs:
    directory: Path
    jsonl: Path
    prom: Path
    database: Path

    @classmethod
    def under(cls, tmp_path: Path) -> Outputs:
        """JSON Lines and prom files in a directory of their own, the history beside it."""
        directory = tmp_path / "out"
        directory.mkdir()
        return cls(
            directory,
            directory / "run.jsonl",
            directory / "m.prom",
            tmp_path / "history" / "history.sqlite",
        )

    def arguments(self) -> list[str]:
        return [
            "--format",
            "jsonl",
            "-o",
            str(self.jsonl),
            "--format",
            "prom",
            "-o",
            str(self.prom),
            "--db",
            str(self.database),
        ]


@pytest.fixture
def outputs(tmp_path: Path) -> Outputs:
    return Outputs.under(tmp_path)


def closed_tcp_block(size: int) -> range:
    """`size` consecutive ports below the ephemeral range with nothing bound on ADDRESS."""
    taken = ports_reaching(ADDRESS, bound_sockets("tcp"), dual_stack=True)
    start = 20_000
    while start + size <= 32_768:
        clash = [port for port in range(start, start + size) if port in taken]
        if not clash:
            return range(start, start + size)
        start = max(clash) + 1
    pytest.skip(f"no {size} unbound TCP ports below 32768 on {ADDRESS}")


SILENT_PORTS = 500

CLOSED_PORTS = [2_500, 6_000]
"""A scan small enough to write its history itself, and one big enough for the history
writer process (scanner/history/writer.py) and the scan workers."""

CLOSED_PORTS_IDS = ["history-in-process", "history-writer"]


def scan_arguments(services: LoopbackServices, closed_ports: int) -> tuple[list[str], range]:
    """The silent ports sit on an address of their own that never answers, and
    --min-timeout equals --timeout, so no learned round trip can shorten their wait:
    they are certainly in flight when the signal comes."""
    silent = [services.udp(SILENT_ADDRESS, answer=False) for _ in range(SILENT_PORTS)]
    closed = closed_tcp_block(closed_ports)
    return [
        "-t",
        f"{ADDRESS}:T:{closed.start}-{closed.stop - 1}",
        "-t",
        f"{SILENT_ADDRESS}:U:{','.join(map(str, silent))}",
        "--timeout",
        "5",
        "--min-timeout",
        "5",
    ], closed


def prom_samples(path: Path) -> dict[str, float]:
    """The run-wide samples of a .prom file (labelled with the vantage only), parsed by
    prometheus_client's own parser."""
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            if set(sample.labels) <= {"vantage"}:
                samples[sample.name] = sample.value
    return samples


@dataclass(frozen=True, slots=True)
class Stopped:
    returncode: int
    stderr: str
    children: int  # processes the scan had forked (workers, history writer) when signalled


def interrupt(
    process: subprocess.Popen[bytes],
    outputs: Outputs,
    *signals: signal.Signals,
    answered: int,
    to_group: bool = False,
) -> Stopped:
    """Wait until the scan has written `answered` results (the closed ports: the silent
    ones are then certainly in flight, however busy the machine), count its children,
    send the signals 50 ms apart (`to_group`: to its whole process group)."""
    assert process.stderr is not None
    try:
        wait_for(lambda: written_lines(outputs) >= answered, within=60)
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        for index, signal_number in enumerate(signals):
            if index:
                time.sleep(0.05)
            if to_group:
                os.killpg(process.pid, signal_number)
            else:
                process.send_signal(signal_number)
        returncode = process.wait(timeout=60)
    finally:
        process.kill()
        process.wait()
    stderr = process.stderr.read().decode("utf-8", "replace")
    process.stderr.close()
    return Stopped(returncode, stderr, len(children))


def written_lines(outputs: Outputs) -> int:
    """Complete lines in the JSON Lines file the scan is writing (its temporary file)."""
    lines = 0
    for temporary in outputs.directory.glob(".run.jsonl.tmp-*"):
        with contextlib.suppress(FileNotFoundError):
            lines += temporary.read_bytes().count(b"\n")
    return lines


def expected_children(closed_ports: int) -> int:
    """The scan workers `--workers` auto starts here, and the history writer, for a scan
    of `closed_ports` + SILENT_PORTS endpoints (the test is about those processes too)."""
    endpoints = closed_ports + SILENT_PORTS
    workers = choose_workers(None, endpoints)
    return (workers if workers > 1 else 0) + (1 if endpoints >= WRITER_FROM else 0)


INTERRUPTS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT]
"""Ctrl-C, a service manager's stop, a dropped ssh session, Ctrl-\\: the same interrupt."""
INTERRUPT_IDS = ["int", "term", "hup", "quit"]


@pytest.mark.parametrize("closed_ports", CLOSED_PORTS, ids=CLOSED_PORTS_IDS)
@pytest.mark.parametrize("signal_number", INTERRUPTS, ids=INTERRUPT_IDS)
def test_an_interrupted_scan_commits_every_output_and_they_agree(
    reachscan: Reachscan,
    services: LoopbackServices,
    outputs: Outputs,
    signal_number: signal.Signals,
    closed_ports: int,
) -> None:
    arguments, closed = scan_arguments(services, closed_ports)
    # A complete earlier run: its files must be replaced, not merged or left behind.
    earlier = reachscan.run("-t", f"{ADDRESS}:{closed.start}", *outputs.arguments())
    assert earlier.returncode == 0, earlier.stderr
    assert prom_samples(outputs.prom)["reachscan_run_interrupted"] == 0

    process = reachscan.start(*arguments, *outputs.arguments(), stdout=subprocess.DEVNULL)
    stopped = interrupt(process, outputs, signal_number, answered=closed_ports)
    returncode, stderr = stopped.returncode, stopped.stderr
    assert stopped.children == expected_children(closed_ports)

    assert returncode == 130, stderr
    no_traceback(stderr)
    assert f"interrupted by {signal_number.name}" in stderr, stderr
    # Only the committed files are left: no temporary file survives.
    assert sorted(entry.name for entry in outputs.directory.iterdir()) == ["m.prom", "run.jsonl"]

    text = outputs.jsonl.read_text()
    assert text.endswith("\n")
    records = parse_records(text)  # every line whole, valid, with the schema's keys
    found = verdicts(records)
    tcp = {key: verdict for key, verdict in found.items() if key[2] == "tcp"}
    assert tcp == {(ADDRESS, port, "tcp"): REFUSED_TCP for port in closed}
    # The silent probes were in flight: abandoned at once, not waited for and reported.
    assert [key for key in found if key[2] == "udp"] == []

    runs = history_runs(outputs.database)
    assert [(status, count) for _, status, count in runs] == [
        ("complete", 1),
        ("interrupted", len(records)),
    ]

    samples = prom_samples(outputs.prom)
    assert samples["reachscan_run_interrupted"] == 1
    endpoint_counts = [
        sample.value
        for family in text_string_to_metric_families(outputs.prom.read_text())
        for sample in family.samples
        if sample.name == "reachscan_endpoints"
    ]
    assert sum(endpoint_counts) == len(records)


@pytest.mark.parametrize("closed_ports", CLOSED_PORTS, ids=CLOSED_PORTS_IDS)
def test_a_second_ctrl_c_exits_at_once_and_leaves_no_half_written_file(
    reachscan: Reachscan, services: LoopbackServices, outputs: Outputs, closed_ports: int
) -> None:
    arguments, closed = scan_arguments(services, closed_ports)
    earlier = reachscan.run("-t", f"{ADDRESS}:{closed.start}", *outputs.arguments())
    assert earlier.returncode == 0, earlier.stderr
    previous_jsonl = outputs.jsonl.read_bytes()

    process = reachscan.start(*arguments, *outputs.arguments(), stdout=subprocess.DEVNULL)
    stopped = interrupt(process, outputs, signal.SIGINT, signal.SIGINT, answered=closed_ports)
    returncode, stderr = stopped.returncode, stopped.stderr
    assert stopped.children == expected_children(closed_ports)

    assert returncode == 130, stderr
    no_traceback(stderr)
    # Whatever the second Ctrl-C cut short, each path holds a whole file: the previous
    # one, or the new one committed before the exit.
    jsonl = outputs.jsonl.read_bytes()
    if jsonl != previous_jsonl:
        assert jsonl.endswith(b"\n")
        parse_records(jsonl.decode())
    assert "reachscan_run_interrupted" in prom_samples(outputs.prom)
    # The history says what happened: interrupted (not failed), counted as stored.
    with HistoryStore.open(outputs.database) as store:
        latest = store.runs()[0]
        assert latest.status is RunStatus.INTERRUPTED, latest
        assert latest.total == len(store.observations(latest.id))


@pytest.mark.parametrize("closed_ports", CLOSED_PORTS, ids=CLOSED_PORTS_IDS)
@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGHUP], ids=["term", "hup"])
def test_a_stop_sent_to_the_whole_process_group_is_an_interrupt_not_a_failure(
    reachscan: Reachscan,
    services: LoopbackServices,
    outputs: Outputs,
    closed_ports: int,
    signal_number: signal.Signals,
) -> None:
    """A service manager stopping reachscan (systemd's default KillMode), a Ctrl-C on the
    terminal or a dropped ssh session (SIGHUP to the foreground group) signals every
    process of the group, the scan workers and the history writer too: the run still ends
    as interrupted with every finished result written, not as a scanner failure."""
    arguments, _ = scan_arguments(services, closed_ports)
    process = reachscan.start(
        *arguments, *outputs.arguments(), stdout=subprocess.DEVNULL, new_session=True
    )
    stopped = interrupt(process, outputs, signal_number, answered=closed_ports, to_group=True)
    returncode, stderr = stopped.returncode, stopped.stderr
    assert stopped.children == expected_children(closed_ports)

    assert returncode == 130, stderr
    no_traceback(stderr)
    assert "worker" not in stderr and "writer" not in stderr, stderr
    records = parse_records(outputs.jsonl.read_text())
    assert len(records) == closed_ports  # every answer, and no silent probe waited for
    assert [(status, count) for _, status, count in history_runs(outputs.database)] == [
        ("interrupted", len(records))
    ]
