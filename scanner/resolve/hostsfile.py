"""The hosts file, parsed by glibc's rules: each name's addresses, with FILE:LINE warnings.

Pure parsing (`parse_hosts`) plus the one read of the file (`load_hosts`); no DNS here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from scanner.core.addresses import literal_address
from scanner.core.model import Origin, ResolvedVia
from scanner.resolve.addresses import ResolvedAddress, normalize_name


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
    # No zone IDs and no brackets: glibc reads the address with inet_pton(3).
    literal = literal_address(text, brackets=False, zone=False)
    if literal is None:
        return None
    address, family = literal
    return ResolvedAddress(address, family, ResolvedVia.HOSTS_FILE)


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
