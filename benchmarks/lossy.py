"""A lossy path: right answers, and how long they take, against nmap.

A namespace host with 2,000 TCP ports (100 listening, the rest answering with resets)
whose input drops a random share of the incoming SYNs (`tcp flags syn numgen random mod
100 < LOSS drop`), at 5 % and at 20 % loss. reachscan at its defaults (`--no-diagnose`:
only the verdicts are timed) against `nmap -sT -n -Pn -T4`, alternating; every run's
states are checked against the truth (a wrong state is a port called filtered that
answers, or the like). The target of the lossy-path issue: no wrong state, and at most
0.5x nmap's wall time.

Needs root, iproute2 and nftables; skips with the reason otherwise.

    python benchmarks/lossy.py [--runs N] [--quick] [--loss 5,20]
"""

from __future__ import annotations

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

PORTS = range(20000, 22000)
LISTENING = frozenset(range(20000, 22000, 20))  # 100 open ports
QUICK_PORTS = range(20000, 20500)
LIMIT_S = 300.0
BASELINE = "nmap -sT -T4"


def ruleset(ports: range, loss: int) -> str:
    return (
        "table inet reachscan_lossy {\n"
        "  chain input {\n"
        "    type filter hook input priority 0; policy accept;\n"
        f"    tcp dport {ports.start}-{ports.stop - 1} tcp flags & (syn | ack) == syn"
        f" numgen random mod 100 < {loss} drop\n"
        "  }\n"
        "}\n"
    )


def contenders(address: str, ports: range) -> list[Contender]:
    spec = f"{ports.start}-{ports.stop - 1}"
    compared = [
        Contender(
            name="reachscan (defaults)",
            tool="reachscan",
            command=lambda output: reachscan_command(
                [f"{address}:{spec}"], output, "--no-diagnose"
            ),
            read=reachscan_states,
            timeout=LIMIT_S,
            endpoints=len(ports),
        )
    ]
    if have_nmap():
        compared.append(
            Contender(
                name=BASELINE,
                tool="nmap",
                command=lambda output: nmap_command(
                    output, "-sT", "-Pn", "-T4", "-p", spec, address
                ),
                read=nmap_states,
                timeout=LIMIT_S,
                endpoints=len(ports),
            )
        )
    return compared


def main() -> int:
    parser = common_arguments(__doc__.splitlines()[0] if __doc__ else "", default_runs=3)
    parser.add_argument("--loss", default="5,20", help="SYN loss percentages (default 5,20)")
    args = parser.parse_args()
    runs = runs_from(args)
    why_not = netns_unavailable()
    if why_not:
        print(f"lossy.py skipped: {why_not}")
        return 0
    ports = QUICK_PORTS if args.quick else PORTS
    netns = import_netns_support()
    results: dict[str, Any] = {"runs": runs, "ports": f"{ports.start}-{ports.stop - 1}"}
    with netns.Topology() as topology:
        scanner_ns = topology.add_namespace("scan")
        target_ns = topology.add_namespace("target")
        segment = topology.add_segment([scanner_ns, target_ns])
        address = str(segment.address(target_ns, 4))
        listening = sorted(port for port in ports if port in LISTENING)
        topology.start_listener(target_ns, tcp=[f"{address}:{port}" for port in listening])
        topology.wait_reachable(scanner_ns, address, 9)
        expected = {
            (address, port, "tcp"): "open" if port in LISTENING else "refused" for port in ports
        }

        for loss in (int(text) for text in args.loss.split(",")):
            topology.exec_in(target_ns, ["nft", "flush", "ruleset"])
            topology.load_nft(target_ns, ruleset(ports, loss))
            summaries, measured = namespace_scenario(
                f"{loss} % SYN loss, {len(ports)} ports",
                contenders(address, ports),
                runs,
                expected,
                scanner_ns,
                BASELINE,
            )
            results[f"loss_{loss}"] = {"summaries": summaries, "runs": measured}
    print(f"\nJSON: {write_results('lossy', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
