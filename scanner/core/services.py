"""Service names a spec may use instead of a port number, and the default port list.

Deliberately a short, reviewed table rather than `/etc/services`: the scanner must parse
the same inventory the same way on every machine, and `/etc/services` differs between
distributions (and is absent in many containers). Ports follow the IANA registry.

A bare name means the service's usual protocol (`dns` is 53/udp, `https` is 443/tcp);
`NAME/tcp` or `NAME/udp` picks the other one where the service runs on both.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from scanner.core.errors import SpecError, quoted
from scanner.core.model import Proto
from scanner.core.ports import PortSpec

TCP = Proto.TCP
UDP = Proto.UDP


@dataclass(frozen=True, slots=True)
class Service:
    """One table row: the port, the protocol a bare name means, every protocol allowed."""

    port: int
    default_proto: Proto
    protocols: frozenset[Proto]


def _tcp(port: int) -> Service:
    return Service(port, TCP, frozenset({TCP}))


def _udp(port: int) -> Service:
    return Service(port, UDP, frozenset({UDP}))


def _both(port: int, default: Proto) -> Service:
    return Service(port, default, frozenset({TCP, UDP}))


SERVICES: MappingProxyType[str, Service] = MappingProxyType(
    {
        "ftp": _tcp(21),
        "ssh": _tcp(22),
        "telnet": _tcp(23),
        "smtp": _tcp(25),
        "dns": _both(53, UDP),
        "domain": _both(53, UDP),
        "tftp": _udp(69),
        "http": _tcp(80),
        "pop3": _tcp(110),
        "ntp": _udp(123),
        "imap": _tcp(143),
        "snmp": _udp(161),
        "ldap": _tcp(389),
        "https": _both(443, TCP),  # 443/udp is HTTP/3 (QUIC)
        "smb": _tcp(445),
        "microsoft-ds": _tcp(445),
        "smtps": _tcp(465),
        "submissions": _tcp(465),
        "syslog": _udp(514),
        "submission": _tcp(587),
        "ldaps": _tcp(636),
        "rsync": _tcp(873),
        "imaps": _tcp(993),
        "pop3s": _tcp(995),
        "nfs": _both(2049, TCP),
        "zookeeper": _tcp(2181),
        "etcd": _tcp(2379),
        "mysql": _tcp(3306),
        "rdp": _tcp(3389),
        "sip": _both(5060, TCP),
        "postgresql": _tcp(5432),
        "postgres": _tcp(5432),
        "amqp": _tcp(5672),
        "vnc": _tcp(5900),
        "redis": _tcp(6379),
        "kubernetes-api": _tcp(6443),
        "http-alt": _tcp(8080),
        "https-alt": _tcp(8443),
        "prometheus": _tcp(9090),
        "kafka": _tcp(9092),
        "node-exporter": _tcp(9100),
        "elasticsearch": _tcp(9200),
        "git": _tcp(9418),
        "memcached": _tcp(11211),
        "mongodb": _tcp(27017),
    }
)
"""Lower-case service name -> its row. Aliases (`domain`, `postgres`) are separate rows."""


def lookup_service(name: str, proto: Proto | None = None) -> tuple[int, Proto]:
    """The (port, proto) a service name stands for; `proto` None means the usual one.

    Raises SpecError for an unknown name, or a protocol the service does not run on.
    """
    service = SERVICES.get(name.lower())
    if service is None:
        raise SpecError(f"unknown service name {quoted(name)}; write a port number")
    if proto is None:
        return service.port, service.default_proto
    if proto not in service.protocols:
        raise SpecError(
            f"{name} is a {service.default_proto} service; "
            f"write {service.port}/{proto} if you mean {proto}"
        )
    return service.port, proto


DEFAULT_PORTS = PortSpec.of(
    (TCP, port, port)
    for port in (
        22, 25, 53, 80, 110, 143, 443, 445, 587, 993,
        995, 3306, 3389, 5432, 6379, 8080, 8443, 9090, 9100, 27017,
    )
)  # fmt: skip
"""Common TCP ports probed when a spec names none: remote access, mail, web, databases,
and the usual monitoring endpoints; the same kind of list a first look at a host needs."""
