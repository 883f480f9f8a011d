"""Where output bytes land: a file replaced atomically at the end, or standard output.

A results file is often read by something else (a dashboard, node_exporter's textfile
collector, a cron job's diff). Readers must see either the previous complete file or the
new complete one, never a half-written one, and a run that fails (full disk, Ctrl-C
followed by a fatal error) must leave the previous file alone. So we write a temporary file
in the same directory (same filesystem, so `os.replace` is atomic), fsync it, rename it over
the target and fsync the directory so the rename itself survives a crash.

The temporary name is `.{basename}.tmp-{random}`: hidden, and it does not end with the
target's suffix, because collectors pick files up by suffix (node_exporter reads `*.prom`)
and must not read a half-written one.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import BinaryIO

from scanner.outputs.base import OutputClosed, OutputError, OutputTarget

STDOUT_PATH = "-"

# A new file gets the mode a normal `open(path, "w")` would: 0o666 minus the umask, applied
# by the kernel. mkstemp's 0o600 would make a shared results file unreadable to the
# collector that runs as another user.
_NEW_FILE_MODE = 0o666
_NAME_ATTEMPTS = 16


def open_target(path: str) -> OutputTarget:
    """Open `path` for results: `-` is standard output, anything else an atomic file."""
    if path == STDOUT_PATH:
        return StreamWriter()
    return AtomicWriter(path)


class AtomicWriter:
    """Write a file that appears at `path` complete, on `commit()`, or not at all.

    Opening already creates the temporary file, so a missing directory or a permission
    problem is reported before any scanning starts. Any OS error raises `OutputError` and
    removes the temporary file; the previous file at `path` is never touched until commit.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        if os.path.isdir(path):
            raise OutputError(path, "is a directory; give a file name")
        directory, basename = os.path.split(os.path.abspath(path))
        self._directory = directory
        self._fd: int | None = None
        self.temp_path = ""
        for _ in range(_NAME_ATTEMPTS):
            candidate = os.path.join(directory, f".{basename}.tmp-{os.urandom(4).hex()}")
            try:
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                self._fd = os.open(candidate, flags, _NEW_FILE_MODE)
            except FileExistsError:
                continue
            except OSError as exc:
                raise self._error(exc) from exc
            self.temp_path = candidate
            break
        else:
            raise OutputError(path, "could not pick an unused temporary file name")

    def write(self, data: bytes | bytearray) -> None:
        """Write all of `data` (os.write may write less than asked, so loop)."""
        fd = self._require_open()
        view = memoryview(data)
        try:
            while view:
                written = os.write(fd, view)
                view = view[written:]
        except OSError as exc:
            self.discard()
            raise self._error(exc) from exc

    def flush(self) -> None:
        """Nothing to do: writes go straight to the kernel, unbuffered."""
        self._require_open()

    def commit(self) -> None:
        """fsync, rename over the target, fsync the directory. Then the writer is closed."""
        fd = self._require_open()
        try:
            os.fsync(fd)  # some filesystems report ENOSPC/EIO only here
            os.close(fd)
            self._fd = None
            os.replace(self.temp_path, self.path)
        except OSError as exc:
            self.discard()
            raise self._error(exc) from exc
        self._fsync_directory()

    def discard(self) -> None:
        """Remove the temporary file; the target is untouched. Safe to call repeatedly."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        # The file is being thrown away: a late write error from close changes nothing.
        with suppress(OSError):
            os.close(fd)
        with suppress(FileNotFoundError):
            os.unlink(self.temp_path)

    @property
    def closed(self) -> bool:
        return self._fd is None

    def _require_open(self) -> int:
        if self._fd is None:
            raise RuntimeError(f"{self.path}: writer already committed or discarded")
        return self._fd

    def _fsync_directory(self) -> None:
        # The rename has happened and readers see the new file; this only makes the rename
        # survive a power cut. Some filesystems refuse fsync on a directory (EINVAL), and
        # reporting "cannot write" for a file that was written would be wrong, so failures
        # here are not errors.
        try:
            dir_fd = os.open(self._directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)

    def _error(self, exc: OSError) -> OutputError:
        reason = exc.strerror or os.strerror(exc.errno or errno.EIO)
        return OutputError(self.path, reason)


class StreamWriter:
    """Standard output (or any binary stream): no atomicity, written through, flushed.

    A closed pipe raises `OutputClosed` so the caller can end quietly; other errors (stdout
    redirected to a full disk) raise `OutputError`.
    """

    def __init__(self, stream: BinaryIO | None = None, name: str = "standard output") -> None:
        # Look sys.stdout up now, not at import: tests and the CLI may have replaced it.
        self._stream = stream if stream is not None else sys.stdout.buffer
        self._name = name

    def write(self, data: bytes | bytearray) -> None:
        with _stream_errors(self._name):
            self._stream.write(data)

    def flush(self) -> None:
        with _stream_errors(self._name):
            self._stream.flush()

    def commit(self) -> None:
        self.flush()

    def discard(self) -> None:
        """Nothing can be taken back from a stream; what was written stays written."""


@contextmanager
def _stream_errors(name: str) -> Iterator[None]:
    """Translate a stream's OS errors into the output exceptions, in one place."""
    try:
        yield
    except BrokenPipeError as exc:
        raise OutputClosed(f"{name} was closed by its reader") from exc
    except OSError as exc:
        raise OutputError(name, exc.strerror or str(exc)) from exc
