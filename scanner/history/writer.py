"""The history's inserts in a process of their own, for big scans.

Why: sqlite3 binds a result's fifteen values while holding the GIL (some 4 us a result,
a quarter of a second for a 65,535-port sweep), and once the probes run in worker
processes it is this process (reading the inventory, building results, writing the
outputs) that bounds a big scan's wall time. A forked writer takes the inserts off it.

Why forked before the history is opened: SQLite forbids carrying a connection across
fork(), and its bookkeeping of file locks is per process, so the writer is forked while
this process has no connection at all. It opens its own when the first rows arrive; by
then the parent has taken the run lock, opened (and upgraded) the history and stored the
run as `running`, and it stores the run's end only after the writer has finished.

Protocol (frames: scanner/procs/frames.py): parent -> writer `("rows", [row, ...])`, one frame
per batch, each stored in one transaction as when the parent writes it itself, so the
database only ever holds whole batches; writer -> parent nothing, or one `("error",
reason)` before it exits with status 1. The end of its input means: everything is sent,
exit once it is stored. Like every forked child it ignores SIGINT and SIGTERM
(scanner/procs/worker_pool.py): the parent decides.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from scanner.history.store import HistoryError, HistoryStore, ResultRow
from scanner.procs.frames import FrameReader, encode
from scanner.procs.worker_pool import WorkerPool, WorkerProcess, fork_processes

WRITER_FROM = 5_000
"""Endpoints from which a scan stores its history through the writer. Below, the inserts
take less than the fork and the extra process are worth (5,000 rows: some 20 ms)."""

PIPE_SIZE = 1 << 20
"""The pipe to the writer holds about 20,000 rows (1 MiB, the unprivileged maximum), so
the scan runs ahead while the writer catches up, instead of waiting at every batch."""


def rows_frame(rows: Sequence[ResultRow]) -> bytes:
    """One batch of rows as the writer reads it: one frame, stored in one transaction."""
    return encode(("rows", list(rows)))


def rows_of_frame(frame: bytes) -> list[ResultRow]:
    """The rows of a frame `rows_frame` made (for a history written in this process)."""
    (decoded,) = FrameReader().feed(frame)
    rows = decoded[1]
    assert isinstance(rows, list)
    return rows


class HistoryWriter:
    """The parent's side of the writer: hand batches over, learn at the end that every one
    was stored. Raises `HistoryError`, as the store itself would."""

    def __init__(self, process: WorkerProcess, path: Path) -> None:
        self.process = process
        self._path = path
        self._ended = False  # reaped, both pipe ends closed

    @classmethod
    def fork(cls, path: Path) -> HistoryWriter:
        """Fork the writer for the history at `path` (not opened yet by anyone in this
        process). Raises `WorkersUnavailable` when out of processes or pipes."""

        def serve_path(read_fd: int, write_fd: int) -> int:
            return serve(read_fd, write_fd, path)

        (process,) = fork_processes([serve_path], "history writer")
        os.set_blocking(process.to_worker, True)  # a full pipe holds the scan back
        os.set_blocking(process.from_worker, False)  # errors are looked for, not waited for
        with contextlib.suppress(OSError):  # a smaller pipe still works, only less smoothly
            fcntl.fcntl(process.to_worker, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        return cls(process, path)

    @property
    def pid(self) -> int:
        return self.process.pid

    def write(self, rows: Sequence[ResultRow]) -> None:
        """Hand one batch over (it is stored in one transaction)."""
        self.write_frame(rows_frame(rows))

    def write_frame(self, frame: bytes) -> None:
        """Hand over one batch already encoded by `rows_frame` (a shard process encodes
        its own: scanner/run/shard.py), so that this process only passes the bytes on."""
        if self._ended:
            raise RuntimeError("HistoryWriter: write() after close()")
        reported = self._read_reported()
        if reported is not None:
            self.stop()
            raise HistoryError(self._path, reported)
        data = memoryview(frame)
        try:
            while data:
                data = data[os.write(self.process.to_worker, data) :]
        except BrokenPipeError:
            self.close()  # raises what the writer said, or how it ended
            raise HistoryError(self._path, "the history writer ended early") from None

    def close(self) -> None:
        """Wait until the writer has stored every batch handed over and ended; raise if it
        could not. Safe to call again. Interrupted while it waits (a second Ctrl-C), it
        stops the writer as `stop` does before letting the interrupt through."""
        if self._ended:
            return
        process = self.process
        try:
            process.close_input()
            _, status = os.waitpid(process.pid, 0)
        except ChildProcessError:  # reaped by someone else: the outcome is unknown
            self._ended = True
            process.close_output()
            raise HistoryError(self._path, "lost track of the history writer") from None
        except BaseException:
            self.stop()
            raise
        process.exit_status = os.waitstatus_to_exitcode(status)
        self._ended = True
        reported = self._read_reported()
        process.close_output()
        if reported is not None:
            raise HistoryError(self._path, reported)
        if process.exit_status != 0:
            raise HistoryError(
                self._path,
                f"the history writer ended with status {process.exit_status}: "
                "the results of the last batches may be missing from the history",
            )

    def stop(self) -> None:
        """Quit at once: give the writer a second (the pool's `REAP_WAIT`) to store what it
        has, then kill it (its open transaction is rolled back whole), and reap it. Never
        raises; safe to call again, also after `close`."""
        if self._ended:
            return
        self._ended = True
        WorkerPool([self.process]).close()

    def _read_reported(self) -> str | None:
        """The writer's error report, if one has arrived (it sends nothing else)."""
        try:
            data = os.read(self.process.from_worker, 65536)
        except OSError:  # nothing yet (BlockingIOError), or the end is closed
            return None
        for frame in FrameReader().feed(data):
            if frame[0] == "error":
                return str(frame[1])
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def serve(read_fd: int, write_fd: int, path: Path) -> int:
    """The writer's whole life: store each batch until the input ends."""
    reader = FrameReader()
    store: HistoryStore | None = None
    try:
        while data := os.read(read_fd, 1 << 20):
            for _kind, rows in reader.feed(data):
                assert isinstance(rows, list)
                if store is None:
                    store = HistoryStore.open(path)
                store.add_rows(rows)
    except HistoryError as error:
        with contextlib.suppress(OSError):
            os.write(write_fd, encode(("error", error.reason)))
        return 1
    finally:
        if store is not None:
            store.close()
    return 0
