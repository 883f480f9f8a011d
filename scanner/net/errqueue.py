"""Reading ICMP errors from a socket's error queue (Linux `IP_RECVERR` / `IPV6_RECVERR`).

With the option set, the kernel queues each ICMP error that concerns the socket as a
`struct sock_extended_err` followed by the offender's sockaddr. That record is what tells an
RST from an ICMP port-unreachable, and host-unreachable from admin-prohibited: the errno
alone cannot (see docs/KERNEL_NOTES.md). Python 3.11 exports none of these constants.
"""

from __future__ import annotations

import _socket
import ipaddress
import socket
import struct

from scanner.core.model import IcmpOrigin, IcmpReport, Offender

SOL_IP = 0
SOL_IPV6 = 41
IP_RECVERR = 11
IPV6_RECVERR = 25
MSG_ERRQUEUE = 0x2000

_EXTENDED_ERR = struct.Struct("=IBBBBII")  # ee_errno, origin, type, code, pad, info, data
_SOCKADDR_FAMILY = struct.Struct("=H")
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_DRAIN_FLAGS = int(MSG_ERRQUEUE | socket.MSG_DONTWAIT)
_CMSG_TYPES = frozenset({(SOL_IP, IP_RECVERR), (SOL_IPV6, IPV6_RECVERR)})
_ORIGINS = {origin.value: origin for origin in IcmpOrigin}


def enable_error_queue(sock: _socket.socket, family: int) -> None:
    """Ask the kernel to queue ICMP errors on `sock` (both options on IPv6 sockets).

    IPV6_RECVERR matters even for TCP: without it an ICMPv6 error that arrives while
    connect() holds the socket lock is kept as a soft error until the first retransmit.
    """
    if family == _AF_INET6:
        sock.setsockopt(SOL_IPV6, IPV6_RECVERR, 1)
    sock.setsockopt(SOL_IP, IP_RECVERR, 1)


def parse_offender(raw: bytes) -> str | None:
    """The offender's address from the sockaddr that follows the extended error."""
    if len(raw) < _SOCKADDR_FAMILY.size:
        return None
    (family,) = _SOCKADDR_FAMILY.unpack_from(raw)
    if family == _AF_INET and len(raw) >= 8:
        return str(ipaddress.IPv4Address(raw[4:8]))
    if family == _AF_INET6 and len(raw) >= 24:
        address = ipaddress.IPv6Address(raw[8:24])
        mapped = address.ipv4_mapped
        return str(mapped) if mapped is not None else str(address)
    return None


def parse_extended_error(
    data: bytes, target_address: str, local_address: str | None
) -> IcmpReport | None:
    """Decode one `sock_extended_err` record (and say who sent it relative to the probe)."""
    if len(data) < _EXTENDED_ERR.size:
        return None
    ee_errno, origin, icmp_type, icmp_code, _pad, _info, _data = _EXTENDED_ERR.unpack_from(data)
    offender_address = parse_offender(data[_EXTENDED_ERR.size :])
    return IcmpReport(
        origin=_ORIGINS.get(origin, IcmpOrigin.OTHER),
        icmp_type=icmp_type,
        icmp_code=icmp_code,
        errno=ee_errno,
        offender_address=offender_address,
        offender=offender_role(offender_address, target_address, local_address),
    )


def offender_role(offender: str | None, target: str, local: str | None) -> Offender:
    """The target itself, this machine (a local rule or failed ARP/ND), or a router."""
    if offender is None:
        return Offender.UNKNOWN
    if offender == target:
        return Offender.TARGET
    if offender == local:
        return Offender.SELF
    return Offender.OTHER


def local_address(sock: _socket.socket) -> str | None:
    """The socket's own address (the source the kernel chose), if it has one."""
    try:
        return str(sock.getsockname()[0])
    except OSError:
        return None


def drain_error_queue(sock: _socket.socket, target_address: str) -> IcmpReport | None:
    """Read every queued error; return the last ICMP one (reading also clears SO_ERROR).

    Our own address is looked up only when there is a record to compare it with: most
    refusals are plain resets, and on this path every system call counts.
    """
    report: IcmpReport | None = None
    while True:
        try:
            _data, ancillary, _flags, _addr = sock.recvmsg(0, 512, _DRAIN_FLAGS)
        except OSError:
            return report
        records = [payload for level, kind, payload in ancillary if (level, kind) in _CMSG_TYPES]
        if not records:
            return report
        ours = local_address(sock)
        for payload in records:
            parsed = parse_extended_error(payload, target_address, ours)
            if parsed is not None:
                report = parsed
