"""`-o` onto what is not a plain file, the same file twice, and what a killed run leaves.

- A character device (a copy of /dev/null or /dev/full made with mknod in the test's own
  directory, never the system's), a FIFO, a link to this process's stdout: written through,
  never replaced by a regular file. /dev/full is exit 3 with the device's reason; a FIFO
  without a reader fails at once instead of hanging. As `nobody`, `-o /dev/null` works (no
  temporary file is attempted in /dev).
- A symbolic link to a regular file stays a link; the file it points to gets the results.
  A link owned by another user (not root, not us) is never followed: root's `-o` into a
  group-writable directory must not replace the file (or write into the device) that a
  member of the group pointed it at.
- One file given to two `-o` (also spelled differently, or through a link): exit 2 before
  anything is scanned. Character devices may repeat. The same for `-o` onto the history
  database, the files beside it (lock, -wal), an inventory or an --exclude-file.
- A run killed with SIGKILL leaves its temporary file; the next run for that output removes
  it, and never a live run's.
"""

from __future__ import annotations

import os
import pwd
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from tests.hostile.hostile_support import (
    IS_ROOT,
    REPO_ROOT,
    Reachscan,
    no_traceback,
    parse_records,
    wait_for,
)
from tests.support.listeners import LoopbackServices

pytestmark = pytest.mark.hostile

ADDRESS = "127.77.130.1"  # nothing listens: every port is refused at once
THREE_PORTS = f"{ADDRESS}:T:20000-20002"
needs_root = pytest.mark.skipif(not IS_ROOT, reason="mknod and running as nobody need root")

NULL_DEVICE = os.makedev(1, 3)  # /dev/null's numbers: a copy behaves as it does
FULL_DEVICE = os.makedev(1, 7)  # /dev/full's: every write fails with ENOSPC


def make_device(path: Path, device: int) -> Path:
    os.mknod(path, 0o666 | stat.S_IFCHR, device)
    return path


def assert_still_device(path: Path, device: int) -> None:
    found = path.stat()
    assert stat.S_ISCHR(found.st_mode), f"{path} is no longer a character device"
    assert found.st_rdev == device


def leftovers(directory: Path) -> list[str]:
    return sorted(entry.name for entry in directory.iterdir() if ".tmp-" in entry.name)


@needs_root
def test_a_character_device_and_a_link_to_it_stay_character_devices(
    reachscan: Reachscan, tmp_path: Path
) -> None:
    device = make_device(tmp_path / "null", NULL_DEVICE)
    link = tmp_path / "link-to-null"
    link.symlink_to(device)

    run = reachscan.run(
        "-t", THREE_PORTS, "--no-history", "--format", "jsonl", "-o", str(device),
        "--format", "prom", "-o", str(link),
    )  # fmt: skip

    assert run.returncode == 0, run.stderr
    no_traceback(run.stderr)
    assert_still_device(device, NULL_DEVICE)
    assert link.is_symlink() and link.readlink() == device
    assert leftovers(tmp_path) == []


@needs_root
def test_a_full_device_exits_3_with_its_reason_and_stays_a_device(
    reachscan: Reachscan, tmp_path: Path
) -> None:
    device = make_device(tmp_path / "full", FULL_DEVICE)

    run = reachscan.run("-t", THREE_PORTS, "--no-history", "--format", "jsonl", "-o", str(device))

    assert run.returncode == 3, run.stderr
    no_traceback(run.stderr)
    assert f"cannot write results to {device}: No space left on device" in run.stderr
    assert_still_device(device, FULL_DEVICE)
    assert leftovers(tmp_path) == []


def read_to_end(descriptor: int) -> bytes:
    """Everything in a non-blocking pipe, which must have reached its end: EAGAIN instead
    of EOF would mean a writer still holds it open (a reader left hanging)."""
    received = b""
    while chunk := os.read(descriptor, 65536):  # BlockingIOError if not at its end
        received += chunk
    return received


def test_a_fifo_with_a_reader_gets_every_result_and_stays_a_fifo(
    reachscan: Reachscan, tmp_path: Path
) -> None:
    """The reader opens first (non-blocking, so it need not wait for a writer): three
    results fit in the pipe's buffer, read once the scan has ended."""
    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        run = reachscan.run("-t", THREE_PORTS, "--no-history", "--format", "jsonl", "-o", str(fifo))
        assert run.returncode == 0, run.stderr
        received = read_to_end(reader)
    finally:
        os.close(reader)

    records = parse_records(received.decode())
    assert sorted(cast(int, record["port"]) for record in records) == [20000, 20001, 20002]
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert leftovers(tmp_path) == []


