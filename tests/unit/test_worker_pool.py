"""Forked workers: each sees the end of its own input, and all are reaped (real processes)."""

from __future__ import annotations

import errno
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from scanner.procs.worker_pool import WorkerPool, WorkersUnavailable
from tests.support.proc_fds import pipes_held
from tests.support.proc_fds import serve_until_input_ends as serve

ADDRESS = "127.0.0.1"


def test_one_worker_means_probing_in_this_process() -> None:
    with WorkerPool.fork(1, serve) as pool:
        assert pool.processes == []


@pytest.mark.timeout(60)  # the hang guard; how long the reaping took is not asserted
def test_every_worker_ends_when_its_pipes_close_and_is_reaped() -> None:
    """A child holding another worker's write end would keep that worker from ever
    seeing the end of its input: `close` would have to kill it after REAP_WAIT, and its
    status would be -9. Every status 0 says each ended by itself."""
    pool = WorkerPool.fork(3, serve)
    pids = [process.pid for process in pool.processes]
    assert len(set(pids)) == 3 and os.getpid() not in pids
    pool.close()
    assert [process.exit_status for process in pool.processes] == [0, 0, 0]
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()
    pool.close()  # again: nothing left to do


def test_a_worker_holds_only_its_own_pipe_ends() -> None:
    with WorkerPool.fork(2, serve) as pool:
        for process, other in zip(pool.processes, reversed(pool.processes), strict=True):
            own = {os.stat(fd).st_ino for fd in (process.to_worker, process.from_worker)}
            others = {os.stat(fd).st_ino for fd in (other.to_worker, other.from_worker)}
            deadline = time.monotonic() + 5  # the child closes them as it starts
            while pipes_held(process.pid) & others and time.monotonic() < deadline:
                time.sleep(0.01)
            held = pipes_held(process.pid)
            assert own <= held, "its own two pipes"
            assert not held & others, "none of the other worker's"


def test_a_fork_that_fails_is_reported_and_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Out of processes on the second fork: the first worker is ended and reaped, every
    pipe is closed, and the caller gets WorkersUnavailable (it then probes in-process)."""
    real_fork = os.fork
    forked: list[int] = []

    def fork_once() -> int:
        if forked:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        pid = real_fork()
        if pid:
            forked.append(pid)
        return pid

    descriptors_before = set(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(os, "fork", fork_once)
    with pytest.raises(WorkersUnavailable, match="cannot start 2 workers"):
        WorkerPool.fork(2, serve)
    monkeypatch.undo()
    assert len(forked) == 1
    assert not Path(f"/proc/{forked[0]}").exists(), "the first worker was reaped"
    assert set(os.listdir("/proc/self/fd")) <= descriptors_before, "no pipe left open"


class ForkSignals:
    """Signals sent from `os.register_at_fork` hooks, at the exact moment of a fork (the
    hooks cannot be unregistered, so they stay registered and do nothing unless armed)."""

    to_child: signal.Signals | None = None  # sent by each new child to itself
    to_parent: signal.Signals | None = None  # sent by the parent to itself after a fork


def _signal_child() -> None:
    if ForkSignals.to_child is not None:
        os.kill(os.getpid(), ForkSignals.to_child)


def _signal_parent() -> None:
    if ForkSignals.to_parent is not None:
        # To this thread: a signal sent to the process may go to any thread that does
        # not block it, and the test is about the forking thread's blocked signals.
        signal.pthread_kill(threading.get_ident(), ForkSignals.to_parent)


os.register_at_fork(after_in_child=_signal_child, after_in_parent=_signal_parent)


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["int", "term"])
def test_children_ignore_interrupts_from_the_moment_they_are_forked(
    number: signal.Signals,
) -> None:
    """A Ctrl-C or a service manager's stop reaches the whole process group, even in a
    child's first instant (here: sent by the child to itself inside fork()): the parent
    decides, so no child may die of it."""
    ForkSignals.to_child = number
    try:
        pool = WorkerPool.fork(2, serve)
    finally:
        ForkSignals.to_child = None
    time.sleep(0.1)
    assert all(pool.poll(process) is None for process in pool.processes), "still running"
    pool.close()
    assert [process.exit_status for process in pool.processes] == [0, 0]


def test_a_ctrl_c_during_the_forks_leaves_no_child_and_no_pipe_behind() -> None:
    """Held back while the children start, the interrupt is raised once they are forked:
    the children are ended and reaped and every pipe closed before it goes on."""
    descriptors_before = set(os.listdir("/proc/self/fd"))
    forked: list[int] = []
    real_fork = os.fork

    def fork_and_note() -> int:
        pid = real_fork()
        if pid:
            forked.append(pid)
        return pid

    # Python's own Ctrl-C handler, whatever an earlier test left installed.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    ForkSignals.to_parent = signal.SIGINT
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(os, "fork", fork_and_note)
            with pytest.raises(KeyboardInterrupt):
                WorkerPool.fork(2, serve)
    finally:
        ForkSignals.to_parent = None
        signal.signal(signal.SIGINT, previous)
    assert len(forked) == 2, "both forked before the interrupt was let through"
    for pid in forked:
        assert not Path(f"/proc/{pid}").exists(), "ended and reaped"
    assert set(os.listdir("/proc/self/fd")) <= descriptors_before, "no pipe left open"


def test_exit_statuses_are_kept_when_sigchld_was_inherited_ignored() -> None:
    """Some supervisors start programs with SIGCHLD ignored, which makes the kernel reap
    children itself: how a worker ended (the scan's only word of a crash) would be lost."""
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        pool = WorkerPool.fork(2, serve)
        pool.close()
    finally:
        signal.signal(signal.SIGCHLD, previous)
    assert [process.exit_status for process in pool.processes] == [0, 0]


def test_children_close_what_they_inherit_also_without_proc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_listdir = os.listdir

    def no_proc(path: str) -> list[str]:
        if str(path) == "/proc/self/fd":  # what a child lists to find its descriptors
            raise FileNotFoundError(path)
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", no_proc)
    with WorkerPool.fork(2, serve) as pool:
        first, second = pool.processes
        others = {os.stat(fd).st_ino for fd in (second.to_worker, second.from_worker)}
        deadline = time.monotonic() + 5
        while pipes_held(first.pid) & others and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not pipes_held(first.pid) & others
