"""Ansible host patterns: `web[01:20].example.com`, `db-[a:f]`, `h[0:10:2]`, `host:2222`.

An inventory line names one host pattern; this module turns it into the host names it
stands for, exactly as Ansible's `expand_hostname_range` does for well-formed patterns
(leftmost range varies slowest; a begin written with a leading zero pads every number to
its width). Where Ansible would crash, expand to nothing, or guess - a range that runs
backwards, a zero step, `[ab:cd]` - this module raises SpecError saying what to write.

A port after the pattern (`web1:2222`, `[2001:db8::1]:22`) is Ansible's SSH port, not a
port reachscan checks, so it is dropped here.
"""

from __future__ import annotations

import ipaddress
import re
import string

from scanner.core.errors import SpecError

MAX_PATTERN_HOSTS = 100_000
"""The most host names one pattern may expand to; more is almost certainly a typo."""

_DIGITS = re.compile(r"[0-9]+\Z")
_BRACKETED = re.compile(r"\[([^\]]*)\](?::([0-9]+))?\Z")
_RANGE_PART = re.compile(r"\[[^\]]*\]")
_RANGE_HELP = "write [01:20] (numbers, zero-padded if you like), [a:f] (letters) or [0:10:2]"


def expand_host_pattern(pattern: str) -> list[str]:
    """The host names an inventory host pattern stands for, its SSH port dropped."""
    return expand_ranges(strip_ssh_port(pattern))


def strip_ssh_port(pattern: str) -> str:
    """The pattern without a trailing `:PORT`; IPv6 literals keep their colons."""
    if not pattern:
        raise SpecError("missing host name")
    if pattern.endswith(":"):
        raise SpecError(
            f"host pattern {pattern!r} ends in ':'; after ':' Ansible expects the SSH port"
        )
    bracketed = _BRACKETED.match(pattern)
    if bracketed is not None and _is_ipv6(bracketed[1]):
        return bracketed[1]
    # Colons inside [1:3] ranges are not port separators; look only outside them.
    if _RANGE_PART.sub("", pattern).count(":") != 1:
        return pattern
    host, _, port = pattern.rpartition(":")
    if not _DIGITS.match(port):
        raise SpecError(f"bad SSH port {port!r} in host pattern {pattern!r}")
    return host


def expand_ranges(pattern: str) -> list[str]:
    """Every name of a pattern with `[begin:end(:step)]` ranges, leftmost range slowest."""
    start = pattern.find("[")
    close = pattern.find("]")
    if start < 0:
        if close >= 0:
            raise SpecError(f"']' without '[' in host pattern {pattern!r}")
        return [pattern]
    if close < start:
        if close < 0:
            raise SpecError(f"unclosed '[' in host pattern {pattern!r}; {_RANGE_HELP}")
        raise SpecError(f"']' before '[' in host pattern {pattern!r}")
    head, body, tail = pattern[:start], pattern[start + 1 : close], pattern[close + 1 :]
    items = _range_items(body, pattern)
    tails = expand_ranges(tail)
    if len(items) * len(tails) > MAX_PATTERN_HOSTS:
        raise SpecError(
            f"host pattern {pattern!r} expands to more than {MAX_PATTERN_HOSTS} hosts;"
            " split it into smaller ranges"
        )
    return [head + item + rest for item in items for rest in tails]


def _range_items(body: str, pattern: str) -> list[str]:
    """The values one `[...]` range stands for, as text."""
    bounds = body.split(":")
    if len(bounds) not in (2, 3):
        raise SpecError(f"bad range [{body}] in {pattern!r}; {_RANGE_HELP}")
    begin = bounds[0] or "0"  # Ansible reads [:5] as [0:5]
    end = bounds[1]
    if not end:
        raise SpecError(f"range [{body}] in {pattern!r} has no end; {_RANGE_HELP}")
    step_text = bounds[2] if len(bounds) == 3 else "1"
    if not _DIGITS.match(step_text) or int(step_text) == 0:
        raise SpecError(f"range step {step_text!r} in {pattern!r} must be a whole number above 0")
    step = int(step_text)
    letters = string.ascii_letters
    if len(begin) == 1 and len(end) == 1 and begin in letters and end in letters:
        first, last = letters.index(begin), letters.index(end)
        if first > last:
            raise SpecError(f"range [{body}] in {pattern!r} runs backwards; write [{end}:{begin}]")
        return list(letters[first : last + 1 : step])
    if not (_DIGITS.match(begin) and _DIGITS.match(end)):
        raise SpecError(f"bad range [{body}] in {pattern!r}; {_RANGE_HELP}")
    first, last = int(begin), int(end)
    if first > last:
        raise SpecError(f"range [{body}] in {pattern!r} runs backwards; write [{end}:{begin}]")
    width = 0
    if begin.startswith("0") and len(begin) > 1:
        if len(begin) != len(end):
            raise SpecError(
                f"zero-padded range [{body}] in {pattern!r} needs begin and end of one width,"
                f" e.g. [{begin.zfill(len(end))}:{end.zfill(len(begin))}]"
            )
        width = len(begin)
    numbers = range(first, last + 1, step)
    if len(numbers) > MAX_PATTERN_HOSTS:
        raise SpecError(
            f"host pattern {pattern!r} expands to more than {MAX_PATTERN_HOSTS} hosts;"
            " split it into smaller ranges"
        )
    return [str(number).zfill(width) for number in numbers]


def _is_ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False
