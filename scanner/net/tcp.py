"""TCP connect probes on sockets the engine owns, waited on through one shared epoll set.

Why not `loop.create_connection` or `anyio.connect_tcp`: neither lets us set `IP_RECVERR`
before connecting, so an RST and a firewall's ICMP port-unreachable would look the same;
and a task plus a timer per probe costs a third of the throughput (docs/KERNEL_NOTES.md). Here a
probe is one small object, one `add_writer` registration and one callback; deadlines are
kept by the engine's single sweep.
"""

from __future__ import annotations

import _socket
import contextlib
import errno
import socket
import struct
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from scanner.core.model import Event, Outcome, Target
from scanner.net.base import SocketProbe
from scanner.net.boundary import error_outcome, outcome_from_exception, silence_outcome
from scanner.net.errqueue import drain_error_queue, enable_error_queue
from scanner.net.poller import WRITABLE, EpollPoller

Token = TypeVar("Token")

_LINGER_RESET = struct.pack("ii", 1, 0)  # close with RST: no TIME_WAIT pile-up
_SOCK_FLAGS = int(socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
_FAMILIES = {4: int(socket.AF_INET), 6: int(socket.AF_INET6)}
_IN_PROGRESS = frozenset({errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK})
_RESET_AFTER_HANDSHAKE = frozenset({errno.ECONNRESET, errno.EPIPE})


def _set_linger_reset(sock: _socket.socket) -> None:
    """Close with an RST rather than a FIN: no TIME_WAIT pile-up on either side."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)


def _close_with_reset(sock: _socket.socket) -> None:
    _set_linger_reset(sock)
    sock.close()


def _is_self_connect(sock: _socket.socket) -> bool:
    """TCP simultaneous open: sweeping the ephemeral range on loopback, a connect can pick
    the destination port as its own source port and connect to itself."""
    try:
        return bool(sock.getsockname() == sock.getpeername())
    except OSError:
        return False


class TcpProbe(SocketProbe["TcpConnector[Token]", Token]):
    """One connect in flight."""

    __slots__ = ()

    def on_writable(self) -> None:
        """The connect finished (or failed): read SO_ERROR, then the error queue."""
        outcome = self._conclude(time.monotonic() - self._started)
        if outcome is None:  # writable yet not connected: cannot happen, but never hang
            outcome = silence_outcome(None, 0.0)
        self._sock.close()
        self._callback(self._token, outcome)

    def expire(self) -> Outcome:
        """The deadline passed. The answer may have arrived and merely not been processed
        yet (with thousands in flight the loop runs behind the network): look at the
        socket itself before calling it silence, so the loop's own delay never turns an
        open or closed port into a filtered one."""
        self._connector.poller.forget(self._fd)
        elapsed = time.monotonic() - self._started
        outcome = self._conclude(elapsed)
        if outcome is None:
            icmp = drain_error_queue(self._sock, self._target.address)
            outcome = silence_outcome(icmp, elapsed)
        self._sock.close()
        return outcome

    def _conclude(self, rtt: float) -> Outcome | None:
        """What the socket says now; None while the connect is still in progress."""
        sock = self._sock
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code in _RESET_AFTER_HANDSHAKE:
            # The handshake completed and the server reset the connection before we
            # looked (an RST *during* the handshake reads ECONNREFUSED): it is open.
            return Outcome(event=Event.CONNECTED, rtt=rtt)
        if code != 0:
            icmp = drain_error_queue(sock, self._target.address)
            return error_outcome(code, icmp=icmp, rtt=rtt)
        try:
            peer = sock.getpeername()
        except OSError:
            return None  # still in SYN-SENT
        if sock.getsockname() == peer:
            outcome = Outcome(event=Event.SELF_CONNECT, rtt=rtt, message="self-connect")
        else:
            outcome = Outcome(event=Event.CONNECTED, rtt=rtt)
        _set_linger_reset(sock)
        return outcome

    def cancel(self) -> None:
        self._connector.poller.forget(self._fd)
        self._sock.close()


class TcpConnector(Generic[Token]):
    """Starts TCP connect probes; completions arrive through the shared epoll poller."""

    def __init__(self, poller: EpollPoller) -> None:
        self.poller = poller

    def start(
        self, target: Target, token: Token, on_outcome: Callable[[Token, Outcome], None]
    ) -> TcpProbe[Token] | Outcome:
        family = _FAMILIES[target.family]
        try:
            sock = _socket.socket(family, _SOCK_FLAGS)  # the C type: see SocketProbe
        except OSError as exc:
            return outcome_from_exception(exc, immediate=True)
        try:
            enable_error_queue(sock, family)
            started = time.monotonic()
            code = sock.connect_ex((target.address, target.endpoint.port))
        except OSError as exc:
            sock.close()
            return outcome_from_exception(exc, immediate=True)
        if code in _IN_PROGRESS:
            # A target on this machine (loopback, a namespace) has usually answered by
            # the time connect() returns: the reply is processed in the softirq run at
            # the end of the send. One look at SO_ERROR settles a refusal here, with no
            # epoll registration, wake-up or deadline; a remote target costs one cheap
            # getsockopt more. (0 means connected or still in progress: wait as usual.)
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code == 0:
                probe = TcpProbe(self, sock, target, token, on_outcome, started)
                self.poller.watch(probe._fd, WRITABLE, probe.on_writable)
                return probe
            return _answered_at_once(sock, target, code, time.monotonic() - started)
        rtt = time.monotonic() - started
        if code == 0:  # loopback can complete at once
            event = Event.SELF_CONNECT if _is_self_connect(sock) else Event.CONNECTED
            _close_with_reset(sock)
            return Outcome(event=event, rtt=rtt)
        icmp = drain_error_queue(sock, target.address)
        sock.close()
        return error_outcome(code, icmp=icmp, immediate=True, rtt=rtt)


def _answered_at_once(sock: _socket.socket, target: Target, code: int, rtt: float) -> Outcome:
    """The connect was under way and the target's answer is already in: a real answer
    (its round trip counts), unlike an error connect() itself returns."""
    if code in _RESET_AFTER_HANDSHAKE:
        _close_with_reset(sock)
        return Outcome(event=Event.CONNECTED, rtt=rtt)
    icmp = drain_error_queue(sock, target.address)
    sock.close()
    return error_outcome(code, icmp=icmp, rtt=rtt)
