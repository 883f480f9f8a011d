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

import ipaddress
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING

import anyio

from scanner.core.hosts import address_text
from scanner.core.model import Origin, Reason, ResolvedVia

if TYPE_CHECKING:
    import dns.asyncresolver
    import dns.exception
    import dns.name

# dnspython is imported where it is used, not here: a scan of address literals never needs
# it, and it is a sixth of reachscan's start-up.


DEFAULT_DNS_PORT = 53

_RECORD_TYPE_FOR_FAMILY: Mapping[int, str] = {4: "A", 6: "AAAA"}
_FLAG_FOR_FAMILY: Mapping[int, str] = {4: "-4", 6: "-6"}


@dataclass(frozen=True, slots=True)
class ResolvedAddress:
    """One address of a name, in canonical text, with where it came from."""

    address: str  # canonical text (ipaddress compressed form)
    family: int  # 4 or 6
    via: ResolvedVia


@dataclass(frozen=True, slots=True)
class Resolution:
    """Everything learned about one name.

    `failure` is set only when `addresses` is empty. `message` explains a failure, or,
    next to addresses, what went wrong on the way (one family failed while the other
    answered), so a partial answer is never mistaken for a complete one.
    """

    name: str
    addresses: tuple[ResolvedAddress, ...]
    failure: Reason | None  # NXDOMAIN / NO_ADDRESS / RESOLVER_ERROR when addresses is empty
    message: str | None


@dataclass(frozen=True, slots=True)
class ResolverConfig:
    """How to resolve: which hosts file, which nameservers, which families, how patiently.

    `timeout` is the lifetime of one DNS lookup (one record type); it is split into
    `tries` equal attempts, so a lost UDP datagram costs one retry, not the whole lookup.
    """

    hosts_file: str | None = "/etc/hosts"
    nameservers: tuple[tuple[str, int], ...] = ()  # empty: from /etc/resolv.conf
    families: frozenset[int] = frozenset({4, 6})
    concurrency: int = 64
    timeout: float = 3.0
    tries: int = 2

    def __post_init__(self) -> None:
        if not self.families or not self.families <= {4, 6}:
            raise ValueError(
                f"families must be a non-empty subset of {{4, 6}}, not {self.families}"
            )
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {self.concurrency}")
        if self.timeout <= 0 or self.tries < 1:
            raise ValueError("timeout must be positive and tries at least 1")


# --------------------------------------------------------------------------------------
# Pure helpers: names, literals, nameserver specs, the hosts file
# --------------------------------------------------------------------------------------

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def normalize_name(name: str) -> str:
    """The form names are compared in: ASCII-lowercased, one trailing dot dropped.

    glibc compares hosts-file names with `strcasecmp` (ASCII only, in the C locale) and
    treats `host.` and `host` alike; DNS names are case-insensitive in ASCII too.
    """
    lowered = name.translate(_ASCII_LOWER)
    return lowered[:-1] if lowered.endswith(".") else lowered


def parse_address_literal(text: str) -> ResolvedAddress | None:
    """`text` as an IP literal (v4, v6, optionally in brackets), or None if it is a name."""
    candidate = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    return ResolvedAddress(address_text(address), address.version, ResolvedVia.LITERAL)


def parse_nameserver(text: str) -> tuple[str, int]:
    """Parse `ADDRESS`, `ADDRESS:PORT`, `[V6]:PORT`, `[V6]` or `V6` into (address, port).

    Only addresses are accepted: a nameserver given by name would itself need resolving,
    and through the very resolver being configured.
    """
    usage = "give an IP address, optionally with a port: 127.0.0.1, 127.0.0.1:5353, ::1, [::1]:5353"
    spec = text.strip()
    host, port_text = spec, ""
    if spec.startswith("["):
        close = spec.find("]")
        if close < 0:
            raise ValueError(f"nameserver {text!r}: missing ']'; {usage}")
        host, rest = spec[1:close], spec[close + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"nameserver {text!r}: unexpected {rest!r} after ']'; {usage}")
        port_text = rest[1:] if rest else ""
        if rest == ":":
            raise ValueError(f"nameserver {text!r}: empty port; {usage}")
    elif spec.count(":") == 1:
        host, port_text = spec.split(":")
        if not port_text:
            raise ValueError(f"nameserver {text!r}: empty port; {usage}")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"nameserver {text!r}: {host!r} is not an IP address; {usage}") from None
    if not port_text:
        return address.compressed, DEFAULT_DNS_PORT
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"nameserver {text!r}: port {port_text!r} is not in 1-65535; {usage}")
    return address.compressed, int(port_text)


