"""Stores a run as it happens: the `Sink` that writes every batch into the history database.

It sits beside the other outputs, so the history gets exactly the results they get, in
the same batches: each batch is one transaction, so the database only ever holds whole
batches, and an interrupted run (the runner still calls `finish`, with `interrupted`) is
stored as `interrupted` with every result written before the interrupt.

The batches are written by a thread of the sink's own, over a connection of its own.
Why: inserting a result costs SQLite some microseconds of C code (the row and three
indexes), which runs without the GIL; on its own thread it overlaps the loop's work
instead of adding to it (a full loopback sweep: 0.35 s less wall time on two cores).
One thread and a FIFO keep the order; a bounded queue keeps memory bounded (a full queue
makes the loop wait for the disk). A write that fails is reported by the next `write` or
by `finish`, as the `OutputError` every sink raises.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator, Sequence

from scanner.history.store import HistoryError, HistoryStore
from scanner.model import Result
from scanner.outputs.base import OutputError, RunInfo, RunSummary

ABORT_MESSAGE = "stopped by a fatal error before it finished"
QUIT_MESSAGE = "interrupted twice: quit at once; the results stored before are kept"

QUEUED_BATCHES = 64
"""Batches waiting for the writer thread before `write` waits for it."""

ABORT_WAIT = 2.0
"""How long `abort` waits for the writer to stop before marking the run failed anyway."""


@contextlib.contextmanager
def _as_output_error() -> Iterator[None]:
    """The runner sets aside a sink that raises `OutputError` and reports it; a history
    that cannot be written is exactly that, so translate."""
    try:
        yield
    except HistoryError as error:
        raise OutputError(error.path, error.reason) from error


class BackgroundWriter:
    """Adds batches of one run to the history from a thread of its own (see the module)."""

    def __init__(self, store: HistoryStore, run_id: int) -> None:
        self._store = store
        self._run_id = run_id
        self._queue: queue.Queue[Sequence[Result] | None] = queue.Queue(QUEUED_BATCHES)
        self._error: HistoryError | None = None
        self._dropping = False
        self._thread = threading.Thread(target=self._work, name="reachscan-history", daemon=True)
        self._thread.start()

    def write(self, results: Sequence[Result]) -> None:
        self.raise_failure()
        self._queue.put(results)

    def close(self, timeout: float | None = None, *, drop_queued: bool = False) -> bool:
        """Write what is queued (or, `drop_queued`, only the batch being written), then
        stop; False if the thread is still busy after `timeout` seconds."""
        self._dropping = drop_queued
        self._queue.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    def _work(self) -> None:
        try:
            twin = self._store.open_twin()
        except HistoryError as error:
            self._error = error
            twin = None
        try:
            while (batch := self._queue.get()) is not None:
                if twin is None or self._error is not None or self._dropping:
                    continue  # failed or quitting: keep taking batches, so no put() waits
                try:
                    twin.add_results(self._run_id, batch)
                except HistoryError as error:
                    self._error = error
        finally:
            if twin is not None:
                twin.close()


class HistorySink:
    """Write each batch into `store` as one transaction. The caller owns (and closes) the
    store; the sink only uses it between `start` and `finish`/`abort`."""

    def __init__(self, store: HistoryStore) -> None:
        self._store = store
        self._run_id: int | None = None
        self._writer: BackgroundWriter | None = None
        self._closed = False

    @property
    def run_id(self) -> int | None:
        """The id the run is stored under, once `start` has been called."""
        return self._run_id

    def start(self, run: RunInfo) -> None:
        with _as_output_error():
            self._run_id = self._store.begin_run(run)
        self._writer = BackgroundWriter(self._store, self._run_id)

    def write(self, results: Sequence[Result]) -> None:
        if not results:
            return
        with _as_output_error():
            self._started_writer().write(results)

    def finish(self, summary: RunSummary) -> None:
        writer = self._started_writer()
        writer.close()
        with _as_output_error():
            writer.raise_failure()
            self._store.finish_run(self._started(), summary)
        self._closed = True

    def abort(self, *, quitting: bool = False) -> None:
        """Mark the run failed, keeping its results; `quitting` (a second Ctrl-C): mark it
        interrupted, with the results stored so far and no wait for the batches still
        queued. Never raises and is safe to repeat: the runner calls it while handling
        another failure, and a history that cannot be written then is already reported
        (the `running` status then stays behind)."""
        if self._run_id is None or self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.close(ABORT_WAIT, drop_queued=quitting)
        with contextlib.suppress(HistoryError):
            if quitting:
                self._store.interrupt_run(self._run_id, QUIT_MESSAGE)
            else:
                self._store.fail_run(self._run_id, ABORT_MESSAGE)

    def _started(self) -> int:
        if self._run_id is None:
            raise RuntimeError("HistorySink: start() must come before write() and finish()")
        return self._run_id

    def _started_writer(self) -> BackgroundWriter:
        if self._writer is None:
            raise RuntimeError("HistorySink: start() must come before write() and finish()")
        return self._writer
