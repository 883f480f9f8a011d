"""The history's schema: the tables, their migrations, and the checks that a file is ours.

The schema is versioned with `PRAGMA user_version` and built by `MIGRATIONS`, applied in
order, each in its own transaction. `PRAGMA application_id` marks the file as ours, so a
database belonging to something else is refused rather than altered.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from scanner.history.errors import HistoryError

__all__ = [
    "APPLICATION_ID",
    "MIGRATIONS",
    "Migration",
    "check_ownership",
    "check_readable_schema",
    "migrate",
]

APPLICATION_ID = 0x52534348  # "RSCH": marks the file as a reachscan history

Migration = tuple[str, ...]
"""The statements that take the schema from one version to the next."""

_SCHEMA_V1: Migration = (
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: an id is never reused
        started REAL NOT NULL,                 -- seconds since the epoch
        finished REAL,
        status TEXT NOT NULL
            CHECK (status IN ('running', 'complete', 'interrupted', 'failed')),
        command TEXT NOT NULL,
        version TEXT NOT NULL,
        counts TEXT,                           -- JSON object: state -> results
        total INTEGER,
        not_ok INTEGER,
        inventory_errors INTEGER,
        message TEXT                           -- why a failed run failed
    )
    """,
    """
    CREATE TABLE results (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        host TEXT NOT NULL,
        address TEXT,
        port INTEGER NOT NULL,
        proto TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT NOT NULL,
        rtt_ms REAL,
        resolved_via TEXT NOT NULL,
        expect TEXT,
        ok INTEGER NOT NULL,
        labels TEXT NOT NULL,                  -- JSON object
        cause_kind TEXT,
        cause TEXT,                            -- JSON object, as in the JSONL record
        ts REAL NOT NULL
    )
    """,
    "CREATE INDEX results_by_run ON results (run_id)",
    "CREATE INDEX results_by_host ON results (host, port, proto, run_id)",
    "CREATE INDEX results_by_address ON results (address, state, port, proto)",
)

_SCHEMA_V2: Migration = (
    # A new status, `abandoned`: a run found `running` by the next run that takes the lock
    # was killed outright (SIGKILL, a power cut). SQLite cannot alter a CHECK constraint,
    # so `runs` is rebuilt as sqlite.org/lang_altertable.html ("other kinds of table schema
    # changes") says, with foreign keys off (`migrate`): the results keep their run ids.
    # The AUTOINCREMENT high-water mark is carried over, so a pruned id is never reused.
    """
    CREATE TABLE runs_v2 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started REAL NOT NULL,
        finished REAL,
        status TEXT NOT NULL
            CHECK (status IN ('running', 'complete', 'interrupted', 'failed', 'abandoned')),
        command TEXT NOT NULL,
        version TEXT NOT NULL,
        counts TEXT,
        total INTEGER,
        not_ok INTEGER,
        inventory_errors INTEGER,
        message TEXT
    )
    """,
    "INSERT INTO runs_v2 SELECT * FROM runs",
    "DELETE FROM sqlite_sequence WHERE name = 'runs_v2'",
    "UPDATE sqlite_sequence SET name = 'runs_v2' WHERE name = 'runs'",
    "DROP TABLE runs",
    "ALTER TABLE runs_v2 RENAME TO runs",
)

_SCHEMA_V3: Migration = (
    # Where each run probed from (`--vantage`). Runs stored before it have none: ''.
    "ALTER TABLE runs ADD COLUMN vantage TEXT NOT NULL DEFAULT ''",
)

_SCHEMA_V4: Migration = (
    # The tries each verdict took (scanner/core/loss.py): the loss on the path to a host
    # is read back from them. Results stored before it took one, as far as anyone knows.
    "ALTER TABLE results ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1",
)

MIGRATIONS: tuple[Migration, ...] = (_SCHEMA_V1, _SCHEMA_V2, _SCHEMA_V3, _SCHEMA_V4)
"""Schema version N is reached by applying MIGRATIONS[N-1]. Append, never edit: files
written by earlier versions are upgraded by replaying the ones they lack."""


def schema_version(connection: sqlite3.Connection) -> int:
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    return int(version)


def check_ownership(connection: sqlite3.Connection, path: Path) -> None:
    """Refuse a database that belongs to another program: ours carry APPLICATION_ID,
    a new one is empty. Anything else must not be converted to WAL or migrated."""
    application_id = int(connection.execute("PRAGMA application_id").fetchone()[0])
    if application_id == APPLICATION_ID:
        return
    tables = connection.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
    if application_id != 0 or tables:
        raise HistoryError(
            path,
            "an SQLite database of another program, not a reachscan history: pass another --db",
        )


def migrate(connection: sqlite3.Connection, migrations: Sequence[Migration], path: Path) -> None:
    """Bring the schema up to `len(migrations)`, one transaction per step.

    Each step re-reads the version after taking the write lock, so two processes opening
    an old file at once do not both apply a step. A file newer than this program is
    refused: its tables may mean something this version does not know. Foreign keys are
    off meanwhile (a step may rebuild a table others refer to: dropping it must not
    cascade), and each step's references are checked before it is committed.
    """
    target = len(migrations)
    if schema_version(connection) > target:
        raise HistoryError(
            path,
            f"written by a newer reachscan (schema {schema_version(connection)}, this "
            f"version knows {target}): upgrade reachscan or pass another --db",
        )
    connection.execute("PRAGMA foreign_keys = OFF")  # a no-op inside a transaction
    for number in range(1, target + 1):
        connection.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(connection) < number:
                for statement in migrations[number - 1]:
                    connection.execute(statement)
                if connection.execute("PRAGMA foreign_key_check").fetchone() is not None:
                    raise HistoryError(path, f"schema step {number} broke a reference")
                connection.execute(f"PRAGMA user_version = {number:d}")
                connection.execute(f"PRAGMA application_id = {APPLICATION_ID:d}")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
    connection.execute("PRAGMA foreign_keys = ON")


def check_readable_schema(
    connection: sqlite3.Connection, migrations: Sequence[Migration], path: Path
) -> None:
    """What a read-only opener checks instead of migrating: ours, and this version's."""
    check_ownership(connection, path)
    version, target = schema_version(connection), len(migrations)
    if version == 0:
        raise HistoryError(path, "no history stored yet (the file is empty)")
    if version > target:
        raise HistoryError(
            path,
            f"written by a newer reachscan (schema {version}, this version knows {target}): "
            "upgrade reachscan",
        )
    if version < target:
        raise HistoryError(
            path,
            f"written by an older reachscan (schema {version}, this version needs "
            f"{target}): the next scan upgrades it",
        )
