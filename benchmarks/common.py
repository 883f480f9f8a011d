"""What every reachscan-vs-nmap benchmark shares: timing, memory, accuracy and reporting.

A benchmark here is only worth something if it is fair and right. Fair: both tools run in
the same invocation, alternating (reachscan, nmap, reachscan, nmap, ...), so a noisy
neighbour on this shared machine slows both alike; we report medians and the *ratio* of
medians, which survives where absolute seconds do not. Right: every run's output is parsed
and compared with what the kernel says is listening, and mismatches are printed, because a
fast wrong answer is not a result.

Each child is measured on its own: its `ru_maxrss` (peak resident set, KiB on Linux) as
`wait4` returns it -- read by GNU time rather than by us, for the reason `run_measured`
gives. (`RUSAGE_CHILDREN` would give the maximum over *all* children so far, which mixes
the two tools up.)

Run as a script (`python common.py serve-listeners`) this module is also the listener
process: it reads `[[address, port], ...]` as JSON on stdin, listens on each with a real
backlog, prints `ready <json of what it bound>` and accepts-and-closes until terminated.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import importlib
import ipaddress
import json
import math
import os
import platform
import random
import re
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Literal

from scanner.net.host_sockets import TCP_LISTEN, parse_socket_table

BENCHMARKS_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCHMARKS_DIR.parent
RESULTS_DIR = BENCHMARKS_DIR / "results"

SAFE_NAMESERVER = "127.0.0.1:9"
"""Given to reachscan as --nameserver: if a name ever slipped into a target list, the query
would go to the discard port on loopback, never to the machine's configured resolver."""

LISTENER_READY_TIMEOUT = 20.0
MISMATCHES_SHOWN = 10

Key = tuple[str, int, str]
"""(address, port, proto): one endpoint at one address, as both tools report it."""

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# -- running one child and measuring it ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Measurement:
    """One run of one tool: wall time, its own peak RSS, how it ended."""

    tool: str
    run: int
    wall_s: float
    peak_rss_kib: int
    rss_source: str  # "gnu-time" (the tool's own) or "wait4" (see run_measured)
    exit_code: int
    timed_out: bool
    stderr_tail: str
    peak_tree_pss_kib: int = 0  # the whole process tree's summed PSS, sampled (TreePss)


GNU_TIME = Path("/usr/bin/time")


