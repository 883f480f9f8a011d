"""Kernel truth: every state and reason reachscan reports, produced by a real kernel.

The unit tests prove the classification tables against fakes; these prove the tables are
right about Linux. One small network is built in namespaces for the whole module:

    scanner ns --(uplink)-- router ns --(lan, a bridge)-- target ns
                                                      \\-- default-limits ns

The target runs listeners and an nftables ruleset with one port per way of saying no; the
router rejects a few ports on its forward chain; the scanner's own OUTPUT chain rejects or
drops a few more, and it has no default route, so nothing it sends can leave the lab. Every
test runs the real CLI inside the scanner namespace and asserts the exact state and reason.
The default-limits target keeps the kernel's ICMP rate limits, to prove that retries
recover the refusals the limits turn into silence.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.netns import ScanRun, Segment, Topology, format_target, require_netns

pytestmark = pytest.mark.netns

TCP_OPEN, UDP_ECHO, TCP_CLOSED, UDP_CLOSED = 8000, 8001, 8003, 8002
RESETTING_PORTS = range(8010, 8030)  # accept, then close with an RST at once
CLEAR_PORT = 9  # closed and under no rule anywhere: warms the neighbour caches

TARGET_RULES = """
table inet reachscan_target {
    chain input {
        type filter hook input priority 0; policy accept;
        tcp dport 9000 drop
        udp dport 9001 drop
        tcp dport 9002 reject with icmpx type admin-prohibited
        udp dport 9003 reject with icmpx type admin-prohibited
        tcp dport 9004 reject
        tcp dport 9005 reject with tcp reset
        tcp dport 9006 reject with icmpx type host-unreachable
        udp dport 9007 reject with icmpx type host-unreachable
        tcp dport 9008 reject with icmpx type no-route
    }
}
"""

ROUTER_RULES = """
table inet reachscan_router {
    chain forward {
        type filter hook forward priority 0; policy accept;
        tcp dport 9100 reject with icmpx type admin-prohibited
        udp dport 9101 reject with icmpx type admin-prohibited
    }
}
"""

SCANNER_RULES = """
table inet reachscan_scanner {
    chain output {
        type filter hook output priority 0; policy accept;
        tcp dport 9200 reject with icmpx type admin-prohibited
        tcp dport 9201 reject
        udp dport 9202 drop
    }
}
"""

UNROUTED_ADDRESSES = {4: "198.18.0.1", 6: "2001:db8::1"}
"""Benchmarking and documentation prefixes the scanner namespace has no route to."""

RATE_LIMITED_PORTS = range(7000, 7020)

FAST = ("--timeout", "1", "--retries", "0")


@dataclass(frozen=True, slots=True)
class Lab:
    """The module's network: which namespace is which, and where the targets live."""

    topology: Topology
    scanner: str
    router: str
    target: str
    default_limits_target: str
    lan: Segment

    def target_address(self, family: int) -> str:
        return self.lan.address(self.target, family)

    def scan(self, *arguments: str, timeout: float = 60.0) -> ScanRun:
        return self.topology.scan(self.scanner, arguments, timeout=timeout)