@dataclass(frozen=True, slots=True)
class HostsWarning:
    """A hosts-file line that was skipped, and why (FILE:LINE: message)."""

    origin: Origin
    message: str

    def __str__(self) -> str:
        return f"{self.origin}: {self.message}"


@dataclass(frozen=True, slots=True)
class HostsTable:
    """A parsed hosts file: normalized name -> its addresses in file order."""

    entries: Mapping[str, tuple[ResolvedAddress, ...]] = field(default_factory=dict)
    warnings: tuple[HostsWarning, ...] = ()

    def lookup(self, name: str) -> tuple[ResolvedAddress, ...] | None:
        """The name's addresses, or None when the file does not mention it at all."""
        return self.entries.get(normalize_name(name))


def parse_hosts(text: str, path: str) -> HostsTable:
    """Parse hosts-file text as glibc's `files` backend does.

    Each line is `ADDRESS NAME [ALIAS...]`; `#` starts a comment anywhere on a line.
    The address must be a plain IPv4 dotted quad or an IPv6 address (glibc tries
    `inet_pton` for AF_INET6, then AF_INET, and skips the line otherwise); glibc has no
    syntax for IPv6 zone ids, so `fe80::1%eth0` is skipped too. Like `getaddrinfo`, which
    collects matches from every line, a name listed on several lines has all their
    addresses, in file order (repeats dropped). Skipped lines become warnings.
    """
    entries: dict[str, list[ResolvedAddress]] = {}
    warnings: list[HostsWarning] = []
    for line_number, raw_line in enumerate(text.splitlines(), start=1):
        fields = raw_line.split("#", 1)[0].split()
        if not fields:
            continue
        origin = Origin(path, line_number)
        address_text, names = fields[0], fields[1:]
        address = _hosts_file_address(address_text)
        if address is None:
            warnings.append(HostsWarning(origin, f"{address_text!r} is not an IP address"))
            continue
        if not names:
            warnings.append(HostsWarning(origin, f"address {address_text} has no host name"))
            continue
        for name in names:
            key = normalize_name(name)
            if not key:
                warnings.append(HostsWarning(origin, f"{name!r} is not a host name"))
                continue
            addresses = entries.setdefault(key, [])
            if address not in addresses:
                addresses.append(address)
    return HostsTable({name: tuple(found) for name, found in entries.items()}, tuple(warnings))


def _hosts_file_address(text: str) -> ResolvedAddress | None:
    if "%" in text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return ResolvedAddress(address_text(address), address.version, ResolvedVia.HOSTS_FILE)


def load_hosts(path: str | None) -> HostsTable:
    """Read and parse a hosts file; None means "no hosts file", an unreadable one is empty.

    A missing or unreadable file is not fatal (glibc treats it as empty too), but it is
    reported as a warning at line 0 so the user can see that it was not used.
    """
    if path is None:
        return HostsTable()
    try:
        with open(path, encoding="utf-8", errors="replace") as hosts:
            text = hosts.read()
    except OSError as error:
        reason = error.strerror or str(error)
        return HostsTable({}, (HostsWarning(Origin(path, 0), f"cannot read hosts file: {reason}"),))
    return parse_hosts(text, path)


# --------------------------------------------------------------------------------------
# DNS: the one place dnspython's exceptions are translated into values
# --------------------------------------------------------------------------------------


class _AnswerKind(Enum):
    ADDRESSES = "addresses"
    NO_DATA = "no-data"  # the name exists, without records of this type
    NXDOMAIN = "nxdomain"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class _FamilyAnswer:
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
) -> _FamilyAnswer:
    """Turn what `dns.asyncresolver.Resolver.resolve` raised into a `_FamilyAnswer`."""
    import dns.exception
    import dns.resolver

    record_type = _RECORD_TYPE_FOR_FAMILY[family]
    if isinstance(error, dns.resolver.NXDOMAIN):
        return _FamilyAnswer(family, _AnswerKind.NXDOMAIN, message=f"NXDOMAIN from {servers}")
    if isinstance(error, dns.resolver.NoAnswer):
        return _FamilyAnswer(family, _AnswerKind.NO_DATA, message=f"no {record_type} record")
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
    return _FamilyAnswer(family, _AnswerKind.ERROR, message=f"{record_type}: {'; '.join(details)}")


