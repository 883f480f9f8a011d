"""A fleet inventory of 10,000 endpoints on 127.0.0.0/8: reachscan against nmap, alternating.

What an operator actually runs: a YAML inventory (2,500 addresses in 10 groups x 4 ports,
per-port expectations, labels), so reachscan's time includes parsing the inventory,
"resolving" the literals and writing the JSONL. nmap gets the equivalent target list
(`-iL` with the addresses, `-p` with the ports, `-sT -n -Pn`). Every 10th address has a
listener bound to that 127.x address alone (binding 127.x.y.z needs no setup), on one of
the four ports; everything else is closed. Both tools' states are checked per endpoint.

    python benchmarks/fleet_inventory.py [--runs N] [--quick]
"""

from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

import yaml
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

ADDRESSES = 2500
QUICK_ADDRESSES = 500
PORTS_PER_ADDRESS = 4
LISTENER_EVERY = 10  # one address in ten has a listener, on one of its four ports
GROUP_SIZE = 250
SECOND_OCTET = 20  # 127.20.0.0/16: well away from 127.0.0.1, where other tests live
TIMEOUT = 240.0
BASELINE = "nmap -sT -n -Pn"


def fleet_addresses(count: int) -> list[str]:
    """127.20.G.H: one /24-ish block of 250 per group (G), hosts .1-.250 (H)."""
    return [
        f"127.{SECOND_OCTET}.{index // GROUP_SIZE}.{index % GROUP_SIZE + 1}"
        for index in range(count)
    ]


def listener_endpoints(addresses: list[str], ports: list[int]) -> list[tuple[str, int]]:
    return [
        (address, ports[(index // LISTENER_EVERY) % len(ports)])
        for index, address in enumerate(addresses)
        if index % LISTENER_EVERY == 0
    ]


def inventory_document(
    addresses: list[str], ports: list[int], listening: set[tuple[str, int]]
) -> dict[str, object]:
    """The YAML inventory: groups of 250 hosts, closed by default, listeners expected open."""
    groups: list[dict[str, object]] = []
    for start in range(0, len(addresses), GROUP_SIZE):
        hosts: list[object] = []
        for address in addresses[start : start + GROUP_SIZE]:
            open_ports = [port for port in ports if (address, port) in listening]
            if not open_ports:
                hosts.append(address)  # a bare string: the group's (closed) ports
                continue
            hosts.append(
                {
                    "host": address,
                    "ports": [
                        {"port": port, "expect": "open"} if port in open_ports else port
                        for port in ports
                    ],
                    "labels": {"role": "service"},
                }
            )
        groups.append(
            {
                "name": f"rack{start // GROUP_SIZE}",
                "labels": {"dc": "loopback"},
                "ports": list(ports),
                "hosts": hosts,
            }
        )
    return {
        "defaults": {"expect": "closed", "labels": {"bench": "fleet"}},
        "groups": groups,
    }


def main() -> int:
    parser = common_arguments(__doc__.splitlines()[0] if __doc__ else "")
    args = parser.parse_args()
    runs = runs_from(args)
    raise_descriptor_limit()
    with_nmap = have_nmap()
    if not with_nmap:
        print("nmap is not installed: timing reachscan alone", file=sys.stderr)

    addresses = fleet_addresses(QUICK_ADDRESSES if args.quick else ADDRESSES)
    # Ports held by nothing on any address: a wildcard listener would open them everywhere.
    ports = ports_outside_ephemeral_range(
        PORTS_PER_ADDRESS, exclude=BoundTable.read("tcp").ports(), rng=random.Random(10000)
    )
    endpoints = [(address, port) for address in addresses for port in ports]

    def judge(
        contender: Contender,
        output: Path,
        throughout: BoundTable,
        at_any_time: BoundTable,
    ) -> Accuracy:
        expected, ignored = loopback_truth(endpoints, throughout, at_any_time)
        return compare_states(expected, contender.read(output), ignore=ignored)

    with (
        tempfile.TemporaryDirectory(prefix="reachscan-fleet-") as scratch,
        ListenerProcess(listener_endpoints(addresses, ports)) as listeners,
    ):
        inventory = Path(scratch) / "fleet.yaml"
        inventory.write_text(
            yaml.safe_dump(
                inventory_document(addresses, ports, set(listeners.bound)), sort_keys=False
            )
        )
        target_list = Path(scratch) / "targets.txt"
        target_list.write_text("".join(f"{address}\n" for address in addresses))
        port_list = ",".join(map(str, ports))

        compared = [
            Contender(
                name="reachscan fleet.yaml",
                tool="reachscan",
                command=lambda output: reachscan_command([], output, inventories=[inventory]),
                read=reachscan_states,
                timeout=TIMEOUT,
                endpoints=len(endpoints),
            )
        ]
        if with_nmap:
            compared.append(
                Contender(
                    name=BASELINE,
                    tool="nmap",
                    command=lambda output: nmap_command(
                        output, "-sT", "-Pn", "-p", port_list, "-iL", str(target_list)
                    ),
                    read=nmap_states,
                    timeout=TIMEOUT,
                    endpoints=len(endpoints),
                )
            )
        print_heading(
            f"fleet inventory: {len(addresses)} addresses x {len(ports)} ports "
            f"= {len(endpoints)} endpoints, {len(listeners.bound)} listeners, "
            f"inventory {inventory.stat().st_size // 1024} KiB, {runs} alternating rounds"
        )
        for address, port, error in listeners.failed:
            print(f"  could not listen on {address}:{port}: {error}")
        records = alternate(compared, runs, judge)
        listening = sorted(listeners.bound)

    summaries = [summarize(contender, records[contender.name]) for contender in compared]
    baseline = next((summary for summary in summaries if summary.name == BASELINE), None)
    print_heading("medians")
    headers, rows = summary_rows(summaries, baseline)
    print(format_table(headers, rows))
    path = write_results(
        "fleet_inventory",
        {
            "arguments": {"runs": runs, "quick": args.quick},
            "addresses": len(addresses),
            "ports": ports,
            "endpoints": len(endpoints),
            "listeners": [f"{address}:{port}" for address, port in listening],
            "baseline": BASELINE,
            "summaries": summaries,
            "ratios_to_baseline": {
                summary.name: summary.median_wall_s / baseline.median_wall_s
                for summary in summaries
                if baseline
            },
            "runs": {
                name: [run.measurement for run in runs_of] for name, runs_of in records.items()
            },
        },
    )
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