def build_lab(topology: Topology) -> Lab:
    scanner = topology.add_namespace("scan")
    router = topology.add_namespace("rtr", router=True)
    target = topology.add_namespace("tgt")
    default_limits_target = topology.add_namespace("dflt", icmp_rate_limit=True)
    uplink = topology.add_segment([router, scanner])
    lan = topology.add_segment([router, target, default_limits_target])
    for family in (4, 6):
        # Only the lan is routed from the scanner: no default route, so an address
        # outside the lab fails in connect() itself and no packet can leave.
        topology.add_route(scanner, lan.prefix(family), via=uplink.address(router, family))
        for host in (target, default_limits_target):
            topology.add_route(host, "default", via=lan.address(router, family))
    topology.load_nft(target, TARGET_RULES)
    topology.load_nft(router, ROUTER_RULES)
    topology.load_nft(scanner, SCANNER_RULES)
    v4, v6 = lan.address(target, 4), f"[{lan.address(target, 6)}]"
    topology.start_listener(
        target,
        tcp=[f"{v4}:{TCP_OPEN}", f"{v6}:{TCP_OPEN}"],
        tcp_reset=[f"{host}:{port}" for host in (v4, v6) for port in RESETTING_PORTS],
        udp_echo=[f"{v4}:{UDP_ECHO}", f"{v6}:{UDP_ECHO}"],
    )
    for host in (target, default_limits_target):
        for family in (4, 6):
            topology.wait_reachable(scanner, lan.address(host, family), port=CLEAR_PORT)
    return Lab(topology, scanner, router, target, default_limits_target, lan)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    reason = require_netns()
    if reason is not None:
        pytest.skip(reason)
    with Topology() as topology:
        yield build_lab(topology)


@pytest.fixture(params=[4, 6], ids=["ipv4", "ipv6"])
def family(request: pytest.FixtureRequest) -> int:
    value: int = request.param
    return value


def scan_one(
    lab: Lab, address: str, port: int, proto: str, *options: str
) -> tuple[ScanRun, dict[str, object]]:
    """Scan one endpoint with the fast settings (plus `options`); return its one record."""
    run = lab.scan("-t", format_target(address, port, proto), *FAST, *options)
    record = run.record(port, proto, address)
    assert len(run.records) == 1, run.records
    return run, record


def assert_verdict(
    run: ScanRun, record: dict[str, object], state: str, reason: str, exit_code: int
) -> None:
    """Exact state and reason, and the exit code the contract gives them."""
    got = (record.get("state"), record.get("reason"))
    assert got == (state, reason), f"expected {state}/{reason}, got {record}\n{run.stderr}"
    assert run.exit_code == exit_code, f"exit {run.exit_code}, {record}\n{run.stderr}"


# (proto, port, state, reason): what the target itself says, port by port.
TARGET_CASES = [
    ("tcp", TCP_OPEN, "open", "syn-ack"),
    ("tcp", TCP_CLOSED, "refused", "conn-refused"),
    ("tcp", 9000, "filtered", "no-response"),
    ("tcp", 9002, "filtered", "admin-prohibited"),
    ("tcp", 9004, "refused", "port-unreach"),  # nft `reject`: ICMP port unreachable
    ("tcp", 9005, "refused", "conn-refused"),  # `reject with tcp reset`
    ("tcp", 9006, "filtered", "host-unreach"),
    ("tcp", 9008, "filtered", "net-unreach"),  # icmpx no-route: v4 3/0, v6 1/0
    ("udp", UDP_ECHO, "open", "udp-response"),
    ("udp", UDP_CLOSED, "refused", "port-unreach"),
    ("udp", 9001, "open|filtered", "no-response"),
    ("udp", 9003, "filtered", "admin-prohibited"),
    ("udp", 9007, "filtered", "host-unreach"),
]


@pytest.mark.parametrize(
    ("proto", "port", "state", "reason"),
    TARGET_CASES,
    ids=[f"{case[0]}-{case[1]}-{case[3]}" for case in TARGET_CASES],
)
@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_target_answers(
    lab: Lab, family: int, loop: str, proto: str, port: int, state: str, reason: str
) -> None:
    """The kernel reports the same on both loops; the engine must read it the same way."""
    run, record = scan_one(lab, lab.target_address(family), port, proto, "--loop", loop)
    assert_verdict(run, record, state, reason, exit_code=0)
    assert record["host"] == lab.target_address(family)
    assert record["resolved_via"] == "literal"


