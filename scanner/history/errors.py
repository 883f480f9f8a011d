"""The history's errors, and the one place sqlite3 and OS errors become them.

Every sqlite3 error is translated into `HistoryError` by `translated`, once, with what the
user can do about it (`ERROR_ADVICE`); nothing else in reachscan sees a sqlite3 exception.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = ["ERROR_ADVICE", "OUT_OF_MEMORY", "HistoryError", "UnknownRun", "translated"]

# What to tell the user for each SQLite primary result code (sqlite.org/rescode.html).
ERROR_ADVICE: Mapping[int, str] = {
    3: "permission denied: check the permissions of the file and its directory",  # PERM
    5: (  # BUSY
        "locked by another process (another reachscan run?) for longer than the wait; "
        "try again when it has finished"
    ),
    6: "locked by another connection of this process",  # LOCKED
    8: "not writable: check the permissions of the file and its directory",  # READONLY
    10: "input/output error: check the disk and the file system",  # IOERR
    11: "the file is corrupt: move it aside and a new history will be started",  # CORRUPT
    13: "the disk is full: free space or prune the history",  # FULL
    14: "cannot open the file: check that its directory exists and is writable",  # CANTOPEN
    26: (  # NOTADB
        "not an SQLite database, so not a reachscan history: move it aside or pass another --db"
    ),
}


OUT_OF_MEMORY = "out of memory: raise the memory limit (ulimit -v) or free memory"

# Extended result codes that the primary code would mislead about: under an address-space
# limit (`ulimit -v`) SQLite cannot map the WAL index and says "disk I/O error".
EXTENDED_ERROR_ADVICE: Mapping[int, str] = {
    7: OUT_OF_MEMORY,  # NOMEM
    3082: OUT_OF_MEMORY,  # IOERR_NOMEM
    5386: f"could not map the -shm file into memory, {OUT_OF_MEMORY}",  # IOERR_SHMMAP
}


class HistoryError(Exception):
    """The history database cannot be used; the message says why and what to do."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"history database {path}: {reason}")
        self.path = str(path)
        self.reason = reason


class UnknownRun(HistoryError):
    """A run id that is not in the history (never stored, or pruned by retention)."""

    def __init__(self, path: Path | str, run_id: int) -> None:
        super().__init__(path, f"no run {run_id} (never stored, or deleted by retention)")
        self.run_id = run_id


def _explain(error: sqlite3.Error) -> str:
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int) and code in EXTENDED_ERROR_ADVICE:
        return f"{EXTENDED_ERROR_ADVICE[code]} ({error})"
    if isinstance(code, int) and (code & 0xFF) in ERROR_ADVICE:
        return f"{ERROR_ADVICE[code & 0xFF]} ({error})"
    return str(error)


@contextlib.contextmanager
def translated(path: Path) -> Iterator[None]:
    """The one place sqlite3 and OS errors become `HistoryError`."""
    try:
        yield
    except sqlite3.Error as error:
        raise HistoryError(path, _explain(error)) from error
    except OSError as error:
        raise HistoryError(path, error.strerror or str(error)) from error
    except MemoryError as error:  # sqlite3 raises it for SQLITE_NOMEM
        raise HistoryError(path, OUT_OF_MEMORY) from error
