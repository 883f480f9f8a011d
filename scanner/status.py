"""How a command can end: the documented exit statuses and the user's usage error.

A leaf: every command and the CLI import it, so it imports nothing of reachscan's.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """The documented exit statuses (README, "Exit status")."""

    OK = 0
    NOT_AS_EXPECTED = 1
    USAGE_OR_INVENTORY = 2
    OUTPUT_FAILED = 3
    OUT_OF_TIME = 4  # --max-time ran out: the results are partial
    SCANNER_FAILED = 5  # reachscan itself failed (a worker process died); partial results
    LOCKED = 75  # another run holds the lock (EX_TEMPFAIL: try again later)
    INTERRUPTED = 130
    STDOUT_CLOSED = 141


class UsageError(Exception):
    """A problem with the command line; exit status 2."""
