"""Closed UDP ports: reachscan against nmap -sU, on loopback and against ICMP rate limits.

A closed UDP port answers only with an ICMP port-unreachable, and Linux rate-limits those
per destination (net.ipv4.icmp_ratelimit: 1000 ms after a burst of ~6) -- except on
loopback. So:

1. 1,000 closed UDP ports on 127.0.0.1 (no rate limit): reachscan at its defaults against
   `nmap -sU -n` (nmap -sU needs root; without it reachscan runs alone). Right = every
   port refused (nmap: closed).
2. Root and namespaces only: 100 closed UDP ports on a namespace host (veth pair to a
   scanner namespace, built with tests/support/netns.py and torn down) whose kernel keeps
   its DEFAULT ICMP rate limits. At most ~6 refusals come at once and then one per
   second, so no scanner can see all N refused in less than (N - 6) s: the physics bound.
   reachscan with enough `--retries` against `nmap -sU -T4`: time against the bound, and
   the share of ports each reports refused (the rest it calls open|filtered).

    python benchmarks/udp.py [--runs N] [--slow-runs N] [--retries N] [--quick]
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import Any

from common import (
    Accuracy,
    BoundTable,
    Contender,
    Summary,
    alternate,
    common_arguments,
    compare_states,
    format_table,
    have_nmap,
    import_netns_support,
    in_namespace,
    loopback_truth,
    netns_unavailable,
    nmap_command,
    nmap_states,
    ports_outside_ephemeral_range,
    print_heading,
    reachscan_command,
    reachscan_states,
    runs_from,
    summarize,
    summary_rows,
    write_results,
)

ADDRESS = "127.0.0.1"
LOOPBACK_PORTS = 1000
QUICK_LOOPBACK_PORTS = 200
NAMESPACE_PORTS = range(5000, 5100)
QUICK_NAMESPACE_PORTS = range(5000, 5020)
ICMP_BURST = 6  # the kernel's per-destination token bucket holds ~6 answers
BUCKET_REFILL_PAUSE = 7.0  # seconds between runs, so each tool starts with a full bucket
DEFAULT_RETRIES = 3
DEFAULT_SLOW_RUNS = 1
TIMEOUT = 300.0
LOOPBACK_BASELINE = "nmap -sU"
NAMESPACE_BASELINE = "nmap -sU -T4"


def refused_share(summary: Summary) -> str:
    """Refused / all, median over the runs (from each run's by_state counts)."""
    shares = []
    for accuracy in summary.accuracy:
        by_state: dict[str, int] = accuracy.get("by_state", {})
        total = sum(by_state.values())
        if total:
            shares.append(by_state.get("refused", 0) / total)
    if not shares:
        return "-"
    shares.sort()
    return f"{100 * shares[len(shares) // 2]:.0f}%"


def loopback_part(runs: int, quick: bool, with_nmap: bool) -> tuple[list[Summary], Any]:
    count = QUICK_LOOPBACK_PORTS if quick else LOOPBACK_PORTS
    bound = BoundTable.read("udp").ports() | BoundTable.read("tcp").ports()
    ports = ports_outside_ephemeral_range(
        count, exclude=bound, rng=random.Random(1000), low=10000, contiguous=True
    )
    spec = f"{ports[0]}-{ports[-1]}"
    endpoints = [(ADDRESS, port) for port in ports]

    def judge(
        contender: Contender, output: Path, throughout: BoundTable, at_any_time: BoundTable
    ) -> Accuracy:
        expected, ignored = loopback_truth(endpoints, throughout, at_any_time, proto="udp")
        return compare_states(expected, contender.read(output), ignore=ignored)

    compared = [
        Contender(
            name="reachscan (defaults)",
            tool="reachscan",
            command=lambda output: reachscan_command([f"{ADDRESS}:U:{spec}"], output),
            read=reachscan_states,
            timeout=TIMEOUT,
            endpoints=count,
        )
    ]
    if with_nmap:
        compared.append(
            Contender(
                name=LOOPBACK_BASELINE,
                tool="nmap",
                command=lambda output: nmap_command(output, "-sU", "-p", spec, ADDRESS),
                read=nmap_states,
                timeout=TIMEOUT,
                endpoints=count,
            )
        )
    print_heading(f"part 1: {count} closed UDP ports {ADDRESS}:{spec}, {runs} alternating rounds")
    records = alternate(compared, runs, judge, proto="udp")
    summaries = [summarize(contender, records[contender.name]) for contender in compared]
    baseline = next((s for s in summaries if s.name == LOOPBACK_BASELINE), None)
    headers, rows = summary_rows(summaries, baseline)
    print(format_table(headers, rows))
    return summaries, {
        "ports": spec,
        "runs": {name: [run.measurement for run in runs_of] for name, runs_of in records.items()},
    }


def namespace_part(
    rounds: int, quick: bool, retries: int, with_nmap: bool
) -> tuple[list[Summary], Any]:
    ports = QUICK_NAMESPACE_PORTS if quick else NAMESPACE_PORTS
    spec = f"{ports.start}-{ports.stop - 1}"
    bound_s = max(len(ports) - ICMP_BURST, 0)
    netns = import_netns_support()
    with netns.Topology() as topology:
        scanner_ns = topology.add_namespace("scan")
        target_ns = topology.add_namespace("target", icmp_rate_limit=True)
        segment = topology.add_segment([scanner_ns, target_ns])
        address = str(segment.address(target_ns, 4))
        topology.wait_reachable(scanner_ns, address, 9)
        expected = {(address, port, "udp"): "refused" for port in ports}

        def judge(
            contender: Contender, output: Path, throughout: BoundTable, at_any_time: BoundTable
        ) -> Accuracy:
            # Silence where a refusal was due is the rate limit at work, not a wrong answer:
            # it is counted (the refused share) but not listed as a mismatch.
            return compare_states(
                expected,
                contender.read(output),
                acceptable={"refused": frozenset({"open|filtered"})},
            )

        compared = [
            Contender(
                name=f"reachscan --retries {retries}",
                tool="reachscan",
                command=lambda output: reachscan_command(
                    [f"{address}:U:{spec}"], output, "--retries", str(retries)
                ),
                read=reachscan_states,
                timeout=TIMEOUT,
                endpoints=len(ports),
            )
        ]
        if with_nmap:
            compared.append(
                Contender(
                    name=NAMESPACE_BASELINE,
                    tool="nmap",
                    command=lambda output: nmap_command(
                        output, "-sU", "-Pn", "-T4", "-p", spec, address
                    ),
                    read=nmap_states,
                    timeout=TIMEOUT,
                    endpoints=len(ports),
                )
            )
        print_heading(
            f"part 2: {len(ports)} closed UDP ports on namespace host {address} with the"
            f" default ICMP rate limit; physics bound (N - {ICMP_BURST}) s = {bound_s} s;"
            f" {rounds} alternating rounds"
        )
        records = alternate(
            compared,
            rounds,
            judge,
            proto="udp",
            pause=BUCKET_REFILL_PAUSE,
            wrap=in_namespace(scanner_ns),
            watch_listeners=False,
        )
    summaries = [summarize(contender, records[contender.name]) for contender in compared]
    baseline = next((s for s in summaries if s.name == NAMESPACE_BASELINE), None)
    headers, rows = summary_rows(summaries, baseline)
    headers += ["refused", "time / bound"]
    for row, summary in zip(rows, summaries, strict=True):
        row += [
            refused_share(summary),
            f"{summary.median_wall_s / bound_s:.2f}x" if bound_s else "-",
        ]
    print(format_table(headers, rows))
    return summaries, {
        "address": address,
        "ports": spec,
        "physics_bound_s": bound_s,
        "refused_share": {summary.name: refused_share(summary) for summary in summaries},
        "runs": {name: [run.measurement for run in runs_of] for name, runs_of in records.items()},
    }


def main() -> int:
    parser = common_arguments(__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument(
        "--slow-runs",
        type=int,
        default=None,
        help=f"rounds for part 2, where each run takes ~(N - 6) s (default {DEFAULT_SLOW_RUNS})",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=DEFAULT_RETRIES,
        help=f"reachscan --retries in part 2 (default {DEFAULT_RETRIES})",
    )
    args = parser.parse_args()
    runs = runs_from(args)
    slow_runs = args.slow_runs or DEFAULT_SLOW_RUNS
    is_root = os.geteuid() == 0
    with_nmap = have_nmap() and is_root
    if not with_nmap:
        print("nmap -sU needs nmap and root: timing reachscan alone", file=sys.stderr)

    loopback_summaries, loopback_json = loopback_part(runs, args.quick, with_nmap)
    payload: dict[str, Any] = {
        "arguments": {
            "runs": runs,
            "slow_runs": slow_runs,
            "retries": args.retries,
            "quick": args.quick,
        },
        "part1_loopback": {"summaries": loopback_summaries, **loopback_json},
    }
    why_not = netns_unavailable()
    if why_not:
        print(f"\npart 2 skipped: {why_not}")
        payload["part2_namespace"] = {"skipped": why_not}
    else:
        namespace_summaries, namespace_json = namespace_part(
            slow_runs, args.quick, args.retries, with_nmap
        )
        payload["part2_namespace"] = {"summaries": namespace_summaries, **namespace_json}
    path = write_results("udp", payload)
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