def gnu_time_available() -> bool:
    """Is /usr/bin/time GNU time (which takes -f %M -o FILE)?"""
    if not GNU_TIME.exists():
        return False
    try:
        completed = subprocess.run(
            [str(GNU_TIME), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "GNU" in completed.stdout + completed.stderr


PSS_SAMPLE_INTERVAL = 0.05
"""Seconds between two samples of a process tree's PSS: often enough to catch the plateau
of a run that lasts a second, rarely enough to cost the tools next to nothing."""


def descendants(root: int) -> list[int]:
    """`root`'s descendants, now (through /proc/PID/task/TID/children)."""
    found: list[int] = []
    pending = [root]
    while pending:
        pid = pending.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/children") as children:
                    pids = [int(child) for child in children.read().split()]
            except OSError:
                continue
            found.extend(pids)
            pending.extend(pids)
    return found


def pss_kib(pid: int) -> int:
    """A process's proportional set size (`Pss:` of /proc/PID/smaps_rollup), 0 if gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class TreePss:
    """Samples the summed PSS of a tool's whole process tree while it runs, in a thread.

    Why PSS, summed: a scan that forks workers shares the parent's pages with them until
    they are written, so adding up their RSS would count those pages once per process.
    PSS divides each shared page among the processes that map it, so the sum is what the
    tree really holds. `root`'s own PSS is left out when it is GNU time (1 MiB, not ours).
    """

    def __init__(self, root: int, *, count_root: bool) -> None:
        self.root = root
        self.count_root = count_root
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> TreePss:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            pids = descendants(self.root)
            if self.count_root:
                pids.append(self.root)
            total = sum(pss_kib(pid) for pid in pids)
            self.peak_kib = max(self.peak_kib, total)
            self._stop.wait(PSS_SAMPLE_INTERVAL)


def run_measured(
    tool: str,
    run: int,
    argv: Sequence[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    use_gnu_time: bool | None = None,
) -> Measurement:
    """Run `argv` to completion (or kill it after `timeout` s); time it, read its peak RSS.

    Why not simply `os.wait4` on the child: Linux carries the *old* address space's
    high-water mark across `execve` into the new program's `ru_maxrss`, and Python's
    subprocess starts children with vfork, whose old address space is this benchmark's
    own (tens of MiB after parsing a sweep's results). Measured here: `/bin/true` started
    from a 10 MiB Python reports 13.8 MiB; from a 300 MiB one, nonsense. So the tool is
    started by GNU time (`/usr/bin/time -f %M`, ~1 MiB), which forks it from its own small
    image and reads the tool's rusage with wait4: the figure is the tool's, to ~1 MiB.
    Without GNU time we fall back to wait4 on the direct child and label it so.

    The child gets its own process group, and on timeout that group is killed through
    the still-unreaped leader's ID (so it cannot have been recycled); wait4 then reaps
    it. stdout is discarded (both tools write results to files); stderr's tail is kept.
    """
    gnu_time = gnu_time_available() if use_gnu_time is None else use_gnu_time
    with tempfile.TemporaryDirectory(prefix="reachscan-measure-") as scratch:
        rss_file = Path(scratch) / "rss"
        stderr_path = Path(scratch) / "stderr"
        command = list(argv)
        if gnu_time:
            command = [str(GNU_TIME), "-f", "%M", "-o", str(rss_file), "--", *command]
        with stderr_path.open("wb") as stderr_file:
            started = time.perf_counter()
            process = subprocess.Popen(
                command,
                stdout=subprocess.DEVNULL,
                stderr=stderr_file,
                cwd=cwd,
                start_new_session=True,
            )
            pidfd = os.pidfd_open(process.pid)
            try:
                with TreePss(process.pid, count_root=not gnu_time) as tree:
                    ready, _, _ = select.select([pidfd], [], [], timeout)
                timed_out = not ready
                if timed_out:
                    os.killpg(process.pid, signal.SIGKILL)
                _, status, usage = os.wait4(process.pid, 0)
            finally:
                os.close(pidfd)
            wall = time.perf_counter() - started
        exit_code = os.waitstatus_to_exitcode(status)
        process.returncode = exit_code  # reaped here: Popen must not wait for it again
        stderr_tail = stderr_path.read_bytes()[-2000:].decode(errors="replace").strip()
        peak_rss, source = usage.ru_maxrss, "wait4"
        if gnu_time:
            lines = rss_file.read_text().split() if rss_file.exists() else []
            peak_rss, source = (int(lines[-1]), "gnu-time") if lines else (0, "none")
    return Measurement(
        tool, run, wall, peak_rss, source, exit_code, timed_out, stderr_tail, tree.peak_kib
    )


# -- what each tool found ---------------------------------------------------------------------


_NMAP_TO_REACHSCAN = {"closed": "refused"}
"""nmap says `closed` where reachscan says `refused`; the other state names are shared."""


def reachscan_records(path: Path) -> Iterator[dict[str, Any]]:
    """Stream a reachscan JSONL file, one record at a time (a million fit in no memory)."""
    with path.open("rb") as lines:
        for line in lines:
            if line.strip():
                record: dict[str, Any] = json.loads(line)
                yield record


def iter_reachscan_states(path: Path) -> Iterator[tuple[Key, str]]:
    for record in reachscan_records(path):
        key = (str(record["address"]), int(record["port"]), str(record["proto"]))
        yield key, str(record["state"])


def reachscan_states(path: Path) -> dict[Key, str]:
    return dict(iter_reachscan_states(path))


def parse_port_ranges(text: str) -> Iterator[int]:
    """Expand nmap's `1-2023,2025-65535` (as in `<extrareasons ports=...>`)."""
    for part in text.split(","):
        if not part.strip():
            continue
        low, _, high = part.partition("-")
        yield from range(int(low), int(high or low) + 1)


def iter_nmap_states(path: Path) -> Iterator[tuple[Key, str]]:
    """Every port nmap reported, in reachscan's state names, streamed from its `-oX` file.

    nmap lists interesting ports one by one and folds the rest into `<extraports>`;
    7.x names the folded ports in `<extrareasons ports="...">`, which is what lets us
    check every port rather than only the listed ones. Each `<host>` is dropped once read,
    so a million-host file streams in constant memory.
    """
    for _, host in ElementTree.iterparse(path, events=("end",)):
        if host.tag != "host":
            continue
        address_element = host.find("address")
        ports = host.find("ports")
        if address_element is not None and ports is not None:
            yield from _host_states(address_element.get("addr", ""), ports)
        host.clear()


def _host_states(address: str, ports: ElementTree.Element) -> Iterator[tuple[Key, str]]:
    for extra in ports.iter("extraports"):
        state = _NMAP_TO_REACHSCAN.get(extra.get("state", ""), extra.get("state", ""))
        for reasons in extra.iter("extrareasons"):
            proto = reasons.get("proto", "tcp")
            for port in parse_port_ranges(reasons.get("ports", "")):
                yield (address, port, proto), state
    for port_element in ports.iter("port"):
        state_element = port_element.find("state")
        state = state_element.get("state", "") if state_element is not None else ""
        key = (address, int(port_element.get("portid", "0")), port_element.get("protocol", ""))
        yield key, _NMAP_TO_REACHSCAN.get(state, state)


def nmap_states(path: Path) -> dict[Key, str]:
    return dict(iter_nmap_states(path))


# -- comparing with the truth ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accuracy:
    """How one run's states compare with what should have been found.

    `false_open`: reported open where nothing listens. `missed_open`: a listener reported
    anything but open. `wrong`: other disagreements (say, refused expected, filtered
    found). `missing`: expected endpoints with no result at all. `ignored` endpoints (a
    listener that came or went during the run, a dual-stack socket /proc cannot vouch for)
    are not judged.
    """

    checked: int
    by_state: dict[str, int]
    false_open: tuple[Key, ...] = ()
    missed_open: tuple[Key, ...] = ()
    wrong: tuple[tuple[Key, str, str], ...] = ()
    missing: tuple[Key, ...] = ()
    unexpected: int = 0  # results for endpoints nobody asked about
    ignored: int = 0  # expected endpoints set aside (listeners that came and went)

    @property
    def mismatches(self) -> int:
        return len(self.false_open) + len(self.missed_open) + len(self.wrong) + len(self.missing)

    def summary(self) -> str:
        if not self.mismatches and not self.unexpected:
            return "ok"
        parts = [
            f"{label} {count}"
            for label, count in (
                ("false-open", len(self.false_open)),
                ("missed", len(self.missed_open)),
                ("wrong", len(self.wrong)),
                ("missing", len(self.missing)),
                ("unexpected", self.unexpected),
            )
            if count
        ]
        return ", ".join(parts)

    def details(self, limit: int = MISMATCHES_SHOWN) -> list[str]:
        """The first few mismatches, written out, for the console."""
        lines = [f"false open {format_key(key)}" for key in self.false_open[:limit]]
        lines += [f"missed listener {format_key(key)}" for key in self.missed_open[:limit]]
        lines += [
            f"{format_key(key)}: expected {expected}, got {got}"
            for key, expected, got in self.wrong[:limit]
        ]
        lines += [f"no result for {format_key(key)}" for key in self.missing[:limit]]
        return lines

    def as_json(self, limit: int = 50) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "by_state": self.by_state,
            "mismatches": self.mismatches,
            "false_open": [format_key(key) for key in self.false_open[:limit]],
            "false_open_count": len(self.false_open),
            "missed_open": [format_key(key) for key in self.missed_open[:limit]],
            "missed_open_count": len(self.missed_open),
            "wrong": [
                {"endpoint": format_key(key), "expected": expected, "got": got}
                for key, expected, got in self.wrong[:limit]
            ],
            "wrong_count": len(self.wrong),
            "missing": [format_key(key) for key in self.missing[:limit]],
            "missing_count": len(self.missing),
            "unexpected": self.unexpected,
            "ignored": self.ignored,
        }


def format_key(key: Key) -> str:
    address, port, proto = key
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{port}/{proto}"


def compare_states(
    expected: Mapping[Key, str],
    found: Mapping[Key, str],
    *,
    ignore: Iterable[Key] = (),
    acceptable: Mapping[str, frozenset[str]] | None = None,
) -> Accuracy:
    """Judge `found` against `expected` (state names in reachscan's vocabulary).

    `acceptable` widens what counts as right for an expected state, for the cases where
    physics allows more than one answer (UDP refusals lost to ICMP rate limits).
    """
    ignored = set(ignore)
    allowed = acceptable or {}
    false_open: list[Key] = []
    missed_open: list[Key] = []
    wrong: list[tuple[Key, str, str]] = []
    missing: list[Key] = []
    for key, want in expected.items():
        if key in ignored:
            continue
        got = found.get(key)
        if got is None:
            missing.append(key)
        elif got == want or got in allowed.get(want, frozenset()):
            continue
        elif got == "open":
            false_open.append(key)
        elif want == "open":
            missed_open.append(key)
        else:
            wrong.append((key, want, got))
    unexpected = sum(1 for key in found if key not in expected and key not in ignored)
    by_state = dict(Counter(found.values()))
    return Accuracy(
        checked=len(expected) - len(ignored & expected.keys()),
        by_state=by_state,
        false_open=tuple(sorted(false_open)),
        missed_open=tuple(sorted(missed_open)),
        wrong=tuple(sorted(wrong)),
        missing=tuple(sorted(missing)),
        unexpected=unexpected,
        ignored=len(ignored & expected.keys()),
    )


# -- what the kernel says is listening ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BoundTable:
    """One snapshot of /proc/net: (address, port) of every TCP listener or bound UDP socket."""

    sockets: frozenset[tuple[IpAddress, int]]

    @classmethod
    def read(cls, proto: Literal["tcp", "udp"]) -> BoundTable:
        """TCP: sockets in LISTEN (state 0A). UDP: every bound socket (any could answer).

        Decoded by the scanner's own /proc/net parser (`scanner.net.host_sockets`), the
        one its diagnosis trusts, so the benchmark's truth and the scanner's agree.
        """
        found: set[tuple[IpAddress, int]] = set()
        for table in (proto, f"{proto}6"):
            path = Path("/proc/net") / table
            if not path.exists():
                continue
            for entry in parse_socket_table(path.read_text()):
                if proto == "tcp" and entry.state != TCP_LISTEN:
                    continue
                found.add((ipaddress.ip_address(entry.address), entry.port))
        return cls(frozenset(found))

    def ports(self) -> frozenset[int]:
        return frozenset(port for _, port in self.sockets)

    def reaching(self, address: str) -> tuple[frozenset[int], frozenset[int]]:
        """Ports that surely answer at `address`, and ports that may (an IPv6 wildcard
        socket takes IPv4 too unless it is v6-only, which /proc does not say)."""
        target = ipaddress.ip_address(address)
        surely: set[int] = set()
        maybe: set[int] = set()
        for bound, port in self.sockets:
            if bound == target or (bound.is_unspecified and bound.version == target.version):
                surely.add(port)
            elif bound.is_unspecified and bound.version == 6:
                maybe.add(port)
        return frozenset(surely), frozenset(maybe - surely)


def loopback_truth(
    endpoints: Iterable[tuple[str, int]],
    throughout: BoundTable,
    at_any_time: BoundTable,
    proto: Literal["tcp", "udp"] = "tcp",
) -> tuple[dict[Key, str], set[Key]]:
    """Expected states on this machine's own addresses, from the /proc/net tables.

    TCP: open where something listened `throughout` the run, refused elsewhere. UDP:
    refused where nothing is bound; a bound port may answer or stay silent, so it is set
    aside. Ports that listened only part of the time, or may listen through a dual-stack
    socket, are returned as ignored rather than judged: other engineers' tests open and
    close loopback listeners while we measure, and that must not count against a tool.
    """
    expected: dict[Key, str] = {}
    ignored: set[Key] = set()
    reaching: dict[str, tuple[frozenset[int], frozenset[int]]] = {}
    for address, port in endpoints:
        if address not in reaching:
            surely, maybe_throughout = throughout.reaching(address)
            sometimes, maybe_sometimes = at_any_time.reaching(address)
            uncertain = (sometimes | maybe_throughout | maybe_sometimes) - surely
            if proto == "udp":
                surely, uncertain = frozenset(), uncertain | surely
            reaching[address] = (surely, uncertain)
        surely, uncertain = reaching[address]
        key = (address, port, proto)
        expected[key] = "open" if port in surely else "refused"
        if port in uncertain:
            ignored.add(key)
    return expected, ignored


def ephemeral_range() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def ports_outside_ephemeral_range(
    count: int,
    *,
    exclude: Iterable[int] = (),
    rng: random.Random | None = None,
    low: int = 1024,
    contiguous: bool = False,
) -> list[int]:
    """`count` ports nobody holds, none in the kernel's ephemeral range.

    Why outside it: a connect sweeping loopback through the ephemeral range can be given
    the destination port as its own source port (a self-connect), and the tools' own
    connections would compete with the listeners for those ports. `contiguous=True`
    returns one run of free ports (for `-p LOW-HIGH`), else a random sample.
    """
    ephemeral_low, ephemeral_high = ephemeral_range()
    taken = set(exclude)
    candidates = [
        port
        for port in range(low, 65536)
        if not ephemeral_low <= port <= ephemeral_high and port not in taken
    ]
    if contiguous:
        run: list[int] = []
        for port in candidates:
            run = [*run, port] if run and run[-1] == port - 1 else [port]
            if len(run) == count:
                return run
        raise RuntimeError(f"no run of {count} free ports outside the ephemeral range")
    if len(candidates) < count:
        raise RuntimeError(f"only {len(candidates)} free ports outside the ephemeral range")
    return sorted((rng or random.Random()).sample(candidates, count))


# -- a separate process holding the listeners ---------------------------------------------


class ListenerProcess:
    """A child process listening on every (address, port) given; terminated on exit.

    A separate process, so its accept loop neither competes with the benchmark's own
    bookkeeping nor shows up in either tool's measurements. `bound` holds what it really
    bound (a port taken between our choice and its bind is skipped and reported).
    """

    def __init__(self, endpoints: Sequence[tuple[str, int]]) -> None:
        self.requested = tuple(endpoints)
        self.bound: frozenset[tuple[str, int]] = frozenset()
        self.failed: tuple[tuple[str, int, str], ...] = ()
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> ListenerProcess:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "serve-listeners"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._process = process
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps(self.requested))
        process.stdin.close()
        readable, _, _ = select.select([process.stdout], [], [], LISTENER_READY_TIMEOUT)
        line = process.stdout.readline() if readable else ""
        if not line.startswith("ready "):
            self.close()
            raise RuntimeError(f"the listener process did not start: {line!r}")
        report = json.loads(line.removeprefix("ready "))
        self.bound = frozenset((address, int(port)) for address, port in report["bound"])
        self.failed = tuple(
            (address, int(port), error) for address, port, error in report["failed"]
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def serve_listeners(endpoints: Sequence[tuple[str, int]]) -> None:
    """The listener process's body: bind, say what was bound, accept and close until
    SIGTERM. The listeners are the test suite's (`tests/support/listeners.py`
    `LoopbackServices`: a real backlog, IPv6 v6-only, accepted and closed at once)."""
    bound: list[tuple[str, int]] = []
    failed: list[tuple[str, int, str]] = []
    with import_test_support("listeners").LoopbackServices() as services:
        for address, port in endpoints:
            try:
                services.tcp(address, port)
            except OSError as error:
                failed.append((address, port, str(error)))
                continue
            bound.append((address, port))
        print("ready " + json.dumps({"bound": bound, "failed": failed}), flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while True:
            signal.pause()


# -- alternating runs, medians, ratios ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Contender:
    """One way of scanning the same targets: a command and a reader for its output.

    `command(output_path)` builds the argv writing results to `output_path`;
    `read(output_path)` turns that file into states, for the benchmark's judge.
    """

    name: str
    tool: Literal["reachscan", "nmap", "plain python"]
    command: Callable[[Path], list[str]]
    read: Callable[[Path], dict[Key, str]]
    timeout: float
    endpoints: int  # how many endpoints one run probes, for the rate column


@dataclass(frozen=True, slots=True)
class RunRecord:
    measurement: Measurement
    accuracy: Accuracy | None


Judge = Callable[[Contender, Path, BoundTable, BoundTable], Accuracy]
"""Scores one run: (contender, its output file, what listened throughout the run, what
listened at any time during it). Most judges call `contender.read(path)` and
`compare_states`; a million-endpoint judge streams the file instead."""


class ListenerWatch:
    """Reads /proc/net every `interval` seconds while a tool runs, in a thread.

    Other engineers' tests open and close loopback listeners (on ephemeral ports, mostly)
    while we measure; one that lives only in the middle of a run would otherwise look like
    a false open. `stable` holds what listened at every reading, `seen` what listened at
    any; the judges set aside the difference. A listener shorter than `interval` can
    still slip through, which is why per-run mismatch lines name the ports.
    """

    def __init__(
        self, proto: Literal["tcp", "udp"], interval: float = 0.05, *, enabled: bool = True
    ) -> None:
        self.proto = proto
        self.interval = interval
        self.enabled = enabled
        first = BoundTable.read(proto) if enabled else BoundTable(frozenset())
        self.stable = first
        self.seen = first
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="listener-watch", daemon=True)

    def __enter__(self) -> ListenerWatch:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self.enabled:
            return
        self._stop.set()
        self._thread.join()
        self._record(BoundTable.read(self.proto))

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self._record(BoundTable.read(self.proto))

    def _record(self, table: BoundTable) -> None:
        self.stable = BoundTable(self.stable.sockets & table.sockets)
        self.seen = BoundTable(self.seen.sockets | table.sockets)


def alternate(
    contenders: Sequence[Contender],
    runs: int,
    judge: Judge,
    *,
    proto: Literal["tcp", "udp"] = "tcp",
    pause: float = 0.0,
    echo: Callable[[str], None] = print,
    wrap: Callable[[list[str]], list[str]] | None = None,
    watch_listeners: bool = True,
) -> dict[str, list[RunRecord]]:
    """Run every contender once per round, in order, `runs` rounds; judge every run.

    The listening table is read right before and right after each child, so the judge
    can set aside listeners that came and went meanwhile. `pause` seconds pass between
    children (ICMP rate-limit buckets refill). `wrap` prefixes argv (`ip netns exec NS`);
    targets inside a namespace need no watch on this machine's listeners
    (`watch_listeners=False`: the judge then gets empty tables).
    """
    records: dict[str, list[RunRecord]] = {contender.name: [] for contender in contenders}
    use_gnu_time = gnu_time_available()
    compile_bytecode()
    for run in range(1, runs + 1):
        for contender in contenders:
            # A fresh directory per child: its output, and whatever else it writes next to
            # it (reachscan's atomic temporary file, its history database), go with it.
            with tempfile.TemporaryDirectory(prefix="reachscan-bench-") as scratch:
                output = Path(scratch) / f"{contender.tool}.out"
                argv = contender.command(output)
                if wrap is not None:
                    argv = wrap(argv)
                with ListenerWatch(proto, enabled=watch_listeners) as watch:
                    measurement = run_measured(
                        contender.name,
                        run,
                        argv,
                        timeout=contender.timeout,
                        use_gnu_time=use_gnu_time,
                    )
                accuracy: Accuracy | None = None
                if output.exists() and output.stat().st_size and not measurement.timed_out:
                    accuracy = judge(contender, output, watch.stable, watch.seen)
            records[contender.name].append(RunRecord(measurement, accuracy))
            echo(progress_line(contender, measurement, accuracy))
            if pause:
                time.sleep(pause)
    return records


def progress_line(contender: Contender, measurement: Measurement, accuracy: Accuracy | None) -> str:
    status = "TIMED OUT " if measurement.timed_out else ""
    verdict = accuracy.summary() if accuracy is not None else "NO OUTPUT"
    if accuracy is not None and accuracy.ignored:
        verdict += f" ({accuracy.ignored} set aside: listeners that came or went)"
    line = (
        f"  run {measurement.run} {contender.name:<34} {status}{measurement.wall_s:8.2f} s "
        f"{measurement.peak_rss_kib / 1024:7.1f} MiB  "
        f"tree PSS {measurement.peak_tree_pss_kib / 1024:6.1f} MiB  "
        f"exit {measurement.exit_code}  {verdict}"
    )
    if accuracy is not None:
        line += "".join(f"\n      {detail}" for detail in accuracy.details())
    if accuracy is None and measurement.stderr_tail:
        line += f"\n      stderr: {measurement.stderr_tail[-500:]}"
    return line


@dataclass(frozen=True, slots=True)
class Summary:
    """Medians over the runs of one contender, and the worst accuracy seen."""

    name: str
    tool: str
    runs: int
    median_wall_s: float
    min_wall_s: float
    max_wall_s: float
    median_rss_kib: float
    median_tree_pss_kib: float
    endpoints: int
    endpoints_per_s: float
    timeouts: int
    failed_runs: int  # no output (crash, timeout, refusal): left out of the medians
    runs_with_mismatches: int
    mismatches_total: int
    false_open_total: int
    missed_open_total: int
    accuracy: list[dict[str, Any]] = field(default_factory=list)

    @property
    def median_rss_mib(self) -> float:
        return self.median_rss_kib / 1024


def summarize(contender: Contender, records: Sequence[RunRecord]) -> Summary:
    """Medians over the runs that produced a result; failed runs are counted, not timed.

    A run that crashed, timed out or was refused (say, reachscan's history lock held by
    another run, exit 75) took no representative time, so it must not pull the median.
    """
    valid = [record for record in records if record.accuracy is not None] or list(records)
    walls = [record.measurement.wall_s for record in valid]
    rss = [record.measurement.peak_rss_kib for record in valid]
    accuracies = [record.accuracy for record in records]
    median_wall = statistics.median(walls)
    return Summary(
        name=contender.name,
        tool=contender.tool,
        runs=len(records),
        median_wall_s=median_wall,
        min_wall_s=min(walls),
        max_wall_s=max(walls),
        median_rss_kib=statistics.median(rss),
        median_tree_pss_kib=statistics.median(
            record.measurement.peak_tree_pss_kib for record in valid
        ),
        endpoints=contender.endpoints,
        endpoints_per_s=contender.endpoints / median_wall if median_wall else math.inf,
        timeouts=sum(record.measurement.timed_out for record in records),
        failed_runs=sum(record.accuracy is None for record in records),
        runs_with_mismatches=sum(
            1 for accuracy in accuracies if accuracy is not None and accuracy.mismatches
        ),
        mismatches_total=sum(accuracy.mismatches for accuracy in accuracies if accuracy),
        false_open_total=sum(len(accuracy.false_open) for accuracy in accuracies if accuracy),
        missed_open_total=sum(len(accuracy.missed_open) for accuracy in accuracies if accuracy),
        accuracy=[
            accuracy.as_json() if accuracy else {"error": "no output"} for accuracy in accuracies
        ],
    )


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def format_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned table: numbers right-aligned, text left-aligned."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [
        max(len(header), *(len(row[index]) for row in cells)) if cells else len(header)
        for index, header in enumerate(headers)
    ]

    def line(values: Sequence[str], raw: Sequence[object] | None) -> str:
        parts = []
        for index, value in enumerate(values):
            numeric = raw is not None and isinstance(raw[index], int | float)
            parts.append(value.rjust(widths[index]) if numeric else value.ljust(widths[index]))
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    body = [line(row, raw) for row, raw in zip(cells, rows, strict=True)]
    return "\n".join([line(list(headers), None), rule, *body])


def summary_rows(
    summaries: Sequence[Summary], baseline: Summary | None
) -> tuple[list[str], list[list[object]]]:
    """The standard table: one row per contender, time ratio against `baseline`."""
    headers = [
        "contender",
        "runs",
        "median s",
        "min-max s",
        "endpoints/s",
        "peak RSS MiB",
        "tree PSS MiB",
        f"time / {baseline.name}" if baseline else "ratio",
        "accuracy",
    ]
    rows: list[list[object]] = []
    for summary in summaries:
        accuracy = (
            "ok"
            if not summary.runs_with_mismatches
            else f"{summary.runs_with_mismatches}/{summary.runs} runs off "
            f"(false-open {summary.false_open_total}, missed {summary.missed_open_total}, "
            f"all {summary.mismatches_total})"
        )
        if summary.failed_runs:
            accuracy += f"; {summary.failed_runs} without output (not in the medians)"
        if summary.timeouts:
            accuracy += f"; {summary.timeouts} timed out"
        rows.append(
            [
                summary.name,
                summary.runs,
                round(summary.median_wall_s, 2),
                f"{summary.min_wall_s:.2f}-{summary.max_wall_s:.2f}",
                round(summary.endpoints_per_s),
                round(summary.median_rss_mib, 1),
                round(summary.median_tree_pss_kib / 1024, 1),
                format_ratio(ratio(summary.median_wall_s, baseline.median_wall_s))
                if baseline
                else "-",
                accuracy,
            ]
        )
    return headers, rows


# -- commands ---------------------------------------------------------------------------------


REACHSCAN = (sys.executable, "-m", "scanner")


def compile_bytecode() -> None:
    """Compile reachscan's modules before timing it, as `pip install` does: a user's
    start-up reads cached bytecode. Without this, an environment with
    PYTHONDONTWRITEBYTECODE set (CI images often have it) would have every run compile
    every module from source, some 50 ms in each process, which no user pays."""
    import scanner

    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(Path(scanner.__file__).parent)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


@functools.cache
def reachscan_scan_options() -> frozenset[str]:
    """The long options `reachscan scan` accepts today (read from its --help).

    reachscan is being built while these benchmarks run against it; options that only
    newer versions have (a history database, endpoint caps) are passed only when present.
    """
    completed = subprocess.run(
        [*REACHSCAN, "scan", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    return frozenset(re.findall(r"--[a-z][a-z0-9-]+", completed.stdout))


def reachscan_command(
    targets: Sequence[str], output: Path, *options: str, inventories: Sequence[Path] = ()
) -> list[str]:
    """reachscan on address literals only: no hosts file, a loopback-only nameserver.

    Its run history (when it keeps one) goes to a database next to `output`, which is in
    a directory of its own per run: the user's history is left alone, and a test run
    holding the user's history lock cannot make a benchmark run fail.
    """
    argv = [*REACHSCAN, "scan", *map(str, inventories)]
    for target in targets:
        argv += ["-t", target]
    if "--db" in reachscan_scan_options():
        argv += ["--db", str(output.with_name("history.sqlite"))]
    return [
        *argv,
        "--hosts-file",
        "",
        "--nameserver",
        SAFE_NAMESERVER,
        "--no-progress",
        "--format",
        "jsonl",
        "-o",
        str(output),
        *options,
    ]


def nmap_command(output: Path, *options: str) -> list[str]:
    """nmap, never resolving names (`-n`), writing XML to `output`."""
    return ["nmap", "-n", "-oX", str(output), *options]


def compress_ports(ports: Iterable[int]) -> str:
    """`1,2,3,7` -> `1-3,7`: how both tools take a port list on the command line."""
    ordered = sorted(set(ports))
    ranges: list[str] = []
    start = previous = ordered[0] if ordered else 0
    for port in ordered[1:]:
        if port != previous + 1:
            ranges.append(f"{start}-{previous}" if previous != start else str(start))
            start = port
        previous = port
    if ordered:
        ranges.append(f"{start}-{previous}" if previous != start else str(start))
    return ",".join(ranges)


# -- the environment and the results file -----------------------------------------------------


def nmap_version() -> str | None:
    try:
        completed = subprocess.run(
            ["nmap", "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = completed.stdout.splitlines()[0] if completed.stdout else ""
    return first.removeprefix("Nmap version ").split(" (")[0] or None


def have_nmap() -> bool:
    return nmap_version() is not None


def machine_info() -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nmap": nmap_version(),
        "euid": os.geteuid(),
    }


def write_results(name: str, payload: Mapping[str, Any]) -> Path:
    """Write the run's JSON under benchmarks/results/ (gitignored); return the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    document = {"benchmark": name, "machine": machine_info(), **payload}
    path.write_text(json.dumps(document, indent=2, default=_json_default) + "\n")
    return path


def _json_default(value: object) -> object:
    if isinstance(value, Summary | Measurement):
        return asdict(value)
    if isinstance(value, frozenset | set | tuple):
        return sorted(value, key=str)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def common_arguments(description: str, default_runs: int = 5) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help=f"alternating rounds; each contender runs once per round (default {default_runs},"
        " 2 with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer runs and targets: a smoke test")
    parser.set_defaults(default_runs=default_runs)
    return parser


def runs_from(args: argparse.Namespace) -> int:
    if args.runs is not None:
        if args.runs < 1:
            raise SystemExit("--runs must be at least 1")
        return int(args.runs)
    return 2 if args.quick else int(args.default_runs)


def raise_descriptor_limit() -> None:
    """Let the listener process and our own children use the hard limit (no privilege)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def import_test_support(name: str) -> ModuleType:
    """`tests/support/<name>.py`, the test suite's own helpers, reused as they are."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    return importlib.import_module(f"tests.support.{name}")


def import_netns_support() -> ModuleType:
    """tests/support/netns.py: the test suite's namespace builder, reused as it is.

    It records every namespace, link and process it creates and removes them all on exit,
    even after an error, which is the guarantee a benchmark that builds hosts needs too.
    """
    return import_test_support("netns")


def netns_unavailable() -> str | None:
    """Why namespace hosts cannot be built here (not root, no `ip`/`nft`), or None."""
    if os.geteuid() != 0:
        return "needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) to build network namespaces"
    reason: str | None = import_netns_support().require_netns()
    return reason


def in_namespace(namespace: str) -> Callable[[list[str]], list[str]]:
    """An argv wrapper running a command inside `namespace` (`ip netns exec` execs it, so
    the PID, and with it wait4's rusage, is the tool's own)."""
    return lambda argv: ["ip", "netns", "exec", namespace, *argv]


def print_heading(text: str) -> None:
    print(f"\n== {text}")


if __name__ == "__main__":
    if sys.argv[1:] == ["serve-listeners"]:
        serve_listeners([(str(address), int(port)) for address, port in json.load(sys.stdin)])
    else:
        sys.exit("usage: common.py serve-listeners  (JSON [[address, port], ...] on stdin)")


def namespace_scenario(
    title: str,
    compared: Sequence[Contender],
    rounds: int,
    expected: Mapping[Key, str],
    namespace: str,
    baseline_name: str,
) -> tuple[list[Summary], dict[str, Any]]:
    """Alternate `compared` inside `namespace`, judge every run against `expected`, print
    the table of medians against `baseline_name`; the summaries and each run's figures."""

    def judge(
        contender: Contender, output: Path, throughout: BoundTable, at_any_time: BoundTable
    ) -> Accuracy:
        return compare_states(expected, contender.read(output))

    print_heading(f"{title}, {rounds} alternating rounds")
    records = alternate(
        list(compared), rounds, judge, wrap=in_namespace(namespace), watch_listeners=False
    )
    summaries = [summarize(contender, records[contender.name]) for contender in compared]
    baseline = next((summary for summary in summaries if summary.name == baseline_name), None)
    headers, rows = summary_rows(summaries, baseline)
    print(format_table(headers, rows))
    return summaries, {
        name: [run.measurement for run in runs_of] for name, runs_of in records.items()
    }
