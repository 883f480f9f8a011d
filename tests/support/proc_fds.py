"""What a process holds open, read from /proc (Linux)."""

from __future__ import annotations

import os
from pathlib import Path


def pipes_held(pid: int) -> set[int]:
    """The inode numbers of the pipes process `pid` has a descriptor for."""
    held = set()
    for link in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(link)
        except FileNotFoundError:
            continue  # closed since the listing: the child is still closing others' ends
        if target.startswith("pipe:["):
            held.add(int(target[len("pipe:[") : -1]))
    return held


def serve_until_input_ends(read_fd: int, write_fd: int) -> int:
    """A forked worker's life as a scan shard lives it: run until the input ends."""
    while os.read(read_fd, 4096):
        pass
    return 0
