"""A scan spread over two vantage points with Celery: a real redis-server and real
`reachscan worker`s, each inside a network namespace whose path to the same target
differs (the router drops, rejects and resets some ports for one vantage only).

    vantage a --+
                router (redis-server; nftables: rules for b's traffic only) -- target
    vantage b --+

The client runs in the router's namespace too (it reaches Redis on its loopback); every
address is inside namespaces these tests made.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import is_incomplete, parse_records
from tests.support.netns import Topology, require_netns

pytestmark = pytest.mark.netns

OPEN, DROPPED_FOR_B, REJECTED_FOR_B, RESET_FOR_B = 8080, 9000, 9002, 9005
INVENTORY_PORTS = (OPEN, DROPPED_FOR_B, REJECTED_FOR_B, RESET_FOR_B)
REDIS_PORT = 6390
FAST = ("--timeout", "1", "--retries", "0")


@dataclass(frozen=True)
class Sites:
    topology: Topology
    router: str
    vantage_a: str
    vantage_b: str
    target_address: str
    router_towards_b: str
    folder: Path

    def client(self, *arguments: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """`reachscan ARGUMENTS` in the router's namespace, the broker on its loopback."""
        return subprocess.run(
            ["ip", "netns", "exec", self.router, sys.executable, "-m", "scanner", *arguments],
            cwd=self.folder,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def counter(self, name: str) -> int:
        listed = self.topology.exec_in(
            self.router, ["nft", "list", "counter", "inet", "paths", name]
        )
        match = re.search(r"packets (\d+)", listed.stdout)
        assert match is not None, listed.stdout
        return int(match.group(1))

    def start_worker(
        self, vantage: str, namespace: str, towards_router: str
    ) -> subprocess.Popen[str]:
        return self.topology.start_process(
            namespace,
            [
                sys.executable,
                "-m",
                "scanner",
                "worker",
                "--broker",
                f"redis://{towards_router}:{REDIS_PORT}/0",
                "--vantage",
                vantage,
                "--concurrency",
                "2",
                "--hosts-file",
                str(self.topology.empty_hosts_file),
                "--nameserver",
                "127.0.0.1:9",
            ],
            log=self.folder / f"worker-{vantage}-{time.monotonic_ns()}.log",
        )


ROUTER_RULES = """
table inet paths {{
    counter followups_a {{}}
    counter followups_b {{}}
    chain forward {{
        type filter hook forward priority 0; policy accept;
        ip saddr {a} ip daddr {target} tcp dport != {{ {ports} }} counter name followups_a
        ip saddr {b} ip daddr {target} tcp dport != {{ {ports} }} counter name followups_b
        ip saddr {b} ip daddr {target} tcp dport {dropped} drop
        ip saddr {b} ip daddr {target} tcp dport {rejected} reject with icmpx admin-prohibited
        ip saddr {b} ip daddr {target} tcp dport {reset} reject with tcp reset
    }}
}}
"""


def build(topology: Topology, folder: Path) -> Sites:
    router = topology.add_namespace("rtr", router=True)
    vantage_a = topology.add_namespace("va")
    vantage_b = topology.add_namespace("vb")
    target = topology.add_namespace("tgt")
    path_a = topology.add_segment([router, vantage_a])
    path_b = topology.add_segment([router, vantage_b])
    lan = topology.add_segment([router, target])
    topology.add_route(vantage_a, "default", via=path_a.address(router, 4))
    topology.add_route(vantage_b, "default", via=path_b.address(router, 4))
    topology.add_route(target, "default", via=lan.address(router, 4))
    target_address = lan.address(target, 4)
    topology.load_nft(
        router,
        ROUTER_RULES.format(
            a=path_a.address(vantage_a, 4),
            b=path_b.address(vantage_b, 4),
            target=target_address,
            ports=", ".join(map(str, INVENTORY_PORTS)),
            dropped=DROPPED_FOR_B,
            rejected=REJECTED_FOR_B,
            reset=RESET_FOR_B,
        ),
    )
    topology.start_listener(target, tcp=[f"{target_address}:{port}" for port in INVENTORY_PORTS])
    towards_a, towards_b = path_a.address(router, 4), path_b.address(router, 4)
    topology.start_process(
        router,
        [
            "redis-server",
            "--port",
            str(REDIS_PORT),
            "--bind",
            f"127.0.0.1 {towards_a} {towards_b}",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ],
        log=folder / "redis.log",
    )
    deadline = time.monotonic() + 30
    while "PONG" not in _ping(topology, router):
        assert time.monotonic() < deadline, (folder / "redis.log").read_text()
        time.sleep(0.1)
    (folder / "fleet.txt").write_text(f"{target_address}:{','.join(map(str, INVENTORY_PORTS))}\n")
    sites = Sites(topology, router, vantage_a, vantage_b, target_address, towards_b, folder)
    sites.start_worker("a", vantage_a, towards_a)
    sites.start_worker("b", vantage_b, towards_b)
    return sites


def _ping(topology: Topology, router: str) -> str:
    try:
        return topology.exec_in(router, ["redis-cli", "-p", str(REDIS_PORT), "ping"]).stdout
    except Exception:  # not listening yet
        return ""


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    reason = require_netns()
    if reason is not None:
        pytest.skip(reason)
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    folder = tmp_path_factory.mktemp("distributed")
    folder.chmod(0o755)
    with Topology() as topology:
        yield build(topology, folder)


def scan_spread(sites: Sites, *options: str) -> subprocess.CompletedProcess[str]:
    return sites.client(
        "scan", "fleet.txt", "--broker", f"redis://127.0.0.1:{REDIS_PORT}/0",
        "--vantages", "a,b", "--hosts-file", str(sites.topology.empty_hosts_file),
        "--nameserver", "127.0.0.1:9", *FAST, *options,
    )  # fmt: skip


def test_the_comparison_flags_exactly_the_path_dependent_endpoints(sites: Sites) -> None:
    followups_a, followups_b = sites.counter("followups_a"), sites.counter("followups_b")
    done = scan_spread(
        sites, "--shards", "2", "--format", "json", "-o", "compare.json",
        "--format", "jsonl", "-o", "all.jsonl", "--db", "history.sqlite",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # b sees three ports not open
    assert "Traceback" not in done.stderr
    document = json.loads((sites.folder / "compare.json").read_text())
    assert document["vantages"] == ["a", "b"]
    rows = {row["port"]: row for row in document["endpoints"]}
    assert sorted(rows) == sorted(INVENTORY_PORTS)
    dependent = {port for port, row in rows.items() if row["path-dependent"]}
    assert dependent == {DROPPED_FOR_B, REJECTED_FOR_B, RESET_FOR_B}
    seen = {
        port: {vantage: (s["state"], s["reason"]) for vantage, s in row["vantages"].items()}
        for port, row in rows.items()
    }
    assert seen[OPEN] == {"a": ("open", "syn-ack"), "b": ("open", "syn-ack")}
    assert seen[DROPPED_FOR_B] == {"a": ("open", "syn-ack"), "b": ("filtered", "no-response")}
    assert seen[REJECTED_FOR_B] == {
        "a": ("open", "syn-ack"),
        "b": ("filtered", "admin-prohibited"),
    }
    assert seen[RESET_FOR_B] == {"a": ("open", "syn-ack"), "b": ("refused", "conn-refused")}
    assert rows[REJECTED_FOR_B]["evidence"] == (
        f"open from a, filtered from b (admin-prohibited from {sites.router_towards_b}): "
        "a firewall or a route between b and the target"
    )
    # JSON Lines: every vantage's lines, each saying where it was probed from.
    records = parse_records((sites.folder / "all.jsonl").read_text())
    assert sorted((str(r["vantage"]), int(str(r["port"]))) for r in records) == sorted(
        (vantage, port) for vantage in "ab" for port in INVENTORY_PORTS
    )
    # The refusal only b saw was explained at b: its follow-up probes crossed b's path.
    reset = next(r for r in records if r["vantage"] == "b" and r["port"] == RESET_FOR_B)
    assert reset["cause"] is not None, reset
    assert sites.counter("followups_b") > followups_b
    assert sites.counter("followups_a") == followups_a
    # The history: one run per vantage, each a run like any other.
    with sqlite3.connect(sites.folder / "history.sqlite") as connection:
        runs = connection.execute("SELECT vantage, status, total FROM runs ORDER BY vantage")
        assert runs.fetchall() == [("a", "complete", 4), ("b", "complete", 4)]


def test_check_with_a_quorum_pages_only_when_enough_vantages_agree(sites: Sites) -> None:
    def check(quorum: str) -> subprocess.CompletedProcess[str]:
        return sites.client(
            "check", "fleet.txt", "--broker", f"redis://127.0.0.1:{REDIS_PORT}/0",
            "--vantages", "a,b", "--quorum", quorum,
            "--hosts-file", str(sites.topology.empty_hosts_file), "--nameserver", "127.0.0.1:9",
            *FAST,
        )  # fmt: skip

    one, two = check("1"), check("2")
    assert one.returncode == 2, one.stdout + one.stderr  # CRITICAL: b alone suffices
    assert one.stdout.startswith("REACHSCAN CRITICAL - 3/4 endpoints"), one.stdout
    assert two.returncode == 0, two.stdout + two.stderr  # OK: no endpoint fails from both
    assert two.stdout.startswith("REACHSCAN OK"), two.stdout


def start_spread(sites: Sites, *options: str) -> subprocess.Popen[str]:
    """A distributed scan of the fleet in the background (the router's namespace)."""
    return subprocess.Popen(
        [
            "ip", "netns", "exec", sites.router, sys.executable, "-m", "scanner", "scan",
            "fleet.txt", "--broker", f"redis://127.0.0.1:{REDIS_PORT}/0",
            "--hosts-file", str(sites.topology.empty_hosts_file), "--nameserver", "127.0.0.1:9",
            "--retries", "0", "--no-diagnose", "--no-history", *options,
        ],
        cwd=sites.folder,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def shard_scan_of(vantage: str) -> int:
    """The PID of the `reachscan scan --shard 0/1` process a worker of `vantage` runs,
    once it runs (the test fails after a minute without one)."""
    deadline = time.monotonic() + 60
    while True:
        found = subprocess.run(
            ["pgrep", "-f", f"scanner scan .*--shard 0/1 --vantage {vantage}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if found:
            return int(found[0])
        assert time.monotonic() < deadline, f"{vantage}'s shard never started at a worker"
        time.sleep(0.1)


def test_a_worker_killed_mid_shard_has_its_shard_run_again_and_counted_once(
    sites: Sites,
) -> None:
    """The shard's scan waits on b's dropped port; its Celery process is killed (SIGKILL)
    meanwhile: the shard returns to the queue (late acknowledgement), runs again, and
    every endpoint is in the answer exactly once."""
    client = start_spread(
        sites, "--vantages", "b", "--timeout", "6", "--format", "jsonl", "-o", "killed.jsonl"
    )
    shard_scan = shard_scan_of("b")
    pool_process = int(Path(f"/proc/{shard_scan}/stat").read_text().rsplit(")", 1)[1].split()[1])
    os.kill(pool_process, signal.SIGKILL)
    _, stderr = client.communicate(timeout=120)
    assert client.returncode == 1, stderr  # b sees three ports not open
    records = parse_records((sites.folder / "killed.jsonl").read_text())
    assert sorted(int(str(r["port"])) for r in records) == sorted(INVENTORY_PORTS)


def test_no_worker_for_a_vantage_is_a_clear_error_after_a_bounded_wait(sites: Sites) -> None:
    done = sites.client(
        "scan", "fleet.txt", "--broker", f"redis://127.0.0.1:{REDIS_PORT}/0",
        "--vantages", "a,nowhere", "--wait-workers", "2", "--no-history",
    )  # fmt: skip
    assert done.returncode == 5
    assert done.stderr.strip() == (
        "reachscan: no worker consumes the queue of nowhere (waited 2 s): start "
        "`reachscan worker --broker URL --vantage NAME` at that site"
    )


def test_a_bad_broker_is_one_line_not_a_traceback(sites: Sites) -> None:
    unreachable = sites.client(
        "scan", "fleet.txt", "--broker", "redis://127.0.0.1:1/0", "--vantages", "a",
        "--no-history",
    )  # fmt: skip
    assert unreachable.returncode == 3
    assert unreachable.stderr.startswith("reachscan: cannot reach the broker redis://127.0.0.1:1/0")
    assert len(unreachable.stderr.strip().splitlines()) == 1
    not_redis = sites.client("scan", "fleet.txt", "--broker", "amqp://x", "--vantages", "a")
    assert not_redis.returncode == 2
    assert "not a Redis URL" in not_redis.stderr and "Traceback" not in not_redis.stderr


def test_an_interrupt_while_gathering_writes_what_came_and_revokes_the_rest(
    sites: Sites,
) -> None:
    """SIGTERM while b's shard is still scanning (its dropped port waits 6 s): exit 130 at
    once, the JSON Lines written and marked partial; what a's shard answered is in it."""
    client = start_spread(
        sites, "--vantages", "a,b", "--timeout", "6", "--format", "jsonl", "-o", "interrupted.jsonl"
    )
    shard_scan_of("b")
    deadline = time.monotonic() + 60
    while sum(  # a's shard (all open, answered in milliseconds) is written
        path.read_text().count("\n") for path in sites.folder.glob(".interrupted.jsonl.tmp-*")
    ) < len(INVENTORY_PORTS):
        assert time.monotonic() < deadline, "a's answer never reached the output"
        time.sleep(0.1)
    client.send_signal(signal.SIGTERM)
    _, stderr = client.communicate(timeout=60)
    assert client.returncode == 130, stderr
    assert "interrupted by SIGTERM" in stderr
    text = (sites.folder / "interrupted.jsonl").read_text()
    assert is_incomplete(text)
    assert {(r["vantage"], r["port"]) for r in parse_records(text)} == {
        ("a", port) for port in INVENTORY_PORTS
    }
