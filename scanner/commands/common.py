"""What the history commands share: finding the database, printing, exit statuses."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from scanner.history.paths import default_db_path
from scanner.history.store import HistoryError, HistoryStore
from scanner.plan import ExitStatus

if TYPE_CHECKING:
    # What `ArgumentParser.add_subparsers` returns; generic only in typeshed.
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def add_db_option(parser: argparse.ArgumentParser) -> None:
    """`--db PATH`, defaulting (at run time, so $XDG_STATE_HOME is read then) to the
    standard location."""
    parser.add_argument(
        "--db",
        type=Path,
        default=None,
        metavar="PATH",
        help="history database (default: $XDG_STATE_HOME/reachscan/history.sqlite, "
        "i.e. ~/.local/state/reachscan/history.sqlite)",
    )


def report_error(message: str) -> None:
    with contextlib.suppress(OSError):
        print(f"reachscan: {message}", file=sys.stderr, flush=True)


def open_existing(db: Path | None) -> HistoryStore:
    """Open the history read-only; a missing file is an error here, not a new history
    (a typo in --db must not create an empty database and report "no runs"). Read-only,
    so a monitoring account that may only read the file can use `diff` and `history`,
    and a scan writing it meanwhile is never blocked."""
    path = db if db is not None else default_db_path()
    if not path.exists():
        raise HistoryError(
            path,
            "no such file: scans store their history there once history is enabled; "
            "pass --db PATH for another location",
        )
    return HistoryStore.open_readonly(path)


def emit(text: str) -> int:
    """Write `text` to stdout; a reader that went away (`| head`) ends us quietly."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return int(ExitStatus.STDOUT_CLOSED)
    return int(ExitStatus.OK)


def emit_json(value: object) -> int:
    return emit(
        orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE).decode()
    )


# --- numbers on the command line (argparse `type=` callables) ---------------------------


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None


def positive_int(text: str) -> int:
    value = whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_int(text: str) -> int:
    value = whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value