async def _query_family(
    resolver: dns.asyncresolver.Resolver, qname: dns.name.Name, family: int, servers: str
) -> _FamilyAnswer:
    """Ask DNS for the A or AAAA records of `qname`, translating every failure to a value."""
    import dns.exception

    record_type = _RECORD_TYPE_FOR_FAMILY[family]
    try:
        answer = await resolver.resolve(qname, record_type, search=False)
    except dns.exception.DNSException as error:
        return _translate_dns_error(error, family, servers, resolver.lifetime)
    except OSError as error:  # dnspython reports these via NoNameservers; belt and braces
        return _FamilyAnswer(
            family, _AnswerKind.ERROR, message=f"{record_type}: nameserver {servers}: {error}"
        )
    addresses: list[ResolvedAddress] = []
    for rdata in answer:
        address = ipaddress.ip_address(rdata.to_text())
        resolved = ResolvedAddress(address_text(address), address.version, ResolvedVia.DNS)
        if resolved not in addresses:
            addresses.append(resolved)
    if not addresses:
        return _FamilyAnswer(family, _AnswerKind.NO_DATA, message=f"no {record_type} record")
    return _FamilyAnswer(family, _AnswerKind.ADDRESSES, tuple(addresses))


def _combine_answers(
    name: str, answers: list[_FamilyAnswer], families: frozenset[int]
) -> Resolution:
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
        f"{name} exists but has no {queried} record{_excluded(families)}",
    )


def _excluded(families: frozenset[int]) -> str:
    """A note on the family the user's -4/-6 left out, if any."""
    if families == {4, 6}:
        return ""
    (only,) = families
    other = 6 if only == 4 else 4
    return f" (IPv{other} excluded by {_FLAG_FOR_FAMILY[only]})"


# --------------------------------------------------------------------------------------
# The resolver: ordering, caching, in-flight sharing, limits
# --------------------------------------------------------------------------------------


class _OnceCache:
    """Computes each key's `Resolution` once; concurrent callers wait for the first.

    Bookkeeping is synchronous between awaits, so no lock is needed. If the computing task
    is cancelled, its waiters wake, find no result, and one of them computes instead.
    """

    def __init__(self) -> None:
        self._done: dict[str, Resolution] = {}
        self._running: dict[str, anyio.Event] = {}

    async def get(self, key: str, compute: Callable[[], Awaitable[Resolution]]) -> Resolution:
        while True:
            if key in self._done:
                return self._done[key]
            running = self._running.get(key)
            if running is None:
                break
            await running.wait()
        finished = anyio.Event()
        self._running[key] = finished
        try:
            result = await compute()
            self._done[key] = result
            return result
        finally:
            del self._running[key]
            finished.set()


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
        self._resolved = _OnceCache()
        self._fresh = _OnceCache()

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
        message = f"{name} is an IPv{literal.family} address{_excluded(self._config.families)}"
        return Resolution(name, (), Reason.NO_ADDRESS, message)

    def _from_hosts_file(self, name: str, listed: tuple[ResolvedAddress, ...]) -> Resolution:
        allowed = tuple(address for address in listed if address.family in self._config.families)
        if allowed:
            return Resolution(name, allowed, None, None)
        source = self._config.hosts_file
        message = f"{name} is in {source} with no usable address{_excluded(self._config.families)}"
        return Resolution(name, (), Reason.NO_ADDRESS, message)

    async def _cached_dns(self, cache: _OnceCache, name: str) -> Resolution:
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
        servers = _describe_nameservers(resolver)
        answers: list[_FamilyAnswer] = []

        async def ask(family: int) -> None:
            answers.append(await _query_family(resolver, qname, family, servers))

        async with self._limiter, anyio.create_task_group() as group:
            for family in sorted(self._config.families):
                group.start_soon(ask, family)
        return _combine_answers(name, answers, self._config.families)

    def _dns_client(self) -> dns.asyncresolver.Resolver:
        if self._dns is None:
            self._dns = _make_dns_client(self._config)
        return self._dns


def _make_dns_client(config: ResolverConfig) -> dns.asyncresolver.Resolver:
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


def _describe_nameservers(resolver: dns.asyncresolver.Resolver) -> str:
    described = [_describe_server(str(server)) for server in resolver.nameservers]
    return ", ".join(described) or "(no nameserver configured)"
