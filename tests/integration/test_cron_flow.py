"""The unattended path end to end, as cron would run it, on a loopback fleet.

Two runs of the same quiet command with a service stopped in between must leave: a
history with both runs, a diff showing exactly that change, a `service-down` cause citing
when the endpoint was last open, a `.prom` file Prometheus' own parser accepts with values
matching the run, a Nagios line with the right exit status, and an nmap XML document that
python-libnmap reads as nmap's. Only 127.82.0.0/16 is probed; no DNS is asked.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import yaml
from libnmap.parser import NmapParser
from prometheus_client.parser import text_string_to_metric_families

from tests.support.listeners import LoopbackServices

REPO_ROOT = Path(__file__).resolve().parents[2]
ADDRESS = "127.82.0.1"


def reachscan(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    hosts = tmp_path / "hosts"
    hosts.write_text("", encoding="utf-8")
    command, *rest = args
    return subprocess.run(
        [sys.executable, "-m", "scanner", command, *rest,
         *(["--hosts-file", str(hosts), "--nameserver", "127.0.0.1:9"]
           if command in ("scan", "check") else [])],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def records(path: Path) -> dict[int, dict[str, object]]:
    return {
        int(record["port"]): record for record in map(json.loads, path.read_text().splitlines())
    }


def metric_samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_two_cron_runs_with_a_service_stopped_in_between(tmp_path: Path) -> None:
    database = tmp_path / "state" / "history.sqlite"
    metrics = tmp_path / "textfile" / "reachscan.prom"
    metrics.parent.mkdir()
    inventory = tmp_path / "fleet.yaml"

    def cron(run: str) -> subprocess.CompletedProcess[str]:
        return reachscan(
            tmp_path, "scan", str(inventory), "-q", "--db", str(database),
            "--wait-lock", "0", "--format", "prom", "-o", str(metrics), "--vantage", "cron-host",
            "--format", "jsonl", "-o", str(tmp_path / f"{run}.jsonl"),
        )  # fmt: skip

    with LoopbackServices() as steady:
        kept = steady.tcp(ADDRESS)
        with LoopbackServices() as doomed:
            stopping = doomed.tcp(ADDRESS)
            inventory.write_text(
                yaml.safe_dump(
                    {
                        "hosts": [
                            {"host": ADDRESS, "ports": [kept, stopping], "labels": {"team": "web"}}
                        ]
                    }
                )
            )
            first = cron("first")
        second = cron("second")  # the service on `stopping` is gone now
        check = reachscan(tmp_path, "check", str(inventory))
        xml = tmp_path / "scan.xml"
        nmap_xml = reachscan(
            tmp_path,
            "scan",
            str(inventory),
            "--no-history",
            "--no-diagnose",
            "--format",
            "nmap-xml",
            "-o",
            str(xml),
        )

    # Quiet on success, and only then.
    assert (first.returncode, first.stdout, first.stderr) == (0, "", "")
    assert second.returncode == 1, second.stderr
    assert str(stopping) in second.stdout and "service-down" in second.stdout

    # The history holds both runs, complete.
    with sqlite3.connect(database) as connection:
        statuses = [row[0] for row in connection.execute("SELECT status FROM runs ORDER BY id")]
    assert statuses == ["complete", "complete"]

    # The diff shows exactly that change.
    diff = reachscan(tmp_path, "diff", "--db", str(database), "--format", "json")
    assert diff.returncode == 0, diff.stderr
    changes = json.loads(diff.stdout)["changes"]
    assert [(c["port"], c["before"]["state"], c["after"]["state"]) for c in changes] == [
        (stopping, "open", "refused")
    ]

    # The refusal is explained from history: open in the first run, refused since.
    first_records, second_records = (
        records(tmp_path / "first.jsonl"),
        records(tmp_path / "second.jsonl"),
    )
    cause = second_records[stopping]["cause"]
    assert isinstance(cause, dict) and cause["kind"] == "service-down"
    evidence = cause["evidence"]
    assert isinstance(evidence, dict)
    opened_at = datetime.fromisoformat(str(first_records[stopping]["ts"]).replace("Z", "+00:00"))
    last_open = datetime.fromisoformat(str(evidence["last_open"]).replace("Z", "+00:00"))
    assert abs((last_open - opened_at).total_seconds()) < 2
    assert "first_refused" in evidence
    assert second_records[kept]["state"] == "open" and second_records[kept]["cause"] is None

    # The textfile parses with Prometheus' parser and matches the second run.
    samples = metric_samples(metrics)
    labels = {
        "host": ADDRESS,
        "address": ADDRESS,
        "proto": "tcp",
        "team": "web",
        "vantage": "cron-host",
    }
    for port, success in ((kept, 1.0), (stopping, 0.0)):
        key = tuple(sorted({**labels, "port": str(port)}.items()))
        assert samples[("reachscan_probe_success", key)] == success
    assert samples[("reachscan_endpoints", (("state", "refused"), ("vantage", "cron-host")))] == 1.0
    assert (
        samples[
            ("reachscan_refused_endpoints", (("cause", "service-down"), ("vantage", "cron-host")))
        ]
        == 1.0
    )
    assert samples[("reachscan_run_interrupted", (("vantage", "cron-host"),))] == 0.0
    assert not any(path.name.startswith(".") for path in metrics.parent.iterdir())

    # The Nagios line: one failed endpoint is CRITICAL by default.
    assert check.returncode == 2, check.stderr
    assert check.stdout.startswith("REACHSCAN CRITICAL - 1/2 endpoints not as expected")
    assert "'failed'=1;" in check.stdout and check.stdout.count("\n") == 1

    # nmap XML that python-libnmap reads as nmap's.
    assert nmap_xml.returncode == 1, nmap_xml.stderr
    report = NmapParser.parse_fromfile(str(xml))
    (host,) = report.hosts
    assert host.address == ADDRESS and host.status == "up"
    assert sorted((service.port, service.state) for service in host.services) == sorted(
        [(kept, "open"), (stopping, "closed")]
    )


def test_a_check_that_cannot_scan_is_unknown_with_a_plugin_line(tmp_path: Path) -> None:
    """An inventory with no endpoints stops the scan before the Nagios output runs; its
    exit status 2 must not reach Nagios as CRITICAL without a status line."""
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing here yet\n", encoding="utf-8")
    check = reachscan(tmp_path, "check", str(empty))
    assert check.returncode == 3, check.stderr
    assert check.stdout.startswith("REACHSCAN UNKNOWN - the scan could not run")
    assert check.stdout.count("\n") == 1
    assert "has no endpoints" in check.stderr
