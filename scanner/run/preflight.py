"""Before anything is sent: the descriptor budget, the inventory counted, the workers.

The inventory is read (and counted by arithmetic) once before the scan: an inventory
larger than --max-endpoints is refused with its expansion shown, broadcast addresses of
its blocks are excluded, and the worker count follows from its size. `--list-targets`
stops here.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from scanner.console import report_error
from scanner.core.hosts import HostPattern
from scanner.core.model import Endpoint
from scanner.core.scope import Scope, broadcast_addresses, measure, oversize_message
from scanner.core.sharding import BigHosts, ShardSlice, big_hosts_of
from scanner.engine.engine import EngineConfig
from scanner.history.writer import WRITER_FROM
from scanner.inventory import InventoryError, InventoryItem, TargetSpec, iter_unique
from scanner.inventory.dedup import Deduplicator
from scanner.procs.limits import (
    LOOP_DESCRIPTORS,
    DescriptorNeeds,
    fit_workers,
    open_descriptor_count,
    shortage_message,
)
from scanner.run.fanout import InventoryTally
from scanner.run.plan import ScanPlan
from scanner.status import ExitStatus

DESCRIPTOR_RESERVE = 64
"""Descriptors kept back from the probes for outputs, DNS sockets and the loop itself."""


def raise_descriptor_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (no privilege needed); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def fit_workers_to_descriptors(
    plan: ScanPlan, endpoints: int, workers: int, descriptor_limit: int, loop: str
) -> int | None:
    """The worker processes the descriptor limit leaves room for, besides the outputs,
    the history and the loop (scanner/procs/limits.py): `workers`, fewer (said on stderr), or
    None when the scan cannot run at all (said on stderr: how many it needs)."""
    needs = DescriptorNeeds(
        already_open=open_descriptor_count(),
        loop=LOOP_DESCRIPTORS[loop],
        file_outputs=sum(1 for output in plan.outputs if output.path != "-"),
        history=plan.history is not None,
        history_writer=plan.history is not None and endpoints >= WRITER_FROM,
        workers=workers,
    )
    fitted = fit_workers(needs, descriptor_limit)
    if fitted is None:
        report_error(shortage_message(replace(needs, workers=1), descriptor_limit))
        return None
    if fitted.workers < workers:
        instead = (
            "in this process" if fitted.workers == 1 else f"in {fitted.workers} worker processes"
        )
        report_error(
            f"reachscan: {workers} worker processes need {needs.total} file descriptors "
            f"(ulimit -n is {descriptor_limit}): probing {instead} instead"
        )
    return fitted.workers


def fit_concurrency(config: EngineConfig, descriptor_limit: int) -> EngineConfig:
    """Never plan more sockets in flight than this process may open."""
    ceiling = max(config.backoff_floor, descriptor_limit - DESCRIPTOR_RESERVE)
    if config.concurrency <= ceiling:
        return config
    return replace(config, concurrency=ceiling)


def inventory(
    plan: ScanPlan,
    specs: Sequence[TargetSpec | InventoryError] | None = None,
    shard: ShardSlice | None = None,
) -> Iterator[InventoryItem]:
    """The inventory's unique endpoints and its errors, in order (from `specs` when the
    preflight kept them, else read again); only `shard`'s endpoints when one is given."""
    return iter_unique(plan.specs() if specs is None else iter(specs), Deduplicator(shard=shard))


def validate_inventory(plan: ScanPlan) -> int:
    """The --strict pass: read the whole inventory, report every error, probe nothing."""
    tally = InventoryTally(report_error)
    for _ in tally.endpoints(inventory(plan)):
        pass
    return tally.errors


