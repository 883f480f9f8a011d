"""Running `reachscan serve` for the tests, and scraping it: a real server process on
loopback, its port read from its start line, scraped with urllib without proxy support
(an `http_proxy` in the environment cannot send a scrape off the machine)."""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scanner.serve.metrics import CONTENT_TYPE

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def samples_of(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def get(url: str, timeout: float = 30) -> tuple[int, str, str]:
    """Status, content type and body; an HTTP error status is returned, not raised."""
    try:
        with _NO_PROXY.open(url, timeout=timeout) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers["Content-Type"], error.read().decode()


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    base_url: str
    start_lines: list[str]

    @property
    def port(self) -> int:
        return int(self.base_url.rpartition(":")[2])

    def scrape(self) -> Samples:
        status, content_type, body = get(f"{self.base_url}/metrics")
        assert (status, content_type) == (200, CONTENT_TYPE)
        return samples_of(body)


@contextlib.contextmanager
def serving(db: Path, *args: str, listen: str = "127.0.0.1:0") -> Iterator[Served]:
    """`reachscan serve` until the block ends; killed (by its pid) if still running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "scanner", "serve", "--listen", listen, "--db", str(db), *args],
        cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, bufsize=0,
    )  # fmt: skip
    try:
        lines = read_start_lines(process)
        (start,) = [line for line in lines if line.startswith("serving ")]
        url = start.removeprefix("serving ").removesuffix("/metrics")
        yield Served(process, url, lines)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def read_start_lines(process: subprocess.Popen[bytes]) -> list[str]:
    """stderr lines up to and including `serving URL`.

    Read from the descriptor, not through a buffered reader: a reader may pull both lines
    into its buffer at once, and select() would then wait for bytes already read.
    """
    assert process.stderr is not None
    descriptor = process.stderr.fileno()
    received = b""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        *lines, _ = received.decode().split("\n")  # whole lines only
        if any(line.startswith("serving ") for line in lines):
            return lines
        remaining = deadline - time.monotonic()
        readable, _, _ = select.select([descriptor], [], [], max(0.0, remaining))
        if not readable:
            pytest.fail(f"reachscan serve did not start within {START_TIMEOUT} s: {lines}")
        chunk = os.read(descriptor, 65536)
        if not chunk:
            pytest.fail(f"reachscan serve exited {process.wait()} before serving: {lines}")
        received += chunk
