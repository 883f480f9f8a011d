"""Filtered ports on a namespace host: fixed timeouts against nmap's learned ones.

Silence is what makes scans slow. A throwaway network-namespace host (a veth pair to a
scanner namespace of its own, built with tests/support/netns.py and always torn down)
drops TCP ports 20000-21999 with nftables (`tcp dport 20000-21999 drop`), resets every
other port and has a few listeners. Both tools run inside the scanner namespace, so no
packet can reach anything but the two namespaces.

1. Only the 2,000 dropped ports: reachscan `--timeout 1 --retries 0` against the bound a
   fixed timeout implies, ceil(N / in-flight) x timeout (in flight = min(--concurrency,
   --per-host), one host), and against `nmap -sT -n -Pn -T4 --max-retries 0`, which has
   no answer to learn a round-trip time from (~100 s a run here, hence fewer rounds).
2. The full range (2,000 dropped among 63,535 resetting, a few open): reachscan with the
   same options and at its defaults, against `nmap -sT -n -Pn -p- -T5 --max-retries 0`.

Needs root, iproute2 and nftables; skips with the reason otherwise.

    python benchmarks/filtered.py [--runs N] [--slow-runs N] [--quick] [--part 1|2]
"""

from __future__ import annotations

import math
import sys
from typing import Any

from common import (
    Contender,
    Summary,
    common_arguments,
    have_nmap,
    import_netns_support,
    namespace_scenario,
    netns_unavailable,
    nmap_command,
    nmap_states,
    reachscan_command,
    reachscan_states,
    runs_from,
    write_results,
)

DROPPED = range(20000, 22000)
QUICK_DROPPED = range(20000, 20200)
LISTENING = (22, 80, 443, 8080, 30000)
TIMEOUT_S = 1.0
FAST_OPTIONS = ("--timeout", "1", "--retries", "0")
REACHSCAN_LIMIT = 120.0
NMAP_LIMIT = 300.0
DEFAULT_SLOW_RUNS = 2
SLOW_BASELINE = "nmap -T4 --max-retries 0"
FULL_BASELINE = "nmap -T5 --max-retries 0"


def ruleset(dropped: range) -> str:
    return (
        "table inet reachscan_bench {\n"
        "  chain input {\n"
        "    type filter hook input priority 0; policy accept;\n"
        f"    tcp dport {dropped.start}-{dropped.stop - 1} drop\n"
        "  }\n"
        "}\n"
    )


def expected_states(address: str, ports: range, dropped: range) -> dict[tuple[str, int, str], str]:
    return {
        (address, port, "tcp"): "filtered"
        if port in dropped
        else "open"
        if port in LISTENING
        else "refused"
        for port in ports
    }


def fixed_timeout_bound(endpoints: int, timeout: float) -> tuple[float, int]:
    """ceil(N / in flight) x timeout with reachscan's current defaults (one host, so the
    per-host limit applies too); returns (seconds, in flight)."""
    from scanner.engine.engine import EngineConfig

    defaults = EngineConfig()
    in_flight = min(defaults.concurrency, defaults.per_host)
    return math.ceil(endpoints / in_flight) * timeout, in_flight


def scenario(
    title: str,
    compared: list[Contender],
    rounds: int,
    address: str,
    ports: range,
    dropped: range,
    namespace: str,
    baseline_name: str,
) -> tuple[list[Summary], dict[str, Any]]:
    return namespace_scenario(
        title, compared, rounds, expected_states(address, ports, dropped), namespace, baseline_name
    )


def reachscan_contender(name: str, target: str, endpoints: int, *options: str) -> Contender:
    return Contender(
        name=name,
        tool="reachscan",
        command=lambda output: reachscan_command([target], output, *options),
        read=reachscan_states,
        timeout=REACHSCAN_LIMIT,
        endpoints=endpoints,
    )


def nmap_contender(name: str, endpoints: int, *options: str) -> Contender:
    return Contender(
        name=name,
        tool="nmap",
        command=lambda output: nmap_command(output, *options),
        read=nmap_states,
        timeout=NMAP_LIMIT,
        endpoints=endpoints,
    )


def part_one(
    address: str,
    dropped: range,
    dropped_spec: str,
    rounds: int,
    scanner_ns: str,
    with_nmap: bool,
) -> tuple[list[Summary], dict[str, Any]]:
    """Only the dropped ports: reachscan against the fixed-timeout bound and nmap -T4."""
    only_dropped = [
        reachscan_contender(
            "reachscan --timeout 1 --retries 0",
            f"{address}:{dropped_spec}",
            len(dropped),
            *FAST_OPTIONS,
        )
    ]
    if with_nmap:
        only_dropped.append(
            nmap_contender(
                SLOW_BASELINE,
                len(dropped),
                "-sT",
                "-Pn",
                "-p",
                dropped_spec,
                "-T4",
                "--max-retries",
                "0",
                address,
            )
        )
    return scenario(
        f"part 1: {len(dropped)} dropped ports on {address}",
        only_dropped,
        rounds,
        address,
        dropped,
        dropped,
        scanner_ns,
        SLOW_BASELINE,
    )


