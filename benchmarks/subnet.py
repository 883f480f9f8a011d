"""A subnet sweep: live hosts, silent hosts and empty addresses on one path, against nmap.

One /24 on a veth pair to a target namespace that holds the live and the silent hosts as
addresses of its own: 60 % of the 253 addresses live (ports 22, 80, 443 listening on 30 %
of them, resetting elsewhere), 10 % dropping everything (nftables), 30 % not there at
all (no ARP answer: the kernel reports host-unreach once its neighbour resolution fails).
reachscan at its defaults (`--no-diagnose`) against `nmap -sT -n -Pn -T4`, alternating,
every state checked (a filtered host-unreach and a filtered no-response are both right).

Needs root, iproute2 and nftables; skips with the reason otherwise.

    python benchmarks/subnet.py [--runs N]
"""

from __future__ import annotations

import random
import sys
from typing import Any

from common import (
    Contender,
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

PORTS = (22, 80, 443)
LIMIT_S = 300.0
BASELINE = "nmap -sT -n -Pn -T4"
SEED = 20261204  # the same subnet in every run and every session


def plan_subnet(prefix: str) -> tuple[list[str], list[str], list[str], set[str]]:
    """(live, dropping, absent, listening) addresses of `prefix` (a.b.c), host numbers 2-254."""
    chooser = random.Random(SEED)
    numbers = list(range(2, 255))
    chooser.shuffle(numbers)
    live_count, drop_count = round(0.6 * len(numbers)), round(0.1 * len(numbers))
    live = [f"{prefix}.{n}" for n in sorted(numbers[:live_count])]
    dropping = [f"{prefix}.{n}" for n in sorted(numbers[live_count : live_count + drop_count])]
    absent = [f"{prefix}.{n}" for n in sorted(numbers[live_count + drop_count :])]
    listening = {address for address in live if chooser.random() < 0.3}
    return live, dropping, absent, listening


def main() -> int:
    parser = common_arguments(__doc__.splitlines()[0] if __doc__ else "", default_runs=3)
    args = parser.parse_args()
    runs = runs_from(args)
    why_not = netns_unavailable()
    if why_not:
        print(f"subnet.py skipped: {why_not}")
        return 0
    netns = import_netns_support()
    with netns.Topology() as topology:
        scanner_ns = topology.add_namespace("scan")
        target_ns = topology.add_namespace("hosts")
        segment = topology.add_segment([scanner_ns, target_ns])
        prefix = str(segment.ipv4_prefix.network_address).rsplit(".", 1)[0]
        interface = next(a.interface for a in segment.attachments if a.namespace == target_ns)
        live, dropping, absent, listening = plan_subnet(prefix)
        own = segment.address(target_ns, 4)  # .2 is the target namespace's own address
        for address in [*live, *dropping]:
            if address != own:
                topology.exec_in(
                    target_ns, ["ip", "addr", "add", f"{address}/32", "dev", interface]
                )
        if own not in live and own not in dropping:
            dropping.append(own)  # it answers ARP: never "absent"
            absent = [address for address in absent if address != own]
        topology.load_nft(
            target_ns,
            "table inet subnet {\n chain input {\n  type filter hook input priority 0;"
            f" policy accept;\n  ip daddr {{ {', '.join(dropping)} }} drop\n }}\n}}\n",
        )
        topology.start_listener(
            target_ns, tcp=[f"{address}:{port}" for address in sorted(listening) for port in PORTS]
        )
        topology.wait_reachable(scanner_ns, live[0], 9)
        expected = {}
        for address in [*live, *dropping, *absent]:
            for port in PORTS:
                state = (
                    "filtered"
                    if address not in live
                    else ("open" if address in listening else "refused")
                )
                expected[(address, port, "tcp")] = state
        targets = [f"{prefix}.2-254:{','.join(map(str, PORTS))}"]
        compared = [
            Contender(
                name="reachscan (defaults)",
                tool="reachscan",
                command=lambda output: reachscan_command(targets, output, "--no-diagnose"),
                read=reachscan_states,
                timeout=LIMIT_S,
                endpoints=len(expected),
            )
        ]
        if have_nmap():
            compared.append(
                Contender(
                    name=BASELINE,
                    tool="nmap",
                    command=lambda output: nmap_command(
                        output,
                        "-sT",
                        "-Pn",
                        "-T4",
                        "-p",
                        ",".join(map(str, PORTS)),
                        f"{prefix}.2-254",
                    ),
                    read=nmap_states,
                    timeout=LIMIT_S,
                    endpoints=len(expected),
                )
            )

        summaries, measured = namespace_scenario(
            f"{prefix}.0/24: {len(live)} live ({len(listening)} listening), {len(dropping)} "
            f"dropping, {len(absent)} absent; ports {PORTS}",
            compared,
            runs,
            expected,
            scanner_ns,
            BASELINE,
        )
        results: dict[str, Any] = {"summaries": summaries, "runs": measured}
    print(f"\nJSON: {write_results('subnet', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
