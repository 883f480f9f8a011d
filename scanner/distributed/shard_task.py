"""A shard at its vantage: the whole local scan of that shard, run as `reachscan scan
--shard I/N` in a process of its own, so the scan keeps every promise it makes locally
(its signal handling, its event loop, the diagnosis's follow-up probes sent from here,
where the refusal was seen) and the Celery worker keeps its own.

The scan process dies with the worker process that started it (PR_SET_PDEATHSIG): a
worker killed mid-shard leaves no orphan probing on, and its shard returns to the queue
(late acknowledgement: scanner/distributed/app.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from scanner.distributed.protocol import FILE_MARK, ShardAnswer, ShardRequest

ERRORS_KEPT = 4000
"""Characters of the shard scan's stderr sent back (its last ones: the reasons)."""

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the worker process that started it ends."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def shard_command(request: ShardRequest, files: dict[str, str], output: str) -> list[str]:
    """The `reachscan scan` command line of `request`, its files at `files`."""
    argv = [
        files[item[len(FILE_MARK) :]] if item.startswith(FILE_MARK) else item
        for item in request.argv
    ]
    return [
        sys.executable, "-m", "scanner", "scan", *argv,
        "--shard", request.shard, "--vantage", request.vantage,
        "--no-history", "--no-progress", "--workers", "1",
        "--format", "jsonl", "-o", output,
    ]  # fmt: skip


def run_shard_request(request: ShardRequest, site_argv: Sequence[str], worker: str) -> ShardAnswer:
    with tempfile.TemporaryDirectory(prefix="reachscan-shard-") as folder:
        files: dict[str, str] = {}
        for number, (name, text) in enumerate(request.files.items()):
            path = Path(folder) / f"{number}-{Path(name).name or 'inventory'}"
            path.write_text(text, encoding="utf-8")
            files[name] = str(path)
        output = str(Path(folder) / "shard.jsonl")
        command = [*shard_command(request, files, output), *site_argv]
        completed = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent,  # prctl, nothing else, before exec
            cwd=folder,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            check=False,
        )
        lines = Path(output).read_bytes() if os.path.exists(output) else b""
        errors = completed.stderr.decode("utf-8", "replace")[-ERRORS_KEPT:]
        return ShardAnswer(completed.returncode, lines, errors, worker)
