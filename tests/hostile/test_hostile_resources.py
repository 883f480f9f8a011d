"""Resource exhaustion is the scanner's problem, never the target's.

Out of descriptors, out of source ports, a loop running behind, ICMP rate limits: each
is a limit of this machine or of the kernel, and each, handled wrongly, turns into a
false verdict about a target (an `EMFILE` read as refused, an `EADDRNOTAVAIL` as
filtered, a late callback as a timeout, a rate-limited ICMP error as silence). Every
test here scans endpoints whose truth the test itself set up, under the hostile
condition, and requires exactly that truth: the same state and reason per endpoint as a
relaxed run, and as the listeners say.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostile.hostile_support import (
    REPO_ROOT,
    Reachscan,
    Verdicts,
    needs_private_netns,
    no_traceback,
    parse_records,
    verdicts,
)
from tests.support.listeners import LoopbackServices
from tests.support.netns import Topology, format_target, require_netns
from tests.support.proc_net import bound_sockets, ports_reaching

pytestmark = pytest.mark.hostile

OPEN_TCP = ("open", "syn-ack")
REFUSED_TCP = ("refused", "conn-refused")
REFUSED_UDP = ("refused", "port-unreach")


def unbound_block(addresses: list[str], size: int) -> range:
    """`size` consecutive TCP ports below the ephemeral range that nothing holds on any of
    `addresses` (wildcard listeners included). Below the ephemeral range, no other test's
    port-0 socket can land in the block while it is scanned, and no self-connect either."""
    taken: set[int] = set()
    sockets = bound_sockets("tcp")
    for address in addresses:
        taken |= ports_reaching(address, sockets, dual_stack=True)
    start = 20_000
    while start + size <= 32_768:
        clash = [port for port in range(start, start + size) if port in taken]
        if not clash:
            return range(start, start + size)
        start = max(clash) + 1
    pytest.skip(f"no {size} unbound TCP ports below 32768 on {addresses[:3]}...")


def open_every(
    services: LoopbackServices, addresses: list[str], ports: range, step: int
) -> Verdicts:
    """Listen on every `step`-th port of `ports` on each address; return the truth."""
    truth: Verdicts = {}
    for address in addresses:
        for index, port in enumerate(ports):
            if index % step == step // 2:
                services.tcp(address, port)
                truth[(address, port, "tcp")] = OPEN_TCP
            else:
                truth[(address, port, "tcp")] = REFUSED_TCP
    return truth


def specs(addresses: list[str], ports: range) -> list[str]:
    return [
        argument
        for address in addresses
        for argument in ("-t", f"{address}:{ports.start}-{ports.stop - 1}")
    ]


# --- descriptors ---------------------------------------------------------------------------

FD_ADDRESSES = [f"127.77.60.{index}" for index in range(1, 21)]


@pytest.fixture
def descriptor_scan(services: LoopbackServices) -> tuple[list[str], Verdicts]:
    """2,000 endpoints: 20 addresses x 100 ports, every tenth port open."""
    ports = unbound_block(FD_ADDRESSES, 100)
    truth = open_every(services, FD_ADDRESSES, ports, step=10)
    return specs(FD_ADDRESSES, ports), truth


def test_sixty_four_descriptors_give_the_same_answers_as_plenty(
    reachscan: Reachscan, descriptor_scan: tuple[list[str], Verdicts]
) -> None:
    """`prlimit --nofile=64:64` with --concurrency 5000: the hard limit cannot be raised,
    so the scanner must fit into 64 descriptors and still get every endpoint right."""
    arguments, truth = descriptor_scan

    relaxed = reachscan.run(*arguments, "--no-diagnose")
    starved = reachscan.run(
        *arguments, "--concurrency", "5000", "--no-diagnose", prefix=("prlimit", "--nofile=64:64")
    )

    assert relaxed.returncode == 0, relaxed.stderr
    assert verdicts(relaxed.records) == truth
    assert starved.returncode == 0, starved.stderr
    no_traceback(starved.stderr)
    assert verdicts(starved.records) == truth


def test_a_concurrency_capped_by_the_descriptor_limit_is_reported(
    reachscan: Reachscan, descriptor_scan: tuple[list[str], Verdicts]
) -> None:
    arguments, _ = descriptor_scan

    starved = reachscan.run(
        *arguments, "--concurrency", "5000", "--no-diagnose", prefix=("prlimit", "--nofile=64:64")
    )

    assert "concurrency" in starved.stderr.lower()


# --- source ports ----------------------------------------------------------------------------

HOLD_CONNECTIONS = """
import socket, sys
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", int(sys.argv[1])))
listener.listen(1024)
print("ready", flush=True)
held = []
while True:
    connection, _ = listener.accept()
    held.append(connection)  # never closed: the peer's side cannot end in TIME_WAIT here
