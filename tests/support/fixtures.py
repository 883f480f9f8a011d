"""Plain pytest fixtures the suites share: a running DNS responder, a hosts-file factory,
the CLI with safe resolver sources (`reachscan`) and loopback listeners (`services`).

tests/conftest.py loads this module as a plugin (`pytest_plugins`), so every test can ask
for `dns_responder`, `hosts_file`, `reachscan` and `services` by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.support.cli import Reachscan
from tests.support.dns_responder import DnsResponder
from tests.support.listeners import LoopbackServices

HostsFileFactory = Callable[[Mapping[str, Sequence[str]] | str], str]
"""Writes a hosts file and returns its path: from a mapping name -> addresses (one
`ADDRESS NAME` line each, in order), or verbatim from a string."""


@pytest.fixture
def dns_responder() -> Iterator[DnsResponder]:
    """A DNS responder on 127.0.0.1 with no names yet: every query gets NXDOMAIN."""
    with DnsResponder() as responder:
        yield responder


@pytest.fixture
def hosts_file(tmp_path: Path) -> HostsFileFactory:
    counter = iter(range(1_000_000))

    def write(entries: Mapping[str, Sequence[str]] | str) -> str:
        if isinstance(entries, str):
            text = entries
        else:
            text = "".join(
                f"{address} {name}\n"
                for name, addresses in entries.items()
                for address in addresses
            )
        path = tmp_path / f"hosts-{next(counter)}"
        path.write_text(text, encoding="utf-8")
        return str(path)

    return write


@pytest.fixture
def reachscan(dns_responder: DnsResponder, hosts_file: HostsFileFactory) -> Reachscan:
    return Reachscan(hosts_file=hosts_file({}), nameserver=dns_responder.address_text)


@pytest.fixture
def services() -> Iterator[LoopbackServices]:
    with LoopbackServices() as running:
        yield running
