"""`--format nmap-xml`: the run as nmap's XML (`-oX`), for tools that already import nmap.

The document follows nmap.dtd (xmloutputversion 1.05) and the layout nmap 7.x writes, so
parsers such as python-libnmap, Metasploit's `db_import` or ndiff read it as a connect scan
(`scaninfo type="connect"`, plus `type="udp"` when UDP was probed). One deliberate
departure, as masscan makes too: `scanner="reachscan"`, where the DTD enumerates only
`nmap`, so that a reader can tell who produced the file.

Mapping our verdicts onto nmap's (what nmap itself reports for the same packets):
- states: open -> open, refused -> closed, filtered -> filtered, open|filtered ->
  open|filtered, error -> unknown (nmap's own word for "nothing learned"). One exception:
  a TCP port answered by ICMP port-unreachable is a firewall's REJECT, not a closed port,
  and nmap's SYN scan calls it `filtered` (reason port-unreach); so do we.
- reasons: ours are nmap's names already (`syn-ack`, `conn-refused` as nmap's connect scan
  writes it, `port-unreach`, `no-response`, `host-unreach`, `admin-prohibited`, ...). ICMP
  unreachable codes nmap has no name for become `dest-unreach`, as in nmap; a local
  firewall (EPERM) is nmap's `perm-denied`. The ICMP sender, when known, is `reason_ip`.
- a host is `up` when any of its ports answered (open or refused), `down` otherwise.

Results are buffered per address (one small row per port) and the file is written at
`finish`, atomically through the target. Names that did not resolve have no address and
so no `<host>` (nmap omits them too); a comment counts and names them.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from xml.sax.saxutils import quoteattr

from scanner.core.model import Proto, Reason, Result, State
from scanner.core.services import SERVICES
from scanner.core.sinks import OutputTarget, RunInfo, RunSummary

XML_OUTPUT_VERSION = "1.05"
SCANNER = "reachscan"
UNRESOLVED_NAMES_SHOWN = 20

PORT_STATES: Mapping[State, str] = MappingProxyType(
    {
        State.OPEN: "open",
        State.REFUSED: "closed",
        State.FILTERED: "filtered",
        State.OPEN_FILTERED: "open|filtered",
        State.ERROR: "unknown",
    }
)

# Reasons whose name nmap does not know; every other reason is written as it is.
_NMAP_REASONS: Mapping[Reason, str] = MappingProxyType(
    {
        Reason.FRAG_NEEDED: "dest-unreach",
        Reason.SOURCE_ROUTE_FAILED: "dest-unreach",
        Reason.NET_UNKNOWN: "dest-unreach",
        Reason.HOST_UNKNOWN: "dest-unreach",
        Reason.HOST_ISOLATED: "dest-unreach",
        Reason.TOS_NET_UNREACH: "dest-unreach",
        Reason.TOS_HOST_UNREACH: "dest-unreach",
        Reason.PRECEDENCE_VIOLATION: "dest-unreach",
        Reason.PRECEDENCE_CUTOFF: "dest-unreach",
        Reason.SOURCE_POLICY_FAILED: "dest-unreach",
        Reason.ICMP_OTHER: "unknown-response",
        Reason.LOCAL_FIREWALL: "perm-denied",
    }
)

_ANSWERED = frozenset({State.OPEN, State.REFUSED})
_SCAN_TYPES: Mapping[Proto, str] = MappingProxyType({Proto.TCP: "connect", Proto.UDP: "udp"})

# Characters XML 1.0 cannot carry at all, not even escaped (controls, lone surrogates from
# undecodable command-line bytes): replaced, so an odd argument cannot break the document.
_NOT_XML_CHARACTERS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def nmap_port_state(result: Result) -> str:
    """nmap's word for this result's port state (see the module docstring)."""
    if result.endpoint.proto is Proto.TCP and result.reason is Reason.PORT_UNREACH:
        return "filtered"
    return PORT_STATES.get(result.state, "unknown")


def nmap_reason(reason: Reason) -> str:
    return _NMAP_REASONS.get(reason, reason.value)


def service_name(result: Result) -> str | None:
    """The name the inventory used, else our service table's first name for the port."""
    endpoint = result.endpoint
    if endpoint.service is not None:
        return endpoint.service
    for name, service in SERVICES.items():
        if service.port == endpoint.port and endpoint.proto in service.protocols:
            return name
    return None


@dataclass(frozen=True, slots=True)
class _PortRow:
    state: str
    reason: str
    reason_ip: str | None
    service: str | None
    answered: bool  # the host sent something back: it is up


