"""The language's own limit: N plain Python processes that share nothing sweep TCP ports.

The yardstick `loopback_sweep.py` runs beside reachscan and nmap: what Python itself can do
on these cores, with no scanner around it. Each of N forked processes takes every Nth
port, and for each keeps up to `--in-flight` non-blocking connects going (socket,
connect_ex, a short select on those still in progress, close). It writes the open ports
as `ADDRESS PORT` lines. No classification beyond open / not open, no outputs, no history:
a lower bound for any Python scanner, not a competitor.

    python benchmarks/plain_sweep.py ADDRESS FIRST-LAST OUTPUT [--processes N] [--in-flight K]
"""

from __future__ import annotations

import argparse
import errno
import os
import select
import socket
import sys
from pathlib import Path

IN_PROGRESS = {errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY}
SELECT_TIMEOUT = 0.05
"""Seconds one select waits for connects still in progress: on loopback every connect is
answered at once, so only a full backlog ever waits."""

GIVE_UP_AFTER = 2.0
"""Seconds a connect may stay in progress before this sweep calls it not open (loopback
answers in microseconds; only a listener with a full backlog holds one that long)."""


def sweep(address: str, ports: range, in_flight: int) -> list[int]:
    """The open ports among `ports`: up to `in_flight` connects at once."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    opened: list[int] = []
    pending: dict[int, tuple[socket.socket, int, float]] = {}
    poller = select.epoll()
    clock = os.times
    remaining = iter(ports)
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < in_flight:
                port = next(remaining, None)
                if port is None:
                    exhausted = True
                    break
                probe = socket.socket(family, socket.SOCK_STREAM)
                probe.setblocking(False)
                code = probe.connect_ex((address, port))
                if code == 0:
                    opened.append(port)
                    probe.close()
                elif code in IN_PROGRESS:
                    pending[probe.fileno()] = (probe, port, clock().elapsed)
                    poller.register(probe.fileno(), select.EPOLLOUT)
                else:
                    probe.close()
            if not pending:
                if exhausted:
                    return opened
                continue
            now = clock().elapsed
            for descriptor, _ in poller.poll(SELECT_TIMEOUT):
                probe, port, _ = pending.pop(descriptor)
                poller.unregister(descriptor)
                if probe.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    opened.append(port)
                probe.close()
            for descriptor, (probe, _, started) in list(pending.items()):
                if now - started > GIVE_UP_AFTER:
                    del pending[descriptor]
                    poller.unregister(descriptor)
                    probe.close()
    finally:
        poller.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("address")
    parser.add_argument("ports", help="FIRST-LAST")
    parser.add_argument("output", type=Path)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--in-flight", type=int, default=1000)
    args = parser.parse_args()
    first, _, last = args.ports.partition("-")
    low, high = int(first), int(last or first)
    processes = max(1, args.processes)
    children: list[tuple[int, int]] = []
    for index in range(processes):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            found = sweep(args.address, range(low + index, high + 1, processes), args.in_flight)
            os.write(write_end, "".join(f"{port}\n" for port in found).encode())
            os._exit(0)
        os.close(write_end)
        children.append((pid, read_end))
    lines: list[str] = []
    failed = False
    for pid, read_end in children:
        with os.fdopen(read_end, "rb") as pipe:
            text = pipe.read().decode()
        _, status = os.waitpid(pid, 0)
        failed = failed or os.waitstatus_to_exitcode(status) != 0
        lines.extend(f"{args.address} {port}\n" for port in text.split())
    args.output.write_text("".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
