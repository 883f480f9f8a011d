"""Decoding `struct sock_extended_err` records (no socket needed)."""

from __future__ import annotations

import errno
import socket
import struct

from scanner.core.model import IcmpOrigin, Offender
from scanner.net.errqueue import offender_role, parse_extended_error, parse_offender


def record(origin: int, icmp_type: int, code: int, err: int, offender: bytes) -> bytes:
    return struct.pack("=IBBBBII", err, origin, icmp_type, code, 0, 0, 0) + offender


def sockaddr_in(address: str) -> bytes:
    return struct.pack("=HH", socket.AF_INET, 0) + socket.inet_aton(address) + bytes(8)


def sockaddr_in6(address: str) -> bytes:
    return (
        struct.pack("=HHI", socket.AF_INET6, 0, 0)
        + socket.inet_pton(socket.AF_INET6, address)
        + bytes(4)
    )


def test_icmp4_admin_prohibited_from_a_router() -> None:
    report = parse_extended_error(
        record(2, 3, 13, errno.EHOSTUNREACH, sockaddr_in("10.9.0.1")), "10.9.1.2", "10.9.0.2"
    )
    assert report is not None
    assert (report.origin, report.icmp_type, report.icmp_code) == (IcmpOrigin.ICMP4, 3, 13)
    assert report.errno == errno.EHOSTUNREACH
    assert (report.offender_address, report.offender) == ("10.9.0.1", Offender.OTHER)


def test_icmp6_port_unreachable_from_the_target() -> None:
    report = parse_extended_error(
        record(3, 1, 4, errno.ECONNREFUSED, sockaddr_in6("fd00::2")), "fd00::2", "fd00::1"
    )
    assert report is not None
    assert report.origin is IcmpOrigin.ICMP6
    assert (report.offender_address, report.offender) == ("fd00::2", Offender.TARGET)


def test_mapped_ipv4_offender_is_reported_as_ipv4() -> None:
    assert parse_offender(sockaddr_in6("::ffff:192.0.2.7")) == "192.0.2.7"


def test_offender_roles() -> None:
    assert offender_role("127.0.0.1", "127.0.0.1", "127.0.0.1") is Offender.TARGET
    assert offender_role("10.0.0.1", "10.0.0.9", "10.0.0.1") is Offender.SELF
    assert offender_role(None, "10.0.0.9", "10.0.0.1") is Offender.UNKNOWN


def test_short_records_are_ignored() -> None:
    assert parse_extended_error(b"\x00" * 8, "10.0.0.1", None) is None
    assert parse_offender(b"\x02") is None
