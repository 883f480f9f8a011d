"""A subnet on one link, for real: live hosts that answer at once, one that drops
everything, one whose every port drops its first SYN (only the retry is answered: a host
slower than its neighbours), and addresses nobody holds (no ARP answer). With the defaults
the silent hosts get their path's short first wait (scanner/engine/engine.py), yet the
slow host is still heard on its retry, and the absent ones are `host-unreach`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.cli import parse_records
from tests.support.netns import SAFE_NAMESERVER, Topology, require_netns

pytestmark = pytest.mark.netns

PORTS = (22, 80, 443)
LIVE = tuple(range(10, 30))  # host numbers: answering (port 80 listening on each)
DROPPING = 40
FIRST_SYN_LOST = 41
ABSENT = (50, 51, 52)


@dataclass(frozen=True)
class Lab:
    topology: Topology
    scanner: str
    prefix: str  # a.b.c


FIRST_SYN_OF_EACH_PORT = (
    "ip daddr {address} tcp flags & (syn | ack) == syn"
    " ip daddr . tcp dport != @seen add @seen {{ ip daddr . tcp dport }} drop"
)
"""The first SYN to each port of the address is dropped, the rest pass: only a retry is
answered, as from a host slower than the path's estimate."""


def rules(prefix: str) -> str:
    return f"""
table inet subnet {{
    set seen {{
        type ipv4_addr . inet_service
        flags dynamic
    }}
    chain input {{
        type filter hook input priority 0; policy accept;
        ip daddr {prefix}.{DROPPING} drop
        {FIRST_SYN_OF_EACH_PORT.format(address=f"{prefix}.{FIRST_SYN_LOST}")}
    }}
}}
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    reason = require_netns()
    if reason is not None:
        pytest.skip(reason)
    with Topology() as topology:
        scanner = topology.add_namespace("scan")
        hosts = topology.add_namespace("hosts")
        segment = topology.add_segment([scanner, hosts])
        prefix = str(segment.ipv4_prefix.network_address).rsplit(".", 1)[0]
        interface = next(a.interface for a in segment.attachments if a.namespace == hosts)
        for number in (*LIVE, DROPPING, FIRST_SYN_LOST):
            topology.exec_in(
                hosts, ["ip", "addr", "add", f"{prefix}.{number}/32", "dev", interface]
            )
        topology.load_nft(hosts, rules(prefix))
        topology.start_listener(
            hosts, tcp=[f"{prefix}.{number}:80" for number in (*LIVE, FIRST_SYN_LOST)]
        )
        topology.wait_reachable(scanner, f"{prefix}.{LIVE[0]}", port=9)
        yield Lab(topology, scanner, prefix)


def test_silent_hosts_wait_as_their_path_shows_and_no_verdict_is_wrong(lab: Lab) -> None:
    numbers = (*LIVE, DROPPING, FIRST_SYN_LOST, *ABSENT)
    targets = [arg for n in numbers for arg in ("-t", f"{lab.prefix}.{n}:22,80,443")]
    completed = subprocess.run(
        [
            "ip", "netns", "exec", lab.scanner, sys.executable, "-m", "scanner", "scan",
            *targets, "--no-diagnose", "--no-history", "--format", "jsonl", "-o", "-",
            "--hosts-file", str(lab.topology.empty_hosts_file), "--nameserver", SAFE_NAMESERVER,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    found = {
        (int(str(r["address"]).rsplit(".", 1)[1]), r["port"]): (r["state"], r["reason"])
        for r in parse_records(completed.stdout)
    }
    expected = {}
    for port in PORTS:
        for number in LIVE:
            expected[(number, port)] = (
                ("open", "syn-ack") if port == 80 else ("refused", "conn-refused")
            )
        expected[(DROPPING, port)] = ("filtered", "no-response")
        expected[(FIRST_SYN_LOST, port)] = (
            ("open", "syn-ack") if port == 80 else ("refused", "conn-refused")
        )
        for number in ABSENT:
            expected[(number, port)] = ("filtered", "host-unreach")
    assert found == expected
