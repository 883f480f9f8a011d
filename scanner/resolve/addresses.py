"""What resolving a name produces, and the two pure steps before any lookup.

`ResolvedAddress` and `Resolution` are the values every resolver path returns;
`normalize_name` is the form names are compared and cached in, and an IP literal is its
own address (`parse_address_literal`), no I/O needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from scanner.core.addresses import literal_address
from scanner.core.model import Reason, ResolvedVia

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


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def normalize_name(name: str) -> str:
    """The form names are compared in: ASCII-lowercased, one trailing dot dropped.

    glibc compares hosts-file names with `strcasecmp` (ASCII only, in the C locale) and
    treats `host.` and `host` alike; DNS names are case-insensitive in ASCII too.
    """
    lowered = name.translate(_ASCII_LOWER)
    return lowered[:-1] if lowered.endswith(".") else lowered


def parse_address_literal(text: str) -> ResolvedAddress | None:
    """`text` as an IP literal (v4, v6, optionally in brackets, an IPv6 zone kept: the rule
    of `scanner.core.addresses`), or None if it is a name."""
    literal = literal_address(text)
    if literal is None:
        return None
    address, family = literal
    return ResolvedAddress(address, family, ResolvedVia.LITERAL)


def excluded_note(families: frozenset[int]) -> str:
    """A note on the family the user's -4/-6 left out, if any."""
    if families == {4, 6}:
        return ""
    (only,) = families
    other = 6 if only == 4 else 4
    return f" (IPv{other} excluded by {_FLAG_FOR_FAMILY[only]})"
