"""The /proc readers against the real kernel: a listener of our own is found, with us as owner."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner.core.diagnose import LocalListener, listener_covers
from scanner.core.model import Proto
from scanner.net.host_sockets import is_local, listeners, local_addresses

ADDRESS = "127.0.0.3"


def own_process_name() -> str:
    return Path("/proc/self/comm").read_text().strip()


@pytest.fixture
def tcp_listener() -> Iterator[int]:
    """A TCP listener on 127.0.0.3, on a port the kernel picks (so it is free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((ADDRESS, 0))
        sock.listen(128)
        yield sock.getsockname()[1]


@pytest.fixture
def udp_socket() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((ADDRESS, 0))
        yield sock.getsockname()[1]


def test_finds_our_tcp_listener_with_our_pid_and_name(tcp_listener: int) -> None:
    found = listeners(tcp_listener, Proto.TCP)
    assert LocalListener(ADDRESS, tcp_listener, Proto.TCP, own_process_name(), os.getpid()) in found
    # and it covers only its own address: 127.0.0.4 would be refused
    assert not any(listener_covers(listener.address, "127.0.0.4") for listener in found)


def test_finds_our_bound_udp_socket(udp_socket: int) -> None:
    found = listeners(udp_socket, Proto.UDP)
    assert LocalListener(ADDRESS, udp_socket, Proto.UDP, own_process_name(), os.getpid()) in found


def test_a_closed_listener_is_gone() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((ADDRESS, 0))
        sock.listen(8)
        port = sock.getsockname()[1]
        assert listeners(port, Proto.TCP)
    assert all(listener.pid != os.getpid() for listener in listeners(port, Proto.TCP))


def test_loopback_is_local_and_documentation_addresses_are_not() -> None:
    addresses = local_addresses()
    assert "127.0.0.1" in addresses
    assert is_local(ADDRESS, addresses)
    assert not is_local("198.51.100.77", addresses)
