"""Which signals end a scan, and how, in every phase of it, from start to exit.

A scan writes state outside itself (temporary files, a history run marked `running`), so
no signal that ends it may be left to its default action, which kills the process where
it stands. One handler is in place from the moment the scan command starts until it
returns, and what it does depends on the phase (README, "Interrupts and closed pipes"):

- starting (counting the inventory, waiting for the lock, forking the workers): the first
  interrupt stops reachscan at once; nothing has been written yet.
- scanning (outputs open, probes running): the first stops probing and writes every result
  that finished, marked interrupted; a second quits at once (outputs keep their previous
  files, the history run is stored `interrupted` with what it holds).
- finishing (every result is final: writing and committing the outputs and the history,
  pruning): the first is said on stderr and the writing finishes, so the outputs are
  complete and the history run `complete`, with exit status 130; a second quits at once.
- ending after a failure (the outputs could not be opened, or the scan raised: its
  outputs are aborted, and the processes and the history are being closed, which can
  take seconds): any interrupt quits at once, with the failure's exit status.

Interrupts are SIGINT (Ctrl-C), SIGTERM (a service manager's stop), SIGHUP (a dropped ssh
session or closed terminal) and SIGQUIT (Ctrl-\\); whichever comes first is named in the
message, and the exit status is 130 for all of them. SIGUSR1 prints one line of progress
on stderr (as `dd` does); SIGUSR2 is ignored. Forked children ignore every one of these
(`scanner/procs/worker_pool.py`): the parent decides how a scan ends.

Why a plain `signal.signal` handler and not the event loop's `add_signal_handler` (or
anyio's signal receiver, built on it): those exist only while the loop runs, and are
only acted on when the loop gets control, but the outputs are written by synchronous
code that holds the loop for seconds, and the phases before and after the loop need a
handler too. CPython runs a Python-level handler in the main thread between two
bytecodes, also while the loop waits in epoll (the wait is interrupted and retried) and
under uvloop (which runs pending handlers from its self-pipe callback); a signal landing
just before the loop enters its wait is run at the next wake-up, within the 0.2 s flush
interval. So the handler must never do more than is safe at an arbitrary point: while scanning it
hands the work to the loop (`call_soon_threadsafe` only appends to the ready queue and
writes a wake-up byte, safe amid the loop's own code); before the scan, where nothing is
written yet, it raises `Interrupt` (a `KeyboardInterrupt`, which every layer already
handles as a Ctrl-C); while writing, a second interrupt quits from the handler itself and
exits without unwinding, because an exception raised there can land in a weakref
callback or a `__del__`, which only print it and go on (seen: the outputs' writing
frees asyncio tasks, whose WeakSet callback ran the handler). Its messages go out with
one `os.write`, because `print` from inside a `print` raises.
"""

from __future__ import annotations

import contextlib
import enum
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Protocol

from scanner.status import ExitStatus

INTERRUPTS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
STATUS_REQUEST = signal.SIGUSR1
IGNORED = (signal.SIGUSR2,)
HANDLED = frozenset({*INTERRUPTS, STATUS_REQUEST, *IGNORED})
"""Every signal a scan decides about; forked children ignore all of them."""

OVERRIDDEN_BY_AN_INTERRUPT = frozenset(
    {
        ExitStatus.OK,
        ExitStatus.NOT_AS_EXPECTED,
        ExitStatus.USAGE_OR_INVENTORY,
        ExitStatus.OUT_OF_TIME,
    }
)

AGAIN = "interrupt again to quit at once"


class Phase(enum.Enum):
    """Where the scan is, which decides what an interrupt does (the list above)."""

    STARTING = "starting"
    SCANNING = "scanning"
    FINISHING = "finishing"
    ENDING = "ending"  # after a failure: nothing is left to stop, only to quit


class Interrupt(KeyboardInterrupt):
    """Raised by the handler before the scan starts, where the run must end at once and
    unwinding cleans up; `str()` is the one line to show (after the unwinding, last). Were
    it swallowed (raised inside a weakref callback), the interrupt is still `received`,
    and the exit status 130."""


class Waker(Protocol):
    """What the handler needs of the loop that runs the scan: an asyncio event loop, or
    `merge`'s reading loop, which has none (scanner/run/merge.py)."""

    def call_soon_threadsafe(self, callback: Callable[[], object], /) -> object: ...


class StopFlag:
    """The `Waker` of a loop that has no event loop (`merge` reading its files, a
    distributed scan polling its shards): the handler's callback runs at once, inside the
    handler, and `stop` only sets a flag the loop reads between two steps (and says the
    line), which is safe at any point."""

    def __init__(self) -> None:
        self.stopped = False

    def call_soon_threadsafe(self, callback: Callable[[], object], /) -> None:
        callback()

    def stop(self, message: str) -> None:
        self.stopped = True
        say(message)


@dataclass(frozen=True, slots=True)
class ScanControl:
    """How to end the scan from the event loop: `stop` (keep what finished) and `quit`
    (at once); each is given the line to show."""

    loop: Waker
    stop: Callable[[str], None]
    quit: Callable[[str], None]


def say(line: str) -> None:
    """One line on stderr, safe inside a signal handler (no buffer, no lock), and never
    failing: a hung-up terminal (EIO) or a closed stderr must not stop the scan."""
    with contextlib.suppress(OSError):
        os.write(2, line.encode("utf-8", "backslashreplace") + b"\n")


