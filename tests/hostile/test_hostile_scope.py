"""The scope guard: what may be probed at all, proven by counting what reaches listeners.

A typo turns a fleet check into a sweep of a /8. reachscan counts the inventory by
arithmetic before it sends anything and refuses one past `--max-endpoints`; `--exclude`
and `--exclude-file` remove networks nobody may probe; multicast and broadcast addresses
are left out unless `--include-special`. Each test puts a counting listener where a probe
would land if the guard failed, and asserts the count.

Guards that, if broken, would send probes off this machine (`10.0.0.0/8`, `224.0.0.1`)
run inside a private network namespace with only loopback, so even a failing guard harms
nothing.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostile.hostile_support import (
    IN_PRIVATE_NETNS,
    REPO_ROOT,
    Reachscan,
    history_runs,
    needs_private_netns,
    no_traceback,
    verdicts,
)
from tests.support.fixtures import HostsFileFactory
from tests.support.listeners import LoopbackServices, free_port

pytestmark = pytest.mark.hostile

OPEN_TCP = ("open", "syn-ack")
REFUSED_TCP = ("refused", "conn-refused")
EXCLUDED = ("excluded", "exclude-list")
SPECIAL = ("excluded", "special-address")


def test_a_spec_of_a_trillion_endpoints_is_refused_before_any_probe(
    reachscan: Reachscan, services: LoopbackServices
) -> None:
    """127.0.0.0/8:1-65535 is 2^24 x 65,535 = 1.1 x 10^12 endpoints, all on loopback (so a
    broken guard would still send nothing off this machine). A listener given as a second,
    harmless spec must never see a connect: the guard runs before the first probe."""
    port = services.tcp("127.77.40.1")

    run = reachscan.run("-t", "127.0.0.0/8:1-65535", "-t", f"127.77.40.1:{port}", timeout=30)

    assert run.returncode == 2, run.stderr
    no_traceback(run.stderr)
    assert run.stdout == ""
    assert "1.1 × 10¹² endpoints" in run.stderr
    assert "127.0.0.0/8:1-65535" in run.stderr  # the entry that makes it too big is named
    assert "--max-endpoints" in run.stderr
    assert services.accepted("127.77.40.1", port) == 0


@needs_private_netns
def test_a_typo_sweeping_ten_slash_eight_is_refused_before_any_probe(
    reachscan: Reachscan,
) -> None:
    """The documented example, `10.0.0.0/8:1-65535`, in a namespace where nothing leaves."""
    run = reachscan.run(
        "-t", "10.0.0.0/8:1-65535", "-t", "127.0.0.1:9", prefix=IN_PRIVATE_NETNS, timeout=30
    )

    assert run.returncode == 2, run.stderr
    assert run.stdout == ""
    assert "1.1 × 10¹² endpoints" in run.stderr
    assert "10.0.0.0/8:1-65535" in run.stderr


def test_raising_max_endpoints_lets_a_larger_inventory_through(
    reachscan: Reachscan, services: LoopbackServices
) -> None:
    addresses = [f"127.77.41.{index}" for index in range(1, 5)]
    port = free_port("tcp", *addresses)
    for address in addresses:
        services.tcp(address, port)
    spec = f"127.77.41.1-4:{port}-{port + 29}"  # 4 x 30 = 120 endpoints

    refused = reachscan.run("-t", spec, "--max-endpoints", "119")

    assert refused.returncode == 2
    assert "120 endpoints, more than --max-endpoints 119" in refused.stderr
    assert all(services.accepted(address, port) == 0 for address in addresses)

    allowed = reachscan.run("-t", spec, "--max-endpoints", "120")

    assert allowed.returncode == 0, allowed.stderr
    found = verdicts(allowed.records)
    assert len(found) == 120
    assert {found[(address, port, "tcp")] for address in addresses} == {OPEN_TCP}
    assert all(services.accepted(address, port) == 1 for address in addresses)


def test_exclude_and_exclude_file_addresses_get_no_probe(
    reachscan: Reachscan, services: LoopbackServices, tmp_path: Path
) -> None:
    addresses = [f"127.77.42.{index}" for index in range(1, 5)]
    port = free_port("tcp", *addresses)
    for address in addresses:
        services.tcp(address, port)
    exclude_file = tmp_path / "exclude.txt"
    exclude_file.write_text(
        "# masscan format\n127.77.42.3/32  # nobody may probe this\n[::1], 10.0.0.0/8\n"
    )

    run = reachscan.run(
        "-t",
        f"127.77.42.1-4:{port}",
        "--exclude",
        "127.77.42.2",
        "--exclude",
        "192.0.2.0/24,127.77.42.4/32",
        "--exclude-file",
        str(exclude_file),
    )

    assert run.returncode == 0, run.stderr  # -t sweeps expect nothing: excluded is fine
    assert verdicts(run.records) == {
        ("127.77.42.1", port, "tcp"): OPEN_TCP,
        **{(address, port, "tcp"): EXCLUDED for address in addresses[1:]},
    }
    assert services.accepted("127.77.42.1", port) == 1
    assert [services.accepted(address, port) for address in addresses[1:]] == [0, 0, 0]
    assert "3 endpoint addresses not probed" in run.stderr


def test_an_unreadable_exclusion_is_a_usage_error_before_any_probe(
    reachscan: Reachscan, services: LoopbackServices, tmp_path: Path
) -> None:
    """An exclusion that cannot be read must stop the run: scanning without it would probe
    exactly what someone said must not be probed."""
    port = services.tcp("127.77.42.9")
    bad_file = tmp_path / "exclude.txt"
    bad_file.write_text("127.77.42.0/33\n")

    for exclusion in (
        ["--exclude", "127.77.42.9/"],
        ["--exclude-file", str(bad_file)],
        ["--exclude-file", str(tmp_path / "missing.txt")],
    ):
        run = reachscan.run("-t", f"127.77.42.9:{port}", *exclusion)

        assert run.returncode == 2, (exclusion, run.stderr)
        no_traceback(run.stderr)
        assert run.stdout == ""
    assert services.accepted("127.77.42.9", port) == 0


def test_the_broadcast_address_of_a_block_is_left_out_unless_asked_for(
    reachscan: Reachscan, services: LoopbackServices
) -> None:
    """127.77.43.0/30: .3 is its broadcast address. Loopback delivers it like any other
    address, so a listener there shows whether a probe was sent."""
    addresses = ["127.77.43.1", "127.77.43.3"]
    port = free_port("tcp", *addresses)
    for address in addresses:
        services.tcp(address, port)

    default = reachscan.run("-t", f"127.77.43.0/30:{port}")

    assert default.returncode == 0, default.stderr
    found = verdicts(default.records)
    assert set(found) == {(f"127.77.43.{host}", port, "tcp") for host in (0, 1, 2, 3)}
    assert found[("127.77.43.3", port, "tcp")] == SPECIAL
    assert all(record["ok"] for record in default.records)
    assert services.accepted("127.77.43.3", port) == 0
    assert "1 endpoint addresses not probed" in default.stderr

    special = reachscan.run("-t", f"127.77.43.0/30:{port}", "--include-special")

    assert special.returncode == 0, special.stderr
    assert verdicts(special.records)[("127.77.43.3", port, "tcp")] == OPEN_TCP
    assert services.accepted("127.77.43.3", port) == 1


@needs_private_netns
def test_multicast_is_left_out_unless_asked_for(reachscan: Reachscan) -> None:
    """224.0.0.1 (all hosts) in a namespace with only loopback: left out by default; with
    --include-special the probe is made (and fails locally: there is no route)."""
    default = reachscan.run("-t", "224.0.0.1:80", "-t", "127.0.0.1:9", prefix=IN_PRIVATE_NETNS)

    assert default.returncode == 0, default.stderr
    found = verdicts(default.records)
    assert set(found) == {("127.0.0.1", 9, "tcp"), ("224.0.0.1", 80, "tcp")}
    assert found[("224.0.0.1", 80, "tcp")] == SPECIAL
    assert "1 endpoint addresses not probed" in default.stderr

    special = reachscan.run(
        "-t",
        "224.0.0.1:80",
        "-t",
        "127.0.0.1:9",
        "--include-special",
        "--timeout",
        "0.5",
        "--retries",
        "0",
        prefix=IN_PRIVATE_NETNS,
    )

    assert set(verdicts(special.records)) == {("127.0.0.1", 9, "tcp"), ("224.0.0.1", 80, "tcp")}
    assert "not probed" not in special.stderr


# --- IPv4-mapped IPv6 addresses are the IPv4 addresses they map -----------------------------


def test_an_ipv4_mapped_literal_block_and_name_obey_an_ipv4_exclusion(
    reachscan: Reachscan, services: LoopbackServices, hosts_file: HostsFileFactory
) -> None:
    """`::ffff:127.77.46.5` leaves as IPv4 to 127.77.46.5: `--exclude 127.77.46.0/24`
    must stop it, written as a literal, inside a block, or as a name the hosts file maps
    to it. The control run without the exclusion shows the probe would arrive, and the
    address is shown with its IPv4 half dotted."""
    addresses = [f"127.77.46.{host}" for host in (5, 6)]
    port = free_port("tcp", *addresses)
    for address in addresses:
        services.tcp(address, port)
    mapped = reachscan.with_hosts(hosts_file({"mapped.test": ["::ffff:127.77.46.6"]}))
    specs = ["-t", f"[::ffff:127.77.46.5]:{port}", "-t", f"[::ffff:127.77.46.8/126]:{port}"]
    specs += ["-t", f"mapped.test:{port}"]

    excluded = mapped.run(*specs, "--exclude", "127.77.46.0/24")

    assert excluded.returncode == 0, excluded.stderr
    no_traceback(excluded.stderr)
    found = verdicts(excluded.records)
    assert set(found) == {
        (f"::ffff:127.77.46.{host}", port, "tcp") for host in (5, 6, 8, 9, 10, 11)
    }
    assert set(found.values()) == {EXCLUDED}
    assert [services.accepted(address, port) for address in addresses] == [0, 0]

    control = mapped.run("-t", f"[::ffff:127.77.46.5]:{port}", "-t", f"mapped.test:{port}")

    assert control.returncode == 0, control.stderr
    assert verdicts(control.records) == {
        ("::ffff:127.77.46.5", port, "tcp"): OPEN_TCP,
        ("::ffff:127.77.46.6", port, "tcp"): OPEN_TCP,
    }
    assert [services.accepted(address, port) for address in addresses] == [1, 1]


@needs_private_netns
def test_ipv4_mapped_broadcast_and_multicast_are_special(reachscan: Reachscan) -> None:
    """`[::ffff:255.255.255.255]` and `[::ffff:224.0.0.1]` are the limited broadcast and
    all-hosts multicast: never attempted without --include-special (in a namespace with
    only loopback, so a broken guard sends nothing anywhere)."""
    run = reachscan.run(
        "-t",
        "[::ffff:255.255.255.255]:80",
        "-t",
        "[::ffff:224.0.0.1]:80",
        "-t",
        "127.0.0.1:9",
        prefix=IN_PRIVATE_NETNS,
    )

    assert run.returncode == 0, run.stderr
    assert verdicts(run.records) == {
        ("::ffff:255.255.255.255", 80, "tcp"): SPECIAL,
        ("::ffff:224.0.0.1", 80, "tcp"): SPECIAL,
        ("127.0.0.1", 9, "tcp"): REFUSED_TCP,
    }
    assert all(record["rtt_ms"] is None for record in run.records[:2])


# --- excluded endpoints are results, judged against what the inventory expects -------------


def test_an_expected_open_endpoint_that_is_excluded_fails_in_every_output(
    reachscan: Reachscan,
    services: LoopbackServices,
    hosts_file: HostsFileFactory,
    tmp_path: Path,
) -> None:
    """An inventory says `web.test` must be open; its address is in --exclude. Nothing
    is probed, and the run is not a success: exit 1, the record `excluded` and not ok,
    `reachscan_failed_endpoints 1`, the history stores the state, and the history
    commands read it back."""
    port = services.tcp("127.77.47.1")
    inventory = tmp_path / "fleet.txt"
    inventory.write_text(f"web.test:{port}\n")
    named = reachscan.with_hosts(hosts_file({"web.test": ["127.77.47.1"]}))
    database = tmp_path / "history.sqlite"
    prom = tmp_path / "r.prom"
    xml = tmp_path / "r.xml"

    run = named.run(
        str(inventory),
        "--exclude",
        "127.77.47.0/24",
        "--db",
        str(database),
        "--format",
        "jsonl",
        "--format",
        "prom",
        "-o",
        str(prom),
        "--format",
        "nmap-xml",
        "-o",
        str(xml),
    )

    assert run.returncode == 1, run.stderr
    no_traceback(run.stderr)
    assert [(r["address"], r["state"], r["reason"], r["ok"]) for r in run.records] == [
        ("127.77.47.1", "excluded", "exclude-list", False)
    ]
    assert services.accepted("127.77.47.1", port) == 0
    metrics = prom.read_text()
    assert re.search(r'^reachscan_failed_endpoints\{vantage="[^"]*"\} 1\.0$', metrics, re.M)
    assert re.search(
        r'^reachscan_endpoints\{state="excluded",vantage="[^"]*"\} 1\.0$', metrics, re.M
    )
    assert "reachscan_last_success_timestamp_seconds" not in metrics
    assert "not listed: excluded" in xml.read_text()
    assert history_runs(database) == [(1, "complete", 1)]
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        stored = connection.execute("SELECT state, reason, ok FROM results").fetchall()
    connection.close()
    assert stored == [("excluded", "exclude-list", 0)]
    shown = subprocess.run(
        [sys.executable, "-m", "scanner", "history", "--db", str(database), f"web.test:{port}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO_ROOT,
    )
    assert shown.returncode == 0, shown.stderr
    no_traceback(shown.stderr)
    assert "excluded" in shown.stdout


def test_an_excluded_endpoint_expecting_any_is_ok(
    reachscan: Reachscan, services: LoopbackServices
) -> None:
    port = services.tcp("127.77.47.2")

    run = reachscan.run("-t", f"127.77.47.2:{port}", "--expect", "any", "--exclude", "127.77.47.2")

    assert run.returncode == 0, run.stderr
    assert [(r["state"], r["ok"]) for r in run.records] == [("excluded", True)]
    assert services.accepted("127.77.47.2", port) == 0
