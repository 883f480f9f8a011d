"""Atomic result files and standard output: what a reader and a failing run leave behind.

The failure cases use real conditions where the machine allows it (a tiny tmpfs that
fills up, a read-only mount, /dev/full) rather than monkeypatched syscalls, because the
point is what the kernel reports and whether the previous file survives it.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner.outputs.atomic import AtomicWriter, StreamWriter, open_target
from scanner.outputs.base import OutputClosed, OutputError

IS_ROOT = os.geteuid() == 0


def _entries(directory: Path) -> set[str]:
    return {entry.name for entry in directory.iterdir()}


@pytest.fixture
def umask() -> Iterator[None]:
    """Restore the process umask after a test that changes it."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: writing more than that fails with a real ENOSPC."""
    yield from _mount_tmpfs(tmp_path / "tiny", "size=64k")


@pytest.fixture
def read_only_tmpfs(tmp_path: Path) -> Iterator[Path]:
    yield from _mount_tmpfs(tmp_path / "ro", "ro,size=64k")


def _mount_tmpfs(mountpoint: Path, options: str) -> Iterator[Path]:
    if not IS_ROOT:
        pytest.skip("mounting a tmpfs needs root; the ENOSPC/EROFS cases need a real filesystem")
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        # Lazy: a test that failed with the file still open must not leave the mount behind.
        subprocess.run(["umount", "--lazy", str(mountpoint)], check=True)


def test_commit_puts_the_content_at_the_path_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "results.jsonl"
    writer = AtomicWriter(str(target))
    writer.write(b"one\n")
    writer.write(b"two\n")
    writer.commit()
    assert target.read_bytes() == b"one\ntwo\n"
    assert _entries(tmp_path) == {"results.jsonl"}
    assert writer.closed


def test_readers_see_the_previous_file_until_commit(tmp_path: Path) -> None:
    target = tmp_path / "reach.prom"
    target.write_bytes(b"old\n")
    writer = AtomicWriter(str(target))
    writer.write(b"new\n")
    assert target.read_bytes() == b"old\n"
    writer.commit()
    assert target.read_bytes() == b"new\n"


def test_temp_file_is_hidden_beside_the_target_and_does_not_end_in_its_suffix(
    tmp_path: Path,
) -> None:
    target = tmp_path / "reachscan.prom"
    writer = AtomicWriter(str(target))
    temp = Path(writer.temp_path)
    assert temp.parent == tmp_path
    assert temp.exists()
    assert temp.name.startswith(".reachscan.prom.tmp-")
    assert not temp.name.endswith(".prom")
    # node_exporter's textfile collector globs *.prom: it must not pick the temp file up.
    assert list(tmp_path.glob("*.prom")) == []
    writer.discard()


def test_discard_removes_the_temp_and_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "results.jsonl"
    target.write_bytes(b"previous\n")
    writer = AtomicWriter(str(target))
    writer.write(b"half a li")
    writer.discard()
    writer.discard()  # repeating is harmless: abort paths may call it twice
    assert _entries(tmp_path) == {"results.jsonl"}
    assert target.read_bytes() == b"previous\n"


def test_writing_after_commit_is_a_programming_error(tmp_path: Path) -> None:
    writer = AtomicWriter(str(tmp_path / "x"))
    writer.commit()
    with pytest.raises(RuntimeError):
        writer.write(b"late")


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize(("mask", "expected_mode"), [(0o022, 0o644), (0o077, 0o600), (0, 0o666)])
def test_final_permissions_honour_the_umask(tmp_path: Path, mask: int, expected_mode: int) -> None:
    os.umask(mask)
    target = tmp_path / "results.jsonl"
    writer = AtomicWriter(str(target))
    writer.write(b"x\n")
    writer.commit()
    assert stat.S_IMODE(target.stat().st_mode) == expected_mode


def test_missing_directory_is_reported_at_open_with_the_path(tmp_path: Path) -> None:
    target = tmp_path / "no-such-dir" / "results.jsonl"
    with pytest.raises(OutputError) as raised:
        AtomicWriter(str(target))
    assert str(raised.value) == f"cannot write results to {target}: No such file or directory"
    assert raised.value.path == str(target)


def test_a_directory_as_path_is_reported_at_open(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="is a directory"):
        AtomicWriter(str(tmp_path))
    assert _entries(tmp_path) == set()


def test_full_disk_keeps_the_previous_file_and_removes_the_temp(tiny_tmpfs: Path) -> None:
    target = tiny_tmpfs / "results.jsonl"
    target.write_bytes(b"previous complete results\n")
    writer = AtomicWriter(str(target))
    try:
        with pytest.raises(OutputError) as raised:
            for _ in range(64):
                writer.write(b"x" * 4096)  # 256 KiB into 64 KiB
        assert str(raised.value) == f"cannot write results to {target}: No space left on device"
        assert target.read_bytes() == b"previous complete results\n"
        assert _entries(tiny_tmpfs) == {"results.jsonl"}  # the writer removed its temp itself
    finally:
        writer.discard()  # what a sink's abort() does next: must not fail


def test_read_only_filesystem_is_reported_at_open(read_only_tmpfs: Path) -> None:
    with pytest.raises(OutputError, match="Read-only file system"):
        AtomicWriter(str(read_only_tmpfs / "results.jsonl"))


@pytest.mark.skipif(IS_ROOT, reason="root ignores directory permissions")
def test_permission_denied_is_reported_at_open(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(OutputError, match="Permission denied"):
            AtomicWriter(str(locked / "results.jsonl"))
    finally:
        locked.chmod(0o700)


def test_dash_means_standard_output() -> None:
    assert isinstance(open_target("-"), StreamWriter)


def test_a_closed_pipe_raises_output_closed() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    with open(write_end, "wb", buffering=0) as stream:
        writer = StreamWriter(stream)
        with pytest.raises(OutputClosed):
            writer.write(b"line\n")


def test_a_full_device_on_stdout_is_an_output_error() -> None:
    with open("/dev/full", "wb", buffering=0) as stream:
        writer = StreamWriter(stream)
        with pytest.raises(OutputError) as raised:
            writer.write(b"line\n")
    assert str(raised.value) == "cannot write results to standard output: No space left on device"