def starting_status() -> str:
    return "reachscan: starting: counting the inventory, opening the history"


class SignalGuard:
    """The one handler of every signal in `HANDLED`, for the life of one scan command.

    The runner moves it through the phases (`begin_scan`, `control_scan`, `finishing`)
    and sets `status` (the SIGUSR1 line); `received` is the first interrupt, if any.
    """

    def __init__(self, write_line: Callable[[str], None] = say) -> None:
        self.received: signal.Signals | None = None
        self.status: Callable[[], str] = starting_status
        self._write_line = write_line
        self._phase = Phase.STARTING
        self._control: ScanControl | None = None
        self._signals: list[signal.Signals] = []  # every interrupt, in order
        self._handled = 0  # how many of them have been acted on
        self._quit_while_finishing: Callable[[str], None] | None = None
        self._quit_while_ending: Callable[[str], None] | None = None

    @property
    def phase(self) -> Phase:
        return self._phase

    @contextlib.contextmanager
    def installed(self) -> Iterator[SignalGuard]:
        """Handle every signal in `HANDLED` until the block ends, then restore what was
        there before. Each handler replaces the previous one in a single call, so there
        is no instant with none."""
        previous = {number: signal.getsignal(number) for number in HANDLED}
        try:
            for number in INTERRUPTS:
                signal.signal(number, self._on_signal)
            signal.signal(STATUS_REQUEST, self._on_signal)
            for number in IGNORED:
                signal.signal(number, signal.SIG_IGN)
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def begin_scan(self) -> None:
        """The outputs are open: from now on an interrupt keeps what finished. Until
        `control_scan`, interrupts wait (the loop may be idle: nothing may be raised)."""
        self._phase = Phase.SCANNING

    def control_scan(self, control: ScanControl) -> None:
        """The scan runs on `control.loop` and can be stopped; an interrupt that came
        while it was being set up is acted on now. Call from the loop."""
        self._control = control
        self._catch_up()

    def finishing(self, quit: Callable[[str], None]) -> None:
        """Every result is final: an interrupt now lets the writing finish, and a second
        one calls `quit` (given the line to show; it does not return) from the handler
        itself, wherever the writing is. A second one already received: `quit` now."""
        self._phase = Phase.FINISHING
        self._control = None
        self._quit_while_finishing = quit
        self._catch_up()

    def ending(self, quit: Callable[[str], None]) -> None:
        """The run failed and is closing (its loop may be closed already): from now on
        every interrupt, the first too, calls `quit` (given the line to show; it does not
        return) from the handler itself. One that came already and was not acted on (the
        loop was never given control): `quit` now."""
        self._phase = Phase.ENDING
        self._control = None
        self._quit_while_finishing = None
        self._quit_while_ending = quit
        self._catch_up()

    def exit_status(self, status: int) -> int:
        """130 instead of `status` when an interrupt came at any point, unless `status`
        says something more important (outputs not written, a scanner failure, a closed
        stdout): the operator asked the run to stop, and it did not run its full course
        as asked, even when every result was in and written."""
        if self.received is not None and status in OVERRIDDEN_BY_AN_INTERRUPT:
            return ExitStatus.INTERRUPTED
        return status

    def _on_signal(self, number: int, frame: FrameType | None) -> None:
        if number == STATUS_REQUEST:
            self._write_line(self.status())
            return
        self._signals.append(signal.Signals(number))
        if self.received is None:
            self.received = signal.Signals(number)
        control = self._control
        if self._phase is Phase.SCANNING:
            if control is None:
                return  # no control yet: `control_scan` catches up
            try:
                control.loop.call_soon_threadsafe(self._catch_up)
                return
            except RuntimeError:
                # The loop is closed: the scan ended in an error that is on its way out
                # and the runner did not say `ending`. Nothing is left to stop: quit.
                self.ending(control.quit)
                return
        self._catch_up()

    def _catch_up(self) -> None:
        """Act on every interrupt received and not acted on yet, as the phase asks."""
        while self._handled < len(self._signals):
            received = self._signals[self._handled]
            first = self._handled == 0
            if self._phase is Phase.SCANNING and self._control is None:
                return
            self._handled += 1
            self._act(received, first)

    def _act(self, received: signal.Signals, first: bool) -> None:
        name = received.name
        if self._phase is Phase.ENDING:
            assert self._quit_while_ending is not None
            self._quit_while_ending(
                f"reachscan: interrupted by {name} while closing after a failure: quit at "
                "once; outputs not yet written keep their previous files"
            )
            return
        if self._phase is Phase.STARTING:
            raise Interrupt(
                f"reachscan: interrupted by {name} before the scan started: "
                "nothing was scanned or written"
            )
        again = (
            f"reachscan: interrupted again ({name}): quit at once; outputs not yet "
            "written keep their previous files, the history run is stored as interrupted"
        )
        if self._phase is Phase.SCANNING:
            assert self._control is not None
            if first:
                self._control.stop(
                    f"reachscan: interrupted by {name}; writing the results finished so "
                    f"far ({AGAIN})"
                )
            else:
                self._control.quit(again)
            return
        if first:
            self._write_line(
                f"reachscan: interrupted by {name} while writing the outputs: every "
                f"result is in, so the writing is finished first ({AGAIN})"
            )
        elif self._quit_while_finishing is not None:
            self._quit_while_finishing(again)
