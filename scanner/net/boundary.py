"""The one place where what the OS raised becomes an `Outcome`.

Everything below the engine reports errors here, and nothing above it looks at an
exception or an errno again: from here on, facts are values (`scanner.core.model.Outcome`).
"""

from __future__ import annotations

import errno as errno_codes
import os
from functools import lru_cache

from scanner.core.model import Event, IcmpReport, Outcome


@lru_cache(maxsize=256)
def describe_errno(code: int) -> str:
    """`ECONNREFUSED: Connection refused`: the name operators search for, then the text."""
    name = errno_codes.errorcode.get(code, f"errno {code}")
    return f"{name}: {os.strerror(code)}"


def error_outcome(
    code: int,
    *,
    icmp: IcmpReport | None = None,
    immediate: bool = False,
    rtt: float | None = None,
    send_failed: bool = False,
) -> Outcome:
    """An errno from connect(), send(), recv() or SO_ERROR, with the queued ICMP record."""
    if icmp is not None and icmp.errno:
        code = icmp.errno if code == 0 else code
    return Outcome(
        event=Event.SEND_FAILED if send_failed and icmp is None else Event.ERROR,
        errno=code,
        icmp=icmp,
        immediate=immediate,
        rtt=rtt,
        message=describe_errno(code),
    )


def outcome_from_exception(
    exc: OSError, *, immediate: bool, icmp: IcmpReport | None = None, send_failed: bool = False
) -> Outcome:
    """The same, for an exception (errno None happens only for wrapped errors)."""
    code = exc.errno if exc.errno is not None else errno_codes.EIO
    return error_outcome(code, icmp=icmp, immediate=immediate, send_failed=send_failed)


def silence_outcome(icmp: IcmpReport | None, rtt: float) -> Outcome:
    """The deadline passed; a late-read ICMP record still decides, if the kernel queued one."""
    if icmp is not None:
        return error_outcome(icmp.errno, icmp=icmp, rtt=rtt)
    return Outcome(event=Event.SILENCE, rtt=None)
