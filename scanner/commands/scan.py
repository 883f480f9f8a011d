"""`reachscan scan`: its options, and the plan they make. Parsing and wiring only: the
process lifecycle that runs the plan is scanner/run/lifecycle.py.

argparse (standard library) rather than click: `--format`/`-o` come in ordered pairs
("--format jsonl -o a.jsonl --format table"), which argparse's custom actions express
directly, and it costs no dependency.
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import shlex
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from scanner.commands.common import (
    DIAGNOSIS_BUDGET,
    DIAGNOSIS_PER_ENDPOINT,
    IN_FLIGHT,
    KEEP_DAYS,
    MAX_ENDPOINTS,
    MAX_TIME,
    PROBE_RATE,
    RETRIES,
    RUN_COUNT,
    SECONDS_PER_PROBE,
    SHARD_COUNT,
    WAIT_LOCK,
    WORKERS,
    echoed,
    vantage_name,
)
from scanner.commands.outputs import (
    add_output_arguments,
    refuse_outputs_onto_inputs,
    resolve_outputs,
)
from scanner.core.evidence import DiagnosisBudget
from scanner.core.model import Expect
from scanner.core.scope import (
    DEFAULT_MAX_ENDPOINTS,
    IpNetwork,
    Scope,
    ScopeError,
    parse_exclusions,
)
from scanner.core.sharding import parse_run_shard
from scanner.distributed.protocol import (
    FILE_MARK,
    BrokerError,
    DistributedPlan,
    check_broker_url,
)
from scanner.engine.engine import EngineConfig
from scanner.history.paths import history_files
from scanner.inventory import (
    DEFAULT_PORTS,
    INVENTORY_FORMATS,
    InventoryError,
    PortSpec,
    SpecError,
    TargetSpec,
    command_line_specs,
    inventory_specs,
    parse_ports,
)
from scanner.outputs import OutputOptions, OutputSpec
from scanner.resolve import ResolverConfig, parse_nameserver
from scanner.run.lifecycle import run_scan
from scanner.run.plan import ScanPlan
from scanner.run.preflight import AUTO_WORKERS_FROM
from scanner.run.session import HistoryPlan
from scanner.status import UsageError

if TYPE_CHECKING:
    from scanner.commands.common import Subparsers

DEFAULTS = EngineConfig()
DEFAULT_KEEP_DAYS = 30.0
DIAGNOSIS = DiagnosisBudget()


def workers_option(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        return WORKERS(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be auto or a whole number {WORKERS.accepted()}, not {echoed(text)}"
        ) from None


def this_machine() -> str:
    """The default vantage: this machine's host name (as `uname -n` gives it)."""
    return os.uname().nodename or "localhost"


