"""A test service to run inside a network namespace: TCP listeners and UDP echoers.

The kernel-truth tests need real open ports on namespace hosts. A listener with a tiny
backlog that never accepts (`python -m http.server`, say) drops SYNs once its queue is
full and turns open ports into false `filtered` verdicts, so this one listens with a
backlog of 1024 and accepts and closes every connection at once (`--tcp-reset`: closes
with an RST, as a server that rejects after accepting does). It prints `ready` on
stdout when every socket is bound, so the caller knows when probing may start, and runs
until it is killed. Standard library only: it runs under whichever Python starts it.

    ip netns exec NS python3 listener.py --tcp 10.200.1.2:8000 --udp-echo [fd00::2]:8001
        --tcp-reset 10.200.1.2:8010
"""

from __future__ import annotations

import argparse
import ipaddress
import selectors
import socket
import struct
import sys

BACKLOG = 1024
_LINGER_ZERO = struct.pack("ii", 1, 0)  # close() sends an RST instead of a FIN


def parse_address(text: str) -> tuple[int, str, int]:
    """Split `ADDR:PORT` or `[ADDR6]:PORT` into (family, address, port)."""
    if text.startswith("["):
        address, separator, port = text[1:].partition("]:")
        if not separator:
            raise argparse.ArgumentTypeError(f"expected [ADDRESS]:PORT, got {text!r}")
    else:
        address, separator, port = text.rpartition(":")
        if not separator:
            raise argparse.ArgumentTypeError(f"expected ADDRESS:PORT, got {text!r}")
    try:
        parsed = ipaddress.ip_address(address)
        port_number = int(port)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"bad address {text!r}: {error}") from error
    family = socket.AF_INET6 if parsed.version == 6 else socket.AF_INET
    return family, str(parsed), port_number


def open_tcp_listener(family: int, address: str, port: int) -> socket.socket:
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    listener.bind((address, port))
    listener.listen(BACKLOG)
    listener.setblocking(False)
    return listener


def open_udp_echo(family: int, address: str, port: int) -> socket.socket:
    echo = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        echo.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    echo.bind((address, port))
    echo.setblocking(False)
    return echo


def accept_and_close(listener: socket.socket) -> None:
    try:
        connection, _peer = listener.accept()
    except (BlockingIOError, ConnectionAbortedError):
        return
    connection.close()


def accept_and_reset(listener: socket.socket) -> None:
    try:
        connection, _peer = listener.accept()
    except (BlockingIOError, ConnectionAbortedError):
        return
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    connection.close()


def echo_one(echo: socket.socket) -> None:
    try:
        payload, peer = echo.recvfrom(65535)
        echo.sendto(payload or b"\n", peer)
    except (BlockingIOError, ConnectionRefusedError):
        return


Address = tuple[int, str, int]


def serve(tcp: list[Address], tcp_reset: list[Address], udp_echo: list[Address]) -> None:
    with selectors.DefaultSelector() as selector:
        for addresses, handler in ((tcp, accept_and_close), (tcp_reset, accept_and_reset)):
            for family, address, port in addresses:
                listener = open_tcp_listener(family, address, port)
                selector.register(listener, selectors.EVENT_READ, handler)
        for family, address, port in udp_echo:
            selector.register(open_udp_echo(family, address, port), selectors.EVENT_READ, echo_one)
        print("ready", flush=True)
        while True:
            for key, _events in selector.select():
                key.data(key.fileobj)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="TCP listeners and UDP echoers for tests")
    parser.add_argument(
        "--tcp",
        action="append",
        default=[],
        type=parse_address,
        metavar="ADDR:PORT",
        help="listen for TCP, accept and close",
    )
    parser.add_argument(
        "--tcp-reset",
        action="append",
        default=[],
        type=parse_address,
        metavar="ADDR:PORT",
        help="listen for TCP, accept and reset at once",
    )
    parser.add_argument(
        "--udp-echo",
        action="append",
        default=[],
        type=parse_address,
        metavar="ADDR:PORT",
        help="echo every UDP datagram back",
    )
    arguments = parser.parse_args(argv)
    if not (arguments.tcp or arguments.tcp_reset or arguments.udp_echo):
        parser.error("give at least one --tcp, --tcp-reset or --udp-echo")
    try:
        serve(arguments.tcp, arguments.tcp_reset, arguments.udp_echo)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