@dataclass(slots=True)
class _HostRows:
    """Everything the `<host>` element of one address needs; ports keyed (port, proto)."""

    first_seen: float
    last_seen: float
    names: dict[str, None] = field(default_factory=dict)  # an ordered set
    ports: dict[tuple[int, Proto], _PortRow] = field(default_factory=dict)

    @property
    def up(self) -> bool:
        return any(row.answered for row in self.ports.values())

    def status_reason(self) -> str:
        """The reason of the first answering port (by port number), like nmap's host
        status; for a down host, that of its first port."""
        rows = [self.ports[key] for key in sorted(self.ports)]
        answering = [row for row in rows if row.answered]
        deciding = answering or rows
        return deciding[0].reason if deciding else "no-response"


class NmapXmlSink:
    """Buffer results per address; write one nmap XML document at `finish`."""

    def __init__(self, target: OutputTarget) -> None:
        self._target = target
        self._run: RunInfo | None = None
        self._hosts: dict[str, _HostRows] = {}
        self._unresolved: dict[str, None] = {}
        self._unresolved_results = 0
        self._excluded: dict[str, None] = {}  # addresses, in the order first seen
        self._excluded_results = 0

    def start(self, run: RunInfo) -> None:
        self._run = run

    def write(self, results: Sequence[Result]) -> None:
        for result in results:
            if result.address is None:
                self._unresolved_results += 1
                self._unresolved[result.endpoint.host] = None
            elif result.state is State.EXCLUDED:
                # nmap lists no host it did not scan (its --exclude): neither does this,
                # but the document says which were left out.
                self._excluded_results += 1
                self._excluded[result.address] = None
            else:
                self._add(result, result.address)

    def finish(self, summary: RunSummary) -> None:
        run = self._run or RunInfo(started=summary.finished, command="", version="")
        self._target.write(self.render(run, summary).encode("utf-8"))
        self._target.commit()

    def verdict(self) -> None:
        """No exit status of its own: the run's results decide it."""
        return None

    def abort(self) -> None:
        self._target.discard()

    def _add(self, result: Result, address: str) -> None:
        host = self._hosts.get(address)
        if host is None:
            host = self._hosts[address] = _HostRows(first_seen=result.ts, last_seen=result.ts)
        host.first_seen = min(host.first_seen, result.ts)
        host.last_seen = max(host.last_seen, result.ts)
        if not _is_address(result.endpoint.host):
            host.names[result.endpoint.host] = None
        # Two names for one address can list the same port; nmap has one row per port, and
        # both probes went to the same place, so the first verdict stands.
        key = (result.endpoint.port, result.endpoint.proto)
        if key not in host.ports:
            offender = result.offender if result.offender != address else None
            host.ports[key] = _PortRow(
                state=nmap_port_state(result),
                reason=nmap_reason(result.reason),
                reason_ip=offender,
                service=service_name(result),
                answered=result.state in _ANSWERED,
            )

    def render(self, run: RunInfo, summary: RunSummary) -> str:
        """The whole document; `finish` writes it."""
        started = run.started
        lines = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            "<!DOCTYPE nmaprun>",
            _comment(
                f"{SCANNER} {run.version} scan initiated {_timestr(started)} as: {run.command}"
            ),
            _element(
                "nmaprun",
                {
                    "scanner": SCANNER,
                    "args": run.command,
                    "start": str(int(started)),
                    "startstr": _timestr(started),
                    "version": run.version,
                    "xmloutputversion": XML_OUTPUT_VERSION,
                },
                close=False,
            ),
        ]
        lines += self._scaninfo()
        lines += ['<verbose level="0"/>', '<debugging level="0"/>']
        for address in sorted(self._hosts, key=_address_order):
            lines.append(_host_element(address, self._hosts[address]))
        if self._unresolved_results:
            lines.append(self._unresolved_comment())
        if self._excluded_results:
            lines.append(self._excluded_comment())
        lines += self._runstats(run, summary)
        lines.append("</nmaprun>")
        return "\n".join(lines) + "\n"

    def _scaninfo(self) -> list[str]:
        ports_by_proto: dict[Proto, set[int]] = {}
        for host in self._hosts.values():
            for port, proto in host.ports:
                ports_by_proto.setdefault(proto, set()).add(port)
        return [
            _element(
                "scaninfo",
                {
                    "type": _SCAN_TYPES[proto],
                    "protocol": proto.value,
                    "numservices": str(len(ports_by_proto[proto])),
                    "services": port_ranges(ports_by_proto[proto]),
                },
            )
            for proto in Proto
            if proto in ports_by_proto
        ]

    def _unresolved_comment(self) -> str:
        names = sorted(self._unresolved)
        shown = ", ".join(names[:UNRESOLVED_NAMES_SHOWN])
        more = len(names) - UNRESOLVED_NAMES_SHOWN
        suffix = f" and {more} more" if more > 0 else ""
        return _comment(
            f"{self._unresolved_results} endpoint(s) not listed: no address to probe "
            f"({len(names)} name(s) did not resolve: {shown}{suffix})"
        )

    def _excluded_comment(self) -> str:
        addresses = list(self._excluded)
        shown = ", ".join(addresses[:UNRESOLVED_NAMES_SHOWN])
        more = len(addresses) - UNRESOLVED_NAMES_SHOWN
        suffix = f" and {more} more" if more > 0 else ""
        return _comment(
            f"{self._excluded_results} endpoint(s) not listed: excluded, not probed "
            f"(--exclude, or multicast/broadcast; {len(addresses)} address(es): "
            f"{shown}{suffix})"
        )

    def _runstats(self, run: RunInfo, summary: RunSummary) -> list[str]:
        up = sum(host.up for host in self._hosts.values())
        total = len(self._hosts)
        elapsed = max(0.0, summary.finished - run.started)
        timestr = _timestr(summary.finished)
        finished = {
            "time": str(int(summary.finished)),
            "timestr": timestr,
            "summary": (
                f"{SCANNER} done at {timestr}; {total} IP address{'es' if total != 1 else ''}"
                f" ({up} host{'s' if up != 1 else ''} up) scanned in {elapsed:.2f} seconds"
            ),
            "elapsed": f"{elapsed:.2f}",
            "exit": "error" if summary.interrupted else "success",
        }
        if summary.interrupted:
            finished["errormsg"] = "interrupted; the results are partial"
        return [
            "<runstats>"
            + _element("finished", finished)
            + _element("hosts", {"up": str(up), "down": str(total - up), "total": str(total)}),
            "</runstats>",
        ]