def main() -> int:
    parser = common_arguments(__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument(
        "--slow-runs",
        type=int,
        default=None,
        help=f"rounds for part 1, where nmap takes ~100 s a run (default {DEFAULT_SLOW_RUNS},"
        " 1 with --quick)",
    )
    parser.add_argument(
        "--part",
        type=int,
        choices=(1, 2),
        default=None,
        help="run only part 1 (the dropped ports) or part 2 (the full range); default both",
    )
    args = parser.parse_args()
    runs = runs_from(args)
    slow_runs = args.slow_runs or (1 if args.quick else DEFAULT_SLOW_RUNS)
    why_not = netns_unavailable()
    if why_not:
        print(f"filtered.py skipped: {why_not}")
        return 0
    with_nmap = have_nmap()
    if not with_nmap:
        print("nmap is not installed: timing reachscan alone", file=sys.stderr)
    dropped = QUICK_DROPPED if args.quick else DROPPED
    theory_s, in_flight = fixed_timeout_bound(len(dropped), TIMEOUT_S)
    netns = import_netns_support()

    with netns.Topology() as topology:
        scanner_ns = topology.add_namespace("scan")
        target_ns = topology.add_namespace("target")
        segment = topology.add_segment([scanner_ns, target_ns])
        address = str(segment.address(target_ns, 4))
        topology.load_nft(target_ns, ruleset(dropped))
        topology.start_listener(target_ns, tcp=[f"{address}:{port}" for port in LISTENING])
        topology.wait_reachable(scanner_ns, address, 9)

        dropped_spec = f"{dropped.start}-{dropped.stop - 1}"
        slow_summaries: list[Summary] = []
        slow_runs_json: dict[str, Any] = {}
        if args.part in (None, 1):
            slow_summaries, slow_runs_json = part_one(
                address, dropped, dropped_spec, slow_runs, scanner_ns, with_nmap
            )
            reachscan_fast = slow_summaries[0]
            print(
                f"\nfixed-timeout bound: ceil({len(dropped)} / {in_flight} in flight)"
                f" x {TIMEOUT_S:g} s = {theory_s:g} s; reachscan median"
                f" {reachscan_fast.median_wall_s:.2f} s"
                f" = {reachscan_fast.median_wall_s / theory_s:.2f}x the bound"
            )

        full_summaries: list[Summary] = []
        full_runs_json: dict[str, Any] = {}
        if args.part in (None, 2):
            all_ports = range(1, 65536)
            full_range = [
                reachscan_contender(
                    "reachscan --timeout 1 --retries 0",
                    f"{address}:1-65535",
                    len(all_ports),
                    *FAST_OPTIONS,
                ),
                reachscan_contender("reachscan (defaults)", f"{address}:1-65535", len(all_ports)),
            ]
            if with_nmap:
                full_range.append(
                    nmap_contender(
                        FULL_BASELINE,
                        len(all_ports),
                        "-sT",
                        "-Pn",
                        "-p-",
                        "-T5",
                        "--max-retries",
                        "0",
                        address,
                    )
                )
            full_summaries, full_runs_json = scenario(
                f"part 2: {address}:1-65535 ({len(dropped)} dropped, {len(LISTENING)} open,"
                " the rest resetting)",
                full_range,
                runs,
                address,
                all_ports,
                dropped,
                scanner_ns,
                FULL_BASELINE,
            )

    path = write_results(
        "filtered",
        {
            "arguments": {
                "runs": runs,
                "slow_runs": slow_runs,
                "quick": args.quick,
                "part": args.part,
            },
            "dropped_ports": f"{dropped.start}-{dropped.stop - 1}",
            "listening_ports": LISTENING,
            "fixed_timeout_bound_s": theory_s,
            "in_flight_per_host": in_flight,
            "reachscan_over_bound": slow_summaries[0].median_wall_s / theory_s
            if slow_summaries
            else None,
            "part1_dropped_only": {
                "baseline": SLOW_BASELINE,
                "summaries": slow_summaries,
                "runs": slow_runs_json,
            },
            "part2_full_range": {
                "baseline": FULL_BASELINE,
                "summaries": full_summaries,
                "runs": full_runs_json,
            },
        },
    )
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
