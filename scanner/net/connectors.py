"""The real connectors, set up together on the running loop (and taken down after)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from scanner.core.model import Proto
from scanner.net.base import Connector
from scanner.net.poller import EpollPoller
from scanner.net.tcp import TcpConnector
from scanner.net.udp import UdpConnector
from scanner.probes import PayloadRegistry


@contextmanager
def probe_connectors() -> Iterator[dict[Proto, Connector[Any]]]:
    """TCP and UDP connectors on the running loop; their shared poller is closed after.

    Any token: the connectors hand back whatever the engine gave them with each probe."""
    loop = asyncio.get_running_loop()
    poller = EpollPoller(loop)
    try:
        yield {
            Proto.TCP: TcpConnector[Any](poller),
            Proto.UDP: UdpConnector[Any](loop, PayloadRegistry.load()),
        }
    finally:
        poller.close()
