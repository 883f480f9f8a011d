"""Memory against inventory size: reachscan on 131,072 and 1,048,576 endpoints.

reachscan promises that target specs expand lazily and results stream out, so its peak
RSS should not grow with the inventory. This sweeps port 80 on every address of
127.0.0.0/15 and of 127.0.0.0/12 (all loopback, all closed unless /proc/net/tcp says
otherwise) and reports peak RSS and endpoints per second for each, and the ratio of the
two peaks. Results go to a JSONL file in a temporary directory (reachscan writes
atomically, through a temporary file next to the path) that is checked line by line --
every address once, the right state -- and deleted. nmap would take too long on a
million hosts; `--with-nmap` adds it anyway, with a time limit.

    python benchmarks/memory.py [--runs N] [--quick] [--with-nmap]
"""

from __future__ import annotations

import ipaddress
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from common import (
    Accuracy,
    BoundTable,
    Contender,
    Key,
    alternate,
    common_arguments,
    format_table,
    have_nmap,
    iter_nmap_states,
    iter_reachscan_states,
    nmap_command,
    print_heading,
    raise_descriptor_limit,
    reachscan_command,
    reachscan_scan_options,
    runs_from,
    summarize,
    summary_rows,
    write_results,
)

PORT = 80
DEFAULT_RUNS = 3  # a million endpoints take ~50 s per run here; 3 rounds stay near 5 min
NETWORKS = ("127.0.0.0/15", "127.0.0.0/12")
QUICK_NETWORKS = ("127.0.0.0/18", "127.0.0.0/15")
REACHSCAN_TIMEOUT = 300.0
NMAP_TIMEOUT = 600.0


def port_truth(
    network: ipaddress.IPv4Network, throughout: BoundTable, at_any_time: BoundTable
) -> tuple[Callable[[ipaddress.IPv4Address], bool], set[ipaddress.IPv4Address], bool]:
    """Who listens on PORT inside `network`: (is it open there?, addresses to set aside,
    is the whole network uncertain?). Built once per run: a per-address lookup in the
    listener table would cost more than the scan's own output parsing."""

    def listeners(table: BoundTable) -> tuple[bool, set[ipaddress.IPv4Address], bool]:
        wildcard = any(
            port == PORT and address.is_unspecified and address.version == 4
            for address, port in table.sockets
        )
        dual_stack = any(
            port == PORT and address.is_unspecified and address.version == 6
            for address, port in table.sockets
        )
        specific = {
            address
            for address, port in table.sockets
            if port == PORT and isinstance(address, ipaddress.IPv4Address) and address in network
        }
        return wildcard, specific, dual_stack

    wildcard, specific, dual_stack = listeners(throughout)
    wildcard_any, specific_any, dual_stack_any = listeners(at_any_time)

    def is_open(address: ipaddress.IPv4Address) -> bool:
        return wildcard or address in specific

    uncertain = (wildcard_any and not wildcard) or dual_stack or dual_stack_any
    return is_open, specific_any - specific, uncertain


def judge_network(
    network: ipaddress.IPv4Network,
) -> Callable[[Contender, Path, BoundTable, BoundTable], Accuracy]:
    """A streaming judge: every address of `network` once, port 80/tcp, the right state.

    A bytearray marks the addresses seen, so a million results are checked in a
    megabyte; only mismatches are kept.
    """
    base = int(network.network_address)

    def judge(
        contender: Contender, output: Path, throughout: BoundTable, at_any_time: BoundTable
    ) -> Accuracy:
        is_open, ignored, uncertain = port_truth(network, throughout, at_any_time)
        stream: Iterator[tuple[Key, str]] = (
            iter_reachscan_states(output)
            if contender.tool == "reachscan"
            else iter_nmap_states(output)
        )
        seen = bytearray(network.num_addresses)
        by_state: Counter[str] = Counter()
        false_open: list[Key] = []
        missed_open: list[Key] = []
        wrong: list[tuple[Key, str, str]] = []
        unexpected = 0
        for key, state in stream:
            by_state[state] += 1
            address_text, port, proto = key
            address = ipaddress.IPv4Address(address_text)
            index = int(address) - base
            if port != PORT or proto != "tcp" or not 0 <= index < len(seen) or seen[index]:
                unexpected += 1
                continue
            seen[index] = 1
            if uncertain or address in ignored:
                continue
            want = "open" if is_open(address) else "refused"
            if state == want:
                continue
            if state == "open":
                false_open.append(key)
            elif want == "open":
                missed_open.append(key)
            else:
                wrong.append((key, want, state))
        missing = tuple(
            (str(network.network_address + index), PORT, "tcp")
            for index, flag in enumerate(seen)
            if not flag
        )
        return Accuracy(
            checked=len(seen),
            by_state=dict(by_state),
            false_open=tuple(false_open),
            missed_open=tuple(missed_open),
            wrong=tuple(wrong),
            missing=missing,
            unexpected=unexpected,
        )

    return judge


