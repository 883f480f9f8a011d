"""Throwaway network-namespace hosts for the kernel-truth integration tests.

reachscan's verdicts are only as good as its reading of what the kernel reports, and
loopback cannot produce most of it: ICMP errors from a router, ARP failures, firewall
rejects on the far side, a missing route. So the integration tests build a tiny network
out of namespaces (a scanner, a router, targets, veth pairs, a bridge where several hosts
share a subnet), load nftables rules into it, start listeners in it and run the real CLI
inside the scanner namespace. Nothing here is connected to the machine's own network.

`Topology` records everything it creates and its context manager tears it all down (kills
the processes it started by PID, deletes the links and namespaces) even when a test fails.
Names and subnets carry a per-run tag so parallel runs do not collide. Needs root,
iproute2 and nftables; `require_netns()` says why not when they are missing.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

REPO_ROOT = Path(__file__).resolve().parents[2]
LISTENER_SCRIPT = Path(__file__).resolve().with_name("listener.py")
NAMESPACE_PREFIX = "rs"
"""Every namespace is named `rs-<tag>-<role>`; stale cleanup matches on `rs-<tag>-` only."""

SAFE_NAMESERVER = "127.0.0.1:9"
"""The discard port on the scanner namespace's own loopback: never the machine's resolver."""

COMMAND_TIMEOUT = 30.0
LISTENER_READY_TIMEOUT = 10.0
MAX_INTERFACE_NAME = 15  # IFNAMSIZ - 1

BASE_SYSCTLS = (("net.ipv6.conf.all.accept_dad", "0"), ("net.ipv6.conf.default.accept_dad", "0"))
"""`nodad` covers the addresses we add, but the link-local address every interface gets
would still be tentative for a second or more, and neighbour discovery (which a router
needs to forward the first IPv6 packets) waits for it: the first probes would vanish."""

ROUTER_SYSCTLS = (("net.ipv4.ip_forward", "1"), ("net.ipv6.conf.all.forwarding", "1"))
NO_ICMP_RATE_LIMIT_SYSCTLS = (("net.ipv4.icmp_ratelimit", "0"), ("net.ipv6.icmp.ratelimit", "0"))
"""Kernel defaults (1000 ms per peer on IPv4, 100 ms on IPv6) turn most ICMP errors into
silence within a test's timeout; zero makes the answers deterministic. A test that wants
to see the defaults at work asks for them (`icmp_rate_limit=True`)."""

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


_WAIT_REACHABLE = """
import socket, sys, time
address, port, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
family = socket.AF_INET6 if ":" in address else socket.AF_INET
while time.monotonic() < deadline:
    with socket.socket(family) as probe:
        probe.settimeout(0.3)
        try:
            probe.connect((address, port))
        except ConnectionRefusedError:
            sys.exit(0)
        except OSError:
            continue
        sys.exit(0)
sys.exit(f"{address}:{port} did not answer")
"""


class NetnsError(RuntimeError):
    """A command that builds or drives the test network failed; the message says which."""


def new_tag() -> str:
    """Three random hex digits: short enough for 15-character interface names."""
    return secrets.token_hex(2)[:3]


def run_command(
    argv: Sequence[str], *, stdin: str | None = None, timeout: float = COMMAND_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run one setup command; fail with its stderr, since that is what explains it."""
    completed = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if completed.returncode != 0:
        raise NetnsError(
            f"{' '.join(argv)} exited {completed.returncode}: "
            f"{completed.stderr.strip() or completed.stdout.strip()}"
        )
    return completed


def require_netns() -> str | None:
    """Why namespace tests cannot run here, or None if they can.

    Tries the real thing (adding and deleting a namespace) rather than guessing from
    capabilities: containers can be root and still be refused.
    """
    if os.geteuid() != 0:
        return "network-namespace tests need root (CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"network-namespace tests need `{tool}` (install {package})"
    probe = f"{NAMESPACE_PREFIX}-{new_tag()}-probe"
    try:
        run_command(["ip", "netns", "add", probe])
    except (NetnsError, OSError, subprocess.TimeoutExpired) as error:
        return f"cannot create a network namespace: {error}"
    with contextlib.suppress(NetnsError, OSError, subprocess.TimeoutExpired):
        run_command(["ip", "netns", "del", probe])
    return None


def list_namespaces() -> list[str]:
    listing = run_command(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in listing.splitlines() if line.strip()]


