"""The cause analysis end to end: for every kind of cause, a scenario that produces it.

Each test builds a small, real situation — listeners on unusual 127.88.x.y addresses and
::1, names answered by the tests' own DNS responder and a temporary hosts file, a YAML
inventory that expects the endpoints open — runs `reachscan scan` as a subprocess and
checks the exact cause kind and the evidence a person could verify by hand: the port that
answered and how it relates, the fresh addresses, the bound address and the pid of the
listening process (this test process).

Two kinds cannot arise on loopback, by design: every 127.x address is "this machine", so a
refusal there is at least `service-down` (the host is up), never `wrong-host` or `unknown`.
Those, and `filtered` causes, are built in network namespaces (root only; they skip
elsewhere) where the target is another host. The `registered-port` relation of
`wrong-port` needs an inventory that names a service on a port other than its own
(`{port: 15432, service: postgresql}`): the service's registered port is then tried.

Ports: this machine runs unrelated listeners (0.0.0.0:2024) and other tests run their own
at the same time, and a listener for the expected port on *any* address turns a scenario
into `bound-elsewhere`. So every scenario port is picked where the kernel's table shows
nothing listening on it, or on any port related to it, on any address.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from scanner.core.diagnose import related_ports
from scanner.core.model import Proto
from scanner.core.sharding import SPREAD_MIN_PORTS, Sharding
from tests.support.cli import Reachscan as BaseReachscan
from tests.support.cli import parse_records
from tests.support.dns_responder import DnsResponder
from tests.support.fixtures import HostsFileFactory
from tests.support.listeners import LoopbackServices
from tests.support.netns import Topology, require_netns
from tests.support.proc_net import bound_sockets

REPO_ROOT = Path(__file__).resolve().parents[2]

PORT_LOW, PORT_HIGH = 10_000, 32_000
"""Scenario ports come from below the ephemeral range (32768 and up), so sockets other
tests bind to port 0 cannot take them while a scan runs."""

COMMON_PORTS = [22, 25, 53, 80, 443, 445, 3389, 8080]
"""The liveness ports the diagnosis tries on an address that answered nothing (sorted)."""

Record = dict[str, Any]


# --- running the command -------------------------------------------------------------------


class Reachscan(BaseReachscan):
    """The shared CLI runner, plus the scan every scenario here makes."""

    __slots__ = ()

    def jsonl(self, inventory: Path, *args: str) -> list[Record]:
        """Scan an inventory, JSON Lines on stdout; the run must end as documented."""
        run = self.run(str(inventory), "--format", "jsonl", *args)
        assert run.returncode == 1, run.stderr  # something expected open is not
        assert "Traceback" not in run.stderr, run.stderr
        return run.records


@pytest.fixture(autouse=True)
def private_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's runs keep their state (the run history) in its own directory: a cause
    must come from this test's scenario, not from what earlier runs saw, and parallel
    tests must not wait on each other's history lock."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture
def reachscan(dns_responder: DnsResponder, hosts_file: HostsFileFactory) -> Reachscan:
    return Reachscan(hosts_file=hosts_file({}), nameserver=dns_responder.address_text)


def write_inventory(directory: Path, hosts: Sequence[Mapping[str, object]]) -> Path:
    """A YAML inventory of these host entries; every endpoint is expected open."""
    path = directory / "inventory.yaml"
    path.write_text(yaml.safe_dump({"hosts": list(hosts)}), encoding="utf-8")
    return path


def only_record(records: Sequence[Record], host: str, address: str, port: int) -> Record:
    found = [
        record
        for record in records
        if (record["host"], record["address"], record["port"]) == (host, address, port)
    ]
    assert len(found) == 1, f"{host} {address}:{port} in {records}"
    return found[0]


def refused_cause(record: Record) -> dict[str, Any]:
    """The cause of a refused endpoint that was expected open (it must have one)."""
    assert (record["state"], record["reason"], record["expect"]) == (
        "refused",
        "conn-refused",
        "open",
    ), record
    cause = record["cause"]
    assert isinstance(cause, dict), record
    assert set(cause) == {"kind", "confidence", "evidence", "advice"}, cause
    return cause


# --- picking ports nothing listens on ------------------------------------------------------


def swapped(port: int) -> int:
    """The port with its two bytes swapped, computed here independently of the scanner."""
    return int.from_bytes(port.to_bytes(2, "big"), "little")


def swappable(port: int) -> bool:
    """Its byte swap is another port, one a test can bind without privilege."""
    return swapped(port) != port and swapped(port) >= 1024


@dataclass(slots=True)
class PortPicker:
    """Ports such that nothing listens, on any address, on the port or its related ports.

    `taken` starts as the kernel's listening ports; every port handed out adds itself and
    its related ports, so the scenarios of one test never touch each other's ports.
    """

    taken: set[int]
    rng: random.Random = field(default_factory=random.Random)

    def claim(self, port: int, service: str | None = None) -> bool:
        """Take `port` if it and its related ports are quiet; False when they are not."""
        around = {port, *(related for related, _relation in related_ports(port, service))}
        if around & self.taken:
            return False
        self.taken |= around
        return True

    def quiet(self, fits: Callable[[int], bool] = lambda port: True) -> int:
        for _ in range(5_000):
            port = self.rng.randrange(PORT_LOW, PORT_HIGH)
            if fits(port) and self.claim(port):
                return port
        raise RuntimeError("no quiet port found: is something listening on thousands of ports?")


@pytest.fixture
def ports() -> PortPicker:
    return PortPicker({sock.port for sock in bound_sockets("tcp")})


def this_process() -> str:
    """How the diagnosis names this test process, the owner of the test listeners."""
    name = Path("/proc/self/comm").read_text(encoding="utf-8").strip()
    return f"{name} (pid {os.getpid()})"


# --- stale-address -------------------------------------------------------------------------


def test_a_hosts_file_address_dns_no_longer_gives_is_stale(
    reachscan: Reachscan,
    services: LoopbackServices,
    dns_responder: DnsResponder,
    hosts_file: HostsFileFactory,
    ports: PortPicker,
    tmp_path: Path,
) -> None:
    """The hosts file still says 127.88.1.1; DNS moved app.test to 127.88.1.2, which
    accepts. The address probed came from the hosts file, which wins over DNS."""
    port = ports.quiet()
    services.tcp("127.88.1.2", port)
    dns_responder.set_records("app.test", ["127.88.1.2"])
    scan = reachscan.with_hosts(hosts_file({"app.test": ["127.88.1.1"]}))

    records = scan.jsonl(write_inventory(tmp_path, [{"host": "app.test", "ports": [port]}]))

    assert len(records) == 1, records
    record = only_record(records, "app.test", "127.88.1.1", port)
    assert record["resolved_via"] == "hosts-file"
    cause = refused_cause(record)
    assert cause["kind"] == "stale-address"
    assert cause["confidence"] == 0.9
    assert cause["evidence"] == {
        "name": "app.test",
        "probed_address": "127.88.1.1",
        "resolved_via": "hosts-file",
        "fresh_addresses": ["127.88.1.2"],
        "answered": ["127.88.1.2"],
        "port": port,
    }
    assert "the hosts file maps app.test to 127.88.1.1" in cause["advice"]
    assert services.accepted("127.88.1.2", port) >= 1  # the follow-up really probed it


def test_a_pinned_address_dns_no_longer_gives_is_stale(
    reachscan: Reachscan,
    services: LoopbackServices,
    dns_responder: DnsResponder,
    ports: PortPicker,
    tmp_path: Path,
) -> None:
    port = ports.quiet()
    services.tcp("127.88.2.2", port)
    dns_responder.set_records("pinned.test", ["127.88.2.2"])
    inventory = write_inventory(
        tmp_path, [{"host": "pinned.test", "address": "127.88.2.1", "ports": [port]}]
    )

    records = reachscan.jsonl(inventory)

    record = only_record(records, "pinned.test", "127.88.2.1", port)
    assert record["resolved_via"] == "pinned"
    cause = refused_cause(record)
    assert cause["kind"] == "stale-address"
    assert cause["evidence"] == {
        "name": "pinned.test",
        "probed_address": "127.88.2.1",
        "resolved_via": "pinned",
        "fresh_addresses": ["127.88.2.2"],
        "answered": ["127.88.2.2"],
        "port": port,
    }
    assert "the inventory pins pinned.test to 127.88.2.1" in cause["advice"]


def test_an_address_dns_still_lists_is_not_stale(
    reachscan: Reachscan,
    services: LoopbackServices,
    dns_responder: DnsResponder,
    hosts_file: HostsFileFactory,
    ports: PortPicker,
    tmp_path: Path,
) -> None:
    """DNS gives both 127.88.3.1 and 127.88.3.2: the refusing one is a dead pool member,
    not a stale copy. On this machine the kernel table then shows why it refuses."""
    port = ports.quiet()
    services.tcp("127.88.3.2", port)
    dns_responder.set_records("pool.test", ["127.88.3.1", "127.88.3.2"])
    scan = reachscan.with_hosts(hosts_file({"pool.test": ["127.88.3.1"]}))

    records = scan.jsonl(write_inventory(tmp_path, [{"host": "pool.test", "ports": [port]}]))

    cause = refused_cause(only_record(records, "pool.test", "127.88.3.1", port))
    assert cause["kind"] == "bound-elsewhere"
    assert set(cause["evidence"]["bound_addresses"]) == {f"127.88.3.2:{port}"}


# --- wrong-port ----------------------------------------------------------------------------


def test_a_listener_on_the_byte_swapped_port_is_wrong_port(
    reachscan: Reachscan, services: LoopbackServices, ports: PortPicker, tmp_path: Path
) -> None:
    """A missing htons turns 8080 (0x1F90) into 36895 (0x901F); any port works the same."""
    port = ports.quiet(swappable)
    services.tcp("127.88.4.1", swapped(port))

    records = reachscan.jsonl(write_inventory(tmp_path, [{"host": "127.88.4.1", "ports": [port]}]))

    cause = refused_cause(only_record(records, "127.88.4.1", "127.88.4.1", port))
    assert cause["kind"] == "wrong-port"
    assert cause["confidence"] == 0.9
    assert cause["evidence"] == {
        "expected_port": port,
        "answered_port": swapped(port),
        "relation": "byte-swapped",
        "also_answered": [],
    }
    assert "two bytes swapped" in cause["advice"]


ALTERNATE_CASES = [
    # (service name in the inventory, its port, the alternate the service moved to)
    ("https", 443, 8443),
    ("ssh", 22, 2222),
    ("mysql", 3306, 33060),
    ("http", 80, 8888),
]


def test_a_listener_on_a_well_known_alternate_is_wrong_port(
    reachscan: Reachscan, services: LoopbackServices, ports: PortPicker, tmp_path: Path
) -> None:
    """The inventory says `https`; the service listens on 8443. (The inventory names the
    service by its registered port, so this is an alternate, not a registered-port case.)"""
    chosen = next((case for case in ALTERNATE_CASES if ports.claim(case[1], service=case[0])), None)
    if chosen is None:
        pytest.skip("every candidate service port has a listener on this machine")
    service, port, alternate = chosen
    services.tcp("127.88.6.1", alternate)

    records = reachscan.jsonl(
        write_inventory(tmp_path, [{"host": "127.88.6.1", "ports": [service]}])
    )

    cause = refused_cause(only_record(records, "127.88.6.1", "127.88.6.1", port))
    assert cause["kind"] == "wrong-port"
    assert cause["confidence"] == 0.7
    assert cause["evidence"] == {
        "expected_port": port,
        "answered_port": alternate,
        "relation": "alternate",
        "also_answered": [],
    }


REGISTERED_CASES = [("postgresql", 5432), ("redis", 6379), ("mysql", 3306), ("ldap", 389)]


def test_a_service_on_its_registered_port_instead_of_the_inventorys_is_wrong_port(
    reachscan: Reachscan, services: LoopbackServices, ports: PortPicker, tmp_path: Path
) -> None:
    """The inventory says postgresql runs on an unusual port; it runs on 5432."""
    chosen = next(
        (case for case in REGISTERED_CASES if ports.claim(case[1], service=case[0])), None
    )
    if chosen is None:
        pytest.skip("every candidate registered port has a listener on this machine")
    service, registered = chosen
    port = ports.quiet(lambda candidate: candidate not in (registered - 1, registered + 1))
    services.tcp("127.88.9.1", registered)

    records = reachscan.jsonl(
        write_inventory(
            tmp_path, [{"host": "127.88.9.1", "ports": [{"port": port, "service": service}]}]
        )
    )

    cause = refused_cause(only_record(records, "127.88.9.1", "127.88.9.1", port))
    assert cause["kind"] == "wrong-port"
    assert cause["evidence"]["answered_port"] == registered
    assert cause["evidence"]["relation"] == "registered-port"


def test_a_listener_on_the_next_port_is_wrong_port(
    reachscan: Reachscan, services: LoopbackServices, ports: PortPicker, tmp_path: Path
) -> None:
    port = ports.quiet()
    services.tcp("127.88.7.1", port + 1)

    records = reachscan.jsonl(write_inventory(tmp_path, [{"host": "127.88.7.1", "ports": [port]}]))

    cause = refused_cause(only_record(records, "127.88.7.1", "127.88.7.1", port))
    assert cause["kind"] == "wrong-port"
    assert cause["confidence"] == 0.5
    assert cause["evidence"] == {
        "expected_port": port,
        "answered_port": port + 1,
        "relation": "adjacent",
        "also_answered": [],
    }


# --- address-family ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listening", "refusing", "refusing_family", "listening_family"),
    [("127.88.5.1", "::1", 6, 4), ("::1", "127.88.5.2", 4, 6)],
    ids=["ipv4-only-service", "ipv6-only-service"],
)
def test_a_service_on_one_family_only_is_address_family(
    reachscan: Reachscan,
    services: LoopbackServices,
    dns_responder: DnsResponder,
    ports: PortPicker,
    tmp_path: Path,
    listening: str,
    refusing: str,
    refusing_family: int,
    listening_family: int,
) -> None:
    """dual.test has an A and an AAAA record; the service listens on one of them only."""
    port = ports.quiet()
    services.tcp(listening, port)
    dns_responder.set_records("dual.test", [listening, refusing])

    records = reachscan.jsonl(write_inventory(tmp_path, [{"host": "dual.test", "ports": [port]}]))

    assert only_record(records, "dual.test", listening, port)["state"] == "open"
    record = only_record(records, "dual.test", refusing, port)
    assert record["resolved_via"] == "dns"
    cause = refused_cause(record)
    assert cause["kind"] == "address-family"
    assert cause["confidence"] == 0.9
    assert cause["evidence"] == {
        "name": "dual.test",
        "probed_address": refusing,
        "family": refusing_family,
        "answered": [listening],
        "answered_family": listening_family,
        "port": port,
    }
    assert f"listens on IPv{listening_family} only" in cause["advice"]


# --- bound-elsewhere -----------------------------------------------------------------------


def test_a_listener_bound_to_another_local_address_is_bound_elsewhere(
    reachscan: Reachscan, services: LoopbackServices, ports: PortPicker, tmp_path: Path
) -> None:
    """The inventory says 127.88.8.5; the service (this process) bound 127.88.8.6 only."""
    port = ports.quiet()
    services.tcp("127.88.8.6", port)

    records = reachscan.jsonl(write_inventory(tmp_path, [{"host": "127.88.8.5", "ports": [port]}]))

    cause = refused_cause(only_record(records, "127.88.8.5", "127.88.8.5", port))
    assert cause["kind"] == "bound-elsewhere"
    assert cause["confidence"] == 0.95
    evidence = cause["evidence"]
    assert (evidence["probed_address"], evidence["port"]) == ("127.88.8.5", port)
    # Compared as sets: /proc/net/tcp is not read as a snapshot, and while other sockets
    # come and go a listener can be listed twice (scanner.net.host_sockets does not yet
    # de-duplicate by inode).
    assert set(evidence["bound_addresses"]) == {f"127.88.8.6:{port}"}
    assert set(evidence["processes"]) == {this_process()}
    assert f"listens on 127.88.8.6:{port} only" in cause["advice"]


# --- service-down --------------------------------------------------------------------------


def test_another_inventory_port_answering_is_service_down(
    reachscan: Reachscan, services: LoopbackServices, ports: PortPicker, tmp_path: Path
) -> None:
    down_port, up_port = ports.quiet(), ports.quiet()
    services.tcp("127.88.9.1", up_port)

    records = reachscan.jsonl(
        write_inventory(tmp_path, [{"host": "127.88.9.1", "ports": [down_port, up_port]}])
    )

    assert only_record(records, "127.88.9.1", "127.88.9.1", up_port)["cause"] is None
    cause = refused_cause(only_record(records, "127.88.9.1", "127.88.9.1", down_port))
    assert cause["kind"] == "service-down"
    assert cause["confidence"] == 0.7
    assert cause["evidence"] == {
        "address": "127.88.9.1",
        "port": down_port,
        "alive_ports": [up_port],
        "local": True,
        "refusal": "conn-refused",
    }
    assert f"127.88.9.1 is up (it accepts on {up_port})" in cause["advice"]


def test_a_loopback_address_where_nothing_listens_is_service_down_not_wrong_host(
    reachscan: Reachscan, ports: PortPicker, tmp_path: Path
) -> None:
    """127.88.10.1 answers nothing, but it is this machine: the host is up by definition,
    so the diagnosis says the service is down rather than that the host is wrong."""
    port = ports.quiet()

    records = reachscan.jsonl(write_inventory(tmp_path, [{"host": "127.88.10.1", "ports": [port]}]))

    cause = refused_cause(only_record(records, "127.88.10.1", "127.88.10.1", port))
    assert cause["kind"] == "service-down"
    assert cause["evidence"] == {
        "address": "127.88.10.1",
        "port": port,
        "alive_ports": [],
        "local": True,
        "refusal": "conn-refused",
    }


def test_an_endpoint_open_in_an_earlier_run_is_service_down_since_then(
    reachscan: Reachscan, ports: PortPicker, tmp_path: Path
) -> None:
    """The first run finds the service; it stops; the second run says when it was last
    open, from the run history (this test's own: see `private_state`)."""
    port = ports.quiet()
    inventory = write_inventory(tmp_path, [{"host": "127.88.17.1", "ports": [port]}])
    with LoopbackServices() as first_services:
        first_services.tcp("127.88.17.1", port)
        first = reachscan.run(str(inventory), "--format", "jsonl")
    assert first.returncode == 0, first.stderr
    assert only_record(first.records, "127.88.17.1", "127.88.17.1", port)["state"] == "open"
    opened_at = only_record(first.records, "127.88.17.1", "127.88.17.1", port)["ts"]

    records = reachscan.jsonl(inventory)

    cause = refused_cause(only_record(records, "127.88.17.1", "127.88.17.1", port))
    assert cause["kind"] == "service-down"
    assert cause["confidence"] == 0.9
    evidence = cause["evidence"]
    assert (evidence["address"], evidence["port"], evidence["alive_ports"]) == (
        "127.88.17.1",
        port,
        [],
    )
    # Seconds, where the record's timestamp has milliseconds: the same moment, truncated.
    assert evidence["last_open"] == opened_at[:19] + "Z"
    assert f"it was open at {evidence['last_open']}" in cause["advice"]


# --- no diagnosis, budgets, the grouped report ----------------------------------------------


def test_no_diagnose_leaves_causes_null_and_sends_no_follow_up(
    reachscan: Reachscan, services: LoopbackServices, ports: PortPicker, tmp_path: Path
) -> None:
    """The listener on the next port would make it `wrong-port`; with --no-diagnose it is
    never even probed."""
    port = ports.quiet()
    services.tcp("127.88.11.1", port + 1)

    records = reachscan.jsonl(
        write_inventory(tmp_path, [{"host": "127.88.11.1", "ports": [port]}]), "--no-diagnose"
    )

    record = only_record(records, "127.88.11.1", "127.88.11.1", port)
    assert (record["state"], record["ok"], record["cause"]) == ("refused", False, None)
    assert services.accepted("127.88.11.1", port + 1) == 0


BUDGET = 500
BLOCK = "127.89.0-3.1-250"  # 1,000 addresses; no .0 or .255 that could count as broadcast
BLOCK_SIZE = 1000


def test_thousands_of_refusals_stay_within_the_budget_and_all_get_a_cause(
    reachscan: Reachscan, ports: PortPicker, tmp_path: Path
) -> None:
    """3,000 refused endpoints, each of which would want several follow-ups: the run sends
    at most the budget, and still explains every one (past the budget, with what it knows)."""
    block_ports = [ports.quiet() for _ in range(3)]
    inventory = write_inventory(tmp_path, [{"host": BLOCK, "ports": block_ports}])
    report_path, results_path = tmp_path / "report.json", tmp_path / "results.jsonl"

    run = reachscan.run(
        str(inventory),
        "--diagnose-budget",
        str(BUDGET),
        "--format",
        "report-json",
        "-o",
        str(report_path),
        "--format",
        "jsonl",
        "-o",
        str(results_path),
        timeout=110,
    )

    assert run.returncode == 1, run.stderr
    endpoints = BLOCK_SIZE * len(block_ports)
    records = parse_records(results_path.read_text(encoding="utf-8"))
    assert len(records) == endpoints
    assert {(record["state"], record["reason"]) for record in records} == {
        ("refused", "conn-refused")
    }
    assert all(isinstance(record["cause"], dict) for record in records)
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert 0 < report["run"]["follow_up_probes"] <= BUDGET
    assert report["run"]["total"] == endpoints
    assert report["refused"]["count"] == endpoints
    kinds = {group["kind"] for group in report["refused"]["groups"]}
    assert "undiagnosed" not in kinds
    assert sum(group["count"] for group in report["refused"]["groups"]) == endpoints


def other_shard_port(host: str, port: int, ports: PortPicker) -> int:
    """A quiet port of `host` that two shards give to the shard not holding `port`."""
    sharding = Sharding(2, per_host=1000)
    theirs = sharding.shard_of(host, port, Proto.TCP)
    for _ in range(5_000):
        candidate = ports.rng.randrange(PORT_LOW, PORT_HIGH)
        if sharding.shard_of(host, candidate, Proto.TCP) != theirs and ports.claim(candidate):
            return candidate
    raise RuntimeError("no quiet port in the other shard")


def history_rows(database: Path) -> list[tuple[object, ...]]:
    """Every result row of the database's one run, without the times (rtt, ts)."""
    with contextlib.closing(sqlite3.connect(database)) as connection:
        return sorted(
            connection.execute(
                "SELECT host, address, port, proto, state, reason, resolved_via, expect, ok,"
                " labels, cause_kind, cause FROM results"
            ).fetchall(),
            key=repr,
        )


def quiet_sweep(ports: PortPicker) -> str:
    """1,024 ports (`SPREAD_MIN_PORTS`) nothing listens on, above the picker's range: a
    sweep of them makes its host big, its TCP ports spread over the shards instead of
    staying whole in one (scanner/core/sharding.py)."""
    for first in range(PORT_HIGH + 1, 65_535 - SPREAD_MIN_PORTS, SPREAD_MIN_PORTS):
        block = set(range(first, first + SPREAD_MIN_PORTS))
        if not block & ports.taken:
            ports.taken |= block
            return f"{first}-{first + SPREAD_MIN_PORTS - 1}"
    raise RuntimeError("no 1,024 quiet ports in a row")


def test_two_workers_explain_every_refusal_exactly_as_one_process(
    reachscan: Reachscan, services: LoopbackServices, ports: PortPicker, tmp_path: Path
) -> None:
    """The evidence of one cause can lie in another shard: 127.88.20.2 is swept (so its
    ports are spread), and the port of it that answers is probed by the shard that does
    not hold the refused one (and a neighbour port is not among the inventory's at all).
    Sharded, the causes, the JSON Lines and the history's rows must be those of one
    process."""
    wrong_port = ports.quiet()
    services.tcp("127.88.20.1", wrong_port + 1)
    down_port = ports.quiet()
    up_port = other_shard_port("127.88.20.2", down_port, ports)
    services.tcp("127.88.20.2", up_port)
    nobody = ports.quiet()
    inventory = write_inventory(
        tmp_path,
        [
            {"host": "127.88.20.1", "ports": [wrong_port]},
            {"host": "127.88.20.2", "ports": [down_port, up_port]},
            {"host": "127.88.20.2", "ports": [quiet_sweep(ports)], "expect": "closed"},
            {"host": "127.88.20.3", "ports": [nobody]},
        ],
    )

    def scan(workers: str) -> tuple[list[Record], list[tuple[object, ...]]]:
        database = tmp_path / f"history-{workers}.sqlite"
        records = reachscan.jsonl(inventory, "--workers", workers, "--db", str(database))
        for record in records:
            record.pop("rtt_ms")
            record.pop("ts")
        return sorted(records, key=repr), history_rows(database)

    alone, sharded = scan("1"), scan("2")

    assert sharded == alone
    records, rows = alone
    assert len(records) == len(rows) == 4 + SPREAD_MIN_PORTS
    records = [record for record in records if record["expect"] == "open"]
    assert len(records) == 4
    causes = {(record["address"], record["port"]): record["cause"] for record in records}
    assert causes[("127.88.20.1", wrong_port)]["kind"] == "wrong-port"
    assert causes[("127.88.20.2", down_port)]["kind"] == "service-down"
    assert causes[("127.88.20.2", down_port)]["evidence"]["alive_ports"] == [up_port]
    assert causes[("127.88.20.3", nobody)]["kind"] == "service-down"


def test_the_table_groups_refusals_by_cause_with_counts_and_advice(
    reachscan: Reachscan,
    services: LoopbackServices,
    dns_responder: DnsResponder,
    hosts_file: HostsFileFactory,
    ports: PortPicker,
    tmp_path: Path,
) -> None:
    """Five kinds in one run; the table's tail names each with its count and its advice."""
    stale, bound, family, down_a, down_b, alive = (ports.quiet() for _ in range(6))
    swap = ports.quiet(swappable)
    services.tcp("127.88.12.2", stale)
    dns_responder.set_records("moved.test", ["127.88.12.2"])
    services.tcp("127.88.13.1", swapped(swap))
    services.tcp("127.88.14.6", bound)
    services.tcp("127.88.15.1", family)
    dns_responder.set_records("v4only.test", ["127.88.15.1", "::1"])
    services.tcp("127.88.16.1", alive)
    inventory = write_inventory(
        tmp_path,
        [
            {"host": "moved.test", "ports": [stale]},
            {"host": "127.88.13.1", "ports": [swap]},
            {"host": "127.88.14.5", "ports": [bound]},
            {"host": "v4only.test", "ports": [family]},
            {"host": "127.88.16.1", "ports": [down_a, down_b, alive]},
        ],
    )
    results_path = tmp_path / "results.jsonl"
    scan = reachscan.with_hosts(hosts_file({"moved.test": ["127.88.12.1"]}))

    run = scan.run(
        str(inventory),
        "--format",
        "jsonl",
        "-o",
        str(results_path),
        "--format",
        "table",
        "--color",
        "never",
    )

    assert run.returncode == 1, run.stderr
    causes = [
        cast("dict[str, Any]", record["cause"])
        for record in parse_records(results_path.read_text(encoding="utf-8"))
        if record["state"] == "refused"
    ]
    counts: dict[str, int] = {}
    for cause in causes:
        counts[cause["kind"]] = counts.get(cause["kind"], 0) + 1
    assert counts == {
        "stale-address": 1,
        "wrong-port": 1,
        "bound-elsewhere": 1,
        "address-family": 1,
        "service-down": 2,
    }
    table = run.stdout
    assert "Why 6 endpoints expected open are refused" in table
    lines = table.splitlines()
    for kind, count in counts.items():
        noun = "endpoint" if count == 1 else "endpoints"
        assert any(line.startswith(f"  {kind}: {count} {noun}") for line in lines), table
    for cause in causes:
        assert f"-> {cause['advice']}" in table, (cause, table)


# --- other hosts: network namespaces -------------------------------------------------------

WRONG_HOST_PORT = 7001
UNKNOWN_PORT = 7101
REJECTED_PORT = 9002
DROPPED_PORT = 9000

TARGET_RULES = f"""
table inet reachscan_diagnosis {{
    chain input {{
        type filter hook input priority 0; policy accept;
        tcp dport {REJECTED_PORT} reject with icmpx type admin-prohibited
        tcp dport {DROPPED_PORT} drop
    }}
}}
"""


@dataclass(frozen=True, slots=True)
class Lab:
    """A scanner namespace and a target host on one link; nothing listens on the target,
    so every port answers with a reset except the two its firewall rules cover."""

    topology: Topology
    scanner: str
    target_address: str

    def scan(self, inventory: Path, *args: str) -> list[dict[str, object]]:
        run = self.topology.scan(self.scanner, [str(inventory), *args])
        assert "Traceback" not in run.stderr, run.stderr
        assert run.exit_code == 1, run.stderr
        return list(run.records)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    reason = require_netns()
    if reason is not None:
        pytest.skip(reason)
    with Topology() as topology:
        scanner = topology.add_namespace("scan")
        target = topology.add_namespace("tgt")
        link = topology.add_segment([scanner, target])
        topology.load_nft(target, TARGET_RULES)
        target_address = link.address(target, 4)
        topology.wait_reachable(scanner, target_address)
        yield Lab(topology, scanner, target_address)


@pytest.mark.netns
def test_a_host_that_accepts_on_no_port_tried_is_wrong_host(lab: Lab, tmp_path: Path) -> None:
    """A machine answers (resets) but runs nothing: not this machine, never seen open."""
    address = lab.target_address
    inventory = write_inventory(tmp_path, [{"host": address, "ports": [WRONG_HOST_PORT]}])

    records = lab.scan(inventory)

    cause = refused_cause(only_record(records, address, address, WRONG_HOST_PORT))
    assert cause["kind"] == "wrong-host"
    assert cause["confidence"] == 0.6
    # 7001 (0x1B59), its byte swap 22811 (0x591B), its neighbours, and the liveness ports.
    assert cause["evidence"] == {
        "address": address,
        "ports_probed": sorted([*COMMON_PORTS, 7000, 7001, 7002, 22811]),
        "refusal": "conn-refused",
    }


@pytest.mark.netns
def test_a_refusal_with_no_follow_up_allowed_is_unknown(lab: Lab, tmp_path: Path) -> None:
    address = lab.target_address
    inventory = write_inventory(tmp_path, [{"host": address, "ports": [UNKNOWN_PORT]}])

    records = lab.scan(inventory, "--diagnose-per-endpoint", "0", "--diagnose-budget", "0")

    cause = refused_cause(only_record(records, address, address, UNKNOWN_PORT))
    assert cause["kind"] == "unknown"
    assert cause["confidence"] == 0.1
    assert cause["evidence"] == {
        # The run history (this test's own, empty) is consulted without a probe.
        "tried": ["1 port of this address in this run", "history"],
        "budget_exhausted": True,
        "fresh_dns_failure": None,
    }


@pytest.mark.netns
@pytest.mark.parametrize(
    ("port", "reason", "names_sender"),
    [(REJECTED_PORT, "admin-prohibited", True), (DROPPED_PORT, "no-response", False)],
    ids=["rejected", "dropped"],
)
def test_a_filtered_endpoint_expected_open_names_who_stopped_it(
    lab: Lab, tmp_path: Path, port: int, reason: str, names_sender: bool
) -> None:
    address = lab.target_address
    inventory = write_inventory(tmp_path, [{"host": address, "ports": [port]}])

    records = lab.scan(inventory, "--timeout", "0.5", "--retries", "0")

    record = only_record(records, address, address, port)
    assert (record["state"], record["reason"]) == ("filtered", reason)
    cause = record["cause"]
    assert isinstance(cause, dict), record
    assert cause["kind"] == "filtered"
    if names_sender:
        assert cause["confidence"] == 0.8
        assert cause["evidence"] == {"reason": reason, "offender": address, "who": "target"}
        assert f"rejected by {address}" in cause["advice"]
    else:
        assert cause["confidence"] == 0.5
        assert cause["evidence"] == {"reason": reason, "offender": None, "who": "unknown"}