@dataclass(frozen=True, slots=True)
class Preflight:
    """What counting the inventory decided, before anything is sent."""

    within_limit: bool  # False: the scan must not start (too big, or nothing in it)
    scope: Scope
    endpoints: int  # an upper bound (duplicates counted), of the whole inventory
    specs: tuple[TargetSpec | InventoryError, ...] | None  # kept when few, so not re-read
    big_hosts: tuple[HostPattern, ...] | None = ()  # hosts spread over shards (core/sharding)

    def share(self, plan: ScanPlan) -> int:
        """About this run's endpoints: the whole inventory's upper bound, or, with
        `--shard I/N`, its Nth (rounded up; the shards of a large inventory differ by a
        few per cent). What the worker count and the history writer are chosen by."""
        if plan.shard is None:
            return self.endpoints
        return -(-self.endpoints // plan.shard.count)

    def slice_of(self, plan: ScanPlan) -> ShardSlice | None:
        """The endpoints this run probes in one process: None for all of them."""
        if plan.shard is None:
            return None
        return plan.shard.whole_slice(plan.engine.per_host, self.big_hosts)


SPECS_KEPT = 50_000
"""Inventory entries the preflight keeps in memory so the scan need not parse the files
again; a larger inventory is read again (its memory stays bounded)."""


def preflight(plan: ScanPlan) -> Preflight:
    """Count the inventory before anything is sent; refuse one past --max-endpoints.

    Also extends the scope with the broadcast address of every IPv4 block in the
    inventory (unless special addresses were asked for)."""
    kept: list[TargetSpec | InventoryError] | None = []
    big_hosts = BigHosts()

    def keeping(
        items: Iterator[TargetSpec | InventoryError],
    ) -> Iterator[TargetSpec | InventoryError]:
        nonlocal kept
        for item in items:
            big_hosts.add(item)
            if kept is not None:
                kept.append(item)
                if len(kept) > SPECS_KEPT:
                    kept = None
            yield item

    expansion = measure(keeping(plan.specs()))
    specs = None if kept is None else tuple(kept)
    if expansion.total == 0:
        report_nothing_to_scan(plan, specs)
        return Preflight(False, plan.scope, 0, specs)
    if expansion.total > plan.max_endpoints:
        report_error(f"reachscan: {oversize_message(expansion, plan.max_endpoints)}")
        return Preflight(False, plan.scope, expansion.total, specs)
    scope = plan.scope
    if not scope.include_special:
        blocks = (
            item
            for item in (plan.specs() if specs is None else specs)
            if isinstance(item, TargetSpec)
        )
        scope = scope.with_broadcast(broadcast_addresses(blocks))
    return Preflight(True, scope, expansion.total, specs, big_hosts.patterns)


def report_nothing_to_scan(
    plan: ScanPlan, specs: Sequence[TargetSpec | InventoryError] | None
) -> None:
    """An inventory without a single endpoint (empty, `/dev/null`, every entry malformed)
    is a failure, not a clean run: a cron job whose inventory was truncated must not
    store a complete run and a fresh success timestamp. Its errors are reported first."""
    tally = InventoryTally(report_error)
    for _ in tally.endpoints(inventory(plan, specs)):
        pass
    report_error(nothing_to_scan_message(plan, malformed=bool(tally.errors)))


def nothing_to_scan_message(plan: ScanPlan, *, malformed: bool) -> str:
    """The line that ends a run whose inventory gave no endpoint (`malformed`: it had
    entries, every one an error, reported above)."""
    names = [("the -t specs" if source == "-t" else source) for source in plan.sources]
    named = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else "".join(names)
    verb = "have" if len(names) > 1 or plan.sources == ("-t",) else "has"
    named = named or "the inventory"
    why = " (every entry is malformed: see above)" if malformed else ""
    return f"reachscan: nothing to scan: {named} {verb} no endpoints{why}"


AUTO_WORKERS_FROM = 5_000
"""Endpoints from which --workers auto probes in several processes. Forked workers cost
a millisecond or two to start; measured here (2 cores, history on): 2,000 loopback ports
0.20 s in-process against 0.21 s with workers, 5,000 ports 0.28 s against 0.26 s, the
10,000-endpoint fleet inventory 0.74 s against 0.64 s."""


def choose_workers(requested: int | None, endpoints: int, cores: int | None = None) -> int:
    """--workers auto: probe in this process for small scans; for larger ones, one worker
    per core (two on a two-core machine: the parent's share — inventory, results,
    outputs — and the workers' then fill both cores; see benchmarks/README.md), at most
    eight. `cores`: the CPUs this process may run on (by default, as the OS says)."""
    if requested is not None:
        return requested
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if cores < 2 or endpoints < AUTO_WORKERS_FROM:
        return 1
    return min(cores, 8)


def describe_endpoint(endpoint: Endpoint) -> str:
    """One line per endpoint for --list-targets: what would be probed, and why."""
    words = [endpoint.host, f"{endpoint.port}/{endpoint.proto}"]
    if endpoint.pinned_address is not None:
        words.append(f"address={endpoint.pinned_address}")
    words.append(f"expect={endpoint.expect or '-'}")
    if endpoint.labels:
        words.append(",".join(f"{key}={value}" for key, value in endpoint.labels))
    if endpoint.origin is not None:
        words.append(f"({endpoint.origin})")
    return " ".join(words)


def list_targets(plan: ScanPlan) -> ExitStatus:
    """--list-targets: expand the inventory and print it; no name is resolved, nothing sent."""
    tally = InventoryTally(report_error)
    listed = 0
    shard = None
    if plan.shard is not None:  # what this run of a split scan would probe
        shard = plan.shard.whole_slice(plan.engine.per_host, big_hosts_of(plan.specs()))
    try:
        for endpoint in tally.endpoints(inventory(plan, shard=shard)):
            print(describe_endpoint(endpoint))
            listed += 1
    except BrokenPipeError:
        return ExitStatus.STDOUT_CLOSED
    if not listed:
        # The same verdict the scan would give: nothing to probe is a failure.
        report_error(nothing_to_scan_message(plan, malformed=bool(tally.errors)))
        return ExitStatus.USAGE_OR_INVENTORY
    return ExitStatus.USAGE_OR_INVENTORY if tally.errors else ExitStatus.OK