def remove_stale_namespaces(tag: str) -> list[str]:
    """Delete namespaces left by a crashed earlier run with this same tag, and nothing else.

    Processes still running inside them (listeners of that run) are killed by PID first,
    or the namespace would live on through them.
    """
    stale = [name for name in list_namespaces() if name.startswith(f"{NAMESPACE_PREFIX}-{tag}-")]
    for namespace in stale:
        with contextlib.suppress(NetnsError, subprocess.TimeoutExpired):
            for pid in run_command(["ip", "netns", "pids", namespace]).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        with contextlib.suppress(NetnsError, subprocess.TimeoutExpired):
            run_command(["ip", "netns", "del", namespace])
    return stale


@dataclass(frozen=True, slots=True)
class Attachment:
    """One namespace's interface on a segment, with its addresses."""

    namespace: str
    interface: str
    ipv4: str
    ipv6: str

    def address(self, family: int) -> str:
        return self.ipv4 if family == 4 else self.ipv6


@dataclass(frozen=True, slots=True)
class Segment:
    """One layer-2 subnet: an IPv4 /24 and an IPv6 /64 shared by its attachments."""

    ipv4_prefix: ipaddress.IPv4Network
    ipv6_prefix: ipaddress.IPv6Network
    attachments: tuple[Attachment, ...]

    def prefix(self, family: int) -> IpNetwork:
        return self.ipv4_prefix if family == 4 else self.ipv6_prefix

    def address(self, namespace: str, family: int) -> str:
        for attachment in self.attachments:
            if attachment.namespace == namespace:
                return attachment.address(family)
        raise KeyError(f"{namespace} is not on segment {self.ipv4_prefix}")

    def unused_address(self, family: int, host_number: int = 200) -> str:
        """An address on the subnet that no namespace holds: a host that does not exist."""
        address = str(self.prefix(family)[host_number])
        if any(attachment.address(family) == address for attachment in self.attachments):
            raise ValueError(f"{address} is in use on this segment")
        return address


@dataclass(frozen=True, slots=True)
class ScanRun:
    """What one run of the reachscan CLI produced."""

    exit_code: int
    records: tuple[dict[str, object], ...]
    stderr: str

    def record(self, port: int, proto: str, address: str | None = None) -> dict[str, object]:
        """The one record for this port and protocol (and address, if given)."""
        matches = [
            record
            for record in self.records
            if record.get("port") == port
            and record.get("proto") == proto
            and (address is None or record.get("address") == address)
        ]
        if len(matches) != 1:
            raise AssertionError(
                f"expected one record for {port}/{proto}, got {len(matches)}:"
                f" {self.records!r}\nstderr: {self.stderr}"
            )
        return matches[0]


def format_target(address: str, port: int | str, proto: str = "tcp") -> str:
    """A `-t` spec for an address literal: IPv6 in brackets, the protocol as a suffix."""
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{port}/{proto}"


