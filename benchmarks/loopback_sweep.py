"""Full TCP sweep of 127.0.0.1 (ports 1-65535): reachscan against nmap -sT, alternating.

The fastest target there is, so this measures the scanners themselves: connects per
second, memory, and whether they stay right under load. ~300 listeners (a separate
process, real backlog) sit on ports outside the ephemeral range; every run's open set is
compared with /proc/net/tcp read just before and after it. reachscan runs at its default
settings and at each `--concurrency` value given, which must all find the same open set;
nmap runs at its default timing, -T4 and -T5 --max-retries 0. Beside them runs the
language's own limit on these cores: `nproc` plain Python processes that share nothing
(`plain_sweep.py`), the yardstick a Python scanner's overhead is read against.

    python benchmarks/loopback_sweep.py [--runs N] [--quick] [--concurrency 1000,5000,20000]
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable
from pathlib import Path

from common import (
    Accuracy,
    BoundTable,
    Contender,
    ListenerProcess,
    alternate,
    common_arguments,
    compare_states,
    format_table,
    have_nmap,
    loopback_truth,
    nmap_command,
    nmap_states,
    ports_outside_ephemeral_range,
    print_heading,
    raise_descriptor_limit,
    reachscan_command,
    reachscan_states,
    runs_from,
    summarize,
    summary_rows,
    write_results,
)

ADDRESS = "127.0.0.1"
ALL_PORTS = range(1, 65536)
LISTENERS = 300
QUICK_LISTENERS = 50
REACHSCAN_TIMEOUT = 180.0
NMAP_TIMEOUT = 180.0
NMAP_TIMINGS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("nmap -sT (default timing)", ()),
    ("nmap -sT -T4", ("-T4",)),
    ("nmap -sT -T5 --max-retries 0", ("-T5", "--max-retries", "0")),
)
BASELINE = "nmap -sT -T4"
PLAIN_SWEEP = Path(__file__).resolve().parent / "plain_sweep.py"


def plain_python_name() -> str:
    return f"plain python, {os.cpu_count() or 1} processes"


def plain_states(path: Path) -> dict[tuple[str, int, str], str]:
    """`plain_sweep.py`'s open ports; every other port of the sweep it found not open."""
    opened = {int(line.split()[1]) for line in path.read_text().splitlines() if line.strip()}
    return {(ADDRESS, port, "tcp"): "open" if port in opened else "refused" for port in ALL_PORTS}


