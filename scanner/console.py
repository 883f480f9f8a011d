"""Messages to the operator on stderr, which must never fail the run themselves."""

from __future__ import annotations

import contextlib
import sys


def report_error(message: str) -> None:
    with contextlib.suppress(BrokenPipeError, OSError):
        print(message, file=sys.stderr, flush=True)
