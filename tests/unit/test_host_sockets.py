"""Parsing the kernel's socket and address tables, on fixed text and a fake /proc tree."""

# The samples are kernel tables verbatim, wider than our line limit.
# ruff: noqa: E501

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from scanner.core.diagnose import LocalListener
from scanner.core.model import Proto
from scanner.net.host_sockets import (
    SocketEntry,
    decode_address,
    is_local,
    listeners,
    local_addresses,
    parse_fib_trie,
    parse_if_inet6,
    parse_socket_inode,
    parse_socket_table,
)

pytestmark = pytest.mark.skipif(
    sys.byteorder != "little", reason="the samples were taken on a little-endian machine"
)

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 642 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 7001 1 0000000000000000 100 0 0 10 0
   2: 0300007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 7002 1 0000000000000000 100 0 0 10 0
   3: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 7003 1 0000000000000000 20 4 30 10 -1
   4: garbage line
"""

TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 8001 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 8002 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 8003 1 0000000000000000 100 0 0 10 0
   3: B80D0120000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 8004 1 0000000000000000 100 0 0 10 0
"""

UDP = """\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 9001 2 0000000000000000 0
  101: 00000000:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 9002 2 0000000000000000 0
"""

FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
           |-- 192.0.2.2
              /32 host LOCAL
"""

IF_INET6 = """\
00000000000000000000000000000001 01 80 10 80       lo
fd000000000000000000000000000002 04 40 00 82     eth0
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
"""


@pytest.mark.parametrize(
    ("hex_address", "text"),
    [
        ("0100007F", "127.0.0.1"),
        ("00000000", "0.0.0.0"),
        ("0202000A", "10.0.2.2"),
        ("00000000000000000000000000000000", "::"),
        ("00000000000000000000000001000000", "::1"),
        ("B80D0120000000000000000001000000", "2001:db8::1"),
        ("0000000000000000FFFF00000100007F", "127.0.0.1"),  # IPv4-mapped
    ],
)
def test_decode_address(hex_address: str, text: str) -> None:
    assert decode_address(hex_address) == text


def test_decode_address_rejects_other_lengths() -> None:
    with pytest.raises(ValueError):
        decode_address("0100")


def test_parse_tcp_table() -> None:
    assert parse_socket_table(TCP) == (
        SocketEntry("0.0.0.0", 2024, 0x0A, 642),
        SocketEntry("127.0.0.1", 8080, 0x0A, 7001),
        SocketEntry("127.0.0.3", 8080, 0x0A, 7002),
        SocketEntry("127.0.0.1", 8080, 0x01, 7003),
    )


def test_parse_tcp6_table() -> None:
    entries = parse_socket_table(TCP6)
    assert [(entry.address, entry.port, entry.inode) for entry in entries] == [
        ("::", 8080, 8001),
        ("::1", 8080, 8002),
        ("127.0.0.1", 8080, 8003),
        ("2001:db8::1", 80, 8004),
    ]


def test_parse_fib_trie_takes_only_32_host_local_leaves() -> None:
    assert parse_fib_trie(FIB_TRIE) == frozenset({"127.0.0.1", "192.0.2.2"})


def test_parse_if_inet6() -> None:
    assert parse_if_inet6(IF_INET6) == frozenset({"::1", "fd00::2", "fe80::fc:ff:fe00:1"})


@pytest.mark.parametrize(
    ("link", "inode"),
    [("socket:[12345]", 12345), ("pipe:[12345]", None), ("/dev/null", None), ("socket:[x]", None)],
)
def test_parse_socket_inode(link: str, inode: int | None) -> None:
    assert parse_socket_inode(link) == inode


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),  # all of 127.0.0.0/8 is this machine
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("192.0.2.2", True),
        ("fd00::2", True),
        ("192.0.2.3", False),
        ("2001:db8::1", False),
        ("not-an-address", False),
    ],
)
def test_is_local(address: str, local: bool) -> None:
    assert is_local(address, frozenset({"192.0.2.2", "fd00::2"})) is local


# --- readers on a fake /proc --------------------------------------------------------------


@pytest.fixture
def fake_proc(tmp_path: Path) -> Path:
    net = tmp_path / "net"
    net.mkdir()
    (net / "tcp").write_text(TCP)
    (net / "tcp6").write_text(TCP6)
    (net / "udp").write_text(UDP)
    (net / "udp6").write_text(UDP.splitlines()[0] + "\n")
    (net / "fib_trie").write_text(FIB_TRIE)
    (net / "if_inet6").write_text(IF_INET6)
    owners = {4242: ("nginx", [7001, 8001]), 5151: ("dnsmasq", [9001]), 6000: ("other", [])}
    for pid, (name, inodes) in owners.items():
        fd_directory = tmp_path / str(pid) / "fd"
        fd_directory.mkdir(parents=True)
        (tmp_path / str(pid) / "comm").write_text(name + "\n")
        for number, inode in enumerate(inodes):
            os.symlink(f"socket:[{inode}]", fd_directory / str(number + 3))
        os.symlink("pipe:[1]", fd_directory / "0")
    (tmp_path / "self").mkdir()  # not a pid: skipped
    return tmp_path


def test_local_addresses_from_a_fake_proc(fake_proc: Path) -> None:
    assert local_addresses(fake_proc) == frozenset(
        {"127.0.0.1", "192.0.2.2", "::1", "fd00::2", "fe80::fc:ff:fe00:1"}
    )


def test_listeners_on_a_port_with_owners(fake_proc: Path) -> None:
    found = listeners(8080, Proto.TCP, fake_proc)
    assert found == (
        LocalListener("127.0.0.1", 8080, Proto.TCP, "nginx", 4242),
        LocalListener("127.0.0.3", 8080, Proto.TCP, None, None),  # owner not visible
        LocalListener("::", 8080, Proto.TCP, "nginx", 4242),
        LocalListener("::1", 8080, Proto.TCP, None, None),
        LocalListener("127.0.0.1", 8080, Proto.TCP, None, None),
    )


def test_udp_listeners_use_the_bound_state(fake_proc: Path) -> None:
    assert listeners(53, Proto.UDP, fake_proc) == (
        LocalListener("127.0.0.53", 53, Proto.UDP, "dnsmasq", 5151),
    )
    assert listeners(2024, Proto.UDP, fake_proc) == ()


def test_missing_tables_give_nothing(tmp_path: Path) -> None:
    assert local_addresses(tmp_path) == frozenset()
    assert listeners(80, Proto.TCP, tmp_path) == ()