def concurrency_list(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if any(value < 1 for value in values):
        raise ValueError("concurrency values must be at least 1")
    return values


def reachscan_sweep(target: str, *options: str) -> Callable[[Path], list[str]]:
    return lambda output: reachscan_command([target], output, *options)


def nmap_sweep(*options: str) -> Callable[[Path], list[str]]:
    return lambda output: nmap_command(output, *options)


def contenders(concurrencies: list[int], with_nmap: bool) -> list[Contender]:
    target = f"{ADDRESS}:1-65535"
    variants: list[tuple[str, tuple[str, ...]]] = [
        ("reachscan (defaults)", ()),
        *((f"reachscan --workers {n}", ("--workers", str(n))) for n in (1, 2)),
        *((f"reachscan --concurrency {n}", ("--concurrency", str(n))) for n in concurrencies),
    ]
    found: list[Contender] = [
        Contender(
            name=name,
            tool="reachscan",
            command=reachscan_sweep(target, *options),
            read=reachscan_states,
            timeout=REACHSCAN_TIMEOUT,
            endpoints=len(ALL_PORTS),
        )
        for name, options in variants
    ]
    # The yardstick runs right after the reachscan rows it is read against.
    found.insert(
        3,
        Contender(
            name=plain_python_name(),
            tool="plain python",
            command=lambda output: [
                sys.executable,
                str(PLAIN_SWEEP),
                ADDRESS,
                "1-65535",
                str(output),
                "--processes",
                str(os.cpu_count() or 1),
            ],
            read=plain_states,
            timeout=REACHSCAN_TIMEOUT,
            endpoints=len(ALL_PORTS),
        ),
    )
    if with_nmap:
        for name, options in NMAP_TIMINGS:
            found.append(
                Contender(
                    name=name,
                    tool="nmap",
                    command=nmap_sweep("-sT", "-p-", *options, ADDRESS),
                    read=nmap_states,
                    timeout=NMAP_TIMEOUT,
                    endpoints=len(ALL_PORTS),
                )
            )
    return found


def judge(
    contender: Contender, output: Path, throughout: BoundTable, at_any_time: BoundTable
) -> Accuracy:
    expected, ignored = loopback_truth(
        ((ADDRESS, port) for port in ALL_PORTS), throughout, at_any_time
    )
    return compare_states(expected, contender.read(output), ignore=ignored)


def main() -> int:
    parser = common_arguments(__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument(
        "--concurrency",
        type=concurrency_list,
        default=None,
        help="extra reachscan runs at these --concurrency values (default 1000,5000,20000;"
        " 5000 with --quick)",
    )
    args = parser.parse_args()
    runs = runs_from(args)
    concurrencies = args.concurrency or ([5000] if args.quick else [1000, 5000, 20000])
    raise_descriptor_limit()
    with_nmap = have_nmap()
    if not with_nmap:
        print("nmap is not installed: timing reachscan alone", file=sys.stderr)

    rng = random.Random(2024)
    wanted = QUICK_LISTENERS if args.quick else LISTENERS
    ports = ports_outside_ephemeral_range(wanted, exclude=BoundTable.read("tcp").ports(), rng=rng)
    with ListenerProcess([(ADDRESS, port) for port in ports]) as listeners:
        print_heading(
            f"loopback sweep: {ADDRESS}:1-65535, {len(listeners.bound)} listeners of ours "
            f"(+ whatever else listens), {runs} alternating rounds"
        )
        for address, port, error in listeners.failed:
            print(f"  could not listen on {address}:{port}: {error}")
        compared = contenders(concurrencies, with_nmap)
        records = alternate(compared, runs, judge)
        our_ports = sorted(port for _, port in listeners.bound)

    summaries = [summarize(contender, records[contender.name]) for contender in compared]
    baseline = next((summary for summary in summaries if summary.name == BASELINE), None)
    print_heading("medians")
    headers, rows = summary_rows(summaries, baseline)
    print(format_table(headers, rows))

    # Every reachscan run, at every concurrency, must find exactly the kernel's listeners
    # (judged per run against /proc/net/tcp, so all agreeing means all identical).
    reachscan_runs = [
        run
        for contender in compared
        if contender.tool == "reachscan"
        for run in records[contender.name]
    ]
    consistent = all(
        run.accuracy is not None and not run.accuracy.false_open and not run.accuracy.missed_open
        for run in reachscan_runs
    )
    plain = next((summary for summary in summaries if summary.tool == "plain python"), None)
    if plain is not None:
        print_heading(f"against the language's own limit ({plain.name})")
        headers, rows = summary_rows(summaries, plain)
        print(format_table(headers, rows))
    print(
        "\nreachscan open sets identical to the kernel's in every run, at every concurrency: "
        + ("yes" if consistent else "NO (see the accuracy column and the per-run lines)")
    )
    path = write_results(
        "loopback_sweep",
        {
            "arguments": {"runs": runs, "quick": args.quick, "concurrency": concurrencies},
            "target": f"{ADDRESS}:1-65535/tcp",
            "listeners": our_ports,
            "baseline": BASELINE,
            "ratios_to_plain_python": {
                summary.name: summary.median_wall_s / plain.median_wall_s
                for summary in summaries
                if plain is not None
            },
            "summaries": summaries,
            "ratios_to_baseline": {
                summary.name: (summary.median_wall_s / baseline.median_wall_s)
                for summary in summaries
                if baseline
            },
            "reachscan_open_sets_consistent": consistent,
            "runs": {
                name: [run.measurement for run in runs_of] for name, runs_of in records.items()
            },
        },
    )
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
