"""Fixtures of the hostile-conditions suite: the CLI with safe resolver sources, and
loopback services that count what reaches them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hostile.hostile_support import Reachscan
from tests.support.dns_responder import DnsResponder
from tests.support.fixtures import HostsFileFactory
from tests.support.listeners import LoopbackServices


@pytest.fixture
def reachscan(dns_responder: DnsResponder, hosts_file: HostsFileFactory) -> Reachscan:
    return Reachscan(hosts_file=hosts_file({}), nameserver=dns_responder.address_text)


@pytest.fixture
def services() -> Iterator[LoopbackServices]:
    with LoopbackServices() as running:
        yield running
