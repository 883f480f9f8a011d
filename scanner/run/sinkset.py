"""Opening, starting and abandoning a run's outputs, for every command that writes results
(`scan`, `check`, `merge`): one place decides what -q, --changes-only and a closed stdout
mean, and how a second interrupt leaves every output (its previous file kept) and the
history (the run stored as interrupted). Imports no engine or event loop: `merge` uses it
without them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from typing import NoReturn, TypeVar

from scanner.console import STDOUT_CLOSED, report_error, stdout_writable
from scanner.core.model import Result
from scanner.core.sinks import OutputClosed, RunSummary
from scanner.history.changes import ChangesOnlySink
from scanner.history.errors import HistoryError
from scanner.history.lock import LockBusy
from scanner.outputs import OutputError, OutputOptions, OutputSpec, RunInfo, Sink, make_sink
from scanner.outputs.quiet import QuietSink
from scanner.run.interrupts import SignalGuard, say
from scanner.run.session import HistoryPlan, HistorySession, history_session
from scanner.status import ExitStatus


def open_sinks(
    outputs: Sequence[OutputSpec],
    options: OutputOptions,
    quiet: bool,
    history: HistorySession | None,
    changes_only: bool = False,
) -> list[Sink]:
    """Every output of the run; what goes to stdout is filtered by -q and --changes-only."""
    sinks: list[Sink] = []
    changes = history.change_filter() if history is not None and changes_only else None
    to_stdout = any(output.path == "-" for output in outputs)
    if to_stdout and not stdout_writable():  # before any temporary file exists
        raise OutputError("standard output", STDOUT_CLOSED)
    try:
        for output in outputs:
            sink = make_sink(output.format, output.path, options)
            if output.path == "-" and changes is not None:
                sink = ChangesOnlySink(sink, changes)
            if output.path == "-" and quiet:
                sink = QuietSink(sink)
            sinks.append(sink)
        if quiet and not to_stdout and stdout_writable():
            # Every output goes to a file: -q still owes cron a word when something is
            # wrong, so the trouble goes to stdout as a table (and nothing otherwise;
            # nothing either when stdout was closed: no one is there to read it).
            sinks.append(QuietSink(make_sink("table", "-", options)))
        if history is not None:
            sinks.append(history.sink)
    except Exception:  # also out of memory or descriptors importing an output's module
        for sink in sinks:
            sink.abort()
        raise
    return sinks


def start_sinks(sinks: Sequence[Sink], run: RunInfo) -> None:
    """Start every sink; when one cannot start (a read-only history), abort them all, so
    no temporary file is left behind and no run stays `running`, and raise its error."""
    try:
        for sink in sinks:
            sink.start(run)
    except OutputError:
        for sink in sinks:
            with contextlib.suppress(Exception):
                sink.abort()
        raise


def quit_at_once(sinks: Sequence[Sink], history: HistorySession | None) -> None:
    """A second interrupt: close the history's run as interrupted and drop the outputs'
    half-written temporary files (each path keeps its previous whole file)."""
    if history is not None:
        history.sink.quit()  # its abort, below, then changes nothing
    for sink in sinks:
        with contextlib.suppress(Exception):
            sink.abort()


def quit_and_exit(
    message: str,
    sinks: Sequence[Sink],
    history: HistorySession | None,
    status: ExitStatus = ExitStatus.INTERRUPTED,
) -> NoReturn:
    """A second interrupt, as it comes (also inside the signal handler, amid the writing:
    an exception raised there could land in a weakref callback, which only prints it):
    say so with one `os.write`, `quit_at_once`, and exit without unwinding, 130 unless
    the run had already failed (`status`: README, "Exit status")."""
    say(message)
    quit_at_once(sinks, history)
    os._exit(status)


def end_after_failure(
    signals: SignalGuard,
    sinks: Sequence[Sink],
    history: HistorySession | None,
    status: ExitStatus,
    failure: str | None = None,
) -> None:
    """The run failed and is about to close (its outputs aborted, then the workers and
    the history writer reaped, the history closed: seconds, at times): an interrupt now
    quits at once with `status`, saying `failure` too when it was not said yet."""

    def quit(message: str) -> NoReturn:
        if failure is not None:
            say(failure)
        quit_and_exit(message, sinks, history, status)

    signals.ending(quit)


_T = TypeVar("_T")


class GuardedSinks:
    """A run's sinks driven outside the event loop (`merge`, a distributed scan): a sink
    that fails is set aside (its previous file kept: `abort`) and the failure kept for
    the exit status; a closed stdout ends the run quietly."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)
        self.failures: list[OutputError] = []
        self.stdout_closed = False

    @property
    def failed(self) -> bool:
        return bool(self.failures) or self.stdout_closed

    def guarded(self, sink: Sink, action: Callable[[_T], None], argument: _T) -> None:
        try:
            action(argument)
        except OutputClosed:
            self.sinks.remove(sink)
            self.stdout_closed = True
        except OutputError as failure:
            self.sinks.remove(sink)
            sink.abort()
            self.failures.append(failure)

    def write_all(self, batch: Sequence[Result]) -> None:
        for sink in list(self.sinks):
            self.guarded(sink, sink.write, batch)

    def finish_all(self, summary: RunSummary) -> None:
        for sink in list(self.sinks):
            self.guarded(sink, sink.finish, summary)

    def outputs_status(self) -> int | None:
        """The exit status the outputs decide, before the results do (README, "Exit
        status"): 3 when one failed (said here), 141 for a closed stdout, a Nagios
        output's verdict; None to let the results decide."""
        for failure in self.failures:
            report_error(f"reachscan: {failure}")
        if self.failures:
            return ExitStatus.OUTPUT_FAILED
        if self.stdout_closed:
            return ExitStatus.STDOUT_CLOSED
        for sink in self.sinks:
            verdict = sink.verdict()
            if verdict is not None:
                return verdict
        return None


def with_history(plan: HistoryPlan | None, body: Callable[[HistorySession | None], int]) -> int:
    """`body` with the history open (locked) when there is one; another run holding the
    lock is exit 75, a history that cannot be opened exit 3, each said in one line."""
    try:
        with history_session(plan) as history:
            return body(history)
    except LockBusy as busy:
        report_error(f"reachscan: {busy}")
        return ExitStatus.LOCKED
    except HistoryError as error:
        report_error(f"reachscan: history: {error}")
        return ExitStatus.OUTPUT_FAILED