"""

PROVE_EXHAUSTION = """
import errno, socket, struct, sys
port, attempts = int(sys.argv[1]), int(sys.argv[2])
sockets, failures = [], 0
for _ in range(attempts):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    try:
        sock.connect(("127.0.0.1", port))
    except OSError as error:
        failures += error.errno == errno.EADDRNOTAVAIL
    sockets.append(sock)
for sock in sockets:
    sock.close()  # RST: the ports are free again at once
print("eaddrnotavail", failures)
"""

PORT_RANGE = "40000 40009"
LISTENER_PORT = 8080
NAMES = 200


def in_tiny_port_range(steps: list[str], scratch: Path, timeout: float) -> str:
    """A shell script for `unshare --net`: loopback up, ten ephemeral ports, a listener
    that holds every connection on 127.0.0.1:LISTENER_PORT (killed on exit, and bounded
    by `timeout` itself so it cannot outlive a failed test), then `steps`."""
    python = shlex.quote(sys.executable)
    ready = scratch / "listener-ready"
    return "\n".join(
        [
            "ip link set lo up",
            f"echo '{PORT_RANGE}' > /proc/sys/net/ipv4/ip_local_port_range",
            f"timeout {int(timeout)} {python} -c {shlex.quote(HOLD_CONNECTIONS)} {LISTENER_PORT}"
            f" > {ready} 2>&1 &",
            "holder=$!",
            "trap 'kill $holder 2>/dev/null' EXIT",
            f"while ! grep -q ready {ready}; do sleep 0.05; done",
            *steps,
        ]
    )


def pinned_inventory(scratch: Path) -> Path:
    """200 names pinned to 127.0.0.1 (YAML `address:`): 200 endpoints on one ip:port.
    Pinned, not resolved, so they reach the engine in one batch and are launched together
    (names from a hosts file trickle in one by one and never overlap on loopback)."""
    inventory = scratch / "pinned.yaml"
    inventory.write_text(
        "hosts:\n"
        + "".join(
            f"  - {{host: h{index}.hostile.test, address: 127.0.0.1, ports: [{LISTENER_PORT}]}}\n"
            for index in range(NAMES)
        )
    )
    return inventory


def all_open(records: list[dict[str, object]]) -> list[tuple[object, object, object]]:
    """The records that are not 127.0.0.1:LISTENER_PORT open/syn-ack (should be none)."""
    return [
        (record["host"], record["state"], record["reason"])
        for record in records
        if (record["address"], record["port"], record["state"], record["reason"])
        != ("127.0.0.1", LISTENER_PORT, *OPEN_TCP)
    ]


@needs_private_netns
def test_running_out_of_source_ports_never_makes_an_open_port_look_closed(
    reachscan: Reachscan, tmp_path: Path
) -> None:
    """In a namespace whose ephemeral range is ten ports, 200 names pinned to 127.0.0.1
    are 200 endpoints and 200 connects to one ip:port, all launched at once: the
    eleventh concurrent connect gets EADDRNOTAVAIL. The listener accepts and never closes,
    so a source port comes back only when the scanner lets it go (with an RST; a FIN would
    leave it in FIN_WAIT for a minute). Two scans in a row, so ports the first left behind
    would starve the second. Every endpoint must be open, and stderr must say that the
    concurrency was lowered for a limit of this machine. A plain-socket check proves the
    exhaustion is real first, so the test cannot pass vacuously."""
    inventory = pinned_inventory(tmp_path)
    scans = []
    for run in (1, 2):
        command = reachscan.command(
            str(inventory),
            "--no-history",
            "--no-diagnose",
            "--format",
            "jsonl",
            "-o",
            str(tmp_path / f"run{run}.jsonl"),
        )
        scans.append(
            f"{shlex.join(command)} 2> {tmp_path / f'stderr{run}'}"
            f"; echo $? > {tmp_path / f'status{run}'}"
        )
    prove = f"{shlex.quote(sys.executable)} -c {shlex.quote(PROVE_EXHAUSTION)} {LISTENER_PORT} 30"
    script = in_tiny_port_range([prove, *scans], tmp_path, timeout=100)

    completed = subprocess.run(
        ["unshare", "--net", "sh", "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert int(completed.stdout.split()[-1]) >= 10, "no EADDRNOTAVAIL: the test proves nothing"
    for run in (1, 2):
        stderr = (tmp_path / f"stderr{run}").read_text()
        no_traceback(stderr)
        assert (tmp_path / f"status{run}").read_text().strip() == "0", stderr
        records = parse_records((tmp_path / f"run{run}.jsonl").read_text())
        assert len(records) == NAMES, stderr
        assert all_open(records) == [], stderr
        assert "lowering concurrency" in stderr
        assert "Cannot assign requested address" in stderr
        assert "not of the targets" in stderr


# --- speed ---------------------------------------------------------------------------------

SPEED_ADDRESSES = [
    f"127.{second}.{third}.{fourth}"
    for second, third, fourth in [
        (78 + index % 40, (index * 37) % 256, 1 + (index * 11) % 254) for index in range(100)
    ]
]


def test_the_same_answers_at_concurrency_50_and_5000(
    reachscan: Reachscan, services: LoopbackServices
) -> None:
    """20,000 endpoints across 127.0.0.0/8 (100 addresses x 200 ports, every tenth open):
    a loop running far behind at 5,000 in flight must not turn answers into timeouts."""
    ports = unbound_block(SPEED_ADDRESSES, 200)
    truth = open_every(services, SPEED_ADDRESSES, ports, step=10)
    arguments = [
        *specs(SPEED_ADDRESSES, ports),
        "--no-diagnose",
        "--no-history",
        "--per-host",
        "5000",
    ]

    slow = reachscan.run(*arguments, "--concurrency", "50", timeout=110)
    fast = reachscan.run(*arguments, "--concurrency", "5000", timeout=110)

    assert len(truth) == 20_000
    assert slow.returncode == 0, slow.stderr
    assert fast.returncode == 0, fast.stderr
    slow_verdicts, fast_verdicts = verdicts(slow.records), verdicts(fast.records)
    assert {key for key in truth if slow_verdicts.get(key) != truth[key]} == set()
    assert {key for key in truth if fast_verdicts.get(key) != truth[key]} == set()
    assert slow_verdicts == fast_verdicts


# --- ICMP rate limits ----------------------------------------------------------------------

RATE_LIMITED_PORTS = range(7100, 7150)


@pytest.mark.slow
@pytest.mark.netns
@pytest.mark.timeout(180)
def test_fifty_closed_udp_ports_behind_default_icmp_rate_limits_are_all_refused() -> None:
    """A target namespace with the kernel's default ICMP limits (about six errors at once,
    then one a second): 50 closed UDP ports are 50 port-unreachables the target will only
    send over ~45 s. Paced retries must recover every one; none may be open|filtered."""
    reason = require_netns()
    if reason is not None:
        pytest.skip(reason)
    with Topology() as topology:
        scanner = topology.add_namespace("hscan")
        target = topology.add_namespace("htgt", icmp_rate_limit=True)
        segment = topology.add_segment([scanner, target])
        address = segment.address(target, 4)
        topology.wait_reachable(scanner, address, port=9)
        ports = f"{RATE_LIMITED_PORTS.start}-{RATE_LIMITED_PORTS.stop - 1}"

        run = topology.scan(
            scanner,
            [
                "-t",
                format_target(address, ports, "udp"),
                "--retries",
                "60",
                "--timeout",
                "1",
                "--no-history",
            ],
            timeout=150,
        )

    found = {record["port"]: (record["state"], record["reason"]) for record in run.records}
    assert set(found) == set(RATE_LIMITED_PORTS), run.stderr
    wrong = {port: verdict for port, verdict in found.items() if verdict != REFUSED_UDP}
    assert wrong == {}, f"{len(wrong)} of 50 not refused/port-unreach\n{run.stderr}"
    assert run.exit_code == 0, run.stderr