def port_list(text: str) -> PortSpec:
    try:
        return parse_ports(text)
    except SpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class PortsAction(argparse.Action):
    """`-p PORTS`: parsed, and kept as written too (a distributed scan sends it on)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[object] | None,
        option_string: str | None = None,
    ) -> None:
        text = str(values)
        try:
            namespace.ports = port_list(text)
        except argparse.ArgumentTypeError as error:
            raise argparse.ArgumentError(self, str(error)) from None
        namespace.ports_text = text


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "scan",
        help="probe the endpoints of inventories and/or -t target specs",
        description="Probe every endpoint and report open / refused / filtered with the "
        "reason, and explain refusals.",
    )
    add_scan_arguments(parser)
    add_output_arguments(parser, extra_formats=("json",))
    parser.set_defaults(handler=run)


def add_scan_arguments(parser: argparse.ArgumentParser) -> None:
    """What to scan, how, and where history goes: shared by `scan` and `check`."""
    parser.add_argument(
        "inventories",
        nargs="*",
        metavar="INVENTORY",
        help="inventory files: YAML (.yaml/.yml) or one target spec per line; - reads stdin",
    )
    what = parser.add_argument_group("what to scan")
    what.add_argument(
        "-t",
        "--target",
        action="append",
        default=[],
        metavar="SPEC",
        help="HOST[:PORTS], e.g. db1:5432, 10.0.0.0/24:22,80, [::1]:U:53,T:80 (repeatable)",
    )
    what.add_argument(
        "--inventory-format",
        choices=INVENTORY_FORMATS,
        default="auto",
        help="how to read INVENTORY files (default auto: YAML by suffix, Ansible INI/YAML/"
        "JSON by content, else one target spec per line)",
    )
    what.add_argument(
        "-p",
        "--ports",
        action=PortsAction,
        default=DEFAULT_PORTS,
        metavar="PORTS",
        help="ports for specs and inventory lines that name none (default: 20 common TCP ports)",
    )
    what.add_argument(
        "--expect",
        choices=[expect.value for expect in Expect],
        default=None,
        help="what -t targets should be (default: no expectation, any measured state is fine)",
    )
    what.add_argument(
        "--strict",
        action="store_true",
        help="check the whole inventory first and scan nothing if any entry is malformed",
    )
    what.add_argument(
        "--max-endpoints",
        type=MAX_ENDPOINTS,
        default=DEFAULT_MAX_ENDPOINTS,
        metavar="N",
        help=f"refuse to scan an inventory that expands past N endpoints "
        f"({MAX_ENDPOINTS.accepted()}; default {DEFAULT_MAX_ENDPOINTS:,})",
    )
    what.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="CIDR[,CIDR...]",
        help="never probe these addresses or blocks (repeatable)",
    )
    what.add_argument(
        "--exclude-file",
        action="append",
        default=[],
        metavar="PATH",
        help="never probe the addresses or blocks listed in PATH (masscan's format)",
    )
    what.add_argument(
        "--include-special",
        action="store_true",
        help="also probe multicast and broadcast addresses (left out by default)",
    )
    what.add_argument(
        "--list-targets",
        action="store_true",
        help="print the endpoints the inventory expands to and exit: nothing is resolved or sent",
    )
    why = parser.add_argument_group("explaining refusals")
    why.add_argument(
        "--no-diagnose",
        action="store_true",
        help="do not look for the cause of refusals (no follow-up probes)",
    )
    why.add_argument(
        "--diagnose-budget",
        type=DIAGNOSIS_BUDGET,
        default=DIAGNOSIS.per_run,
        metavar="N",
        help=f"follow-up probes per run at most ({DIAGNOSIS_BUDGET.accepted()}; "
        f"default {DIAGNOSIS.per_run:,})",
    )
    why.add_argument(
        "--diagnose-per-endpoint",
        type=DIAGNOSIS_PER_ENDPOINT,
        default=DIAGNOSIS.per_endpoint,
        metavar="N",
        help=f"follow-up probes per refused endpoint at most "
        f"({DIAGNOSIS_PER_ENDPOINT.accepted()}; default {DIAGNOSIS.per_endpoint})",
    )
    names = parser.add_argument_group("name resolution")
    names.add_argument(
        "--hosts-file",
        default="/etc/hosts",
        metavar="PATH",
        help="hosts file consulted before DNS (default: /etc/hosts; '' for none)",
    )
    names.add_argument(
        "--nameserver",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="DNS server to query (repeatable; default: /etc/resolv.conf)",
    )
    family = names.add_mutually_exclusive_group()
    family.add_argument("-4", dest="ipv4_only", action="store_true", help="IPv4 addresses only")
    family.add_argument("-6", dest="ipv6_only", action="store_true", help="IPv6 addresses only")
    pace = parser.add_argument_group("pace")
    pace.add_argument(
        "--concurrency",
        type=IN_FLIGHT,
        default=DEFAULTS.concurrency,
        metavar="N",
        help=f"probes in flight at once ({IN_FLIGHT.accepted()}; default "
        f"{DEFAULTS.concurrency}, capped by the descriptor limit)",
    )
    pace.add_argument(
        "--per-host",
        type=IN_FLIGHT,
        default=DEFAULTS.per_host,
        metavar="N",
        help=f"probes in flight per address ({IN_FLIGHT.accepted()}; default {DEFAULTS.per_host})",
    )
    pace.add_argument(
        "--rate",
        type=PROBE_RATE,
        default=None,
        metavar="N",
        help="new probes per second (default: no limit)",
    )
    pace.add_argument(
        "--timeout",
        type=SECONDS_PER_PROBE,
        default=DEFAULTS.timeout,
        metavar="S",
        help=f"seconds to wait for an answer (default {DEFAULTS.timeout})",
    )
    pace.add_argument(
        "--min-timeout",
        type=SECONDS_PER_PROBE,
        default=DEFAULTS.min_timeout,
        metavar="S",
        help="floor of the wait learned from a host's answers "
        f"(default {DEFAULTS.min_timeout}; equal to --timeout for fixed waits)",
    )
    pace.add_argument(
        "--workers",
        type=workers_option,
        default=None,
        metavar="N|auto",
        help=f"processes that probe ({WORKERS.accepted()}; default auto: one per core, "
        "at most 8, for "
        f"{AUTO_WORKERS_FROM:,} endpoints or more on 2+ cores; else 1, in this process)",
    )
    pace.add_argument(
        "--vantage",
        type=vantage_name,
        default=None,
        metavar="NAME",
        help="where this run probes from, stamped on every result (JSON Lines `vantage`, the "
        "history, a Prometheus label, the report's header); default this machine's host name",
    )
    pace.add_argument(
        "--shard",
        metavar="I/N|auto/N",
        help="probe only shard I of N of the inventory (I from 0): the same split on every "
        "machine, no seed needed; auto/N takes I from JOB_COMPLETION_INDEX (Kubernetes "
        "Indexed Job) or NOMAD_ALLOC_INDEX (Nomad)",
    )
    add_distributed_arguments(parser)
    pace.add_argument(
        "--max-time",
        type=MAX_TIME,
        default=None,
        metavar="S",
        help="stop after S seconds: report what finished (silent probes awaiting a retry "
        "as unconfirmed), leave the rest unprobed, exit 4",
    )
    pace.add_argument(
        "--retries",
        type=RETRIES,
        default=None,
        metavar="N",
        help=f"at most N extra tries for a silent probe ({RETRIES.accepted()}; default: as "
        "the loss measured on the path asks, 2 on a clean path, up to 10 on a lossy one)",
    )
    parser.add_argument(
        "--loop",
        choices=["auto", "uvloop", "asyncio"],
        default="auto",
        help="event loop (default: uvloop where installed)",
    )
    history = parser.add_argument_group("history and locking")
    history.add_argument(
        "--db",
        type=Path,
        default=None,
        metavar="PATH",
        help="history database (default: $XDG_STATE_HOME/reachscan/history.sqlite)",
    )
    history.add_argument(
        "--no-history", action="store_true", help="do not record this run (and take no lock)"
    )
    history.add_argument(
        "--keep",
        type=RUN_COUNT,
        default=None,
        metavar="N",
        help=f"keep only the newest N runs in the history ({RUN_COUNT.accepted()})",
    )
    history.add_argument(
        "--keep-days",
        type=KEEP_DAYS,
        default=DEFAULT_KEEP_DAYS,
        metavar="D",
        help=f"drop runs older than D days from the history (default {DEFAULT_KEEP_DAYS:g})",
    )
    history.add_argument(
        "--wait-lock",
        type=WAIT_LOCK,
        default=0.0,
        metavar="S",
        help="if another run holds the lock, wait up to S seconds (default 0: exit 75 at once)",
    )


def add_distributed_arguments(parser: argparse.ArgumentParser) -> None:
    spread = parser.add_argument_group(
        "distributed over vantage points (Celery; pip install 'reachscan[celery]')"
    )
    spread.add_argument(
        "--broker",
        metavar="URL",
        help="send the scan to `reachscan worker`s through this Redis broker "
        "(redis://HOST[:PORT][/DB])",
    )
    spread.add_argument(
        "--vantages",
        type=vantage_list,
        metavar="A,B,...",
        help="with --broker: the vantage points that each scan the whole inventory",
    )
    spread.add_argument(
        "--shards",
        type=SHARD_COUNT,
        default=1,
        metavar="N",
        help="with --broker: split each vantage's scan into N shards (default 1), spread "
        "over that vantage's workers",
    )
    spread.add_argument(
        "--wait-workers",
        type=WAIT_LOCK,
        default=60.0,
        metavar="S",
        help="with --broker: give up on a vantage that has had no worker for S seconds "
        "(default 60), at the start or with shards unanswered",
    )


def vantage_list(text: str) -> tuple[str, ...]:
    names = tuple(vantage_name(name) for name in text.split(","))
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a vantage named twice in {echoed(text)}")
    return names


def distributed_plan(args: argparse.Namespace, quorum: int | None = None) -> DistributedPlan | None:
    """The plan of a scan sent to workers (`--broker`), or None for a local scan; usage
    errors for options that do not fit together."""
    broker, vantages = args.broker, args.vantages
    if broker is None:
        for option, given in (
            ("--vantages", vantages is not None),
            ("--shards", args.shards != 1),
            ("--quorum", quorum is not None),
        ):
            if given:
                raise UsageError(f"{option} distributes a scan: give --broker URL too")
        return None
    if vantages is None:
        raise UsageError("--broker: name the vantage points with --vantages A,B,...")
    try:
        check_broker_url(broker)
    except BrokerError as error:
        raise UsageError(str(error)) from None
    for option, given in (
        ("--shard", args.shard is not None),
        ("--workers", args.workers not in (None, 1)),
        ("--vantage", args.vantage is not None),
        ("--changes-only", getattr(args, "changes_only", False) and len(vantages) > 1),
    ):
        if given:
            raise UsageError(
                f"{option} is for a local scan; with --broker the workers scan the shards "
                "(--shards N) at each of --vantages"
            )
    if quorum is not None and not 1 <= quorum <= len(vantages):
        raise UsageError(f"--quorum {quorum}: must be 1 to the {len(vantages)} vantages")
    files: dict[str, str] = {}
    argv: list[str] = []

    def shipped(path: str) -> str:
        if path == "-":
            raise UsageError(
                "a distributed scan sends its inventory files to the workers: save the "
                "inventory on stdin to a file"
            )
        else:
            try:
                files[path] = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                reason = getattr(error, "strerror", None) or str(error)
                raise UsageError(
                    f"{path}: {reason} (a distributed scan sends its inventory files to "
                    "the workers: give files, not directories)"
                ) from None
        return f"{FILE_MARK}{path}"

    argv += [shipped(path) for path in args.inventories]
    for path in args.exclude_file:
        argv += ["--exclude-file", shipped(path)]
    for target in args.target:
        argv += ["-t", target]
    if getattr(args, "ports_text", None) is not None:
        argv += ["--ports", args.ports_text]
    for exclusion in args.exclude:
        argv += ["--exclude", exclusion]
    for option, value in (
        ("--inventory-format", args.inventory_format),
        ("--expect", args.expect),
        ("--max-endpoints", args.max_endpoints),
        ("--diagnose-budget", args.diagnose_budget),
        ("--diagnose-per-endpoint", args.diagnose_per_endpoint),
        ("--concurrency", args.concurrency),
        ("--per-host", args.per_host),
        ("--rate", args.rate),
        ("--timeout", args.timeout),
        ("--min-timeout", args.min_timeout),
        ("--max-time", args.max_time),
        ("--retries", args.retries),
        ("--loop", args.loop),
    ):
        if value is not None:
            argv += [option, str(value)]
    for flag, given in (
        ("--strict", args.strict),
        ("--include-special", args.include_special),
        ("--no-diagnose", args.no_diagnose),
        ("-4", args.ipv4_only),
        ("-6", args.ipv6_only),
    ):
        if given:
            argv.append(flag)
    return DistributedPlan(
        broker=broker,
        vantages=vantages,
        shards=args.shards,
        argv=tuple(argv),
        files=files,
        wait_workers=args.wait_workers,
        quorum=quorum,
    )


def refuse_formats_of_one_run(
    outputs: Sequence[OutputSpec], spread: DistributedPlan | None
) -> None:
    """`--format json` is the comparison of vantages: only for a distributed scan; and with
    several vantages only the formats that hold several are written."""
    formats = {output.format for output in outputs}
    if spread is None:
        if "json" in formats:
            raise UsageError(
                "--format json is the comparison of several vantage points (with --broker); "
                "one run's report is --format report-json"
            )
        return
    several = len(spread.vantages) > 1 or spread.quorum is not None
    allowed = {"jsonl", "table", "json", *(["nagios"] if spread.quorum is not None else [])}
    if several and not formats <= allowed:
        wrong = ", ".join(sorted(formats - allowed))
        raise UsageError(
            f"--format {wrong}: a format of one run, and this scan has several vantages; "
            "write jsonl, table or json (or scan one vantage per run)"
        )


def read_by_the_run(
    args: argparse.Namespace, history: HistoryPlan | None
) -> tuple[tuple[str, str], ...]:
    """The files a run reads or keeps, each with how a message names it: the history and
    the files SQLite and the lock keep beside it, the inventories, the --exclude-files."""
    kept = () if history is None else history_files(history.database())
    return (
        *((f"{what} {path}", str(path)) for what, path in kept),
        *((f"the inventory {path}", path) for path in args.inventories if path != "-"),
        *((f"the --exclude-file {path}", path) for path in args.exclude_file),
    )


def inventory_specs_of(
    args: argparse.Namespace, expect: Expect | None, stdin: TextIO
) -> Iterator[TargetSpec | InventoryError]:
    return itertools.chain(
        command_line_specs(args.target, default_ports=args.ports, expect=expect),
        *(
            inventory_specs(path, fmt=args.inventory_format, stdin=stdin, default_ports=args.ports)
            for path in args.inventories
        ),
    )


def replayable_stdin(args: argparse.Namespace) -> TextIO:
    """The inventory is read twice (counted before the scan, then scanned); stdin can be
    read only once, so an inventory on stdin is kept in memory."""
    if "-" in args.inventories:
        return io.StringIO(sys.stdin.read())
    return sys.stdin


def read_exclusions(args: argparse.Namespace) -> tuple[IpNetwork, ...]:
    networks = parse_exclusions(args.exclude, "--exclude")
    for path in args.exclude_file:
        try:
            with open(path, encoding="utf-8") as lines:
                networks += parse_exclusions(lines, path)
        except OSError as exc:
            raise UsageError(f"--exclude-file {path}: {exc.strerror}") from None
    return networks


def make_plan(
    args: argparse.Namespace,
    outputs: tuple[OutputSpec, ...] | None = None,
    output_options: OutputOptions | None = None,
) -> ScanPlan:
    """The plan for `scan` (or, with its own outputs and options, `check`)."""
    if not args.target and not args.inventories:
        raise UsageError("nothing to scan: give an INVENTORY file or -t SPEC")
    if args.inventories.count("-") > 1:
        raise UsageError("standard input (-) can be read only once")
    try:
        nameservers = tuple(parse_nameserver(text) for text in args.nameserver)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    families = frozenset({4} if args.ipv4_only else {6} if args.ipv6_only else {4, 6})
    expect = Expect(args.expect) if args.expect else None
    stdout_is_terminal = sys.stdout.isatty()
    stderr_is_terminal = sys.stderr.isatty()
    color = getattr(args, "color", "never")
    use_color = color == "always" or (color == "auto" and stdout_is_terminal)
    quiet = getattr(args, "quiet", False)
    engine = EngineConfig(
        concurrency=args.concurrency,
        per_host=args.per_host,
        rate=args.rate,
        timeout=args.timeout,
        min_timeout=min(args.min_timeout, args.timeout),
        retries=args.retries,
        max_time=args.max_time,
    )
    stdin = replayable_stdin(args)

    def specs() -> Iterator[TargetSpec | InventoryError]:
        if isinstance(stdin, io.StringIO):
            stdin.seek(0)
        return inventory_specs_of(args, expect, stdin)

    if outputs is None:
        outputs = resolve_outputs(getattr(args, "outputs", None), stdout_is_terminal)
    if output_options is None:
        output_options = OutputOptions(
            color=use_color, aggregates_only=getattr(args, "prom_aggregates_only", False)
        )
    history = None
    if not args.no_history:
        history = HistoryPlan(
            path=args.db, keep_runs=args.keep, keep_days=args.keep_days, wait_lock=args.wait_lock
        )
    refuse_outputs_onto_inputs(outputs, read_by_the_run(args, history))
    try:
        scope = Scope(excluded=read_exclusions(args), include_special=args.include_special)
    except ScopeError as exc:
        raise UsageError(str(exc)) from None
    changes_only = getattr(args, "changes_only", False)
    if changes_only and history is None:
        raise UsageError("--changes-only compares with the history: drop --no-history")
    try:
        shard = None if args.shard is None else parse_run_shard(args.shard, os.environ)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return ScanPlan(
        specs=specs,
        max_endpoints=args.max_endpoints,
        scope=scope,
        outputs=outputs,
        output_options=output_options,
        history=history,
        changes_only=changes_only,
        resolver=ResolverConfig(
            hosts_file=args.hosts_file or None,
            nameservers=nameservers,
            families=families,
        ),
        engine=engine,
        strict=args.strict,
        workers=args.workers,
        quiet=quiet,
        list_only=args.list_targets,
        diagnose=not args.no_diagnose,
        diagnosis_budget=DiagnosisBudget(
            per_endpoint=args.diagnose_per_endpoint, per_run=args.diagnose_budget
        ),
        progress=stderr_is_terminal and not getattr(args, "no_progress", True) and not quiet,
        color=use_color,
        command=shlex.join(["reachscan", *sys.argv[1:]]),
        sources=(*(["-t"] if args.target else []), *args.inventories),
        shard=shard,
        vantage=this_machine() if args.vantage is None else args.vantage,
    )


def run(args: argparse.Namespace) -> int:
    spread = distributed_plan(args)
    if spread is None:
        return run_scan(lambda: local_plan(args), args.loop)
    return run_spread(make_plan(args), spread)


def local_plan(args: argparse.Namespace) -> ScanPlan:
    plan = make_plan(args)
    refuse_formats_of_one_run(plan.outputs, None)
    return plan


def run_spread(plan: ScanPlan, spread: DistributedPlan) -> int:
    """A scan sent to workers at the vantage points (scanner/distributed/client.py)."""
    refuse_formats_of_one_run(plan.outputs, spread)
    if plan.list_only:
        raise UsageError("--list-targets lists a local scan's endpoints: drop --broker")
    try:
        from scanner.distributed.client import run_distributed
    except ImportError:
        raise UsageError(
            "--broker needs Celery and Redis's client: pip install 'reachscan[celery]'"
        ) from None
    from scanner.run.interrupts import SignalGuard

    with SignalGuard().installed() as signals:
        return run_distributed(plan, spread, signals)