def test_a_fifo_without_a_reader_fails_at_once_with_a_clear_message(
    reachscan: Reachscan, tmp_path: Path
) -> None:
    fifo = tmp_path / "nobody-reads.fifo"
    os.mkfifo(fifo)

    run = reachscan.run("-t", THREE_PORTS, "--no-history", "--format", "jsonl", "-o", str(fifo))

    assert run.returncode == 3, run.stderr
    no_traceback(run.stderr)
    assert f"cannot write results to {fifo}: is a FIFO with no reader" in run.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert leftovers(tmp_path) == []


def test_a_link_to_our_own_stdout_is_written_through_and_stays_a_link(
    reachscan: Reachscan, tmp_path: Path
) -> None:
    """What `-o /dev/stdout` is (a link to /proc/self/fd/1), made in the test's directory so
    a failure cannot touch the system's /dev. Stdout is a pipe here."""
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")

    run = reachscan.run("-t", THREE_PORTS, "--no-history", "--format", "jsonl", "-o", str(link))

    assert run.returncode == 0, run.stderr
    assert sorted(cast(int, record["port"]) for record in run.records) == [20000, 20001, 20002]
    assert link.is_symlink() and os.readlink(link) == "/proc/self/fd/1"
    assert leftovers(tmp_path) == []


def test_a_link_to_a_regular_file_stays_a_link_and_its_file_gets_the_results(
    reachscan: Reachscan, tmp_path: Path
) -> None:
    real = tmp_path / "elsewhere" / "results.jsonl"
    real.parent.mkdir()
    real.write_text("previous\n")
    link = tmp_path / "results.jsonl"
    link.symlink_to(real)

    run = reachscan.run("-t", THREE_PORTS, "--no-history", "--format", "jsonl", "-o", str(link))

    assert run.returncode == 0, run.stderr
    assert link.is_symlink() and link.readlink() == real
    assert len(parse_records(real.read_text())) == 3
    assert leftovers(tmp_path) == [] and leftovers(real.parent) == []


def nobody_uid() -> int:
    return pwd.getpwnam("nobody").pw_uid


def group_writable_directory(parent: Path) -> Path:
    """What the reviewer planted links in: writable by a group, without the sticky bit, so
    the kernel's fs.protected_symlinks does not apply and only reachscan can refuse."""
    directory = parent / "shared"
    directory.mkdir()
    directory.chmod(0o2775)
    return directory


def plant_link(link: Path, target: Path, owner: int) -> Path:
    link.symlink_to(target)
    os.lchown(link, owner, -1)
    return link


