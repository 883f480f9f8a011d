"""UDP probes: a connected datagram socket the engine owns, one payload, then wait.

The socket has `IP_RECVERR` set so that every ICMP error (port-unreachable, prohibited,
host-unreachable) is queued with its type, code and offender; without the option Linux
reports only some of them. Such a socket must never be handed to
`create_datagram_endpoint`: after the first error it stays in EPOLLERR until the queue is
drained, which spins the default loop and crashes uvloop 0.23 (docs/KERNEL_NOTES.md). So we own
it, register a reader, and drain the error queue first each time it wakes.
"""

from __future__ import annotations

import _socket
import asyncio
import socket
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from scanner.core.model import Event, Outcome, Target
from scanner.net.base import SocketProbe
from scanner.net.boundary import error_outcome, outcome_from_exception, silence_outcome
from scanner.net.errqueue import drain_error_queue, enable_error_queue
from scanner.probes import PayloadRegistry

Token = TypeVar("Token")

_SOCK_FLAGS = int(socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
_FAMILIES = {4: int(socket.AF_INET), 6: int(socket.AF_INET6)}
_RECV_SIZE = 2048


class UdpProbe(SocketProbe["UdpConnector[Token]", Token]):
    """One datagram sent, waiting for an answer or an ICMP error."""

    __slots__ = ()

    def on_readable(self) -> None:
        sock = self._sock
        rtt = time.monotonic() - self._started
        icmp = drain_error_queue(sock, self._target.address)
        if icmp is not None:
            outcome = error_outcome(icmp.errno, icmp=icmp, rtt=rtt)
        else:
            try:
                sock.recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return  # a spurious wake-up: keep waiting
            except OSError as exc:
                outcome = outcome_from_exception(exc, immediate=False)
            else:
                outcome = Outcome(event=Event.DATAGRAM, rtt=rtt)
        self._finish()
        self._callback(self._token, outcome)

    def _finish(self) -> None:
        self._connector.loop.remove_reader(self._fd)
        self._sock.close()

    def expire(self) -> Outcome:
        """The deadline passed; an answer or ICMP error already queued still counts (the
        loop may simply not have got round to it)."""
        sock = self._sock
        elapsed = time.monotonic() - self._started
        icmp = drain_error_queue(sock, self._target.address)
        outcome = silence_outcome(icmp, elapsed)
        if icmp is None:
            try:
                sock.recv(_RECV_SIZE)
            except OSError:
                pass
            else:
                outcome = Outcome(event=Event.DATAGRAM, rtt=elapsed)
        self._finish()
        return outcome

    def cancel(self) -> None:
        self._finish()


class UdpConnector(Generic[Token]):
    """Starts UDP probes on the running event loop, with a payload chosen by port."""

    def __init__(self, loop: asyncio.AbstractEventLoop, payloads: PayloadRegistry) -> None:
        self.loop = loop
        self.payloads = payloads

    def start(
        self, target: Target, token: Token, on_outcome: Callable[[Token, Outcome], None]
    ) -> UdpProbe[Token] | Outcome:
        family = _FAMILIES[target.family]
        try:
            sock = _socket.socket(family, _SOCK_FLAGS)  # the C type: see SocketProbe
        except OSError as exc:
            return outcome_from_exception(exc, immediate=True)
        payload = self.payloads.payload_for(target.endpoint.port)
        started = time.monotonic()
        try:
            enable_error_queue(sock, family)
            sock.connect((target.address, target.endpoint.port))
        except OSError as exc:
            icmp = drain_error_queue(sock, target.address)
            sock.close()
            return outcome_from_exception(exc, immediate=True, icmp=icmp)
        try:
            sock.send(payload)
        except OSError as exc:
            # EPERM here is this machine's OUTPUT chain: the probe never left.
            icmp = drain_error_queue(sock, target.address)
            sock.close()
            return outcome_from_exception(exc, immediate=True, icmp=icmp, send_failed=True)
        probe = UdpProbe(self, sock, target, token, on_outcome, started)
        self.loop.add_reader(probe._fd, probe.on_readable)
        return probe
