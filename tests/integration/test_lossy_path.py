"""A lossy path, for real: a namespace host whose input drops every fifth SYN (nftables
`numgen inc`, a fixed pattern rather than chance, so every run loses the same share),
1,000 ports (50 listening, the rest answering with resets). With the defaults the scan
measures the loss and retries the silent ports as it asks (scanner/core/loss.py): no
port is called filtered, the loss is reported; a real DROP on another port stays
filtered."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import parse_records
from tests.support.netns import SAFE_NAMESERVER, Topology, require_netns

pytestmark = pytest.mark.netns

FIRST, LAST = 20000, 20999
LISTENING = range(FIRST, LAST + 1, 20)  # 50 open ports
DROPPED = 21000  # a real DROP: silent however often it is asked

TARGET_RULES = f"""
table inet lossy {{
    chain input {{
        type filter hook input priority 0; policy accept;
        tcp dport {DROPPED} drop
        tcp dport {FIRST}-{LAST} tcp flags & (syn | ack) == syn numgen inc mod 5 == 0 drop
    }}
}}
"""


@dataclass(frozen=True)
class Lab:
    topology: Topology
    scanner: str
    target_address: str


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    reason = require_netns()
    if reason is not None:
        pytest.skip(reason)
    with Topology() as topology:
        scanner = topology.add_namespace("scan")
        target = topology.add_namespace("tgt")
        segment = topology.add_segment([scanner, target])
        address = segment.address(target, 4)
        topology.start_listener(target, tcp=[f"{address}:{port}" for port in LISTENING])
        topology.wait_reachable(scanner, address, port=9)
        topology.load_nft(target, TARGET_RULES)
        yield Lab(topology, scanner, address)


def table_of(lab: Lab) -> Path:
    """Where the scans write their table (the topology's scratch folder)."""
    return lab.topology.empty_hosts_file.with_name("table.txt")


def scan(
    lab: Lab, *options: str
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, object]]]:
    completed = subprocess.run(
        [
            "ip", "netns", "exec", lab.scanner, sys.executable, "-m", "scanner", "scan",
            "-t", f"{lab.target_address}:{FIRST}-{DROPPED}", "--no-diagnose", "--no-history",
            "--hosts-file", str(lab.topology.empty_hosts_file), "--nameserver", SAFE_NAMESERVER,
            "--format", "jsonl", "-o", "-", "--format", "table", "-o", str(table_of(lab)),
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert "Traceback" not in completed.stderr, completed.stderr
    return completed, parse_records(completed.stdout)


def test_a_lossy_path_gets_the_retries_it_needs_and_says_what_it_lost(lab: Lab) -> None:
    completed, records = scan(lab)
    assert completed.returncode == 0, completed.stderr
    states = {int(str(r["port"])): r["state"] for r in records}
    wrong = {
        port: state
        for port, state in states.items()
        if port != DROPPED and state != ("open" if port in LISTENING else "refused")
    }
    assert wrong == {}
    assert states[DROPPED] == "filtered"
    tries = [int(str(r["attempts"])) for r in records if r["port"] != DROPPED]
    assert max(tries) > 3, "some ports needed more than today's three tries"
    table = table_of(lab).read_text()
    assert f"Lossy path: the path to {lab.target_address} lost ~" in table


def test_retries_given_explicitly_are_the_cap(lab: Lab) -> None:
    _completed, records = scan(lab, "--retries", "0")
    assert all(r["attempts"] == 1 for r in records)
    filtered = [r for r in records if r["state"] == "filtered" and r["port"] != DROPPED]
    assert filtered, "with no retry, lost SYNs are silent ports"
