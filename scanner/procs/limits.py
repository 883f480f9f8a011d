"""What a scan needs of this machine besides probe sockets, and running out of it.

Descriptors are counted before anything opens: a `ulimit -n` too low for the outputs,
the history, the event loop and the worker pipes used to fail wherever the first
`open()` happened to fall (loading an output module, creating the loop; uvloop even
aborts the process), so the scan first asks for fewer worker processes, then refuses to
start, saying how many it needs. Probe sockets are not counted beyond a few: the engine
already backs off on `EMFILE` while probing (scanner/engine/engine.py).

Memory cannot be counted ahead, so running out of it (or out of descriptors after all)
is caught wherever it strikes and ends the run as one message and exit 3. An exception
in an event-loop callback never reaches the code that started the loop: the loop logs
it and calls the callback again at once when its descriptor is still readable, which is
how a `MemoryError` once made 233,010 tracebacks in a minute. So each run installs
`FatalCallbackWatch` as the loop's exception handler: the first exhaustion stops the run
and is raised where the run can clean up (temporary files removed, history run closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import mmap
import os
import resource
import signal
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})

LOOP_DESCRIPTORS = {"uvloop": 9, "asyncio": 3}
"""What creating and running each event loop opens (measured: uvloop's epoll, eventfd,
signal and wake-up pipes; asyncio's epoll and self-pipe)."""

HISTORY_DESCRIPTORS = 4
"""The run lock, the database, its write-ahead log and its shared-memory index."""

PIPE_ENDS_PER_CHILD = 2
"""The parent's ends of a forked child's two pipes (scanner/procs/worker_pool.py)."""

SPARE_DESCRIPTORS = 6
"""The poller's epoll set, a module being imported, a directory fsynced at commit, the
hosts file, and at least two sockets for probes and DNS (the engine backs off to fit)."""


@dataclass(frozen=True, slots=True)
class DescriptorNeeds:
    """The descriptors a scan opens besides its probes, by what they are for."""

    already_open: int
    loop: int
    file_outputs: int
    history: bool
    history_writer: bool
    workers: int  # processes probing; 1 means this one, with no pipes

    @property
    def parts(self) -> tuple[tuple[int, str], ...]:
        outputs = "1 output file" if self.file_outputs == 1 else f"{self.file_outputs} output files"
        parts = [
            (self.already_open, "already open"),
            (self.loop, "for the event loop"),
            (self.file_outputs, f"for {outputs}"),
            (HISTORY_DESCRIPTORS if self.history else 0, "for the history and its lock"),
            (PIPE_ENDS_PER_CHILD if self.history_writer else 0, "for the history writer"),
            (self.worker_pipes, f"for {self.workers} worker processes"),
            (SPARE_DESCRIPTORS, "for probes, DNS and imports"),
        ]
        return tuple((count, what) for count, what in parts if count)

    @property
    def worker_pipes(self) -> int:
        return PIPE_ENDS_PER_CHILD * self.workers if self.workers > 1 else 0

    @property
    def total(self) -> int:
        return sum(count for count, _ in self.parts)

    def describe(self) -> str:
        return ", ".join(f"{count} {what}" for count, what in self.parts)


def fit_workers(needs: DescriptorNeeds, limit: int) -> DescriptorNeeds | None:
    """`needs` with as many of its workers as `limit` allows (1: probing in this process,
    which costs no pipes), or None when even that does not fit."""
    for workers in range(needs.workers, 0, -1):
        fitted = replace(needs, workers=workers)
        if fitted.total <= limit:
            return fitted
    return None


def shortage_message(needs: DescriptorNeeds, limit: int) -> str:
    """Why the scan cannot start, and what to do about it."""
    return (
        f"reachscan: needs at least {needs.total} file descriptors (ulimit -n is {limit}): "
        f"{needs.describe()}; raise the limit (ulimit -n {needs.total}) or write fewer "
        "outputs; nothing was scanned"
    )


def open_descriptor_count() -> int:
    """How many descriptors this process holds now (inherited ones included)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # less the listing's own
    except OSError:
        count = 0
        for fd in range(resource.getrlimit(resource.RLIMIT_NOFILE)[0]):
            try:
                os.fstat(fd)
            except OSError:
                continue
            count += 1
        return count


def is_out_of_memory(error: BaseException) -> bool:
    """A `MemoryError`, or a shared library that could not be mapped (an import under a
    tight `ulimit -v` fails with an ImportError, not a MemoryError), also inside a group
    from a task group."""
    if isinstance(error, BaseExceptionGroup):
        return any(is_out_of_memory(inner) for inner in error.exceptions)
    if isinstance(error, MemoryError):
        return True
    return isinstance(error, ImportError) and "failed to map segment" in str(error)


def is_out_of_descriptors(error: BaseException) -> bool:
    """`EMFILE`/`ENFILE` outside the probes (which the engine handles itself)."""
    if isinstance(error, BaseExceptionGroup):
        return any(is_out_of_descriptors(inner) for inner in error.exceptions)
    return isinstance(error, OSError) and error.errno in OUT_OF_DESCRIPTORS


def is_exhaustion(error: BaseException) -> bool:
    return is_out_of_memory(error) or is_out_of_descriptors(error)


def exhaustion_message(error: BaseException) -> str | None:
    """The one line for a run that ran out of memory or descriptors; None for any other
    error. Builds little: memory may still be short while it runs."""
    if is_out_of_memory(error):
        return (
            f"reachscan: out of memory{_limit_text(resource.RLIMIT_AS, 'ulimit -v', 1024)}: "
            "the run was stopped; outputs not yet written keep their previous files and "
            "the history run is marked failed (raise the limit or scan less at once)"
        )
    if is_out_of_descriptors(error):
        limit = _limit_text(resource.RLIMIT_NOFILE, "ulimit -n", 1)
        return (
            f"reachscan: out of file descriptors{limit}: the run was stopped; outputs not "
            "yet written keep their previous files and "
            "the history run is marked failed (raise the limit or use fewer --workers)"
        )
    return None


def release_memory(error: BaseException) -> None:
    """Free what a failed run still holds through `error`'s tracebacks (the frames of
    the scan, with every result in them) before cleaning up needs memory of its own:
    marking the history run failed is an SQLite transaction, which can fail for want
    of a few kilobytes."""
    pending = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend(
            linked for linked in (current.__cause__, current.__context__) if linked is not None
        )
    with contextlib.suppress(MemoryError):
        gc.collect()


def _limit_text(which: int, name: str, unit: int) -> str:
    try:
        soft, _hard = resource.getrlimit(which)
    except (OSError, ValueError):
        return ""
    return "" if soft == resource.RLIM_INFINITY else f" ({name} is {soft // unit})"


STOP_GRACE = 20
"""Seconds a run out of memory may take to stop cleanly before it is ended at once."""


def give_up_after(seconds: int, error: BaseException) -> None:
    """The last resort once memory has run out: if stopping cleanly has not ended the
    process within `seconds` (every step of it failing for want of memory, the loop's
    tasks going neither on nor out), say so and exit 3 at once. A timer signal, because
    the loop's own timers need the loop to get round to them. What the run leaves behind
    (temporary files, a run marked `running`) is cleaned up by the next run that takes
    the history's lock."""
    message = (exhaustion_message(error) or "reachscan: out of memory") + (
        "; it could not stop cleanly and was ended at once\n"
    )
    encoded = message.encode()

    def end_now(_signum: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            os.write(2, encoded)
        os._exit(3)  # ExitStatus.OUTPUT_FAILED (scanner.run.plan imports too much for here)

    with contextlib.suppress(ValueError, OSError):  # not the main thread: no last resort
        signal.signal(signal.SIGALRM, end_now)
        signal.alarm(seconds)


def cancel_give_up() -> None:
    """The run stopped in time: no last resort."""
    with contextlib.suppress(ValueError, OSError):
        signal.alarm(0)


RESERVE_BYTES = 16 << 20
"""Address space held back while a run goes (mapped, never touched: it costs no memory,
only room under `ulimit -v`) and given back when memory runs out, so that stopping the
run (cancelling its tasks, anyio's delivery of the cancellation, removing temporary
files) has room to allocate. Without it, under a tight limit every one of those steps
failed in turn and the run neither went on nor stopped."""


class FatalCallbackWatch:
    """The event loop's exception handler for one run: the first exhaustion in a callback
    (out of memory or descriptors) is kept, the reserve given back and `stop` called;
    later ones are dropped (a callback whose descriptor stays ready fails again at every
    turn until the run has stopped); anything else goes to the loop's default handler,
    as before."""

    def __init__(self, stop: Callable[[], None], last_resort: int | None = STOP_GRACE) -> None:
        """`last_resort`: seconds after the first exhaustion until `give_up_after` ends
        the process (None: never; for tests, which must not end pytest)."""
        self.error: BaseException | None = None
        self._stop = stop
        self._last_resort = last_resort
        self._reserve: mmap.mmap | None = None
        with contextlib.suppress(OSError, ValueError):
            self._reserve = mmap.mmap(-1, RESERVE_BYTES)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if isinstance(error, BaseException) and is_exhaustion(error):
            if self.error is None:
                self.release_reserve()
                self.error = error
                if self._last_resort is not None:
                    give_up_after(self._last_resort, error)
                self._stop()
            return
        loop.default_exception_handler(context)

    def release_reserve(self) -> None:
        """Give the reserve back (also when the run ends: it is not needed after)."""
        reserve, self._reserve = self._reserve, None
        if reserve is not None:
            reserve.close()

    def raise_error(self) -> None:
        """Raise the exhaustion a callback met, if one did."""
        if self.error is not None:
            raise self.error
