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

from pathlib import Path

import pytest

from tests.hostile.hostile_support import (
    IN_PRIVATE_NETNS,
    Reachscan,
    needs_private_netns,
    no_traceback,
    verdicts,
)
from tests.support.listeners import LoopbackServices, free_port

pytestmark = pytest.mark.hostile

OPEN_TCP = ("open", "syn-ack")
REFUSED_TCP = ("refused", "conn-refused")


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

    assert run.returncode == 0, run.stderr
    assert verdicts(run.records) == {("127.77.42.1", port, "tcp"): OPEN_TCP}
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
    assert set(verdicts(default.records)) == {
        (f"127.77.43.{host}", port, "tcp") for host in (0, 1, 2)
    }
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
    assert set(verdicts(default.records)) == {("127.0.0.1", 9, "tcp")}
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
