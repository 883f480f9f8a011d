"""This machine's own addresses and listening sockets, read from /proc.

The diagnosis needs two facts about local targets: is the probed address ours, and who
listens on the port, on which address (a daemon bound to 127.0.0.1 refuses 127.0.0.2).
`ss -ltnp` knows both; this module reads the same kernel tables so the scanner needs no
external tool and no privilege (other users' processes just stay anonymous).

The parsers are pure functions of the tables' text, tested on fixed samples; the readers
around them take the /proc root as a parameter so tests can point them elsewhere.

Table formats (Documentation/networking/proc_net_tcp.rst):
* /proc/net/tcp{,6}, /proc/net/udp{,6}: one socket a row, `local_address` as `HEX:PORT`,
  where an IPv4 address is one 32-bit word in host byte order (little-endian here) and an
  IPv6 address four such words; `st` 0A is LISTEN for TCP, 07 (CLOSE) a bound UDP socket;
  the 10th column is the socket's inode, which `/proc/PID/fd/N -> socket:[INODE]` links to.
* /proc/net/fib_trie: the routing tries; a local IPv4 address is a leaf `|-- A.B.C.D`
  followed by a `/32 host LOCAL` line.
* /proc/net/if_inet6: one IPv6 address a line, 32 hex digits in network order.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from scanner.core.diagnose import LocalListener
from scanner.core.model import Proto

PROC = Path("/proc")

TCP_LISTEN = 0x0A
UDP_BOUND = 0x07

_LISTENING_STATE: Mapping[Proto, int] = MappingProxyType(
    {Proto.TCP: TCP_LISTEN, Proto.UDP: UDP_BOUND}
)
_TABLES: Mapping[Proto, tuple[str, str]] = MappingProxyType(
    {Proto.TCP: ("tcp", "tcp6"), Proto.UDP: ("udp", "udp6")}
)


@dataclass(frozen=True, slots=True)
class SocketEntry:
    """One row of a /proc/net socket table, decoded."""

    address: str
    port: int
    state: int
    inode: int


def decode_address(hex_address: str) -> str:
    """A /proc/net address (8 or 32 hex digits, 32-bit words in host order) as text.

    IPv4-mapped IPv6 addresses come back as the IPv4 address they stand for: a socket
    bound to `::ffff:127.0.0.1` accepts exactly what one bound to `127.0.0.1` does.
    """
    raw = bytes.fromhex(hex_address)
    if len(raw) not in (4, 16):
        raise ValueError(f"not a /proc/net address: {hex_address!r}")
    words = [raw[offset : offset + 4] for offset in range(0, len(raw), 4)]
    packed = b"".join(_word_to_network_order(word) for word in words)
    if len(packed) == 4:
        return str(ipaddress.IPv4Address(packed))
    address = ipaddress.IPv6Address(packed)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _word_to_network_order(word: bytes) -> bytes:
    # The kernel prints each 32-bit word with %08X of the value as stored, i.e. in host
    # byte order; on a little-endian machine the bytes of each word come out reversed.
    return word[::-1] if sys.byteorder == "little" else word


def parse_socket_table(text: str) -> tuple[SocketEntry, ...]:
    """Decode a /proc/net/{tcp,tcp6,udp,udp6} table; the header and odd lines are skipped."""
    entries: list[SocketEntry] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or ":" not in fields[1]:
            continue
        hex_address, _, hex_port = fields[1].partition(":")
        try:
            entry = SocketEntry(
                address=decode_address(hex_address),
                port=int(hex_port, 16),
                state=int(fields[3], 16),
                inode=int(fields[9]),
            )
        except ValueError:
            continue
        entries.append(entry)
    return tuple(entries)


def parse_fib_trie(text: str) -> frozenset[str]:
    """The IPv4 addresses /proc/net/fib_trie lists as `/32 host LOCAL`: this host's own."""
    addresses: set[str] = set()
    leaf: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|--"):
            leaf = stripped[3:].strip()
        elif leaf is not None and stripped.startswith("/32 host LOCAL"):
            addresses.add(leaf)
    return frozenset(addresses)


