"""Each name resolved once: a per-key cache whose concurrent callers share one lookup."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from scanner.resolve.addresses import Resolution


class OnceCache:
    """Computes each key's `Resolution` once; concurrent callers wait for the first.

    Bookkeeping is synchronous between awaits, so no lock is needed. If the computing task
    is cancelled, its waiters wake, find no result, and one of them computes instead.
    """

    def __init__(self) -> None:
        self._done: dict[str, Resolution] = {}
        self._running: dict[str, anyio.Event] = {}

    async def get(self, key: str, compute: Callable[[], Awaitable[Resolution]]) -> Resolution:
        while True:
            if key in self._done:
                return self._done[key]
            running = self._running.get(key)
            if running is None:
                break
            await running.wait()
        finished = anyio.Event()
        self._running[key] = finished
        try:
            result = await compute()
            self._done[key] = result
            return result
        finally:
            del self._running[key]
            finished.set()
