"""Name resolution that can be explained later: every address of a name, and where each came from.

The system resolver (`getaddrinfo`) answers with addresses only; it cannot say whether one
came from `/etc/hosts` or from DNS, and it hides NXDOMAIN, "no such record" and "the
nameserver is broken" behind the same error. The cause analysis needs exactly those
distinctions (a stale hosts-file entry is a common reason for "connection refused"), so
reachscan resolves names itself, the way glibc does with `hosts: files dns`:

1. an IP literal is its own address (no I/O);
2. a name listed in the hosts file resolves from the hosts file *only* — as with
   `files dns`, DNS is never asked about it, even when the file lists none of the
   families we want;
3. anything else is asked of DNS with dnspython: A and AAAA concurrently, as an absolute
   name (no search domains), every address kept.

Each name is resolved once per `Resolver`; concurrent callers share one lookup.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import anyio

from scanner.core.model import Reason
from scanner.resolve.addresses import (
    Resolution,
    ResolvedAddress,
    excluded_note,
    normalize_name,
    parse_address_literal,
)
from scanner.resolve.cache import OnceCache
from scanner.resolve.config import ResolverConfig
from scanner.resolve.dnsquery import (
    FamilyAnswer,
    combine_answers,
    describe_nameservers,
    make_dns_client,
    query_family,
)
from scanner.resolve.hostsfile import HostsTable, HostsWarning, load_hosts

if TYPE_CHECKING:
    import dns.asyncresolver


class Resolver:
    """Resolves names per a `ResolverConfig`, each name once, at most `concurrency` at a time.

    The hosts file and the DNS client are created on first use, so constructing a
    Resolver does no I/O. One Resolver serves one event loop.
    """

    def __init__(self, config: ResolverConfig) -> None:
        self._config = config
        self._hosts: HostsTable | None = None
        self._dns: dns.asyncresolver.Resolver | None = None
        self._limiter = anyio.CapacityLimiter(config.concurrency)
        self._resolved = OnceCache()
        self._fresh = OnceCache()

    @property
    def config(self) -> ResolverConfig:
        return self._config

    @property
    def hosts_warnings(self) -> tuple[HostsWarning, ...]:
        """Lines of the hosts file that were skipped (reading it if not yet read)."""
        return self._hosts_table().warnings

    async def resolve(self, name: str) -> Resolution:
        """Resolve as `hosts: files dns` would: literal, else hosts file, else DNS."""
        literal = self._literal(name)
        if literal is not None:
            return literal
        hosts_addresses = self._hosts_table().lookup(name)
        if hosts_addresses is not None:
            return self._from_hosts_file(name, hosts_addresses)
        return await self._cached_dns(self._resolved, name)

    async def fresh_dns(self, name: str) -> Resolution:
        """Resolve through DNS alone, ignoring the hosts file.

        The cause analysis compares this with `resolve()` to spot a hosts-file entry that
        DNS no longer agrees with. Literals are still their own address.
        """
        literal = self._literal(name)
        if literal is not None:
            return literal
        return await self._cached_dns(self._fresh, name)

    def _hosts_table(self) -> HostsTable:
        if self._hosts is None:
            self._hosts = load_hosts(self._config.hosts_file)
        return self._hosts

    def _literal(self, name: str) -> Resolution | None:
        literal = parse_address_literal(name)
        if literal is None:
            return None
        if literal.family in self._config.families:
            return Resolution(name, (literal,), None, None)
        message = f"{name} is an IPv{literal.family} address{excluded_note(self._config.families)}"
        return Resolution(name, (), Reason.NO_ADDRESS, message)

    def _from_hosts_file(self, name: str, listed: tuple[ResolvedAddress, ...]) -> Resolution:
        allowed = tuple(address for address in listed if address.family in self._config.families)
        if allowed:
            return Resolution(name, allowed, None, None)
        source = self._config.hosts_file
        message = (
            f"{name} is in {source} with no usable address{excluded_note(self._config.families)}"
        )
        return Resolution(name, (), Reason.NO_ADDRESS, message)

    async def _cached_dns(self, cache: OnceCache, name: str) -> Resolution:
        result = await cache.get(normalize_name(name), lambda: self._lookup_dns(name))
        return result if result.name == name else replace(result, name=name)

    async def _lookup_dns(self, name: str) -> Resolution:
        import dns.exception
        import dns.name

        try:
            qname = dns.name.from_text(name)  # absolute: no search domains, ndots irrelevant
        except (dns.exception.DNSException, UnicodeError) as error:
            return Resolution(
                name, (), Reason.NXDOMAIN, f"{name!r} is not a valid DNS name: {error}"
            )
        try:
            resolver = self._dns_client()
        except (dns.exception.DNSException, OSError) as error:  # e.g. no usable resolv.conf
            message = f"cannot ask DNS about {name}: {error}; give a nameserver explicitly"
            return Resolution(name, (), Reason.RESOLVER_ERROR, message)
        servers = describe_nameservers(resolver)
        answers: list[FamilyAnswer] = []

        async def ask(family: int) -> None:
            answers.append(await query_family(resolver, qname, family, servers))

        async with self._limiter, anyio.create_task_group() as group:
            for family in sorted(self._config.families):
                group.start_soon(ask, family)
        return combine_answers(name, answers, self._config.families)

    def _dns_client(self) -> dns.asyncresolver.Resolver:
        if self._dns is None:
            self._dns = make_dns_client(self._config)
        return self._dns
