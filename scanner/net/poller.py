"""One epoll set for every probe socket, watched by the event loop as a single descriptor.

`loop.add_writer` costs two `epoll_ctl` calls per probe (add, then delete) plus a handle
object in the loop; at tens of thousands of probes a second that is a large share of the
work. Here each probe socket is registered once in our own epoll set with
`EPOLLONESHOT` and never unregistered: closing a descriptor removes it from the set by
itself. The loop watches only the epoll descriptor (an epoll set is itself pollable) and
calls `_dispatch`, which hands every ready descriptor to its probe's callback. Works the
same under uvloop and the default asyncio loop. Linux only, like the rest of net/.
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import Callable

BATCH = 4096  # ready descriptors taken per wake-up

READABLE = select.EPOLLIN | select.EPOLLONESHOT
WRITABLE = select.EPOLLOUT | select.EPOLLONESHOT


class EpollPoller:
    """Readiness for many sockets through one loop registration."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._epoll = select.epoll()
        self._callbacks: dict[int, Callable[[], None]] = {}
        loop.add_reader(self._epoll.fileno(), self._dispatch)

    def watch(self, fd: int, events: int, callback: Callable[[], None]) -> None:
        """Call `callback` once when `fd` is ready for `events` (or has an error)."""
        self._callbacks[fd] = callback
        try:
            self._epoll.register(fd, events)
        except FileExistsError:  # re-arming a one-shot registration
            self._epoll.modify(fd, events)

    def forget(self, fd: int) -> None:
        """The probe ends without waiting (expired, cancelled); its socket closes next,
        which drops it from the epoll set."""
        self._callbacks.pop(fd, None)

    def _dispatch(self) -> None:
        callbacks = self._callbacks
        for fd, _events in self._epoll.poll(0, BATCH):
            callback = callbacks.pop(fd, None)
            if callback is not None:
                callback()

    def close(self) -> None:
        self._loop.remove_reader(self._epoll.fileno())
        self._epoll.close()
