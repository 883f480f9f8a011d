"""`--format nmap-xml`: nmap's XML, read back by a real consumer (python-libnmap)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import pytest
from libnmap.objects import NmapReport
from libnmap.parser import NmapParser

from scanner.core.model import Endpoint, Expect, Proto, Reason, ResolvedVia, Result, State
from scanner.core.sinks import RunInfo, RunSummary
from scanner.outputs import make_sink
from scanner.outputs.nmap_xml import nmap_port_state, port_ranges
from tests.support.summaries import summarize

STARTED = 1795559400.0
FINISHED = 1795559412.5
COMMAND = "reachscan scan --format nmap-xml -o out.xml -t 'db1:5432' fleet.yaml"
RUN = RunInfo(started=STARTED, command=COMMAND, version="0.1.0")


def result(
    host: str,
    port: int,
    state: State,
    reason: Reason,
    *,
    address: str | None,
    proto: Proto = Proto.TCP,
    offender: str | None = None,
    service: str | None = None,
    ts: float = STARTED + 1,
) -> Result:
    return Result(
        endpoint=Endpoint(host=host, port=port, proto=proto, expect=Expect.OPEN, service=service),
        address=address,
        resolved_via=ResolvedVia.DNS if address else ResolvedVia.NONE,
        state=state,
        reason=reason,
        rtt_ms=None,
        ts=ts,
        offender=offender,
    )


def summary_of(results: Sequence[Result], **overrides: object) -> RunSummary:
    return summarize(results, **{"finished": FINISHED, **overrides})  # type: ignore[arg-type]


def write_xml(
    path: Path, results: Sequence[Result], *, run: RunInfo = RUN, **summary: object
) -> str:
    sink = make_sink("nmap-xml", str(path))
    sink.start(run)
    half = len(results) // 2
    sink.write(results[:half])
    sink.write(results[half:])
    sink.finish(summary_of(results, **summary))
    return path.read_text(encoding="utf-8")


def parsed(path: Path) -> NmapReport:
    report = NmapParser.parse_fromfile(str(path))
    assert isinstance(report, NmapReport)
    return report


def ports_of(report: NmapReport) -> dict[str, dict[tuple[int, str], tuple[str, str]]]:
    """address -> (port, proto) -> (state, reason), as libnmap sees them."""
    return {
        host.address: {
            (service.port, service.protocol): (service.state, service.reason)
            for service in host.services
        }
        for host in report.hosts
    }


FLEET = [
    result("db1.example", 5432, State.OPEN, Reason.SYN_ACK, address="10.0.0.5"),
    result("db1.example", 23, State.REFUSED, Reason.CONN_REFUSED, address="10.0.0.5"),
    result(
        "db1.example",
        53,
        State.OPEN_FILTERED,
        Reason.NO_RESPONSE,
        address="10.0.0.5",
        proto=Proto.UDP,
    ),
    result(
        "db1.example", 161, State.REFUSED, Reason.PORT_UNREACH, address="10.0.0.5", proto=Proto.UDP
    ),
    result("10.0.0.9", 443, State.FILTERED, Reason.NO_RESPONSE, address="10.0.0.9"),
    result(
        "10.0.0.9",
        444,
        State.FILTERED,
        Reason.HOST_UNREACH,
        address="10.0.0.9",
        offender="10.0.0.1",
    ),
    result("fw.example", 8080, State.REFUSED, Reason.PORT_UNREACH, address="2001:db8::7"),
    result(
        "fw.example",
        8081,
        State.FILTERED,
        Reason.ADMIN_PROHIBITED,
        address="2001:db8::7",
        offender="2001:db8::1",
    ),
    result("fw.example", 8082, State.ERROR, Reason.LOCAL_FIREWALL, address="2001:db8::7"),
    result("gone.example", 22, State.UNRESOLVED, Reason.NXDOMAIN, address=None),
    result("gone.example", 80, State.UNRESOLVED, Reason.NXDOMAIN, address=None),
]


def test_libnmap_sees_every_host_port_and_state(tmp_path: Path) -> None:
    path = tmp_path / "scan.xml"
    write_xml(path, FLEET)

    report = parsed(path)
    assert ports_of(report) == {
        "10.0.0.5": {
            (5432, "tcp"): ("open", "syn-ack"),
            (23, "tcp"): ("closed", "conn-refused"),
            (53, "udp"): ("open|filtered", "no-response"),
            (161, "udp"): ("closed", "port-unreach"),
        },
        "10.0.0.9": {
            (443, "tcp"): ("filtered", "no-response"),
            (444, "tcp"): ("filtered", "host-unreach"),
        },
        "2001:db8::7": {
            (8080, "tcp"): ("filtered", "port-unreach"),  # a TCP REJECT, as nmap -sS says
            (8081, "tcp"): ("filtered", "admin-prohibited"),
            (8082, "tcp"): ("unknown", "perm-denied"),
        },
    }


def test_hosts_addresses_names_and_status(tmp_path: Path) -> None:
    path = tmp_path / "scan.xml"
    write_xml(path, FLEET)

    hosts = {host.address: host for host in parsed(path).hosts}
    assert hosts["10.0.0.5"].ipv4 == "10.0.0.5"
    assert hosts["10.0.0.5"].hostnames == ["db1.example"]
    assert hosts["10.0.0.5"].status == "up"
    assert hosts["10.0.0.9"].hostnames == []  # an address literal is no hostname
    assert hosts["10.0.0.9"].status == "down"  # nothing answered
    assert hosts["2001:db8::7"].ipv6 == "2001:db8::7"
    assert hosts["2001:db8::7"].status == "up"  # its REJECT answered
    assert hosts["10.0.0.5"].starttime == str(int(STARTED + 1))


def test_the_icmp_sender_is_reason_ip(tmp_path: Path) -> None:
    path = tmp_path / "scan.xml"
    write_xml(path, FLEET)

    hosts = {host.address: host for host in parsed(path).hosts}
    by_port = {service.port: service for service in hosts["10.0.0.9"].services}
    assert by_port[444].reason_ip == "10.0.0.1"
    assert by_port[443].reason_ip == ""


def test_run_attributes_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "scan.xml"
    write_xml(path, FLEET)

    report = parsed(path)
    assert report.commandline == COMMAND
    assert report.version == "0.1.0"
    assert report.started == int(STARTED)
    assert report.endtime == int(FINISHED)
    assert report.elapsed == 12.5
    assert (report.hosts_up, report.hosts_down, report.hosts_total) == (2, 1, 3)
    assert report.is_consistent()
    root = ET.parse(path).getroot()
    assert root.get("scanner") == "reachscan"
    assert root.get("xmloutputversion") == "1.05"
    # tcp before udp, as nmap -sT -sU writes them (libnmap's scan_type keeps the last one)
    scaninfo = {info.get("protocol"): info.attrib for info in root.iter("scaninfo")}
    assert list(scaninfo) == ["tcp", "udp"]
    assert scaninfo == {
        "tcp": {
            "type": "connect",
            "protocol": "tcp",
            "numservices": "7",
            "services": "23,443-444,5432,8080-8082",
        },
        "udp": {"type": "udp", "protocol": "udp", "numservices": "2", "services": "53,161"},
    }
    finished = root.find("runstats/finished")
    assert finished is not None
    assert finished.get("exit") == "success"


def test_elements_come_in_the_order_the_dtd_requires(tmp_path: Path) -> None:
    path = tmp_path / "scan.xml"
    text = write_xml(path, FLEET)

    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE nmaprun>\n')
    root = ET.parse(path).getroot()
    tags = [child.tag for child in root]
    assert tags == [
        "scaninfo",
        "scaninfo",
        "verbose",
        "debugging",
        "host",
        "host",
        "host",
        "runstats",
    ]
    for host in root.iter("host"):
        assert [child.tag for child in host] == ["status", "address", "hostnames", "ports"]
        status = host.find("status")
        assert status is not None
        assert set(status.attrib) == {"state", "reason", "reason_ttl"}
        for port in host.iter("port"):
            assert [child.tag for child in port] in (["state"], ["state", "service"])
            assert set(port.attrib) == {"protocol", "portid"}
    runstats = root.find("runstats")
    assert runstats is not None
    assert [child.tag for child in runstats] == ["finished", "hosts"]


def test_unresolved_names_have_no_host_but_are_counted_in_a_comment(tmp_path: Path) -> None:
    path = tmp_path / "scan.xml"
    text = write_xml(path, FLEET)

    assert "gone.example" not in {name for host in parsed(path).hosts for name in host.hostnames}
    assert "<!-- 2 endpoint(s) not listed" in text
    assert "gone.example" in text.split("<runstats>")[0].rsplit("<!--", 1)[1]


def test_services_come_from_the_inventory_or_the_service_table(tmp_path: Path) -> None:
    path = tmp_path / "scan.xml"
    write_xml(
        path,
        [
            result("a", 22, State.OPEN, Reason.SYN_ACK, address="10.0.0.1"),
            result("a", 8443, State.OPEN, Reason.SYN_ACK, address="10.0.0.1", service="admin"),
            result("a", 40000, State.OPEN, Reason.SYN_ACK, address="10.0.0.1"),
        ],
    )

    services = {s.port: s.service for s in parsed(path).hosts[0].services}
    assert services == {22: "ssh", 8443: "admin", 40000: ""}


def test_two_names_for_one_address_make_one_host_with_both_names(tmp_path: Path) -> None:
    path = tmp_path / "scan.xml"
    write_xml(
        path,
        [
            result("www.example", 443, State.OPEN, Reason.SYN_ACK, address="10.0.0.1"),
            result("api.example", 443, State.OPEN, Reason.SYN_ACK, address="10.0.0.1"),
            result("api.example", 80, State.REFUSED, Reason.CONN_REFUSED, address="10.0.0.1"),
        ],
    )

    (host,) = parsed(path).hosts
    assert host.hostnames == ["www.example", "api.example"]
    assert sorted((s.port, s.state) for s in host.services) == [(80, "closed"), (443, "open")]


def test_hostile_text_cannot_break_the_document(tmp_path: Path) -> None:
    """A command line may hold `--`, markup, quotes, control characters and undecodable
    bytes (surrogate escapes); the document must still parse and keep what it can."""
    command = "reachscan scan --x \"<a>\" & 'q' \x01 \udcff --"
    path = tmp_path / "scan.xml"
    write_xml(
        path,
        [result('we"ird<&>', 1, State.OPEN, Reason.SYN_ACK, address="10.0.0.1")],
        run=RunInfo(started=STARTED, command=command, version="0.1.0"),
    )

    report = parsed(path)
    assert report.commandline == "reachscan scan --x \"<a>\" & 'q' \ufffd \ufffd --"
    assert report.hosts[0].hostnames == ['we"ird<&>']


def test_an_interrupted_run_says_so_in_runstats(tmp_path: Path) -> None:
    path = tmp_path / "scan.xml"
    write_xml(path, FLEET[:2], interrupted=True)

    finished = ET.parse(path).getroot().find("runstats/finished")
    assert finished is not None
    assert finished.get("exit") == "error"
    assert "interrupted" in (finished.get("errormsg") or "")
    assert len(parsed(path).hosts) == 1


def test_an_empty_run_is_still_a_valid_report(tmp_path: Path) -> None:
    path = tmp_path / "scan.xml"
    write_xml(path, [])

    report = parsed(path)
    assert report.hosts == []
    assert report.hosts_total == 0


def test_abort_leaves_no_file(tmp_path: Path) -> None:
    sink = make_sink("nmap-xml", str(tmp_path / "scan.xml"))
    sink.start(RUN)
    sink.write(FLEET)
    sink.abort()

    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("state", "reason", "proto", "expected"),
    [
        (State.OPEN, Reason.SYN_ACK, Proto.TCP, "open"),
        (State.OPEN, Reason.UDP_RESPONSE, Proto.UDP, "open"),
        (State.REFUSED, Reason.CONN_REFUSED, Proto.TCP, "closed"),
        (State.REFUSED, Reason.PORT_UNREACH, Proto.UDP, "closed"),
        (State.REFUSED, Reason.PORT_UNREACH, Proto.TCP, "filtered"),
        (State.FILTERED, Reason.NO_RESPONSE, Proto.TCP, "filtered"),
        (State.OPEN_FILTERED, Reason.NO_RESPONSE, Proto.UDP, "open|filtered"),
        (State.ERROR, Reason.NO_ROUTE, Proto.TCP, "unknown"),
    ],
)
def test_state_mapping(state: State, reason: Reason, proto: Proto, expected: str) -> None:
    assert (
        nmap_port_state(result("h", 1, state, reason, address="10.0.0.1", proto=proto)) == expected
    )


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        ([], ""),
        ([22], "22"),
        ([80, 22, 81, 82, 443, 22], "22,80-82,443"),
        ([1, 2, 4, 5, 7], "1-2,4-5,7"),
    ],
)
def test_port_ranges(ports: list[int], expected: str) -> None:
    assert port_ranges(ports) == expected
