"""DNS with dnspython: the one place its exceptions are translated into values.

A and AAAA are asked separately (`query_family`), each failure becomes a `FamilyAnswer`,
and `combine_answers` merges them into one `Resolution` for the name.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from scanner.core.addresses import address_text
from scanner.core.model import Reason, ResolvedVia
from scanner.resolve.addresses import Resolution, ResolvedAddress, excluded_note
from scanner.resolve.config import ResolverConfig

if TYPE_CHECKING:
    import dns.asyncresolver
    import dns.exception
    import dns.name

# dnspython is imported where it is used, not here: a scan of address literals never needs
# it, and it is a sixth of reachscan's start-up.

_RECORD_TYPE_FOR_FAMILY: Mapping[int, str] = {4: "A", 6: "AAAA"}


class _AnswerKind(Enum):
    ADDRESSES = "addresses"
    NO_DATA = "no-data"  # the name exists, without records of this type
    NXDOMAIN = "nxdomain"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class FamilyAnswer:
    """What DNS said about one record type (A or AAAA) of one name."""

    family: int
    kind: _AnswerKind
    addresses: tuple[ResolvedAddress, ...] = ()
    message: str | None = None


def _describe_server(server: str) -> str:
    """dnspython names a server `Do53:ADDRESS@PORT`; users write `ADDRESS:PORT`."""
    kind, _, rest = server.partition(":")
    address, at, port = rest.rpartition("@")
    if kind != "Do53" or not at:
        return server
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _describe_errors(errors: object) -> list[str]:
    """One line per distinct (server, error) from dnspython's `errors` trace."""
    import dns.exception
    import dns.message

    lines: list[str] = []
    if not isinstance(errors, list):
        return lines
    for entry in errors:
        server, problem = _describe_server(str(entry[0])), entry[3]
        if isinstance(problem, str):
            text = f"nameserver {server} answered {problem}"
        elif isinstance(problem, dns.exception.Timeout):
            text = f"no answer from nameserver {server}"
        elif isinstance(problem, dns.message.Truncated):
            continue  # dnspython retries over TCP; only the TCP outcome matters
        else:
            text = f"nameserver {server}: {type(problem).__name__}: {problem}"
        if text not in lines:
            lines.append(text)
    return lines


def _translate_dns_error(
    error: dns.exception.DNSException, family: int, servers: str, lifetime: float
) -> FamilyAnswer:
    """Turn what `dns.asyncresolver.Resolver.resolve` raised into a `FamilyAnswer`."""
    import dns.exception
    import dns.resolver

    record_type = _RECORD_TYPE_FOR_FAMILY[family]
    if isinstance(error, dns.resolver.NXDOMAIN):
        return FamilyAnswer(family, _AnswerKind.NXDOMAIN, message=f"NXDOMAIN from {servers}")
    if isinstance(error, dns.resolver.NoAnswer):
        return FamilyAnswer(family, _AnswerKind.NO_DATA, message=f"no {record_type} record")
    errors = error.kwargs.get("errors")
    details = _describe_errors(errors)
    if isinstance(error, dns.exception.Timeout):
        waited = f" within {lifetime:g} s"
        details = details or [f"no answer from nameserver {servers}"]
        details = [
            f"{detail}{waited}" if detail.startswith("no answer") else detail for detail in details
        ]
    elif not details:
        details = [f"nameserver {servers}: {type(error).__name__}: {error}"]
    return FamilyAnswer(family, _AnswerKind.ERROR, message=f"{record_type}: {'; '.join(details)}")


async def query_family(
    resolver: dns.asyncresolver.Resolver, qname: dns.name.Name, family: int, servers: str
) -> FamilyAnswer:
    """Ask DNS for the A or AAAA records of `qname`, translating every failure to a value."""
    import dns.exception

    record_type = _RECORD_TYPE_FOR_FAMILY[family]
    try:
        answer = await resolver.resolve(qname, record_type, search=False)
    except dns.exception.DNSException as error:
        return _translate_dns_error(error, family, servers, resolver.lifetime)
    except OSError as error:  # dnspython reports these via NoNameservers; belt and braces
        return FamilyAnswer(
            family, _AnswerKind.ERROR, message=f"{record_type}: nameserver {servers}: {error}"
        )
    addresses: list[ResolvedAddress] = []
    for rdata in answer:
        address = ipaddress.ip_address(rdata.to_text())
        resolved = ResolvedAddress(address_text(address), address.version, ResolvedVia.DNS)
        if resolved not in addresses:
            addresses.append(resolved)
    if not addresses:
        return FamilyAnswer(family, _AnswerKind.NO_DATA, message=f"no {record_type} record")
    return FamilyAnswer(family, _AnswerKind.ADDRESSES, tuple(addresses))


def combine_answers(name: str, answers: list[FamilyAnswer], families: frozenset[int]) -> Resolution:
    """Merge the per-type answers for one name into a `Resolution`.

    In order: any addresses win (failures of the other type go into `message`); NXDOMAIN
    only if every type said so; then any resolver error (we do not know enough to say the
    name has no address); otherwise the name exists without usable records.
    """
    ordered = sorted(answers, key=lambda answer: answer.family)
    addresses = tuple(address for answer in ordered for address in answer.addresses)
    problems = [
        answer.message for answer in ordered if answer.kind is _AnswerKind.ERROR and answer.message
    ]
    if addresses:
        return Resolution(name, addresses, None, "; ".join(problems) or None)
    if all(answer.kind is _AnswerKind.NXDOMAIN for answer in ordered):
        nxdomain = next((answer.message for answer in ordered if answer.message), None)
        return Resolution(name, (), Reason.NXDOMAIN, f"{name} does not exist ({nxdomain})")
    if problems:
        return Resolution(
            name, (), Reason.RESOLVER_ERROR, f"resolving {name} failed: {'; '.join(problems)}"
        )
    queried = " or ".join(_RECORD_TYPE_FOR_FAMILY[family] for family in sorted(families))
    return Resolution(
        name,
        (),
        Reason.NO_ADDRESS,
        f"{name} exists but has no {queried} record{excluded_note(families)}",
    )


def make_dns_client(config: ResolverConfig) -> dns.asyncresolver.Resolver:
    """A dnspython resolver that asks exactly the configured servers, without a cache.

    With explicit nameservers, `configure=False` keeps /etc/resolv.conf out of it
    entirely (tests rely on that: the machine's nameserver must never be queried).
    """
    import dns.asyncresolver
    import dns.nameserver

    if config.nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(host, port) for host, port in config.nameservers
        ]
    else:
        resolver = dns.asyncresolver.Resolver()
    resolver.lifetime = config.timeout
    resolver.timeout = config.timeout / config.tries
    resolver.cache = None  # our own cache is per name; a second cache would only confuse
    return resolver


def describe_nameservers(resolver: dns.asyncresolver.Resolver) -> str:
    described = [_describe_server(str(server)) for server in resolver.nameservers]
    return ", ".join(described) or "(no nameserver configured)"
