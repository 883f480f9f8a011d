"""One scan at a time per history: an exclusive `flock` on `<db>.lock` beside the database.

Cron starts a scan every few minutes whether or not the last one has finished; two scans
writing one history would interleave runs and double the load on the fleet. `flock` locks
belong to the open file, so the kernel releases them when the process dies however it
dies: a stale lock file never blocks the next run, and it is never deleted (deleting it
would let two processes lock two different files of the same name). The holder writes
its pid into the file so that the one kept waiting can say who it waits for.

The lock file sits in a directory other users may write to, and a root cron job takes
it, so it is opened as a file that may be hostile: never through a symbolic link
(`O_NOFOLLOW`), never truncated on open, and written only once `fstat` has shown that it
is a regular file, owned by us, with no other name (a hard link to `/etc/shadow` must not
be emptied). Anything else is refused with `HistoryError`, the file left as it was.

Blocking: acquiring polls with `time.sleep`, so take the lock before the event loop starts.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from scanner.history.paths import FILE_MODE, ensure_parent_directory, lock_path_for
from scanner.history.store import HistoryError

POLL_INTERVAL = 0.1


class LockBusy(Exception):
    """Another process holds the run lock (and kept it for the whole wait)."""

    def __init__(self, lock_path: Path, holder_pid: int | None, waited: float) -> None:
        holder = f" (pid {holder_pid})" if holder_pid is not None else ""
        waited_text = f" after waiting {waited:.1f} s" if waited > 0 else ""
        super().__init__(
            f"another reachscan run holds the lock {lock_path}{holder}{waited_text}: "
            "let it finish, or allow a longer wait for the lock"
        )
        self.lock_path = lock_path
        self.holder_pid = holder_pid
        self.waited = waited


class RunLock:
    """`with RunLock(db_path, wait=30):` — exclusive for the duration of the block.

    `wait=0` fails at once if the lock is held; otherwise the lock is retried every
    `poll_interval` seconds until `wait` seconds have passed, then `LockBusy` is raised.
    """

    def __init__(
        self,
        path: Path,
        wait: float,
        *,
        poll_interval: float = POLL_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if wait < 0:
            raise ValueError(f"wait must be 0 or more seconds, not {wait}")
        self.lock_path = lock_path_for(path)
        self._wait = wait
        self._poll_interval = poll_interval
        self._clock = clock
        self._sleep = sleep
        self._descriptor: int | None = None

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def acquire(self) -> None:
        if self._descriptor is not None:
            raise RuntimeError(f"{self.lock_path} is already held by this RunLock")
        descriptor = self._open()
        try:
            self._check_ours(descriptor)
            self._lock(descriptor)
            self._write_pid(descriptor)
        except BaseException:
            os.close(descriptor)
            raise
        self._descriptor = descriptor

    def release(self) -> None:
        """Unlock; the pid is cleared first so that nobody is told we still hold it."""
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is None:
            return
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(descriptor, 0)
            fcntl.flock(descriptor, fcntl.LOCK_UN)
        finally:
            os.close(descriptor)

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def _open(self) -> int:
        """Open (creating) the lock file without following a link or truncating it;
        `O_NONBLOCK`, so that a FIFO put there cannot hold the open up."""
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            ensure_parent_directory(self.lock_path)
            return os.open(self.lock_path, flags, FILE_MODE)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise HistoryError(
                    self.lock_path,
                    "the lock file is a symbolic link, which reachscan never follows: "
                    "remove it (the run creates its own)",
                ) from error
            raise HistoryError(self.lock_path, error.strerror or str(error)) from error

    def _check_ours(self, descriptor: int) -> None:
        """Refuse a lock file we must not write: not a regular file, another user's, or
        a file with another name too (a hard link's target would be emptied with it)."""
        status = os.fstat(descriptor)
        problem = None
        if not stat.S_ISREG(status.st_mode):
            problem = "the lock file is not a regular file"
        elif status.st_uid != os.geteuid():
            problem = f"the lock file belongs to uid {status.st_uid}, not to this user"
        elif status.st_nlink != 1:
            problem = f"the lock file has {status.st_nlink} names (hard links)"
        if problem is not None:
            raise HistoryError(
                self.lock_path,
                f"{problem}; it is left untouched: remove it (the run creates its own)",
            )

    def _write_pid(self, descriptor: int) -> None:
        """Our pid, for the run kept waiting (the file is ours: `_check_ours`). A full
        disk here is a history that cannot be written, said as such."""
        try:
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        except OSError as error:
            reason = error.strerror or str(error)
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                reason = f"the disk is full: free space or prune the history ({reason})"
            raise HistoryError(self.lock_path, f"cannot write the lock file: {reason}") from error

    def _lock(self, descriptor: int) -> None:
        started = self._clock()
        deadline = started + self._wait
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                now = self._clock()
                if now >= deadline:
                    raise LockBusy(self.lock_path, _holder_pid(descriptor), now - started) from None
                self._sleep(min(self._poll_interval, deadline - now))


def _holder_pid(descriptor: int) -> int | None:
    """The pid the holder wrote, if it has written one yet and it reads as a pid."""
    try:
        text = os.pread(descriptor, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