def parse_if_inet6(text: str) -> frozenset[str]:
    """The IPv6 addresses in /proc/net/if_inet6 (first column, network byte order)."""
    addresses: set[str] = set()
    for line in text.splitlines():
        fields = line.split()
        if not fields or len(fields[0]) != 32:
            continue
        try:
            addresses.add(str(ipaddress.IPv6Address(bytes.fromhex(fields[0]))))
        except ValueError:
            continue
    return frozenset(addresses)


def parse_socket_inode(link: str) -> int | None:
    """The inode in an fd link `socket:[12345]`, or None for any other kind of file."""
    if not (link.startswith("socket:[") and link.endswith("]")):
        return None
    try:
        return int(link[len("socket:[") : -1])
    except ValueError:
        return None


# --- readers ------------------------------------------------------------------------------


def local_addresses(proc: Path = PROC) -> frozenset[str]:
    """This machine's addresses, IPv4 and IPv6; empty parts where /proc cannot be read."""
    ipv4 = parse_fib_trie(_read(proc / "net" / "fib_trie"))
    ipv6 = parse_if_inet6(_read(proc / "net" / "if_inet6"))
    return ipv4 | ipv6


def is_local(address: str, addresses: Iterable[str] | None = None) -> bool:
    """Is `address` this machine? Always for 127.0.0.0/8 and ::1; otherwise when it is
    one of `addresses` (by default, `local_addresses()`)."""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    if parsed.is_loopback:
        return True
    known = local_addresses() if addresses is None else addresses
    return any(_equal(parsed, other) for other in known)


def _equal(parsed: ipaddress.IPv4Address | ipaddress.IPv6Address, other: str) -> bool:
    try:
        return parsed == ipaddress.ip_address(other.split("%", 1)[0])
    except ValueError:
        return False


def listeners(port: int, proto: Proto, proc: Path = PROC) -> tuple[LocalListener, ...]:
    """Sockets on this machine listening on `port` (TCP) or bound to it (UDP), any address,
    with the owning process where it can be seen."""
    wanted_state = _LISTENING_STATE[proto]
    # The kernel fills a large table over several reads; sockets opened or closed in
    # between can make one listener appear twice. An inode is one socket: keep it once.
    unique: dict[tuple[int, str], SocketEntry] = {}
    for table in _TABLES[proto]:
        for entry in parse_socket_table(_read(proc / "net" / table)):
            if entry.port == port and entry.state == wanted_state:
                unique.setdefault((entry.inode, entry.address), entry)
    entries = list(unique.values())
    owners = socket_owners({entry.inode for entry in entries if entry.inode}, proc)
    return tuple(
        LocalListener(
            address=entry.address,
            port=entry.port,
            proto=proto,
            process=owners[entry.inode][1] if entry.inode in owners else None,
            pid=owners[entry.inode][0] if entry.inode in owners else None,
        )
        for entry in entries
    )


def socket_owners(inodes: set[int], proc: Path = PROC) -> dict[int, tuple[int, str | None]]:
    """Map socket inodes to (pid, process name) by walking /proc/PID/fd.

    Stops as soon as every inode is found. Processes we may not inspect (other users',
    without privilege) and processes that exit during the walk are skipped.
    """
    found: dict[int, tuple[int, str | None]] = {}
    if not inodes:
        return found
    for pid in _pids(proc):
        for inode in _socket_inodes(proc / str(pid) / "fd"):
            if inode in inodes and inode not in found:
                found[inode] = (pid, _process_name(proc, pid))
        if len(found) == len(inodes):
            break
    return found


def _pids(proc: Path) -> Iterator[int]:
    try:
        names = os.listdir(proc)
    except OSError:
        return
    for name in names:
        if name.isdigit():
            yield int(name)


def _socket_inodes(fd_directory: Path) -> Iterator[int]:
    try:
        fds = os.listdir(fd_directory)
    except OSError:  # permission denied, or the process is gone
        return
    for fd in fds:
        try:
            link = os.readlink(fd_directory / fd)
        except OSError:
            continue
        inode = parse_socket_inode(link)
        if inode is not None:
            yield inode


def _process_name(proc: Path, pid: int) -> str | None:
    name = _read(proc / str(pid) / "comm").strip()
    return name or None


def _read(path: Path) -> str:
    """A /proc file's text, or "" when it is missing or unreadable (a container, a BSD)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
