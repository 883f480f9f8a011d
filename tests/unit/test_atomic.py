"""Atomic result files and standard output: what a reader and a failing run leave behind.

The failure cases use real conditions where the machine allows it (a tiny tmpfs that
fills up, a read-only mount, /dev/full) rather than monkeypatched syscalls, because the
point is what the kernel reports and whether the previous file survives it.
"""

from __future__ import annotations

import fcntl
import os
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner.core.sinks import OutputClosed, OutputError
from scanner.outputs.atomic import (
    AtomicWriter,
    PassThroughWriter,
    StreamWriter,
    open_target,
    output_identity,
)

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


# Special files: written through, never replaced (a copy of a device is made with mknod in
# the test's own directory; the system's /dev is only ever stat'ed).


def test_a_fifo_with_a_reader_is_written_through_and_its_reader_gets_the_end(
    tmp_path: Path,
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        target = open_target(str(fifo))
        assert isinstance(target, PassThroughWriter)
        target.write(b"line\n")
        target.commit()
        assert os.read(reader, 100) == b"line\n"
        assert os.read(reader, 100) == b""  # the end: no writer holds it any more
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert _entries(tmp_path) == {"fifo"}


def test_a_fifo_without_a_reader_fails_at_open_instead_of_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OutputError) as raised:
        open_target(str(fifo))
    assert str(raised.value) == (
        f"cannot write results to {fifo}: is a FIFO with no reader; start its reader first"
    )


def test_a_reader_that_goes_away_is_an_output_error(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    target = open_target(str(fifo))
    os.close(reader)
    with pytest.raises(OutputError, match="its reader went away"):
        target.write(b"line\n")
    target.discard()  # what a sink's abort() does next: must not fail


def test_a_full_device_is_an_output_error_naming_the_path() -> None:
    writer = PassThroughWriter("/dev/full")  # opened without O_CREAT/O_TRUNC: nothing replaced
    with pytest.raises(OutputError) as raised:
        writer.write(b"line\n")
    assert str(raised.value) == "cannot write results to /dev/full: No space left on device"
    assert writer.closed


def test_a_write_through_path_that_became_a_link_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found not to be a link, then a link planted in its place before the open (the
    check is faked to have seen no link): O_NOFOLLOW refuses it."""
    planted = tmp_path / "out.jsonl"
    planted.symlink_to("/dev/null")
    monkeypatch.setattr("scanner.outputs.atomic.os.path.islink", lambda path: False)
    with pytest.raises(OutputError, match="became a symbolic link while it was being opened"):
        PassThroughWriter(str(planted), opened_as=str(planted))


def test_a_write_through_path_that_changed_since_it_was_examined_is_refused() -> None:
    with pytest.raises(OutputError, match="changed while it was being opened"):
        PassThroughWriter("/dev/null", opened_as="/dev/null", expected=os.stat("/dev/zero"))


@pytest.mark.skipif(not IS_ROOT, reason="mknod needs root")
def test_a_character_device_is_written_through_and_stays_one(tmp_path: Path) -> None:
    device = tmp_path / "null"
    os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    target = open_target(str(device))
    target.write(b"gone\n")
    target.commit()
    assert stat.S_ISCHR(device.lstat().st_mode)
    assert _entries(tmp_path) == {"null"}


def test_a_socket_is_refused_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        with pytest.raises(OutputError, match="is a socket"):
            open_target(str(path))
    assert stat.S_ISSOCK(path.lstat().st_mode)


def test_a_link_to_a_regular_file_stays_a_link_to_the_new_file(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "r.jsonl"
    real.write_bytes(b"old\n")
    link = tmp_path / "r.jsonl"
    link.symlink_to(real)
    writer = open_target(str(link))
    writer.write(b"new\n")
    writer.commit()
    assert link.is_symlink() and link.readlink() == real
    assert real.read_bytes() == b"new\n"
    assert _entries(tmp_path / "real") == {"r.jsonl"}


def test_a_dangling_link_is_refused_rather_than_followed(tmp_path: Path) -> None:
    link = tmp_path / "r.jsonl"
    link.symlink_to(tmp_path / "nowhere" / "x")
    with pytest.raises(OutputError, match=r"is a symbolic link to .*, which does not exist"):
        open_target(str(link))
    assert _entries(tmp_path) == {"r.jsonl"}


def test_output_identity_sees_one_file_through_every_spelling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("existing").write_bytes(b"")
    Path("link").symlink_to("existing")
    assert (
        output_identity("new") == output_identity("./new") == output_identity(str(tmp_path / "new"))
    )
    assert (
        output_identity("existing")
        == output_identity("link")
        == output_identity(str(tmp_path / "existing"))
    )
    assert output_identity("new") != output_identity("existing")
    assert output_identity("/dev/null") is None  # a character device may take two outputs


# Leftovers of dead runs: removed when the next writer for the same file opens, and only
# what is provably a dead writer's (its lock is free, it is a regular file of this user).


def test_an_unlocked_leftover_is_removed_when_the_next_writer_opens(tmp_path: Path) -> None:
    target = tmp_path / "r.jsonl"
    (tmp_path / ".r.jsonl.tmp-0123abcd").write_bytes(b"half a run")
    not_ours = {".r.jsonl.tmp-notours", ".other.jsonl.tmp-0123abcd", ".r.jsonl.tmp-0123abcd0"}
    for name in not_ours:
        (tmp_path / name).write_bytes(b"")
    writer = AtomicWriter(str(target))
    writer.commit()
    assert _entries(tmp_path) == {"r.jsonl", *not_ours}


def test_a_live_writers_temporary_file_is_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "r.jsonl"
    first = AtomicWriter(str(target))
    first.write(b"first\n")
    second = AtomicWriter(str(target))  # finds first's temporary file, locked
    assert Path(first.temp_path).exists()
    second.write(b"second\n")
    second.commit()
    first.commit()
    assert target.read_bytes() == b"first\n"
    assert _entries(tmp_path) == {"r.jsonl"}


def test_a_leftover_whose_lock_is_held_is_left_alone(tmp_path: Path) -> None:
    leftover = tmp_path / ".r.jsonl.tmp-0123abcd"
    leftover.write_bytes(b"")
    with open(leftover, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another open file: the lock conflicts as a process's
        AtomicWriter(str(tmp_path / "r.jsonl")).discard()
        assert leftover.exists()


def test_links_fifos_and_directories_named_as_leftovers_are_never_touched(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me\n")
    (tmp_path / ".r.jsonl.tmp-00000001").symlink_to(victim)
    os.mkfifo(tmp_path / ".r.jsonl.tmp-00000002")
    (tmp_path / ".r.jsonl.tmp-00000003").mkdir()
    AtomicWriter(str(tmp_path / "r.jsonl")).discard()
    assert victim.read_bytes() == b"keep me\n"
    assert len(_entries(tmp_path)) == 4


@pytest.mark.skipif(not IS_ROOT, reason="giving a file to another user needs root")
def test_another_users_leftover_is_left_alone(tmp_path: Path) -> None:
    leftover = tmp_path / ".r.jsonl.tmp-0123abcd"
    leftover.write_bytes(b"")
    os.chown(leftover, 65534, 65534)
    AtomicWriter(str(tmp_path / "r.jsonl")).discard()
    assert leftover.exists()
