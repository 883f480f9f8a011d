"""The standard streams: messages to the operator on stderr, which must never fail the run
themselves, and making sure all three streams exist before anything else is opened.

A process started with a standard descriptor closed (`>&-`, `2>&-`, a careless
supervisor) has two problems. Python sets `sys.stdout` (or `sys.stderr`) to None, so the
first `isatty()` or `print(file=sys.stderr)` fails (the latter silently prints to stdout
instead). Worse, the next file the process opens gets the free number: an output file or
a socket would become "stdout" and receive whatever is printed there. So `main` first
fills every closed standard descriptor: stdin and stderr with /dev/null (reading nothing,
the messages dropped: the operator asked for that), stdout with the read end of an empty
pipe, a descriptor that nothing can be written to. A closed stdout thus stays
recognisably closed (`stdout_writable`), and an output that would go there is refused
before anything is scanned, while outputs into files work; /dev/null is not used for
stdout because `-o /dev/null` would then be taken for stdout itself
(scanner/outputs/atomic.py writes through to our own stdout when named).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys

STDIN, STDOUT, STDERR = 0, 1, 2
STDOUT_CLOSED = (
    "it is closed (reachscan was started with >&-) or not open for writing; "
    "write the results to a file with -o FILE"
)


def report_error(message: str) -> None:
    with contextlib.suppress(BrokenPipeError, OSError):
        print(message, file=sys.stderr, flush=True)


def is_open(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError:
        return False
    return True


def stdout_writable() -> bool:
    """False when stdout was closed at start (or is open only for reading, `1<file`)."""
    try:
        flags = fcntl.fcntl(STDOUT, fcntl.F_GETFL)
    except OSError:
        return False
    return flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)


def discard_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered for it is dropped quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, STDOUT)
    os.close(devnull)


def fill_closed_standard_streams() -> None:
    """Give each closed standard descriptor a harmless stand-in (module docstring) and
    `sys` a usable stream object for it. Call before opening anything else."""
    for fd in (STDIN, STDOUT, STDERR):
        if is_open(fd):
            continue
        if fd == STDOUT:
            stand_in, write_end = os.pipe()
            os.close(write_end)  # reads see the end at once; writes fail (EBADF)
        else:
            stand_in = os.open(os.devnull, os.O_RDONLY if fd == STDIN else os.O_WRONLY)
        if stand_in != fd:
            os.dup2(stand_in, fd)
            os.close(stand_in)
        os.set_inheritable(fd, True)
    if sys.stdin is None:
        sys.stdin = open(STDIN, encoding="utf-8", closefd=False)  # noqa: SIM115
    if sys.stdout is None:
        sys.stdout = open(STDOUT, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = open(  # noqa: SIM115
            STDERR, "w", 1, encoding="utf-8", errors="backslashreplace", closefd=False
        )
