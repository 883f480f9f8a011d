"""Where the run history lives on disk, and how its files are created.

The history is a map of what is broken in a fleet, so its files are private by default:
the directory is created 0o700 and each file with mode 0o600, which the umask can only
narrow (umask 022 and 077 both give 0o600). Group or world access is never granted by
reachscan; an operator who wants a monitoring group to read it can chmod the file, and
SQLite then gives the `-wal` and `-shm` files the database's own permissions.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
DB_NAME = "history.sqlite"


def default_db_path(environ: Mapping[str, str] | None = None) -> Path:
    """`$XDG_STATE_HOME/reachscan/history.sqlite`, or `~/.local/state/reachscan/...`.

    The XDG Base Directory spec says a relative `$XDG_STATE_HOME` is invalid and must be
    ignored, and that run history ("state that should persist between restarts") belongs
    in the state directory rather than in data or cache.
    """
    env = os.environ if environ is None else environ
    state_home = env.get("XDG_STATE_HOME", "")
    if state_home and Path(state_home).is_absolute():
        base = Path(state_home)
    else:
        home = env.get("HOME") or str(Path.home())
        base = Path(home) / ".local" / "state"
    return base / "reachscan" / DB_NAME


def lock_path_for(db_path: Path) -> Path:
    """The run lock sits beside the database: `<db>.lock`."""
    return db_path.with_name(db_path.name + ".lock")


def history_files(db_path: Path) -> tuple[tuple[str, Path], ...]:
    """Every file the history keeps beside itself, named for a message: the database,
    SQLite's `-wal`, `-shm` and `-journal`, and the run lock."""
    return (
        ("the history database", db_path),
        ("the history's write-ahead log", db_path.with_name(db_path.name + "-wal")),
        ("the history's shared-memory file", db_path.with_name(db_path.name + "-shm")),
        ("the history's journal", db_path.with_name(db_path.name + "-journal")),
        ("the history's lock file", lock_path_for(db_path)),
    )


def ensure_parent_directory(path: Path) -> None:
    """Create the directory holding `path` if it is missing, private (0o700).

    Only the last component gets the private mode; missing ancestors are created the
    ordinary way (0o777 less the umask), as the XDG spec expects of `~/.local/state`.
    An existing directory is left as the operator set it.
    """
    directory = path.parent
    if directory.is_dir():
        return
    directory.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # a concurrent run may have made it
        directory.mkdir(mode=DIRECTORY_MODE)


def create_private_file(path: Path) -> None:
    """Create `path` empty with FILE_MODE (less the umask) unless it exists already.

    sqlite3 would create a new database with 0o644 less the umask; creating the file
    first decides its mode, and an existing file keeps the mode its owner chose.
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return
    os.close(descriptor)
