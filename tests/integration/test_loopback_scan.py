"""`reachscan scan` end to end, as a subprocess, against real sockets on loopback only.

Every probe goes to 127.0.0.0/8 or ::1 (or into a network namespace a test creates
itself). Names are answered by the tests' own DNS responder and a temporary hosts file,
passed to every run with `--nameserver` and `--hosts-file`: the machine's nameserver is
never asked. This machine runs unrelated services (a listener on 0.0.0.0:2024), so a port
is only called closed after `free_port` or the kernel's own tables say so, and
unusual addresses (127.77.x.y) are preferred where nothing listens.

Each test asserts exact states *and* reasons: "refused" because of an RST is a different
finding from "refused" because of an ICMP port-unreachable.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import dns.flags
import dns.message
import dns.opcode
import dns.rdataclass
import dns.rdatatype
import pytest

from tests.support.cli import RECORD_KEYS, REPO_ROOT, Reachscan, parse_records, verdicts
from tests.support.dns_responder import DnsResponder
from tests.support.fixtures import HostsFileFactory
from tests.support.listeners import LoopbackServices, free_port
from tests.support.proc_net import bound_sockets, ports_reaching

OPEN_TCP = ("open", "syn-ack")
REFUSED_TCP = ("refused", "conn-refused")
OPEN_UDP = ("open", "udp-response")
REFUSED_UDP = ("refused", "port-unreach")
SILENT_UDP = ("open|filtered", "no-response")

IS_ROOT = os.geteuid() == 0

# --- running the command -----------------------------------------------------------------


def no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert "Exception" not in stderr, stderr


def ephemeral_range() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


# --- TCP and UDP states --------------------------------------------------------------------

TCP_ADDRESSES = ["127.77.0.1", "127.77.0.2", "127.77.3.9", "127.0.0.1", "::1"]


def spec(address: str, ports: str) -> str:
    return f"[{address}]:{ports}" if ":" in address else f"{address}:{ports}"


def test_tcp_listeners_are_open_and_free_ports_refused_on_several_addresses(
    reachscan: Reachscan, services: LoopbackServices
) -> None:
    open_port = free_port("tcp", *TCP_ADDRESSES)
    for address in TCP_ADDRESSES:
        services.tcp(address, open_port)
    closed_port = free_port("tcp", *TCP_ADDRESSES)

    run = reachscan.run(
        *(
            arg
            for address in TCP_ADDRESSES
            for arg in ("-t", spec(address, f"{open_port},{closed_port}"))
        )
    )

    assert run.returncode == 0, run.stderr
    expected = {}
    for address in TCP_ADDRESSES:
        expected[(address, open_port, "tcp")] = OPEN_TCP
        expected[(address, closed_port, "tcp")] = REFUSED_TCP
    assert verdicts(run.records) == expected
    assert all(services.accepted(address, open_port) >= 1 for address in TCP_ADDRESSES)
    assert run.stderr == ""


def test_a_listener_on_one_loopback_address_refuses_on_another(
    reachscan: Reachscan, services: LoopbackServices
) -> None:
    """127.77.0.1 and 127.77.0.2 are distinct hosts to the kernel: no wildcard leaks."""
    port = free_port("tcp", "127.77.0.1", "127.77.0.2")
    services.tcp("127.77.0.1", port)

    run = reachscan.run("-t", f"127.77.0.1:{port}", "-t", f"127.77.0.2:{port}")

    assert verdicts(run.records) == {
        ("127.77.0.1", port, "tcp"): OPEN_TCP,
        ("127.77.0.2", port, "tcp"): REFUSED_TCP,
    }


def test_a_listener_that_resets_after_accepting_is_open(
    reachscan: Reachscan, services: LoopbackServices
) -> None:
    """A server shedding load accepts and resets at once. The handshake completed, so the
    port is open, though the scanner may read SO_ERROR = ECONNRESET by then. Whether the
    reset lands first is a race, so probe forty such listeners: every one must be open."""
    addresses = [f"127.77.6.{index}" for index in range(1, 41)]
    port = free_port("tcp", *addresses)
    for address in addresses:
        services.tcp(address, port, reset=True)

    run = reachscan.run(*(arg for address in addresses for arg in ("-t", f"{address}:{port}")))

    assert set(verdicts(run.records).values()) == {OPEN_TCP}


def test_udp_echo_is_open_and_unbound_port_refused_on_ipv4_and_ipv6(
    reachscan: Reachscan, services: LoopbackServices
) -> None:
    addresses = ["127.77.0.1", "::1"]
    echo_port = free_port("udp", *addresses)
    for address in addresses:
        services.udp(address, echo_port)
    closed_port = free_port("udp", *addresses)

    run = reachscan.run(
        *(
            arg
            for address in addresses
            for arg in ("-t", spec(address, f"U:{echo_port},{closed_port}"))
        ),
        "--retries",
        "0",
    )

    assert run.returncode == 0, run.stderr
    assert verdicts(run.records) == {
        ("127.77.0.1", echo_port, "udp"): OPEN_UDP,
        ("127.77.0.1", closed_port, "udp"): REFUSED_UDP,
        ("::1", echo_port, "udp"): OPEN_UDP,
        ("::1", closed_port, "udp"): REFUSED_UDP,
    }
    # A port with no payload file gets one empty datagram.
    assert services.datagrams("127.77.0.1", echo_port) == [b""]
    assert services.datagrams("::1", echo_port) == [b""]


def unbound_block(
    proto: Literal["tcp", "udp"], low: int, high: int, size: int, address: str
) -> range:
    """`size` consecutive ports in [low, high) where nothing of `proto` is bound at `address`.

    Pick blocks below the ephemeral range: other tests' sockets bind port 0, so they cannot
    land in the block while it is scanned.
    """
    taken = ports_reaching(address, bound_sockets(proto), dual_stack=True)
    start = low
    while start + size <= high:
        clash = [port for port in range(start, start + size) if port in taken]
        if not clash:
            return range(start, start + size)
        start = max(clash) + 1
    pytest.skip(f"no {size} unbound {proto} ports in {low}-{high} on {address}")


def test_a_thousand_closed_udp_ports_on_127_0_0_1_are_all_refused_at_the_first_try(
    reachscan: Reachscan,
) -> None:
    """Loopback is exempt from ICMP rate limits, so no answer is lost and none needs a retry."""
    block = unbound_block("udp", 20000, ephemeral_range()[0], 1000, "127.0.0.1")

    run = reachscan.run(
        "-t", f"127.0.0.1:U:{block.start}-{block.stop - 1}", "--retries", "0", "--timeout", "3"
    )

    assert run.returncode == 0, run.stderr
    assert verdicts(run.records) == {("127.0.0.1", port, "udp"): REFUSED_UDP for port in block}


def test_a_bound_udp_socket_that_never_answers_is_open_filtered_after_its_retries(
    reachscan: Reachscan, services: LoopbackServices
) -> None:
    port = services.udp("127.77.0.7", answer=False)
    port6 = services.udp("::1", answer=False)

    run = reachscan.run(
        "-t", f"127.77.0.7:U:{port}", "-t", f"[::1]:U:{port6}", "--timeout", "0.3", "--retries", "1"
    )

    assert run.returncode == 0, run.stderr
    assert verdicts(run.records) == {
        ("127.77.0.7", port, "udp"): SILENT_UDP,
        ("::1", port6, "udp"): SILENT_UDP,
    }
    assert [record["rtt_ms"] for record in run.records] == [None, None]
    # One probe plus one retry, each a datagram that arrived.
    assert services.datagrams("127.77.0.7", port) == [b"", b""]
    assert services.datagrams("::1", port6) == [b"", b""]


# --- UDP payloads, chosen by port ---------------------------------------------------------


def check_dns_query(datagram: bytes) -> None:
    query = dns.message.from_wire(datagram)
    assert query.opcode() == dns.opcode.QUERY
    assert not query.flags & dns.flags.QR
    assert len(query.question) == 1
    question = query.question[0]
    assert question.rdclass == dns.rdataclass.IN
    assert question.rdtype == dns.rdatatype.NS
    assert question.name.to_text() == "."


def check_ntp_request(datagram: bytes) -> None:
    assert len(datagram) == 48
    assert datagram[0] == 0x23  # LI 0, version 4, mode 3 (client)


def check_snmp_get(datagram: bytes) -> None:
    assert datagram[0] == 0x30  # BER SEQUENCE
    assert datagram[1] == len(datagram) - 2
    assert b"public" in datagram


@pytest.mark.skipif(not IS_ROOT, reason="binding ports below 1024 needs root")
@pytest.mark.parametrize(
    ("port", "check"),
    [(53, check_dns_query), (123, check_ntp_request), (161, check_snmp_get)],
    ids=["dns", "ntp", "snmp"],
)
def test_well_known_udp_ports_get_their_service_payload(
    reachscan: Reachscan,
    services: LoopbackServices,
    port: int,
    check: Callable[[bytes], None],
) -> None:
    address = "127.77.0.53"
    try:
        services.udp(address, port)
    except OSError as error:
        pytest.skip(f"cannot bind {address}:{port}: {error}")

    run = reachscan.run("-t", f"{address}:U:{port}", "--retries", "0")

    assert verdicts(run.records) == {(address, port, "udp"): OPEN_UDP}
    received = services.datagrams(address, port)
    assert len(received) == 1
    check(received[0])


# --- names ---------------------------------------------------------------------------------

DUAL_NAME = "dual.reachscan.test"


@pytest.mark.parametrize(
    ("family_flag", "expected_addresses"),
    [(None, {"127.77.0.1", "::1"}), ("-4", {"127.77.0.1"}), ("-6", {"::1"})],
    ids=["both", "v4-only", "v6-only"],
)
def test_a_name_with_a_and_aaaa_gives_one_result_per_address(
    reachscan: Reachscan,
    services: LoopbackServices,
    dns_responder: DnsResponder,
    family_flag: str | None,
    expected_addresses: set[str],
) -> None:
    dns_responder.set_records(DUAL_NAME, ["127.77.0.1", "::1"])
    port = free_port("tcp", "127.77.0.1", "::1")
    services.tcp("127.77.0.1", port)  # only the IPv4 address answers

    run = reachscan.run("-t", f"{DUAL_NAME}:{port}", *([family_flag] if family_flag else []))

    assert run.returncode == 0, run.stderr
    all_verdicts = {
        ("127.77.0.1", port, "tcp"): OPEN_TCP,
        ("::1", port, "tcp"): REFUSED_TCP,
    }
    assert verdicts(run.records) == {
        key: verdict for key, verdict in all_verdicts.items() if key[0] in expected_addresses
    }
    assert {record["host"] for record in run.records} == {DUAL_NAME}
    assert {record["resolved_via"] for record in run.records} == {"dns"}


def test_a_hosts_file_entry_beats_dns(
    reachscan: Reachscan,
    services: LoopbackServices,
    dns_responder: DnsResponder,
    hosts_file: HostsFileFactory,
) -> None:
    name = "moved.reachscan.test"
    dns_responder.set_records(name, ["127.77.0.3"])
    port = free_port("tcp", "127.77.0.2", "127.77.0.3")
    services.tcp("127.77.0.2", port)
    scan = reachscan.with_hosts(hosts_file({name: ["127.77.0.2"]}))

    run = scan.run("-t", f"{name}:{port}")

    assert run.returncode == 0, run.stderr
    assert verdicts(run.records) == {("127.77.0.2", port, "tcp"): OPEN_TCP}
    assert run.records[0]["resolved_via"] == "hosts-file"
    assert run.records[0]["host"] == name
    assert name not in {queried for queried, _ in dns_responder.queries}


def test_a_name_that_does_not_exist_is_unresolved_nxdomain_and_fails_the_run(
    reachscan: Reachscan, dns_responder: DnsResponder
) -> None:
    name = "missing.reachscan.test"

    run = reachscan.run("-t", f"{name}:{free_port('tcp', '127.77.0.1')}")

    assert run.returncode == 1, run.stderr
    [record] = run.records
    assert (record["host"], record["address"]) == (name, None)
    assert (record["state"], record["reason"]) == ("unresolved", "nxdomain")
    assert (record["resolved_via"], record["ok"], record["rtt_ms"]) == ("none", False, None)
    assert name in {queried for queried, _ in dns_responder.queries}


def test_an_ipv4_literal_under_dash_6_is_unresolved_no_address(reachscan: Reachscan) -> None:
    run = reachscan.run("-6", "-t", "127.77.0.1:9")

    [record] = run.records
    assert (record["state"], record["reason"], record["address"]) == (
        "unresolved",
        "no-address",
        None,
    )
    assert run.returncode == 1


# --- inventories ---------------------------------------------------------------------------


def write_pinned_inventory(
    path: Path, open_port: int, closed_port: int, closed_expect: str
) -> None:
    path.write_text(
        "defaults:\n"
        "  labels: {env: test}\n"
        "hosts:\n"
        "  - host: db.reachscan.test\n"
        "    address: 127.77.0.4\n"
        f"    ports: [{open_port}, {{port: {closed_port}, expect: {closed_expect}}}]\n"
        "    labels: {team: data}\n",
        encoding="utf-8",
    )


def test_yaml_pinned_address_is_probed_instead_of_dns_with_labels_and_expectations(
    reachscan: Reachscan,
    services: LoopbackServices,
    dns_responder: DnsResponder,
    tmp_path: Path,
) -> None:
    dns_responder.set_records("db.reachscan.test", ["127.77.0.5"])  # a decoy: never asked
    open_port = services.tcp("127.77.0.4")
    closed_port = free_port("tcp", "127.77.0.4")
    inventory = tmp_path / "fleet.yaml"
    write_pinned_inventory(inventory, open_port, closed_port, "refused")

    run = reachscan.run(str(inventory))

    assert run.returncode == 0, run.stderr
    assert verdicts(run.records) == {
        ("127.77.0.4", open_port, "tcp"): OPEN_TCP,
        ("127.77.0.4", closed_port, "tcp"): REFUSED_TCP,
    }
    by_port = {record["port"]: record for record in run.records}
    assert by_port[open_port]["expect"] == "open"
    assert by_port[closed_port]["expect"] == "refused"
    for record in run.records:
        assert record["host"] == "db.reachscan.test"
        assert record["resolved_via"] == "pinned"
        assert record["ok"] is True
        assert record["labels"] == {"env": "test", "team": "data"}
    assert dns_responder.queries == []


def test_yaml_port_expected_open_but_refused_is_not_ok_and_exits_1(
    reachscan: Reachscan, services: LoopbackServices, tmp_path: Path
) -> None:
    open_port = services.tcp("127.77.0.4")
    closed_port = free_port("tcp", "127.77.0.4")
    inventory = tmp_path / "fleet.yml"
    write_pinned_inventory(inventory, open_port, closed_port, "open")

    run = reachscan.run(str(inventory))

    assert run.returncode == 1, run.stderr
    oks = {
        record["port"]: (record["state"], record["expect"], record["ok"]) for record in run.records
    }
    assert oks == {open_port: ("open", "open", True), closed_port: ("refused", "open", False)}


def write_text_inventory_with_errors(path: Path, open_port: int, closed_port: int) -> None:
    path.write_text(
        "# two good lines around two bad ones\n"
        f"127.77.0.8:{open_port}\n"
        "127.77.0.8:99999\n"
        "not a spec!!\n"
        f"[::1]:{closed_port}\n",
        encoding="utf-8",
    )


def test_malformed_inventory_lines_are_reported_with_file_and_line_and_the_rest_scanned(
    reachscan: Reachscan, services: LoopbackServices, tmp_path: Path
) -> None:
    open_port = services.tcp("127.77.0.8")
    closed_port = free_port("tcp", "::1")
    inventory = tmp_path / "targets.txt"
    write_text_inventory_with_errors(inventory, open_port, closed_port)

    run = reachscan.run(str(inventory))

    assert run.returncode == 2
    assert f"{inventory}:3: " in run.stderr
    assert f"{inventory}:4: " in run.stderr
    assert f"{inventory}:2: " not in run.stderr and f"{inventory}:5: " not in run.stderr
    assert verdicts(run.records) == {
        ("127.77.0.8", open_port, "tcp"): OPEN_TCP,
        ("::1", closed_port, "tcp"): REFUSED_TCP,
    }
    no_traceback(run.stderr)


def test_strict_scans_nothing_when_the_inventory_has_errors(
    reachscan: Reachscan, services: LoopbackServices, tmp_path: Path
) -> None:
    open_port = services.tcp("127.77.0.8")
    inventory = tmp_path / "targets.txt"
    write_text_inventory_with_errors(inventory, open_port, free_port("tcp", "::1"))

    run = reachscan.run("--strict", str(inventory))

    assert run.returncode == 2
    assert run.stdout == ""
    assert f"{inventory}:3: " in run.stderr and f"{inventory}:4: " in run.stderr
    assert services.accepted("127.77.0.8", open_port) == 0


def test_duplicated_and_overlapping_endpoints_are_probed_once(
    reachscan: Reachscan, services: LoopbackServices, tmp_path: Path
) -> None:
    block = [f"127.77.0.{index}" for index in range(4)]
    udp_port = free_port("udp", *block)
    services.udp("127.77.0.1", udp_port)
    tcp_port = free_port("tcp", *block)
    inventory = tmp_path / "again.txt"
    inventory.write_text(f"127.77.0.1:{tcp_port},U:{udp_port}\n127.77.0.0/30:{tcp_port}\n")

    run = reachscan.run(
        "-t",
        f"127.77.0.0/30:{tcp_port},U:{udp_port}",
        "-t",
        f"127.77.0.1:{tcp_port},U:{udp_port}",
        "-t",
        f"127.77.0.1:{tcp_port},U:{udp_port}",
        "-t",
        f"127.77.0.1-2:U:{udp_port}",
        str(inventory),
        "--retries",
        "0",
        "--include-special",  # 127.77.0.3 is the /30's broadcast address, left out otherwise
    )

    expected = {}
    for address in block:
        expected[(address, tcp_port, "tcp")] = REFUSED_TCP
        expected[(address, udp_port, "udp")] = REFUSED_UDP
    expected[("127.77.0.1", udp_port, "udp")] = OPEN_UDP
    assert verdicts(run.records) == expected  # verdicts() fails on a repeated endpoint
    # The echo answered before the scan ended, so every probe it got is already counted.
    assert services.datagrams("127.77.0.1", udp_port) == [b""]


# --- outputs -------------------------------------------------------------------------------


def test_every_jsonl_record_has_exactly_the_schema_keys_in_order(
    reachscan: Reachscan, services: LoopbackServices
) -> None:
    open_port = services.tcp("127.77.0.1")
    silent_port = services.udp("127.77.0.1", answer=False)

    run = reachscan.run(
        "-t",
        f"127.77.0.1:{open_port},U:{silent_port}",
        "-t",
        "nowhere.reachscan.test:80",
        "--timeout",
        "0.3",
        "--retries",
        "0",
    )

    assert len(run.records) == 3
    for record in run.records:
        assert list(record) == RECORD_KEYS
        assert isinstance(record["port"], int) and isinstance(record["ok"], bool)
        assert isinstance(record["labels"], dict)
        assert isinstance(record["ts"], str) and record["ts"].endswith("Z")
        assert record["rtt_ms"] is None or isinstance(record["rtt_ms"], float)
    states = {record["state"] for record in run.records}
    assert states == {"open", "open|filtered", "unresolved"}


def test_several_outputs_in_one_run_appear_whole_with_no_temporary_files(
    reachscan: Reachscan, services: LoopbackServices, tmp_path: Path
) -> None:
    port = services.tcp("127.77.0.1")
    closed = free_port("tcp", "127.77.0.1")
    results = tmp_path / "results"
    results.mkdir()
    jsonl_path, table_path = results / "a.jsonl", results / "b.txt"
    jsonl_path.write_text("old contents\n")

    run = reachscan.run(
        "-t",
        f"127.77.0.1:{port},{closed}",
        "--format",
        "jsonl",
        "-o",
        str(jsonl_path),
        "--format",
        "table",
        "-o",
        str(table_path),
    )

    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    assert sorted(entry.name for entry in results.iterdir()) == ["a.jsonl", "b.txt"]
    assert verdicts(parse_records(jsonl_path.read_text())) == {
        ("127.77.0.1", port, "tcp"): OPEN_TCP,
        ("127.77.0.1", closed, "tcp"): REFUSED_TCP,
    }
    table = table_path.read_text()
    assert str(port) in table and str(closed) in table
    assert "open" in table and "refused" in table


def test_a_closed_stdout_ends_the_scan_quietly(reachscan: Reachscan) -> None:
    """`reachscan ... | head -1`: the reader leaves after one line. 30,000 results are
    megabytes of JSONL, far more than a pipe buffers, so the scanner must hit the closed
    pipe while it is still scanning."""
    process = reachscan.start("-t", "127.77.0.9:1-30000")
    assert process.stdout is not None and process.stderr is not None
    first_line = process.stdout.readline()
    process.stdout.close()
    try:
        _, stderr_bytes = process.communicate(timeout=60)  # drains stderr: it cannot fill up
    finally:
        process.kill()
    returncode, stderr = process.returncode, stderr_bytes.decode()

    assert list(json.loads(first_line)) == RECORD_KEYS
    assert returncode == 141
    no_traceback(stderr)
    assert stderr == ""


# --- interrupts ------------------------------------------------------------------------------


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["int", "term"])
def test_a_signal_mid_scan_stops_at_once_and_keeps_complete_finished_results(
    reachscan: Reachscan, services: LoopbackServices, tmp_path: Path, signal_number: int
) -> None:
    """3,000 endpoints: 500 silent UDP ports (each would wait 5 s, and again on its retry) and 2,500
    closed TCP ports (answered in microseconds). Interrupted once every TCP answer is
    written, the run must stop at once (no silent probe waited for, so none reported), exit
    130, and leave a committed file of whole, valid lines."""
    address = "127.77.5.1"
    silent_ports = [services.udp(address, answer=False) for _ in range(500)]
    closed_tcp = unbound_block("tcp", 20000, ephemeral_range()[0], 2500, address)
    results = tmp_path / "results"
    results.mkdir()
    output = results / "partial.jsonl"
    udp_list = ",".join(str(port) for port in silent_ports)

    process = reachscan.start(
        "-t",
        f"{address}:T:{closed_tcp.start}-{closed_tcp.stop - 1}",
        "-t",
        f"{address}:U:{udp_list}",
        # --min-timeout: the resets teach reachscan this host's round trip, and without a
        # floor that high the silent ports would give up long before the signal.
        "--timeout",
        "5",
        "--min-timeout",
        "5",
        "-o",
        str(output),
        stdout=subprocess.DEVNULL,
    )
    assert process.stderr is not None
    try:
        # However busy the machine, the silent probes are in flight once every closed
        # port's answer is in the file: each waits 5 s, and again on its retry, before its result.
        wait_for(lambda: written_lines(results, ".partial.jsonl.tmp-*") >= 2500, within=60)
        process.send_signal(signal_number)
        returncode = process.wait(timeout=60)
    finally:
        process.kill()
        process.wait()
    stderr = process.stderr.read().decode()
    process.stderr.close()

    assert returncode == 130, stderr
    no_traceback(stderr)
    text = output.read_text()
    assert text.endswith("\n")
    records = parse_records(text)
    for record in records:
        assert list(record) == RECORD_KEYS
    found = verdicts(records)
    # Every closed TCP port was answered long before the signal, so each is in the file.
    assert {key: verdict for key, verdict in found.items() if key[2] == "tcp"} == {
        (address, port, "tcp"): REFUSED_TCP for port in closed_tcp
    }
    # The silent probes were cut short at once: not waited for, so none has a verdict.
    assert [key for key in found if key[2] == "udp"] == []
    assert sorted(entry.name for entry in results.iterdir()) == ["partial.jsonl"]


def written_lines(directory: Path, pattern: str) -> int:
    """Complete lines in the files matching `pattern` (the scan's temporary output)."""
    lines = 0
    for temporary in directory.glob(pattern):
        with contextlib.suppress(FileNotFoundError):
            lines += temporary.read_bytes().count(b"\n")
    return lines


def wait_for(condition: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {within} s")
        time.sleep(0.02)


# --- self-connects and full sweeps -----------------------------------------------------------


class ListenerSampler:
    """Samples the kernel's TCP listeners reaching an address while a scan runs.

    Other tests and services on this machine open and close listeners at any moment, so a
    sweep is judged against the listeners that existed throughout (`always`: each must be
    found open) and those that existed at any sample (`ever`: nothing else may be open).
    """

    def __init__(self, address: str, interval: float = 0.02) -> None:
        self.address = address
        self.interval = interval
        self.always: set[int] = set()
        self.ever: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> tuple[set[int], set[int]]:
        sockets = bound_sockets("tcp")
        return (
            ports_reaching(self.address, sockets),
            ports_reaching(self.address, sockets, dual_stack=True),
        )

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            _, possible = self._sample()
            self.ever |= possible

    def __enter__(self) -> ListenerSampler:
        self.always, self.ever = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        certain, possible = self._sample()
        self.always &= certain
        self.ever |= possible


def test_sweeping_the_ephemeral_range_never_reports_a_self_connect_as_open(
    reachscan: Reachscan,
) -> None:
    """A connect to 127.0.0.1:P may pick P as its own source port and connect to itself
    (TCP simultaneous open): about once per sweep of the whole ephemeral range here, so
    sweep it three times at high concurrency. The namespace test below makes the trap
    certain; this one checks the machine as it is configured."""
    low, high = ephemeral_range()

    for _ in range(3):
        with ListenerSampler("127.0.0.1") as listeners:
            run = reachscan.run(
                "-t", f"127.0.0.1:{low}-{high}", "--concurrency", "5000", "--per-host", "5000"
            )
        found = verdicts(run.records)
        assert len(found) == high - low + 1
        for (_, port, _), verdict in found.items():
            if port in listeners.ever:
                continue  # a listener existed on it during the sweep: open is allowed
            assert verdict == REFUSED_TCP, (port, verdict)


@pytest.mark.skipif(
    not IS_ROOT or shutil.which("unshare") is None or shutil.which("ip") is None,
    reason="needs root, unshare and ip to build a network namespace",
)
def test_self_connects_in_a_namespace_with_a_tiny_ephemeral_range_are_never_open(
    reachscan: Reachscan,
) -> None:
    """In a private namespace whose ephemeral range is 100 ports, sweeping exactly those
    ports makes self-connects common (about one per hundred connects); nothing listens
    there, so every port must be refused. A plain-socket sweep first proves the trap is
    live, so this test cannot pass vacuously."""
    script = (
        "set -e; ip link set lo up; "
        "echo '41000 41099' > /proc/sys/net/ipv4/ip_local_port_range; "
        f"{shlex.join([sys.executable, '-c', SELF_CONNECT_COUNTER])}; "
        + " ; ".join(shlex.join(reachscan.command("-t", "127.0.0.1:41000-41099")) for _ in range(6))
    )
    completed = subprocess.run(
        ["unshare", "--net", "sh", "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    first_line, _, jsonl = completed.stdout.partition("\n")
    assert int(first_line.split()[-1]) > 0, "no self-connect happened: the test proves nothing"
    records = parse_records(jsonl)
    assert len(records) == 600
    bad = [
        (record["port"], record["state"], record["reason"])
        for record in records
        if (record["state"], record["reason"]) != REFUSED_TCP
    ]
    assert bad == []


SELF_CONNECT_COUNTER = """
import select, socket
self_connects = 0
for _ in range(10):
    sockets = []
    for port in range(41000, 41100):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        sockets.append(sock)
    for sock in sockets:
        select.select([], [sock], [], 1)
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            self_connects += sock.getsockname() == sock.getpeername()
        sock.close()
print("self-connects", self_connects)
"""


def test_a_full_sweep_of_127_0_0_1_finds_exactly_the_kernels_listeners(
    reachscan: Reachscan, services: LoopbackServices
) -> None:
    own_port = services.tcp("127.0.0.1")

    with ListenerSampler("127.0.0.1") as listeners:
        run = reachscan.run("-t", "127.0.0.1:1-65535")

    assert run.returncode == 0, run.stderr
    found = verdicts(run.records)
    assert len(found) == 65535
    open_ports = {port for (_, port, _), verdict in found.items() if verdict == OPEN_TCP}
    assert own_port in open_ports
    assert listeners.always <= open_ports, "a listener was missed"
    assert open_ports <= listeners.ever, "a port with no listener was reported open"
    others = {verdict for (_, port, _), verdict in found.items() if port not in open_ports}
    assert others == {REFUSED_TCP}


# --- exit statuses ---------------------------------------------------------------------------


def test_exit_status_0_when_every_endpoint_meets_its_expectation(
    reachscan: Reachscan, services: LoopbackServices
) -> None:
    port = services.tcp("127.77.0.1")
    closed = free_port("tcp", "127.77.0.1")

    assert reachscan.run("-t", f"127.77.0.1:{port}", "--expect", "open").returncode == 0
    assert reachscan.run("-t", f"127.77.0.1:{closed}", "--expect", "refused").returncode == 0
    assert reachscan.run("-t", f"127.77.0.1:{closed}", "--expect", "closed").returncode == 0


def test_exit_status_1_when_an_endpoint_misses_its_expectation(
    reachscan: Reachscan, services: LoopbackServices
) -> None:
    port = services.tcp("127.77.0.1")
    closed = free_port("tcp", "127.77.0.1")

    run = reachscan.run("-t", f"127.77.0.1:{port},{closed}", "--expect", "open")

    assert run.returncode == 1
    assert {record["port"]: record["ok"] for record in run.records} == {port: True, closed: False}


@pytest.mark.parametrize(
    "args",
    [
        ("--concurrency", "0", "-t", "127.77.0.1:9"),
        ("--timeout", "0", "-t", "127.77.0.1:9"),
        (),
        ("-t", "127.77.0.1:70000"),
    ],
    ids=["concurrency-0", "timeout-0", "no-targets", "bad-spec"],
)
def test_exit_status_2_for_usage_errors(reachscan: Reachscan, args: tuple[str, ...]) -> None:
    run = reachscan.run(*args)

    assert run.returncode == 2
    assert run.stdout == ""
    assert "reachscan" in run.stderr
    no_traceback(run.stderr)