def _host_element(address: str, host: _HostRows) -> str:
    status = {
        "state": "up" if host.up else "down",
        "reason": host.status_reason(),
        "reason_ttl": "0",
    }
    family = "ipv6" if ipaddress.ip_address(address).version == 6 else "ipv4"
    parts = [
        _element(
            "host",
            {"starttime": str(int(host.first_seen)), "endtime": str(int(host.last_seen))},
            close=False,
        )
        + _element("status", status),
        _element("address", {"addr": address, "addrtype": family}),
        "<hostnames>",
        *(_element("hostname", {"name": name, "type": "user"}) for name in host.names),
        "</hostnames>",
        "<ports>" + "\n".join(_port_element(key, host.ports[key]) for key in sorted(host.ports)),
        "</ports>",
        "</host>",
    ]
    return "\n".join(parts)


def _port_element(key: tuple[int, Proto], row: _PortRow) -> str:
    port, proto = key
    state = {"state": row.state, "reason": row.reason, "reason_ttl": "0"}
    if row.reason_ip is not None:
        state["reason_ip"] = row.reason_ip
    service = (
        ""
        if row.service is None
        else _element("service", {"name": row.service, "method": "table", "conf": "3"})
    )
    return (
        _element("port", {"protocol": proto.value, "portid": str(port)}, close=False)
        + _element("state", state)
        + service
        + "</port>"
    )


def port_ranges(ports: Iterable[int]) -> str:
    """nmap's `services` attribute: sorted ports, consecutive runs as `N-M` (`22,80-82`)."""
    ordered = sorted(set(ports))
    runs: list[str] = []
    index = 0
    while index < len(ordered):
        end = index
        while end + 1 < len(ordered) and ordered[end + 1] == ordered[end] + 1:
            end += 1
        first, last = ordered[index], ordered[end]
        runs.append(str(first) if first == last else f"{first}-{last}")
        index = end + 1
    return ",".join(runs)


def _element(tag: str, attributes: Mapping[str, str], *, close: bool = True) -> str:
    rendered = "".join(
        f" {name}={quoteattr(_xml_safe(value))}" for name, value in attributes.items()
    )
    return f"<{tag}{rendered}{'/' if close else ''}>"


def _comment(text: str) -> str:
    """An XML comment, which may not contain `--` nor end in `-`: nmap writes a
    command line's `--` as `-&#45;` in its comments, and so do we."""
    safe = _xml_safe(text)
    while "--" in safe:
        safe = safe.replace("--", "-&#45;")
    if safe.endswith("-"):
        safe += " "
    return f"<!-- {safe} -->"


def _xml_safe(text: str) -> str:
    return _NOT_XML_CHARACTERS.sub("\ufffd", text)


def _timestr(epoch_seconds: float) -> str:
    """nmap's human time: local time, `Tue Nov 24 22:34:07 2026`."""
    return time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(epoch_seconds))


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _address_order(address: str) -> tuple[int, int]:
    parsed = ipaddress.ip_address(address)
    return (parsed.version, int(parsed))
