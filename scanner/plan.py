"""What a scan needs, decided by the CLI before anything runs, and how it can end.

The plan is an immutable value passed down; the exit statuses are the documented ones
(README, "Exit status").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum

from scanner.engine import EngineConfig
from scanner.evidence import DiagnosisBudget
from scanner.inventory import InventoryError, TargetSpec
from scanner.outputs import OutputOptions
from scanner.resolve import ResolverConfig
from scanner.scope import Scope
from scanner.session import HistoryPlan


class ExitStatus(IntEnum):
    """The documented exit statuses (README, "Exit status")."""

    OK = 0
    NOT_AS_EXPECTED = 1
    USAGE_OR_INVENTORY = 2
    OUTPUT_FAILED = 3
    OUT_OF_TIME = 4  # --max-time ran out: the results are partial
    SCANNER_FAILED = 5  # reachscan itself failed (a worker process died); partial results
    LOCKED = 75  # another run holds the lock (EX_TEMPFAIL: try again later)
    INTERRUPTED = 130
    STDOUT_CLOSED = 141


@dataclass(frozen=True, slots=True)
class OutputSpec:
    format: str
    path: str  # "-" for stdout


@dataclass(frozen=True, slots=True)
class ScanPlan:
    """Everything a scan needs, decided by the CLI before anything runs."""

    specs: Callable[[], Iterator[TargetSpec | InventoryError]]  # read twice: counted, scanned
    max_endpoints: int
    scope: Scope
    outputs: tuple[OutputSpec, ...]
    output_options: OutputOptions
    history: HistoryPlan | None  # None: --no-history
    changes_only: bool
    resolver: ResolverConfig
    engine: EngineConfig
    strict: bool
    workers: int | None  # None: auto
    quiet: bool
    list_only: bool
    diagnose: bool
    diagnosis_budget: DiagnosisBudget
    progress: bool
    color: bool
    command: str
    sources: tuple[str, ...] = ()  # the inventories by name, for messages ("-t" for specs)
