"""Stores a run as it happens: the `Sink` that writes every batch into the history database.

It sits beside the other outputs, so the history gets exactly the results they get, in
the same batches: each batch is one transaction, so the database only ever holds whole
batches, and an interrupted run (the runner still calls `finish`, with `interrupted`) is
stored as `interrupted` with every result written before the interrupt.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from scanner.core.model import Result
from scanner.core.sinks import Encoding, OutputError, RunInfo, RunSummary
from scanner.history.store import HistoryError, HistoryStore, result_rows
from scanner.history.writer import HistoryWriter, rows_of_frame

ABORT_MESSAGE = "stopped by a fatal error before it finished"
QUIT_MESSAGE = "interrupted twice: quit at once; the results stored before are kept"


class HistorySink:
    """Write each batch into `store` as one transaction, directly or through `writer` (a
    process of its own, for big scans: scanner/history/writer.py). The caller owns (and
    closes) the store; the sink uses it between `start` and `finish`/`abort`/`quit`, and
    ends the writer before it stores how the run ended."""

    def __init__(self, store: HistoryStore, writer: HistoryWriter | None = None) -> None:
        self._store = store
        self._writer = writer
        self._run_id: int | None = None
        self._closed = False
        self._failure: HistoryError | None = None

    def fail(self, error: HistoryError) -> None:
        """The history failed outside the sink (a read for the diagnosis): the next
        `write` or `finish` raises it, so the runner reports it, sets this sink aside and
        marks the run failed with the reason, as for a batch that could not be stored."""
        if self._failure is None:
            self._failure = error

    @property
    def run_id(self) -> int | None:
        """The id the run is stored under, once `start` has been called."""
        return self._run_id

    def start(self, run: RunInfo) -> None:
        with self._as_output_error():
            self._run_id = self._store.begin_run(run)

    def write(self, results: Sequence[Result]) -> None:
        with self._as_output_error():
            self._raise_failure()
            if self._writer is None:
                self._store.add_results(self._started(), results)
            else:
                self._writer.write(result_rows(self._started(), results))

    @property
    def encoding(self) -> Encoding:
        return Encoding.HISTORY_ROWS

    def write_encoded(self, data: bytes | bytearray) -> None:
        """One batch a shard encoded (`rows_frame`, with this run's id): passed on to the
        writer as it is, or decoded and stored here when there is no writer."""
        with self._as_output_error():
            self._raise_failure()
            self._started()
            if self._writer is None:
                self._store.add_rows(rows_of_frame(bytes(data)))
            else:
                self._writer.write_frame(bytes(data))

    def finish(self, summary: RunSummary) -> None:
        with self._as_output_error():
            self._raise_failure()
            if self._writer is not None:
                self._writer.close()  # every batch stored, before the run is closed
            self._store.finish_run(self._started(), summary)
            # Last: a file deleted or replaced mid-run took this run's rows with it.
            self._store.check_still_in_place()
        self._closed = True

    def verdict(self) -> None:
        """No exit status of its own: the run's results decide it."""
        return None

    def abort(self) -> None:
        """Mark the run failed, keeping its results. Never raises and is safe to repeat:
        the runner calls it while handling another failure, and a history that cannot be
        written then is already reported (the `running` status then stays behind)."""
        if self._close():
            with contextlib.suppress(HistoryError):
                if self._writer is not None:
                    self._writer.close()
            message = ABORT_MESSAGE if self._failure is None else self._failure.reason
            with contextlib.suppress(HistoryError):
                self._store.fail_run(self._started(), message)

    def quit(self) -> None:
        """A second Ctrl-C: mark the run interrupted, counted from the results stored so
        far (there is no summary to close it with). Never raises; safe to repeat, and an
        `abort` after it changes nothing."""
        if self._close():
            if self._writer is not None:
                self._writer.stop()
            with contextlib.suppress(HistoryError):
                self._store.interrupt_run(self._started(), QUIT_MESSAGE)

    @contextlib.contextmanager
    def _as_output_error(self) -> Iterator[None]:
        """The runner sets aside a sink that raises `OutputError` and reports it; a history
        that cannot be written is exactly that, so translate. The first reason is kept:
        `abort` stores it as why the run failed."""
        try:
            yield
        except HistoryError as error:
            self.fail(error)
            raise OutputError(error.path, error.reason) from error

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _close(self) -> bool:
        """True the first time, for a run that was started and is not closed yet."""
        if self._run_id is None or self._closed:
            return False
        self._closed = True
        return True

    def _started(self) -> int:
        if self._run_id is None:
            raise RuntimeError("HistorySink: start() must come before write() and finish()")
        return self._run_id
