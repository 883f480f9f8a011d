"""What the kernel says is bound right now, read from /proc/net/{tcp,tcp6,udp,udp6}.

Loopback tests share the machine with other services (this one has a listener on
0.0.0.0:2024) and with other tests' listeners, so "this port is closed" must be checked,
and a sweep's open ports compared with the kernel's own table rather than with a guess.
Each row's local address is hex: IPv4 as one little-endian 32-bit word, IPv6 as four of
them; the port is plain big-endian hex; state 0A is LISTEN for TCP.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

_TCP_LISTEN = "0A"


@dataclass(frozen=True, slots=True)
class BoundSocket:
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int

    def covers(self, address: str, *, dual_stack: bool = False) -> bool:
        """Would a packet to `address` reach this socket?

        A wildcard socket takes every local address of its family. An IPv6 wildcard also
        takes IPv4 unless it is v6-only, which /proc does not say: `dual_stack=True`
        counts it as taking IPv4 too (for "could this port answer?"), the default does not
        (for "this port must answer").
        """
        target = ipaddress.ip_address(address)
        if self.address.is_unspecified:
            return self.address.version == target.version or (
                dual_stack and self.address.version == 6
            )
        return self.address == target


def _decode_address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[index : index + 4][::-1] for index in range(0, len(raw), 4))
    if len(words) == 4:
        return ipaddress.IPv4Address(words)
    address = ipaddress.IPv6Address(words)
    return address.ipv4_mapped or address


def parse_table(text: str, *, listening_only: bool) -> list[BoundSocket]:
    """Rows of one /proc/net table (header skipped); TCP callers keep LISTEN rows only."""
    sockets = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4:
            continue
        hex_address, hex_port = fields[1].split(":")
        if listening_only and fields[3] != _TCP_LISTEN:
            continue
        sockets.append(BoundSocket(_decode_address(hex_address), int(hex_port, 16)))
    return sockets


def bound_sockets(proto: Literal["tcp", "udp"]) -> list[BoundSocket]:
    """TCP: every listening socket; UDP: every bound socket (both address families)."""
    found: list[BoundSocket] = []
    for table in (proto, f"{proto}6"):
        path = Path("/proc/net") / table
        if path.exists():
            found.extend(parse_table(path.read_text(), listening_only=proto == "tcp"))
    return found


def ports_reaching(
    address: str, sockets: Iterable[BoundSocket], *, dual_stack: bool = False
) -> set[int]:
    """The ports on which something answers at `address` (see `BoundSocket.covers`)."""
    return {sock.port for sock in sockets if sock.covers(address, dual_stack=dual_stack)}
