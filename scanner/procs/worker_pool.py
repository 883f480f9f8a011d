"""The worker processes of `--workers`, forked before the event loop starts.

Why fork: a worker started as a new interpreter spends some 80 ms importing what this
process has already imported (over 150 ms while both cores are busy with the scan's
start), which is a tenth of a full loopback sweep; a forked worker is ready at once, with
every module in place.

Why then: forking is only safe in a process with one thread and no running event loop
(the child keeps just the forking thread, and a copy of any lock another thread held). So
the scan command forks the pool after counting the inventory and before `anyio.run`: no
thread, no loop and no socket of the scan exist yet. The child closes every descriptor
that is not its own or a standard stream (a child holding another's write end would keep
it from ever seeing the end of its input), ignores the signals the parent decides about
(`PARENT_DECIDES`),
runs its `serve` (`scanner.run.shard.serve` for a scan shard,
`scanner.history.writer.serve` for the history writer), and leaves with `os._exit`, so
nothing of the parent's (buffered output, atexit handlers, the history database) is
flushed or closed a second time. Its exit status is 70 (EX_SOFTWARE) if anything escapes.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import NoReturn, Self

REAP_WAIT = 1.0  # seconds a worker may take to end once its pipes are closed
CHILD_FAILURE = 70

PARENT_DECIDES = {
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
}
"""Ignored by every child: a Ctrl-C (or Ctrl-\\) reaches the whole process group, and so do a
service manager's stop, a dropped ssh session's SIGHUP and a `kill -USR1` sent to the
group, but the parent decides how a scan ends (its interrupt closes the children's input,
which ends them, so they cannot be orphaned). A child dying of a signal meant for the
parent would race it, and turn an interrupt into "a scan worker exited early". The same
set as `scanner.run.interrupts.HANDLED` (not imported: this module sits below the runner)."""

Serve = Callable[[int, int], int]
"""A child's work: (read_fd, write_fd) -> its exit status."""


class WorkersUnavailable(Exception):
    """The workers could not be started (out of processes or descriptors): the scan can
    still run, in this process."""


@dataclass(eq=False)
class WorkerProcess:
    """One forked worker: its pid and the parent's ends of its two pipes."""

    pid: int
    to_worker: int  # write end, non-blocking; -1 once closed
    from_worker: int  # read end; -1 once closed
    exit_status: int | None = None  # once reaped

    def close_input(self) -> None:
        """Close our end of the worker's input (which ends it), once: a descriptor number
        closed twice could by then name another file."""
        fd, self.to_worker = self.to_worker, -1
        _close_all([fd] if fd >= 0 else [])

    def close_output(self) -> None:
        """Close our end of the worker's output, once."""
        fd, self.from_worker = self.from_worker, -1
        _close_all([fd] if fd >= 0 else [])