def test_accept_then_reset_is_still_open(lab: Lab, family: int) -> None:
    """A server that resets right after accepting still completed the handshake.

    The RST can arrive before the scanner reads SO_ERROR, which then says ECONNRESET (an
    RST in SYN-SENT would have said ECONNREFUSED): that is a SYN-ACK, not an error.
    Twenty such ports in one run make the race likely to show.
    """
    address = lab.target_address(family)
    ports = f"{RESETTING_PORTS.start}-{RESETTING_PORTS.stop - 1}"
    run = lab.scan("-t", format_target(address, ports, "tcp"), *FAST)
    verdicts = {record["port"]: (record["state"], record["reason"]) for record in run.records}
    assert set(verdicts) == set(RESETTING_PORTS), run.records
    wrong = {port: verdict for port, verdict in verdicts.items() if verdict != ("open", "syn-ack")}
    assert wrong == {}, f"{len(wrong)} of 20 not open/syn-ack: {wrong}\n{run.stderr}"
    assert run.exit_code == 0, run.stderr


@pytest.mark.parametrize(("proto", "port"), [("tcp", 9100), ("udp", 9101)])
def test_router_forward_reject_is_admin_prohibited(
    lab: Lab, family: int, proto: str, port: int
) -> None:
    run, record = scan_one(lab, lab.target_address(family), port, proto)
    assert_verdict(run, record, "filtered", "admin-prohibited", exit_code=0)


def test_dead_address_on_target_subnet_is_host_unreach(lab: Lab, family: int) -> None:
    """The router ARPs (or solicits) three times, a second apart, then says host-unreach."""
    dead = lab.lan.unused_address(family)
    run = lab.scan(
        "-t",
        format_target(dead, 80, "tcp"),
        "-t",
        format_target(dead, 80, "udp"),
        "--timeout",
        "6",
        "--retries",
        "0",
    )
    for proto in ("tcp", "udp"):
        assert_verdict(run, run.record(80, proto, dead), "filtered", "host-unreach", 0)
    assert len(run.records) == 2, run.records


@pytest.mark.parametrize(
    ("proto", "port"),
    [("tcp", 9200), ("tcp", 9201), ("udp", 9202)],
    ids=["tcp-reject-admin-prohibited", "tcp-reject", "udp-drop"],
)
def test_own_output_chain_is_local_firewall(lab: Lab, family: int, proto: str, port: int) -> None:
    """Nothing left this machine, so nothing was learned about the target: an error."""
    run, record = scan_one(lab, lab.target_address(family), port, proto)
    assert_verdict(run, record, "error", "local-firewall", exit_code=1)


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_no_route_is_local_error(lab: Lab, family: int, proto: str) -> None:
    default_routes = lab.topology.exec_in(
        lab.scanner, ["ip", f"-{family}", "route", "show", "default"]
    ).stdout
    assert default_routes.strip() == "", "the scanner namespace must have no default route"
    address = UNROUTED_ADDRESSES[family]
    run, record = scan_one(lab, address, 80, proto)
    assert_verdict(run, record, "error", "no-route", exit_code=1)


@pytest.mark.slow
def test_default_icmp_rate_limits_recovered_by_retries(lab: Lab, family: int) -> None:
    """With the kernel's limits only a burst of port-unreachables gets out at once
    (about 6 on IPv4, then one a second); the engine must pace its retries so that
    every closed port is still reported refused rather than open|filtered."""
    address = lab.lan.address(lab.default_limits_target, family)
    ports = f"{RATE_LIMITED_PORTS.start}-{RATE_LIMITED_PORTS.stop - 1}"
    run = lab.scan(
        "-t", format_target(address, ports, "udp"), "--timeout", "1", "--retries", "3", timeout=60.0
    )
    verdicts = {record["port"]: (record["state"], record["reason"]) for record in run.records}
    assert len(run.records) == len(RATE_LIMITED_PORTS), run.records
    assert set(verdicts) == set(RATE_LIMITED_PORTS), run.records
    wrong = {
        port: verdict
        for port, verdict in verdicts.items()
        if verdict != ("refused", "port-unreach")
    }
    assert wrong == {}, f"{len(wrong)} of 20 not refused/port-unreach: {wrong}\n{run.stderr}"
    assert run.exit_code == 0, run.stderr
