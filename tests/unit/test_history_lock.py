"""The run lock between real processes: a second run fails at once or waits, names the
holder, and a holder that dies (even by SIGKILL) releases the lock with it."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scanner.history.lock import LockBusy, RunLock
from scanner.history.paths import lock_path_for

REPO = Path(__file__).resolve().parents[2]

HOLDER = """
import sys, time
from pathlib import Path
from scanner.history.lock import RunLock

with RunLock(Path(sys.argv[1]), wait=0):
    print("held", flush=True)
    if sys.argv[2] == "stdin":
        sys.stdin.readline()
    else:
        time.sleep(float(sys.argv[2]))
"""


class Holder:
    """Another process holding the lock until told to stop (or for a fixed time)."""

    def __init__(self, db_path: Path, hold: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(db_path), hold],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line == "held\n", f"the holder did not take the lock: {line!r}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def release(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        assert self.process.wait(timeout=10) == 0

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "reachscan" / "history.sqlite"


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for holder in started:
        holder.close()


class FakeClock:
    """The lock's `clock` and `sleep`: time moves only when the lock sleeps, by exactly
    what it asked, so waits are asserted as exact numbers, never read off the wall clock.
    `on_sleep` runs after each sleep (to let the holder go at a chosen poll)."""

    def __init__(self, on_sleep: Callable[[int], None] = lambda count: None) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self._on_sleep(len(self.sleeps))


def test_wait_zero_fails_at_once_naming_the_lock_and_the_holder(
    db_path: Path, holders: list[Holder]
) -> None:
    holder = Holder(db_path, "stdin")
    holders.append(holder)
    virtual = FakeClock()
    with pytest.raises(LockBusy) as caught:
        RunLock(db_path, wait=0, clock=virtual.clock, sleep=virtual.sleep).acquire()
    assert virtual.sleeps == []  # at once: not one poll
    assert caught.value.waited == 0
    assert caught.value.holder_pid == holder.pid
    message = str(caught.value)
    assert str(lock_path_for(db_path)) in message
    assert f"pid {holder.pid}" in message
    assert "after waiting" not in message
    holder.release()
    with RunLock(db_path, wait=0):  # free again once the holder let go
        pass


def test_waiting_gets_the_lock_when_the_holder_finishes(
    db_path: Path, holders: list[Holder]
) -> None:
    """The holder lets go during the third poll's sleep: the lock is taken at the next
    try, 3 × 0.125 s of (virtual) waiting later."""
    holder = Holder(db_path, "stdin")
    holders.append(holder)

    def release_at_the_third(sleeps: int) -> None:
        if sleeps == 3:
            holder.release()

    virtual = FakeClock(release_at_the_third)
    with RunLock(
        db_path, wait=20, poll_interval=0.125, clock=virtual.clock, sleep=virtual.sleep
    ) as lock:
        assert lock.held
        assert lock.lock_path.read_text() == f"{os.getpid()}\n"
    assert virtual.sleeps == [0.125, 0.125, 0.125]
    assert lock.lock_path.read_text() == ""  # the pid is cleared on release


def test_waiting_gives_up_at_the_deadline(db_path: Path, holders: list[Holder]) -> None:
    holder = Holder(db_path, "stdin")
    holders.append(holder)
    virtual = FakeClock()
    with pytest.raises(LockBusy) as caught:
        RunLock(
            db_path, wait=0.5, poll_interval=0.125, clock=virtual.clock, sleep=virtual.sleep
        ).acquire()
    assert virtual.sleeps == [0.125] * 4  # polled until the deadline, not a moment past it
    assert caught.value.waited == 0.5
    assert "after waiting 0.5 s" in str(caught.value)
    assert caught.value.holder_pid == holder.pid


def test_the_last_sleep_stops_at_the_deadline(db_path: Path, holders: list[Holder]) -> None:
    """A wait that is not a multiple of the poll interval: the last sleep is cut short."""
    holders.append(Holder(db_path, "stdin"))
    virtual = FakeClock()
    with pytest.raises(LockBusy) as caught:
        RunLock(
            db_path, wait=0.625, poll_interval=0.25, clock=virtual.clock, sleep=virtual.sleep
        ).acquire()
    assert virtual.sleeps == [0.25, 0.25, 0.125]
    assert caught.value.waited == 0.625


def test_a_killed_holder_leaves_no_stale_lock(db_path: Path, holders: list[Holder]) -> None:
    holder = Holder(db_path, "stdin")
    holders.append(holder)
    os.kill(holder.pid, signal.SIGKILL)
    holder.process.wait(timeout=10)
    assert lock_path_for(db_path).read_text() == f"{holder.pid}\n"  # its pid is left behind
    with RunLock(db_path, wait=0) as lock:
        assert lock.lock_path.read_text() == f"{os.getpid()}\n"


def test_the_lock_file_is_private_and_beside_the_database(db_path: Path) -> None:
    previous = os.umask(0o002)
    try:
        with RunLock(db_path, wait=0) as lock:
            assert lock.lock_path == db_path.with_name("history.sqlite.lock")
            assert stat.S_IMODE(lock.lock_path.stat().st_mode) == 0o600
            assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700
    finally:
        os.umask(previous)


def test_a_negative_wait_is_rejected(db_path: Path) -> None:
    with pytest.raises(ValueError, match="wait"):
        RunLock(db_path, wait=-1)
