"""A split scan against the whole, and the price of Celery per shard.

Part 1: the same 131,072 endpoints (`127.0.0.0/15:80`, every address's port 80) scanned
once in one process, and as 4 `--shard I/4` runs in 4 processes started together, then
`reachscan merge` of their files: the wall time of each, the merge's own time and peak
RSS, and the check that the merged run holds exactly the endpoints and states of the
whole one. Rounds alternate (once, split, once, split, ...).

Part 2 (`--celery`, needs redis-server): the price of a shard sent through Celery. A
local scan of `127.0.0.1:1-4096` against the same scan through a broker on loopback and
one worker (concurrency 1) in 1 shard and in 4: the difference, per shard, is what the
broker, the worker and each shard's scan process cost.

    python benchmarks/shards.py [--runs N] [--quick] [--celery]
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    REACHSCAN,
    SAFE_NAMESERVER,
    common_arguments,
    compile_bytecode,
    format_table,
    print_heading,
    raise_descriptor_limit,
    reachscan_records,
    run_measured,
    runs_from,
    write_results,
)

SHARDS = 4
SPEC = "127.0.0.0/15:80"
QUICK_SPEC = "127.0.0.0/18:80"
CELERY_SPEC = "127.0.0.1:1-4096"
TIMEOUT = 600.0
QUIET = ["--hosts-file", "", "--nameserver", SAFE_NAMESERVER, "--no-progress", "--no-history"]


def scan_argv(spec: str, output: Path, *options: str) -> list[str]:
    return [
        *REACHSCAN, "scan", "-t", spec, *QUIET, "--include-special",
        "--max-endpoints", "2000000", "--workers", "1",
        "--format", "jsonl", "-o", str(output), *options,
    ]  # fmt: skip


def states(path: Path) -> dict[tuple[str, int], str]:
    return {
        (str(record["address"]), int(record["port"])): str(record["state"])
        for record in reachscan_records(path)
        if "host" in record
    }


def split_round(spec: str, folder: Path) -> dict[str, Any]:
    """4 shard runs at once, then their merge; what each took."""
    files = [folder / f"shard-{index}.jsonl" for index in range(SHARDS)]
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            scan_argv(spec, path, "--shard", f"{index}/{SHARDS}"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for index, path in enumerate(files)
    ]
    statuses = [process.wait(timeout=TIMEOUT) for process in processes]
    shards_wall = time.perf_counter() - started
    for process in processes:
        assert process.stderr is not None
        process.stderr.close()
    merged = folder / "merged.jsonl"
    merge = run_measured(
        "merge",
        0,
        [*REACHSCAN, "merge", *map(str, files), "--format", "jsonl", "-o", str(merged)],
        timeout=TIMEOUT,
    )
    return {
        "shard_statuses": statuses,
        "shards_wall": shards_wall,
        "merge_wall": merge.wall_s,
        "merge_rss_kib": merge.peak_rss_kib,
        "merge_status": merge.exit_code,
        "merged": merged,
    }


def part_one(runs: int, quick: bool) -> dict[str, Any]:
    spec = QUICK_SPEC if quick else SPEC
    print_heading(f"Part 1: {spec} once, and as {SHARDS} shards in {SHARDS} processes + merge")
    rounds = []
    with tempfile.TemporaryDirectory(prefix="reachscan-bench-shards-") as scratch:
        folder = Path(scratch)
        for run in range(1, runs + 1):
            once_path = folder / "once.jsonl"
            once = run_measured("once", run, scan_argv(spec, once_path), timeout=TIMEOUT)
            split = split_round(spec, folder)
            whole, merged = states(once_path), states(split.pop("merged"))
            same = whole == merged
            rounds.append(
                {
                    "run": run,
                    "once_wall": once.wall_s,
                    "once_rss_kib": once.peak_rss_kib,
                    "once_status": once.exit_code,
                    "endpoints": len(whole),
                    "merged_equals_once": same,
                    **split,
                }
            )
            shards_wall, merge_wall = split["shards_wall"], split["merge_wall"]
            merge_mib = split["merge_rss_kib"] / 1024
            print(
                f"  round {run}: once {once.wall_s:.2f} s; {SHARDS} shards {shards_wall:.2f} s"
                f" + merge {merge_wall:.2f} s ({merge_mib:.1f} MiB); {len(whole):,} endpoints;"
                f" merged {'==' if same else '!='} once",
                flush=True,
            )
    median = {
        key: statistics.median(row[key] for row in rounds)
        for key in ("once_wall", "shards_wall", "merge_wall", "merge_rss_kib", "endpoints")
    }
    split_total = median["shards_wall"] + median["merge_wall"]
    print(
        format_table(
            ["", "median"],
            [
                ["endpoints", f"{median['endpoints']:,.0f}"],
                ["once (1 process)", f"{median['once_wall']:.2f} s"],
                [f"{SHARDS} shards at once", f"{median['shards_wall']:.2f} s"],
                ["merge", f"{median['merge_wall']:.2f} s"],
                ["merge throughput", f"{median['endpoints'] / median['merge_wall']:,.0f} lines/s"],
                ["merge peak RSS", f"{median['merge_rss_kib'] / 1024:.1f} MiB"],
                ["once / (shards + merge)", f"{median['once_wall'] / split_total:.2f}x"],
                [
                    "every merged run == the whole one",
                    str(all(r["merged_equals_once"] for r in rounds)),
                ],
            ],
        )
    )
    return {"spec": spec, "rounds": rounds, "median": median}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def part_two(runs: int) -> dict[str, Any]:
    print_heading(f"Part 2: Celery's price per shard ({CELERY_SPEC}, broker on loopback)")
    if shutil.which("redis-server") is None:
        print("  skipped: redis-server is not installed")
        return {"skipped": "no redis-server"}
    port = free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    with tempfile.TemporaryDirectory(prefix="reachscan-bench-celery-") as scratch:
        folder = Path(scratch)
        redis = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        worker = subprocess.Popen(
            [*REACHSCAN, "worker", "--broker", broker, "--vantage", "bench", "--concurrency",
             "1", "--hosts-file", "", "--nameserver", SAFE_NAMESERVER],
            stdout=subprocess.DEVNULL,
            stderr=(folder / "worker.log").open("w"),
        )  # fmt: skip
        try:
            rows: dict[str, list[float]] = {
                "local": [],
                "celery 1 shard": [],
                "celery 4 shards": [],
            }
            for run in range(1, runs + 1):
                for name, options in (
                    ("local", []),
                    ("celery 1 shard", ["--broker", broker, "--vantages", "bench"]),
                    (
                        "celery 4 shards",
                        ["--broker", broker, "--vantages", "bench", "--shards", "4"],
                    ),
                ):
                    output = folder / f"{name.replace(' ', '-')}.jsonl"
                    argv = [*REACHSCAN, "scan", "-t", CELERY_SPEC, *QUIET, "--format", "jsonl",
                            "-o", str(output), *options]  # fmt: skip
                    measured = run_measured(name, run, argv, timeout=TIMEOUT)
                    found = states(output)
                    assert measured.exit_code == 0 and len(found) == 4096, (
                        measured.exit_code,
                        len(found),
                        measured.stderr_tail,
                    )
                    rows[name].append(measured.wall_s)
                    print(f"  {name}: {measured.wall_s:.2f} s", flush=True)
        finally:
            worker.terminate()
            worker.wait(timeout=60)
            redis.terminate()
            redis.wait(timeout=30)
    median = {name: statistics.median(walls) for name, walls in rows.items()}
    one = median["celery 1 shard"] - median["local"]
    four = (median["celery 4 shards"] - median["local"]) / 4
    print(
        format_table(
            ["", "median"],
            [
                *([name, f"{wall:.2f} s"] for name, wall in median.items()),
                ["price of 1 shard through Celery", f"{one:.2f} s"],
                ["price per shard, 4 shards on 1 worker", f"{four:.2f} s"],
            ],
        )
    )
    return {"median": median, "per_shard_one": one, "per_shard_four": four, "runs": rows}


def main() -> None:
    parser = common_arguments(__doc__ or "", default_runs=3)
    parser.add_argument("--celery", action="store_true", help="also part 2 (needs redis-server)")
    parser.add_argument("--only-celery", action="store_true", help="part 2 alone")
    args = parser.parse_args()
    runs = runs_from(args)
    raise_descriptor_limit()
    compile_bytecode()
    results: dict[str, Any] = {"machine_cores": os.cpu_count()}
    if not args.only_celery:
        results["split"] = part_one(runs, args.quick)
    if args.celery or args.only_celery:
        results["celery"] = part_two(runs)
    print(write_results("shards", results))


if __name__ == "__main__":
    sys.exit(main())
