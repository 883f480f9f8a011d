"""What the history commands share: finding the database, printing, exit statuses."""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from scanner.history.paths import default_db_path
from scanner.history.store import HistoryError, HistoryStore
from scanner.status import ExitStatus

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


ECHOED_CHARACTERS = 40
"""How much of a bad value an error message repeats: enough to recognise it, never a
10 MB argument copied to stderr."""


def echoed(text: str) -> str:
    """`text` quoted for an error message, cut to ECHOED_CHARACTERS with "…"."""
    if len(text) <= ECHOED_CHARACTERS:
        return repr(text)
    return repr(text[:ECHOED_CHARACTERS]) + "…"


@dataclass(frozen=True, slots=True)
class FloatRange:
    """An argparse `type=` for a float option: a finite number within [low, high] (or
    (low, high] when `low_excluded`).

    `float()` accepts `inf`, `nan` and `1e-9`; taken as they come, `--timeout inf` waits
    forever on a dropped port and `--rate 1e-9` sends one probe in 30 years. Every float
    option therefore has bounds, stated in the message and the README's options table.
    """

    low: float
    high: float
    unit: str
    low_excluded: bool = False

    def __call__(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        too_low = value <= self.low if self.low_excluded else value < self.low
        if not math.isfinite(value) or too_low or value > self.high:
            raise argparse.ArgumentTypeError(
                f"must be a number {self.accepted()}, not {echoed(text)}"
            )
        return value

    def accepted(self) -> str:
        """The accepted range in words: `from 0.001 to 600 seconds`."""
        low = _plain(self.low)
        if self.low_excluded:
            return f"more than {low} and at most {_plain(self.high)} {self.unit}"
        return f"from {low} to {_plain(self.high)} {self.unit}"


@dataclass(frozen=True, slots=True)
class IntRange:
    """An argparse `type=` for a whole-number option: an integer within [low, high].

    Unbounded, `--retries 1000000000` with `--timeout 600` never finishes, and a number
    past SQLite's 64-bit integers (`--keep 1e30` written out) was a traceback. Each bound
    is said in the option's help and the README's options table, with why it is where
    it is.
    """

    low: int
    high: int

    def __call__(self, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not self.low <= value <= self.high:
            raise argparse.ArgumentTypeError(
                f"must be a whole number {self.accepted()}, not {echoed(text)}"
            )
        return value

    def accepted(self) -> str:
        """The accepted range in words: `from 0 to 10`."""
        return f"from {self.low:,} to {self.high:,}"


def _plain(number: float) -> str:
    """10,000,000 rather than 1e+07; 0.001 as it is."""
    return f"{int(number):,}" if number == int(number) else f"{number:g}"


SECONDS_PER_PROBE = FloatRange(0.001, 600, "seconds")
"""--timeout, --min-timeout: a millisecond to ten minutes for one answer."""
MAX_TIME = FloatRange(0.001, 604_800, "seconds")
"""--max-time: up to a week."""
PROBE_RATE = FloatRange(0.1, 10_000_000, "probes per second")
"""--rate: one probe every 10 s at the slowest."""
KEEP_DAYS = FloatRange(0, 36_500, "days", low_excluded=True)
"""--keep-days: up to a hundred years."""
WAIT_LOCK = FloatRange(0, 86_400, "seconds")
"""--wait-lock: up to a day."""

RETRIES = IntRange(0, 100)
"""--retries: UDP ports behind a host's ICMP rate limit (about one error a second after
a burst of six) need as many paced retries as there are ports waiting on that host, so
tens are real (the hostile suite uses 60 for 50 ports); past a hundred, a dropped port at
--timeout 600 would take most of a day, which only hides a dead host."""
IN_FLIGHT = IntRange(1, 1_048_576)
"""--concurrency, --per-host: Linux's most descriptors per process (fs.nr_open's
default); the descriptor limit caps a probe count past it anyway."""
SHARD_COUNT = IntRange(1, 4096)
"""--shards: per vantage; each is a task on the broker and a scan at a worker."""
WORKERS = IntRange(1, 64)
"""--workers: one process per core of a large machine; each forks with the parent's
memory and pipes, so more than 64 costs more than it gives."""
DIAGNOSIS_BUDGET = IntRange(0, 1_000_000)
"""--diagnose-budget: fifty times the default 20,000 follow-up probes per run."""
DIAGNOSIS_PER_ENDPOINT = IntRange(0, 256)
"""--diagnose-per-endpoint: sixteen times the default 16 follow-up probes."""
MAX_ENDPOINTS = IntRange(1, 100_000_000)
"""--max-endpoints: a hundred times the default; every result is held until the
outputs are written, and 100 million is tens of GB of them."""
RUN_COUNT = IntRange(1, 10_000_000)
"""--keep, history --runs and --flap-threshold: a run a minute for nineteen years."""
RUN_ID = IntRange(1, 2**63 - 1)
"""A run id as `diff` takes it: at most SQLite's largest integer."""


def positive_float(text: str) -> float:
    """Any finite number above 0 (prefer a FloatRange, which also has an upper bound)."""
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def non_negative_float(text: str) -> float:
    """Any finite number from 0 (prefer a FloatRange, which also has an upper bound)."""
    value = float(text)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


VANTAGE_MAX = 100
"""Characters in a vantage name: a host name, a site, a label value, never a paragraph."""


def vantage_name(text: str) -> str:
    """`--vantage NAME`: printable, without spaces or quotes (it becomes a Prometheus label
    value, a history column and a word of the report's header)."""
    if not text or len(text) > VANTAGE_MAX:
        raise argparse.ArgumentTypeError(f"must be 1 to {VANTAGE_MAX} characters, not {len(text)}")
    if not text.isprintable() or any(char.isspace() or char in "\"'\\" for char in text):
        raise argparse.ArgumentTypeError(
            f"must be printable, without spaces, quotes or backslashes, not {echoed(text)}"
        )
    return text