class Topology:
    """A set of namespaces, links, routes, rules and processes that cleans up after itself.

    Build it inside `with Topology() as topology:`; every method records what it made so
    that `close()` can undo it, and `close()` runs however the block ends.
    """

    def __init__(self, tag: str | None = None) -> None:
        self.tag = tag or new_tag()
        # The second octet (10.200-249.x.0/24) and the ULA group are random per run; the
        # segment number picks the rest, so a topology has up to 256 subnets of each.
        self._ipv4_octet = 200 + secrets.randbelow(50)
        self._ipv6_group = secrets.randbelow(0x10000)
        self._namespaces: list[str] = []
        self._links: list[tuple[str, str]] = []  # (namespace, interface)
        self._processes: list[subprocess.Popen[str]] = []
        self._segment_count = 0
        self._scratch = tempfile.TemporaryDirectory(prefix=f"reachscan-netns-{self.tag}-")
        self.empty_hosts_file = Path(self._scratch.name) / "hosts"
        self.empty_hosts_file.write_text("")

    def __enter__(self) -> Self:
        remove_stale_namespaces(self.tag)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def namespace_name(self, role: str) -> str:
        return f"{NAMESPACE_PREFIX}-{self.tag}-{role}"

    def add_namespace(
        self, role: str, *, router: bool = False, icmp_rate_limit: bool = False
    ) -> str:
        """Create a namespace with loopback up; a router forwards IPv4 and IPv6.

        ICMP rate limiting is off unless asked for, so rejects answer every probe.
        """
        name = self.namespace_name(role)
        run_command(["ip", "netns", "add", name])
        self._namespaces.append(name)
        run_command(["ip", "-n", name, "link", "set", "lo", "up"])
        sysctls = list(BASE_SYSCTLS)
        if router:
            sysctls.extend(ROUTER_SYSCTLS)
        if not icmp_rate_limit:
            sysctls.extend(NO_ICMP_RATE_LIMIT_SYSCTLS)
        self.set_sysctls(name, sysctls)
        return name

    def set_sysctls(self, namespace: str, sysctls: Iterable[tuple[str, str]]) -> None:
        settings = [f"{key}={value}" for key, value in sysctls]
        if settings:
            self.exec_in(namespace, ["sysctl", "-q", "-w", *settings])

    def exec_in(
        self, namespace: str, argv: Sequence[str], *, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_command(["ip", "netns", "exec", namespace, *argv], stdin=stdin)

    def add_segment(self, members: Sequence[str]) -> Segment:
        """Put namespaces on one new subnet; member N (from 0) gets host address N + 1.

        Two members get a veth pair; more get a veth each into a bridge that lives in a
        namespace of its own, so no namespace's routing sees the bridge.
        """
        if len(members) < 2:
            raise ValueError("a segment needs at least two namespaces")
        number = self._segment_count
        self._segment_count += 1
        ipv4_prefix = ipaddress.IPv4Network(f"10.{self._ipv4_octet}.{number}.0/24")
        ipv6_prefix = ipaddress.IPv6Network(f"fd00:{self._ipv6_group:x}:{number:x}::/64")
        interfaces = [self._interface_name(number, f"m{index}") for index in range(len(members))]
        if len(members) == 2:
            self._add_veth(members[0], interfaces[0], members[1], interfaces[1])
        else:
            bridge_namespace = self.add_namespace(f"br{number}")
            bridge = self._interface_name(number, "br")
            run_command(["ip", "-n", bridge_namespace, "link", "add", bridge, "type", "bridge"])
            self._links.append((bridge_namespace, bridge))
            run_command(["ip", "-n", bridge_namespace, "link", "set", bridge, "up"])
            for index, (member, interface) in enumerate(zip(members, interfaces, strict=True)):
                port = self._interface_name(number, f"p{index}")
                self._add_veth(member, interface, bridge_namespace, port)
                run_command(
                    ["ip", "-n", bridge_namespace, "link", "set", port, "master", bridge, "up"]
                )
        attachments = []
        for index, (member, interface) in enumerate(zip(members, interfaces, strict=True)):
            attachment = Attachment(
                member, interface, str(ipv4_prefix[index + 1]), str(ipv6_prefix[index + 1])
            )
            run_command(
                [
                    "ip",
                    "-n",
                    member,
                    "addr",
                    "add",
                    f"{attachment.ipv4}/{ipv4_prefix.prefixlen}",
                    "dev",
                    interface,
                ]
            )
            # nodad: the address is usable at once instead of "tentative" for ~1 s.
            run_command(
                [
                    "ip",
                    "-n",
                    member,
                    "-6",
                    "addr",
                    "add",
                    f"{attachment.ipv6}/{ipv6_prefix.prefixlen}",
                    "dev",
                    interface,
                    "nodad",
                ]
            )
            run_command(["ip", "-n", member, "link", "set", interface, "up"])
            attachments.append(attachment)
        return Segment(ipv4_prefix, ipv6_prefix, tuple(attachments))

    def _interface_name(self, segment: int, suffix: str) -> str:
        name = f"{NAMESPACE_PREFIX}{self.tag}s{segment}{suffix}"
        if len(name) > MAX_INTERFACE_NAME:
            raise ValueError(f"interface name {name!r} is longer than {MAX_INTERFACE_NAME}")
        return name

    def _add_veth(self, namespace_a: str, name_a: str, namespace_b: str, name_b: str) -> None:
        # Created directly inside both namespaces: the names never exist in the host's.
        run_command(
            [
                "ip",
                "link",
                "add",
                name_a,
                "netns",
                namespace_a,
                "type",
                "veth",
                "peer",
                "name",
                name_b,
                "netns",
                namespace_b,
            ]
        )
        self._links.append((namespace_a, name_a))

    def add_route(self, namespace: str, prefix: IpNetwork | str, via: str) -> None:
        """Route `prefix` ("default" too) through the gateway address `via`."""
        family = "-6" if ":" in via else "-4"
        run_command(["ip", "-n", namespace, family, "route", "add", str(prefix), "via", via])

    def load_nft(self, namespace: str, ruleset: str) -> None:
        """Load an nftables ruleset (the text of an `nft -f` file) into a namespace."""
        self.exec_in(namespace, ["nft", "-f", "-"], stdin=ruleset)

    def start_listener(
        self,
        namespace: str,
        *,
        tcp: Iterable[str] = (),
        tcp_reset: Iterable[str] = (),
        udp_echo: Iterable[str] = (),
    ) -> int:
        """Start `listener.py` in a namespace and wait until it is bound; returns its PID.

        Addresses are `ADDR:PORT` or `[ADDR6]:PORT`. `tcp` listeners accept and close,
        `tcp_reset` ones accept and reset at once, `udp_echo` ones send every datagram back.
        """
        argv = ["ip", "netns", "exec", namespace, sys.executable, str(LISTENER_SCRIPT)]
        argv += [argument for address in tcp for argument in ("--tcp", address)]
        argv += [argument for address in tcp_reset for argument in ("--tcp-reset", address)]
        argv += [argument for address in udp_echo for argument in ("--udp-echo", address)]
        # `ip netns exec` execs the command, so this PID is the listener's own.
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._processes.append(process)
        assert process.stdout is not None
        readable, _, _ = select.select([process.stdout], [], [], LISTENER_READY_TIMEOUT)
        line = process.stdout.readline() if readable else ""
        if line.strip() != "ready":
            self._stop_process(process)
            stderr = process.stderr.read() if process.stderr else ""
            raise NetnsError(f"listener in {namespace} did not start: {line!r} {stderr}")
        return process.pid

    def start_process(
        self, namespace: str, argv: Sequence[str], *, log: Path | None = None
    ) -> subprocess.Popen[str]:
        """Start `argv` inside `namespace` (a server, a worker), stopped by `close()`; its
        output goes to `log` (or nowhere): a pipe nobody reads would block it."""
        output = open(log, "w") if log is not None else subprocess.DEVNULL  # noqa: SIM115
        try:
            process = subprocess.Popen(
                ["ip", "netns", "exec", namespace, *argv],
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
                env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            )
        finally:
            if log is not None and not isinstance(output, int):
                output.close()
        self._processes.append(process)
        return process

    def wait_reachable(
        self, namespace: str, address: str, port: int = 9, timeout: float = 10.0
    ) -> None:
        """Connect from `namespace` to `address` until an answer (even a refusal) comes back.

        Why: on a fresh lab the first IPv6 packets through the router were lost while the
        hosts resolved each other (the first connect took 1.0 s, a SYN retransmit, every
        time). Warming the neighbour caches keeps fixed-timeout tests about what they test.
        `port` must not be behind a firewall rule; a closed port answers with an RST.
        """
        self.exec_in(
            namespace, [sys.executable, "-c", _WAIT_REACHABLE, address, str(port), str(timeout)]
        )

    def scan(self, namespace: str, arguments: Sequence[str], *, timeout: float = 60.0) -> ScanRun:
        """Run `python -m scanner scan ARGUMENTS --format jsonl -o -` inside a namespace.

        An empty hosts file and a nameserver on the namespace's own loopback are always
        passed, so a test can never make the scanner ask the machine's real resolver.
        """
        argv = [
            "ip",
            "netns",
            "exec",
            namespace,
            sys.executable,
            "-m",
            "scanner",
            "scan",
            *arguments,
            "--format",
            "jsonl",
            "-o",
            "-",
            "--hosts-file",
            str(self.empty_hosts_file),
            "--nameserver",
            SAFE_NAMESERVER,
        ]
        completed = subprocess.run(
            argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
        records = []
        for line in completed.stdout.splitlines():
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise NetnsError(
                    f"scanner printed a line that is not JSON: {line!r}\nstderr: {completed.stderr}"
                ) from error
        return ScanRun(completed.returncode, tuple(records), completed.stderr)

    def close(self) -> None:
        """Undo everything, best effort and in reverse; never raises, so teardown finishes."""
        for process in reversed(self._processes):
            self._stop_process(process)
        self._processes.clear()
        for namespace, interface in reversed(self._links):
            with contextlib.suppress(NetnsError, subprocess.TimeoutExpired):
                run_command(["ip", "-n", namespace, "link", "del", interface])
        self._links.clear()
        for namespace in reversed(self._namespaces):
            with contextlib.suppress(NetnsError, subprocess.TimeoutExpired):
                run_command(["ip", "netns", "del", namespace])
        self._namespaces.clear()
        self._scratch.cleanup()

    @staticmethod
    def _stop_process(process: subprocess.Popen[str]) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
