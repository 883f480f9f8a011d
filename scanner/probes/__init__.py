"""UDP probe payloads, kept as data: one file per service, named `<service>_<port>.pkt`.

An open UDP service usually ignores a datagram it cannot parse, so for well-known ports we
send a request the service must answer. Each payload was written from the protocol's own
specification (see payloads/README.md); nmap's payload file is not reused (its licence
terms forbid it). Every other port gets an empty datagram.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

_PAYLOAD_NAME = re.compile(r"^(?P<service>[a-z0-9-]+)_(?P<port>\d+)\.pkt$")


@dataclass(frozen=True, slots=True)
class Payload:
    service: str
    port: int
    data: bytes


@dataclass(frozen=True, slots=True)
class PayloadRegistry:
    """Port -> payload; immutable once loaded."""

    by_port: Mapping[int, Payload]

    def payload_for(self, port: int) -> bytes:
        payload = self.by_port.get(port)
        return payload.data if payload is not None else b""

    @classmethod
    def load(cls) -> PayloadRegistry:
        """Read every `<service>_<port>.pkt` shipped in the payloads directory."""
        found: dict[int, Payload] = {}
        for entry in sorted(
            resources.files(__package__).joinpath("payloads").iterdir(), key=lambda item: item.name
        ):
            match = _PAYLOAD_NAME.match(entry.name)
            if match is None:
                continue
            port = int(match["port"])
            found[port] = Payload(match["service"], port, entry.read_bytes())
        return cls(by_port=found)
