"""The seam between the engine and the network: what a connector promises.

The engine schedules probes and keeps deadlines; a connector starts one probe on a socket
it owns and reports exactly one `Outcome` for it, either at once (returned) or later
(through the callback). The real connectors live beside this file; tests pass fakes.
"""

from __future__ import annotations

import _socket
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from scanner.core.model import Outcome, Target

Token = TypeVar("Token")
ConnectorT = TypeVar("ConnectorT")


class ProbeHandle(Protocol):
    """A probe in flight."""

    def expire(self) -> Outcome:
        """The deadline passed: stop waiting, free the socket, say what was seen (silence,
        or an ICMP error the kernel queued without waking us)."""
        ...

    def cancel(self) -> None:
        """The scan is stopping: free the socket; no outcome is reported."""
        ...


class Connector(Protocol[Token]):
    """Starts probes of one protocol."""

    def start(
        self,
        target: Target,
        token: Token,
        on_outcome: Callable[[Token, Outcome], None],
    ) -> ProbeHandle | Outcome:
        """Issue the probe. An `Outcome` return means it finished at once (and the
        callback will not be called); otherwise exactly one of: the callback fires once,
        or the engine calls `expire()` or `cancel()` on the handle."""
        ...


class SocketProbe(Generic[ConnectorT, Token]):
    """What every probe in flight holds: the connector that started it, its socket,
    target, token and callback, and when it was issued (round trips are measured from
    the connect or send).

    The socket is the C type, `_socket.socket`, which the connectors create directly:
    `socket.socket` is a Python subclass whose `__init__` and `close` wrappers cost a
    sixth of a refused loopback probe's time, and a probe needs nothing they add.
    """

    __slots__ = ("_callback", "_connector", "_fd", "_sock", "_started", "_target", "_token")

    def __init__(
        self,
        connector: ConnectorT,
        sock: _socket.socket,
        target: Target,
        token: Token,
        callback: Callable[[Token, Outcome], None],
        started: float,
    ) -> None:
        self._connector = connector
        self._sock = sock
        self._fd = sock.fileno()
        self._target = target
        self._token = token
        self._callback = callback
        self._started = started