@needs_root
@pytest.mark.parametrize("chained", [False, True], ids=["planted-link", "root-link-to-planted"])
def test_a_link_planted_by_another_user_is_not_followed_onto_roots_file(
    reachscan: Reachscan, tmp_path: Path, chained: bool
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("root's secret\n")
    victim.chmod(0o600)
    shared = group_writable_directory(tmp_path)
    planted = plant_link(shared / "planted", victim, nobody_uid())
    output = shared / "out.jsonl"
    if chained:  # a trusted link to an untrusted one: every link on the way is checked
        plant_link(output, planted, 0)
    else:
        planted.rename(output)
        planted = output

    run = reachscan.run("-t", THREE_PORTS, "--no-history", "--format", "jsonl", "-o", str(output))

    assert run.returncode == 3, run.stderr
    no_traceback(run.stderr)
    reason = f"a symbolic link owned by uid {nobody_uid()}; refusing to follow it as uid 0"
    assert f"cannot write results to {output}: " in run.stderr and reason in run.stderr
    assert victim.read_text() == "root's secret\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert planted.is_symlink() and output.is_symlink()
    assert leftovers(shared) == [] and leftovers(tmp_path) == []


@needs_root
def test_a_link_planted_by_another_user_is_not_followed_onto_a_device(
    reachscan: Reachscan, tmp_path: Path
) -> None:
    """As /dev/port or /dev/kmsg would be: a copy of /dev/null stands in for them."""
    device = make_device(tmp_path / "port", NULL_DEVICE)
    shared = group_writable_directory(tmp_path)
    output = plant_link(shared / "out.jsonl", device, nobody_uid())

    run = reachscan.run("-t", THREE_PORTS, "--no-history", "--format", "jsonl", "-o", str(output))

    assert run.returncode == 3, run.stderr
    no_traceback(run.stderr)
    assert f"owned by uid {nobody_uid()}; refusing to follow it as uid 0" in run.stderr
    assert_still_device(device, NULL_DEVICE)


@needs_root
def test_a_link_owned_by_root_in_a_shared_directory_is_still_followed(
    reachscan: Reachscan, tmp_path: Path
) -> None:
    real = tmp_path / "results.jsonl"
    real.write_text("previous\n")
    shared = group_writable_directory(tmp_path)
    output = plant_link(shared / "out.jsonl", real, 0)

    run = reachscan.run("-t", THREE_PORTS, "--no-history", "--format", "jsonl", "-o", str(output))

    assert run.returncode == 0, run.stderr
    assert output.is_symlink() and output.readlink() == real
    assert len(parse_records(real.read_text())) == 3


@pytest.fixture
def world_readable_directory() -> Iterator[Path]:
    """pytest's tmp_path is private to root: `nobody` needs a directory it can read."""
    with tempfile.TemporaryDirectory(prefix="reachscan-nobody-") as directory:
        os.chmod(directory, 0o755)
        yield Path(directory)


def others_can_run_the_checkout() -> bool:
    """Can a user other than root import reachscan from this checkout? Not when it lies
    under a private directory (a `mktemp -d` clone is 0700)."""
    directories = [REPO_ROOT, *REPO_ROOT.parents]
    return all(path.stat().st_mode & stat.S_IXOTH for path in directories) and bool(
        (REPO_ROOT / "scanner").stat().st_mode & stat.S_IROTH
    )


@needs_root
@pytest.mark.skipif(
    not others_can_run_the_checkout(),
    reason="`nobody` cannot read this checkout (it lies in a private directory)",
)
def test_nobody_can_send_results_to_dev_null(
    reachscan: Reachscan, world_readable_directory: Path
) -> None:
    hosts = world_readable_directory / "hosts"
    hosts.write_text("")
    hosts.chmod(0o644)
    as_nobody = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--")

    run = reachscan.with_hosts(str(hosts)).run(
        "-t", THREE_PORTS, "--no-history", "--format", "jsonl", "-o", "/dev/null",
        prefix=as_nobody, cwd=world_readable_directory,
    )  # fmt: skip

    assert run.returncode == 0, run.stderr
    no_traceback(run.stderr)
    assert_still_device(Path("/dev/null"), NULL_DEVICE)


@pytest.mark.parametrize(
    ("first", "second", "said"),
    [
        ("r.jsonl", "r.jsonl", "-o r.jsonl: given twice"),
        ("r.jsonl", "./r.jsonl", "-o ./r.jsonl: is the same file as -o r.jsonl"),
        ("r.jsonl", "{dir}/r.jsonl", "-o {dir}/r.jsonl: is the same file as -o r.jsonl"),
        ("existing.jsonl", "link.jsonl", "-o link.jsonl: is the same file as -o existing.jsonl"),
    ],
    ids=["same-spelling", "dot-slash", "absolute", "through-a-link"],
)
def test_one_file_given_to_two_outputs_is_a_usage_error_before_any_probe(
    reachscan: Reachscan,
    services: LoopbackServices,
    tmp_path: Path,
    first: str,
    second: str,
    said: str,
) -> None:
    port = services.tcp(ADDRESS)
    (tmp_path / "existing.jsonl").write_text("previous\n")
    (tmp_path / "link.jsonl").symlink_to("existing.jsonl")
    second = second.format(dir=tmp_path)

    run = reachscan.run(
        "-t", f"{ADDRESS}:{port}", "--no-history",
        "--format", "jsonl", "-o", first, "--format", "prom", "-o", second, cwd=tmp_path,
    )  # fmt: skip

    assert run.returncode == 2, run.stderr
    no_traceback(run.stderr)
    assert said.format(dir=tmp_path) + "; each output needs a file of its own" in run.stderr
    assert services.accepted(ADDRESS, port) == 0
    assert not (tmp_path / "r.jsonl").exists()
    assert (tmp_path / "existing.jsonl").read_text() == "previous\n"


def snapshot(directory: Path) -> dict[str, bytes]:
    return {entry.name: entry.read_bytes() for entry in directory.iterdir() if entry.is_file()}


@pytest.mark.parametrize(
    ("output", "said"),
    [
        ("h.sqlite", "is the history database h.sqlite"),
        ("./h.sqlite.lock", "is the history's lock file h.sqlite.lock"),
        ("h.sqlite-wal", "is the history's write-ahead log h.sqlite-wal"),
        ("hosts.txt", "is the inventory hosts.txt"),
        ("{dir}/excluded.txt", "is the --exclude-file excluded.txt"),
    ],
    ids=["database", "lock", "wal", "inventory", "exclude-file"],
)
def test_an_output_onto_the_history_or_an_input_is_a_usage_error_before_any_probe(
    reachscan: Reachscan, services: LoopbackServices, tmp_path: Path, output: str, said: str
) -> None:
    """`-o` over the database would replace the history with JSON Lines; over its lock,
    swap the lock's inode mid-run so that a concurrent run locks another file."""
    port = services.tcp(ADDRESS)
    (tmp_path / "hosts.txt").write_text(f"{ADDRESS}:{port}\n")
    (tmp_path / "excluded.txt").write_text("192.0.2.0/24\n")
    scan = ("hosts.txt", "--db", "h.sqlite", "--exclude-file", "excluded.txt")
    first = reachscan.run(*scan, "--format", "jsonl", "-o", "first.jsonl", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "h.sqlite").exists() and (tmp_path / "h.sqlite.lock").exists()
    (tmp_path / "h.sqlite-wal").write_bytes(b"")  # as SQLite may leave it
    before = snapshot(tmp_path)
    accepted = services.accepted(ADDRESS, port)

    run = reachscan.run(*scan, "--format", "jsonl", "-o", output.format(dir=tmp_path), cwd=tmp_path)

    assert run.returncode == 2, run.stderr
    no_traceback(run.stderr)
    assert f"{said}; give the results a file of their own" in run.stderr
    assert services.accepted(ADDRESS, port) == accepted
    assert snapshot(tmp_path) == before
    assert leftovers(tmp_path) == []


@needs_root
def test_a_character_device_may_take_two_outputs(reachscan: Reachscan, tmp_path: Path) -> None:
    device = make_device(tmp_path / "null", NULL_DEVICE)

    run = reachscan.run(
        "-t", THREE_PORTS, "--no-history",
        "--format", "jsonl", "-o", str(device), "--format", "prom", "-o", str(device),
    )  # fmt: skip

    assert run.returncode == 0, run.stderr
    assert_still_device(device, NULL_DEVICE)


def start_blocked_scan(reachscan: Reachscan, results: Path) -> subprocess.Popen[bytes]:
    """A scan whose JSON Lines also go to a pipe nobody reads: once the pipe is full it
    waits there for ever, its temporary file for `results` open."""
    process = reachscan.start(
        "-t", f"{ADDRESS}:T:1-20000", "--no-history", "--workers", "1",
        "--format", "jsonl", "-o", str(results), "--format", "jsonl", "-o", "-",
    )  # fmt: skip
    wait_for(lambda: bool(leftovers(results.parent)), within=30)
    return process


def end(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait(timeout=30)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def test_the_next_run_removes_what_a_killed_run_left(reachscan: Reachscan, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    results = outputs / "r.jsonl"
    killed = start_blocked_scan(reachscan, results)
    killed.send_signal(signal.SIGKILL)
    end(killed)
    left = leftovers(outputs)
    assert len(left) == 1 and left[0].startswith(".r.jsonl.tmp-"), left

    run = reachscan.run("-t", THREE_PORTS, "--no-history", "--format", "jsonl", "-o", str(results))

    assert run.returncode == 0, run.stderr
    assert sorted(entry.name for entry in outputs.iterdir()) == ["r.jsonl"]
    assert len(parse_records(results.read_text())) == 3


def test_a_live_runs_temporary_file_is_never_taken_for_a_dead_ones(
    reachscan: Reachscan, tmp_path: Path
) -> None:
    results = tmp_path / "r.jsonl"
    live = start_blocked_scan(reachscan, results)
    try:
        (live_temporary,) = leftovers(tmp_path)

        run = reachscan.run(
            "-t", THREE_PORTS, "--no-history", "--format", "jsonl", "-o", str(results)
        )

        assert run.returncode == 0, run.stderr
        assert live.poll() is None
        assert leftovers(tmp_path) == [live_temporary]
    finally:
        end(live)