def reachscan_on(target: str, endpoints: int) -> Callable[[Path], list[str]]:
    """reachscan on one block, every address of it: the block's broadcast address too
    (`--include-special`; nmap probes it, and on loopback it is an address like any
    other), and past the default cap on inventory size (`--max-endpoints`)."""
    supported = reachscan_scan_options()
    options = ["--include-special"] if "--include-special" in supported else []
    if "--max-endpoints" in supported:
        options += ["--max-endpoints", str(endpoints)]
    return lambda output: reachscan_command([target], output, *options)


def nmap_on(network: str) -> Callable[[Path], list[str]]:
    return lambda output: nmap_command(output, "-sT", "-Pn", "-p", str(PORT), network)


def main() -> int:
    parser = common_arguments(__doc__.splitlines()[0] if __doc__ else "", default_runs=DEFAULT_RUNS)
    parser.add_argument(
        "--with-nmap",
        action="store_true",
        help=f"also time nmap -sT -Pn -p {PORT} on each network (killed after "
        f"{NMAP_TIMEOUT:.0f} s)",
    )
    args = parser.parse_args()
    runs = runs_from(args)
    raise_descriptor_limit()
    chosen = QUICK_NETWORKS if args.quick else NETWORKS
    networks = [ipaddress.IPv4Network(text) for text in chosen]
    with_nmap = args.with_nmap and have_nmap()
    if args.with_nmap and not with_nmap:
        print("nmap is not installed: timing reachscan alone", file=sys.stderr)

    compared: list[Contender] = []
    judges = {}
    for network in networks:
        target = f"{network}:{PORT}"
        name = f"reachscan {target}"
        compared.append(
            Contender(
                name=name,
                tool="reachscan",
                command=reachscan_on(target, network.num_addresses),
                read=lambda _: {},
                timeout=REACHSCAN_TIMEOUT,
                endpoints=network.num_addresses,
            )
        )
        judges[name] = judge_network(network)
        if with_nmap:
            nmap_name = f"nmap -sT -Pn -p {PORT} {network}"
            compared.append(
                Contender(
                    name=nmap_name,
                    tool="nmap",
                    command=nmap_on(str(network)),
                    read=lambda _: {},
                    timeout=NMAP_TIMEOUT,
                    endpoints=network.num_addresses,
                )
            )
            judges[nmap_name] = judge_network(network)

    def judge(
        contender: Contender, output: Path, throughout: BoundTable, at_any_time: BoundTable
    ) -> Accuracy:
        return judges[contender.name](contender, output, throughout, at_any_time)

    print_heading(
        "memory vs inventory size: "
        + ", ".join(f"{network}:{PORT} ({network.num_addresses:,})" for network in networks)
        + f", {runs} alternating rounds"
    )
    records = alternate(compared, runs, judge)
    summaries = [summarize(contender, records[contender.name]) for contender in compared]
    print_heading("medians")
    headers, rows = summary_rows(summaries, summaries[0])
    print(format_table(headers, rows))

    reachscan = [summary for summary in summaries if summary.tool == "reachscan"]
    small, large = reachscan[0], reachscan[-1]
    growth = large.median_rss_kib / small.median_rss_kib if small.median_rss_kib else None
    size_ratio = large.endpoints / small.endpoints
    print(
        f"\nreachscan peak RSS: {small.median_rss_mib:.1f} MiB for {small.endpoints:,} endpoints,"
        f" {large.median_rss_mib:.1f} MiB for {large.endpoints:,} ({size_ratio:.0f}x the"
        f" endpoints, {growth:.2f}x the memory)"
        if growth
        else ""
    )
    path = write_results(
        "memory",
        {
            "arguments": {"runs": runs, "quick": args.quick, "with_nmap": with_nmap},
            "networks": [f"{network}:{PORT}" for network in networks],
            "summaries": summaries,
            "reachscan_rss_growth": growth,
            "endpoint_ratio": size_ratio,
            "runs": {
                name: [run.measurement for run in runs_of] for name, runs_of in records.items()
            },
        },
    )
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
