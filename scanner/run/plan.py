"""What a scan needs, decided by the CLI before anything runs, and how it can end.

The plan is an immutable value passed down; the exit statuses are the documented ones
(README, "Exit status").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from scanner.core.evidence import DiagnosisBudget
from scanner.core.scope import Scope
from scanner.core.sharding import RunShard
from scanner.engine.engine import EngineConfig
from scanner.inventory import InventoryError, TargetSpec
from scanner.outputs import OutputOptions, OutputSpec
from scanner.resolve import ResolverConfig
from scanner.run.session import HistoryPlan


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
    shard: RunShard | None = None  # --shard I/N: this run probes that share of the inventory
    vantage: str = ""  # --vantage: where this run probes from, stamped on every result
