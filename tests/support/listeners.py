"""Real loopback services for integration tests: TCP listeners and UDP answering/silent ports.

The scanner is only as right as the services it is tested against. A TCP listener with a
small backlog that never accepts drops SYNs once its queue is full and makes open ports
look `filtered` (docs/KERNEL_NOTES.md), so every listener here listens with a backlog of 1024
and accepts and closes each connection at once, from one background thread. UDP ports
either echo each datagram back (an open service) or stay silent (bound, never answering:
the `open|filtered` case); both remember what they received, so a test can check the
payload the scanner sent.

    with LoopbackServices() as services:
        port = services.tcp("127.77.0.1")          # any free port; or services.tcp(addr, 8080)
        services.udp("::1", port, answer=False)    # bound but silent

Also here: `free_port`, a port nothing is bound to on every given address (bind to port 0,
close), for probing closed ports and for placing listeners.
"""

from __future__ import annotations

import contextlib
import ipaddress
import selectors
import socket
import struct
import threading
from collections import defaultdict
from types import TracebackType
from typing import Literal

BACKLOG = 1024
_LINGER_ZERO = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends an RST
_MAX_DATAGRAM = 65535
_FREE_PORT_ATTEMPTS = 200

Protocol = Literal["tcp", "udp"]


def family_of(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def _socket_type(proto: Protocol) -> socket.SocketKind:
    return socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM


def free_port(proto: Protocol, *addresses: str) -> int:
    """A port that nothing holds on any of `addresses` (for `proto`) at this moment.

    The kernel picks the port when the first address binds to 0; every other address must
    bind the same number too. Binding also fails when a wildcard (0.0.0.0, ::) socket holds
    the port, so a port from here is closed on those addresses unless someone binds it
    later. No SO_REUSEADDR: a port in TIME_WAIT is skipped rather than reused.
    """
    if not addresses:
        raise ValueError("free_port needs at least one address")
    for _ in range(_FREE_PORT_ATTEMPTS):
        held: list[socket.socket] = []
        try:
            first = socket.socket(family_of(addresses[0]), _socket_type(proto))
            held.append(first)
            first.bind((addresses[0], 0))
            port: int = first.getsockname()[1]
            for address in addresses[1:]:
                other = socket.socket(family_of(address), _socket_type(proto))
                held.append(other)
                if family_of(address) == socket.AF_INET6:
                    other.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                other.bind((address, port))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return port
    raise OSError(f"no {proto} port was free on all of {addresses}")


class LoopbackServices:
    """TCP listeners and UDP responders, served by one thread, closed on exit.

    Sockets are created and bound in the caller's thread, so a bind error (a port in use,
    port 53 without root) raises right where the test asked for it; they are then handed
    to the serving thread, which may already be running.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        # (socket, role): "tcp" | "reset" listeners, "echo" | "silent" UDP ports
        self._pending: list[tuple[socket.socket, str]] = []
        self._sockets: list[socket.socket] = []
        self._datagrams: defaultdict[tuple[str, int], list[bytes]] = defaultdict(list)
        self._accepted: defaultdict[tuple[str, int], int] = defaultdict(int)
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- what a test asks for ------------------------------------------------------------

    def tcp(self, address: str, port: int = 0, *, reset: bool = False) -> int:
        """Listen on address:port (0: a free port); return the port.

        Accepted connections are closed at once: with a FIN like an ordinary service that
        has nothing to say, or (`reset=True`) with an RST, like a server shedding load.
        """
        listener = socket.socket(family_of(address), socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if listener.family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind((address, port))
            listener.listen(BACKLOG)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._hand_over(listener, "reset" if reset else "tcp")
        bound_port: int = listener.getsockname()[1]
        return bound_port

    def udp(self, address: str, port: int = 0, *, answer: bool = True) -> int:
        """Bind a UDP port that echoes every datagram (or, `answer=False`, never replies)."""
        sock = socket.socket(family_of(address), socket.SOCK_DGRAM)
        try:
            if sock.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._hand_over(sock, "echo" if answer else "silent")
        bound_port: int = sock.getsockname()[1]
        return bound_port

    def datagrams(self, address: str, port: int) -> list[bytes]:
        """Every datagram received on the UDP socket at address:port, in arrival order."""
        with self._lock:
            return list(self._datagrams[(_canonical(address), port)])

    def accepted(self, address: str, port: int) -> int:
        """How many connections the TCP listener at address:port has accepted."""
        with self._lock:
            return self._accepted[(_canonical(address), port)]

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> LoopbackServices:
        self._selector.register(self._wake_reader, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._serve, name="loopback-services", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with self._lock:
            self._stopping = True
        self._wake_writer.send(b"x")
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            leftovers = self._sockets + [sock for sock, _ in self._pending]
            self._sockets, self._pending = [], []
        for sock in leftovers:
            sock.close()
        self._selector.close()
        self._wake_reader.close()
        self._wake_writer.close()

    # -- the serving thread ---------------------------------------------------------------

    def _hand_over(self, sock: socket.socket, role: str) -> None:
        with self._lock:
            if self._stopping:
                sock.close()
                raise RuntimeError("LoopbackServices is closed")
            self._pending.append((sock, role))
        if self._thread is None:
            return  # registered when the thread starts reading the pending list
        self._wake_writer.send(b"+")

    def _register_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
            self._sockets.extend(sock for sock, _ in pending)
        for sock, role in pending:
            self._selector.register(sock, selectors.EVENT_READ, role)

    def _serve(self) -> None:
        self._register_pending()
        while True:
            for key, _ in self._selector.select():
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._wake_reader:
                    with contextlib.suppress(BlockingIOError):
                        sock.recv(4096)
                    with self._lock:
                        if self._stopping:
                            return
                    self._register_pending()
                elif key.data in ("tcp", "reset"):
                    self._accept_all(sock, reset=key.data == "reset")
                else:
                    self._receive_all(sock, answer=key.data == "echo")

    def _accept_all(self, listener: socket.socket, *, reset: bool) -> None:
        where = _where(listener)
        while True:
            try:
                connection, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ECONNABORTED: the scanner already reset it
                continue
            if reset:
                with contextlib.suppress(OSError):
                    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
            connection.close()
            with self._lock:
                self._accepted[where] += 1

    def _receive_all(self, sock: socket.socket, *, answer: bool) -> None:
        where = _where(sock)
        while True:
            try:
                data, peer = sock.recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error queued for an earlier reply; keep serving
                continue
            with self._lock:
                self._datagrams[where].append(data)
            if answer:
                with contextlib.suppress(OSError):  # the prober is gone: nothing to tell it
                    sock.sendto(data or b"\0", peer)


def _canonical(address: str) -> str:
    return ipaddress.ip_address(address).compressed


def _where(sock: socket.socket) -> tuple[str, int]:
    name = sock.getsockname()
    return _canonical(name[0]), name[1]