class WorkerPool:
    """Forked workers, owned by the scan: closing the pool closes their pipes (which ends
    them) and reaps them."""

    def __init__(self, processes: list[WorkerProcess]) -> None:
        self.processes = processes
        self._closed = False

    @classmethod
    def fork(cls, count: int, serve: Serve) -> WorkerPool:
        """Fork `count` workers running `serve`; none for a count of 1 (the scan probes
        in-process)."""
        if count <= 1:
            return cls([])
        return cls(fork_processes([serve] * count, "workers"))

    @classmethod
    def fork_each(cls, serves: Sequence[Serve], what: str) -> WorkerPool:
        """Fork one worker per entry of `serves`, each running its own."""
        return cls(fork_processes(serves, what))

    def poll(self, process: WorkerProcess) -> int | None:
        """The worker's exit status if it has ended (reaping it), else None."""
        if process.exit_status is None:
            with contextlib.suppress(ChildProcessError):
                pid, status = os.waitpid(process.pid, os.WNOHANG)
                if pid != 0:
                    process.exit_status = os.waitstatus_to_exitcode(status)
        return process.exit_status

    def close(self) -> None:
        """Close the pipes, give the workers `REAP_WAIT` seconds to end, kill the rest.
        Safe to call again."""
        if self._closed:
            return
        self._closed = True
        for process in self.processes:
            process.close_input()
            process.close_output()
        deadline = time.monotonic() + REAP_WAIT
        for process in self.processes:
            while self.poll(process) is None and time.monotonic() < deadline:
                time.sleep(0.005)
            if self.poll(process) is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    _, status = os.waitpid(process.pid, 0)
                    process.exit_status = os.waitstatus_to_exitcode(status)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def fork_processes(serves: Sequence[Serve], what: str) -> list[WorkerProcess]:
    """Fork one child per entry of `serves`, each running its `serve(read_fd, write_fd)`
    on its own pipe pair and leaving with its return value as exit status. Raises
    `WorkersUnavailable` (naming `what` they were for) when out of pipes or processes,
    with none left behind."""
    count = len(serves)
    pipes: list[tuple[int, int, int, int]] = []
    try:
        for _ in range(count):
            pipes.append((*os.pipe(), *os.pipe()))
    except OSError as error:
        _close_all(fd for four in pipes for fd in four)
        raise WorkersUnavailable(f"cannot make pipes for {count} {what}: {error}") from error
    unclosed = {fd for four in pipes for fd in four}
    processes: list[WorkerProcess] = []
    if signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN:
        # Inherited from a supervisor: the kernel would reap the children itself, and
        # their exit statuses (how a scan learns that one failed) would be lost.
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # Held back until each child ignores them: a child killed by a Ctrl-C in its first
    # milliseconds would fail a scan that was only to be interrupted.
    signal_mask = signal.pthread_sigmask(signal.SIG_BLOCK, PARENT_DECIDES)
    try:
        for serve, (parent_read, child_write, child_read, parent_write) in zip(
            serves, pipes, strict=True
        ):
            sys.stdout.flush()  # else the child's copy of a buffer could be written twice
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _become_child(serve, child_read, child_write, signal_mask)
            os.set_blocking(parent_write, False)
            processes.append(WorkerProcess(pid, parent_write, parent_read))
        children_ends = {
            fd for _r, child_write, child_read, _w in pipes for fd in (child_write, child_read)
        }
        _close_all(children_ends)  # they belong to the children now
        unclosed -= children_ends
        # A Ctrl-C held back during the forks is raised here, inside the `try`.
        signal.pthread_sigmask(signal.SIG_SETMASK, signal_mask)
    except BaseException as error:
        kept = {fd for process in processes for fd in (process.to_worker, process.from_worker)}
        _close_all(unclosed - kept)
        WorkerPool(processes).close()
        signal.pthread_sigmask(signal.SIG_SETMASK, signal_mask)
        if isinstance(error, OSError):  # fork: out of processes or memory
            raise WorkersUnavailable(f"cannot start {count} {what}: {error}") from error
        raise
    return processes


def _become_child(
    serve: Serve, read_fd: int, write_fd: int, signal_mask: set[int | signal.Signals]
) -> NoReturn:
    """The child's whole life: never returns into the parent's code."""
    status = CHILD_FAILURE
    try:
        for number in PARENT_DECIDES:
            signal.signal(number, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, signal_mask)  # pending ones: discarded
        _close_inherited(keep={0, 1, 2, read_fd, write_fd})
        status = serve(read_fd, write_fd)
    except BaseException:  # the parent learns of it from the pipe, or from the status
        status = CHILD_FAILURE
    finally:
        os._exit(status)


def _close_inherited(keep: set[int]) -> None:
    """Close every descriptor but `keep`: another child's pipe end held here would keep
    that child from ever seeing the end of its input (the history writer is forked before
    the workers, which then inherit its pipes), and the parent's files are not ours."""
    try:
        open_fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc: every possible descriptor, between the ones to keep
        bounds = [-1, *sorted(keep), os.sysconf("SC_OPEN_MAX")]
        for low, high in itertools.pairwise(bounds):
            os.closerange(low + 1, high)
        return
    _close_all(fd for fd in open_fds if fd not in keep)  # the listing's own fails: fine


def _close_all(fds: Iterable[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
