"""The monitoring formats end to end: `reachscan scan` as a subprocess on loopback only.

nmap-xml is checked against the real thing: nmap's own connect scan of the same two ports
of 127.0.0.1 (nothing else is ever probed), both read by python-libnmap, must agree on the
host, the ports and their states and reasons. No DNS is asked: the targets are literals,
the hosts file is empty and the nameserver is the discard port of loopback.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from libnmap.objects import NmapReport
from libnmap.parser import NmapParser
from prometheus_client.parser import text_string_to_metric_families

from tests.support.listeners import LoopbackServices, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
ADDRESS = "127.0.0.1"


@pytest.fixture
def ports() -> Iterator[tuple[int, int]]:
    """(closed, open) on 127.0.0.1, with a listener that accepts on the open one."""
    with LoopbackServices() as services:
        listening = services.tcp(ADDRESS)
        yield free_port("tcp", ADDRESS), listening


def reachscan(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    empty_hosts = tmp_path / "hosts"
    empty_hosts.write_text("", encoding="utf-8")
    return subprocess.run(
        [
            sys.executable, "-m", "scanner", "scan",
            "--hosts-file", str(empty_hosts), "--nameserver", "127.0.0.1:9",
            "--no-progress", *args,
        ],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL,
        check=False,
    )  # fmt: skip


def libnmap_view(report: NmapReport) -> dict[str, object]:
    """What a consumer of either file sees: hosts, their status, ports, states, reasons."""
    return {
        host.address: (
            host.status,
            sorted((s.port, s.protocol, s.state, s.reason) for s in host.services),
        )
        for host in report.hosts
    }


def test_nmap_xml_reads_like_nmaps_own_connect_scan(tmp_path: Path, ports: tuple[int, int]) -> None:
    closed, listening = ports
    ours = tmp_path / "reachscan.xml"

    run = reachscan(
        tmp_path, "-t", f"{ADDRESS}:{closed},{listening}", "--format", "nmap-xml", "-o", str(ours)
    )

    assert run.returncode == 0, run.stderr
    report = NmapParser.parse_fromfile(str(ours))
    assert libnmap_view(report) == {
        ADDRESS: (
            "up",
            sorted([(closed, "tcp", "closed", "conn-refused"),
                    (listening, "tcp", "open", "syn-ack")]),
        )
    }  # fmt: skip
    assert report.hosts_total == 1
    assert report.is_consistent()

    nmap = shutil.which("nmap")
    if nmap is None:
        pytest.skip("nmap is not installed; compared with libnmap alone")
    theirs = tmp_path / "nmap.xml"
    subprocess.run(
        [nmap, "-sT", "-n", "-p", f"{closed},{listening}", ADDRESS, "-oX", str(theirs)],
        capture_output=True, timeout=60, check=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    nmap_report = NmapParser.parse_fromfile(str(theirs))
    assert libnmap_view(nmap_report) == libnmap_view(report)
    assert (nmap_report.hosts_up, nmap_report.hosts_total) == (report.hosts_up, 1)
    assert nmap_report.scan_type == report.scan_type == "connect"


def test_prom_file_from_the_command_line(tmp_path: Path, ports: tuple[int, int]) -> None:
    closed, listening = ports
    path = tmp_path / "reachscan.prom"

    run = reachscan(
        tmp_path,
        "-t",
        f"{ADDRESS}:{closed},{listening}",
        "--format",
        "prom",
        "-o",
        str(path),
        "--vantage",
        "site-a",
    )

    assert run.returncode == 0, run.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name != "hosts"] == ["reachscan.prom"]
    values = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(path.read_text(encoding="utf-8"))
        for sample in family.samples
    }

    def endpoint(port: int) -> tuple[tuple[str, str], ...]:
        return (
            ("address", ADDRESS),
            ("host", ADDRESS),
            ("port", str(port)),
            ("proto", "tcp"),
            ("vantage", "site-a"),
        )

    assert values[("reachscan_endpoint_up", endpoint(listening))] == 1
    assert values[("reachscan_endpoint_up", endpoint(closed))] == 0
    assert values[("reachscan_probe_success", endpoint(closed))] == 1  # a sweep expects nothing
    assert values[("reachscan_endpoints", (("state", "refused"), ("vantage", "site-a")))] == 1
    assert values[("reachscan_run_interrupted", (("vantage", "site-a"),))] == 0
    assert ("reachscan_last_success_timestamp_seconds", (("vantage", "site-a"),)) in values


def test_nagios_line_from_the_command_line(tmp_path: Path, ports: tuple[int, int]) -> None:
    closed, listening = ports

    run = reachscan(
        tmp_path, "-t", f"{ADDRESS}:{closed},{listening}", "--expect", "open",
        "--format", "nagios", "-o", "-",
    )  # fmt: skip

    assert run.stdout.startswith(
        f"REACHSCAN CRITICAL - 1/2 endpoints not as expected: {ADDRESS}:{closed}/tcp refused"
    ), run.stdout
    assert run.stdout.count("\n") == 1
    assert "'ok'=1;;;0;2 'failed'=1;;0;0;2 'open'=1;;;0; 'refused'=1;;;0;" in run.stdout
