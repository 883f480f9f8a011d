"""An asyncio event loop on virtual time, for scheduling tests that assert exact times.

The engine's pacing, rate limit, deadlines and retries are decisions about *when*: tested on
the real clock they either sleep for real or assert loose bounds that a busy 2-core CI
machine breaks (a paced gap of 0.0418 s against an asserted 0.045). Here, as with trio's
`autojump_clock`, time stands still while anything is ready to run and jumps straight to
the next timer when the loop would otherwise sleep, so a 100-second timeout takes no time
and every timestamp is exact.

How: the loop's `time()` is a counter of its own, and its selector polls the real one
without blocking; when nothing is ready and the loop asks to sleep for `timeout` seconds,
the counter advances by `timeout` instead. The engine and anyio read time through
`loop.time()` (pass `clock=loop.time` to the engine), so they see the jumps. Real I/O
still works (the poll is real), but a test that waits on real I/O with no timer pending
blocks for real, as it would on any loop. uvloop cannot be driven this way, so tests on
virtual time run on this loop alone (`@pytest.mark.virtual_time`).
"""

from __future__ import annotations

import asyncio
import selectors


class _JumpingSelector(selectors.DefaultSelector):
    """The real selector, polled without blocking; an idle wait advances the clock."""

    clock: VirtualClock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if ready or timeout is None or timeout <= 0:
            if not ready and timeout is None:
                # Nothing scheduled at all: only real I/O can wake the loop.
                return list(super().select(None))
            return ready
        self.clock.advance(timeout)
        return []


class VirtualClock:
    """Seconds since the loop started, moved only by idle waits."""

    def __init__(self) -> None:
        self.now = 0.0

    def advance(self, seconds: float) -> None:
        self.now += seconds


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """`asyncio.SelectorEventLoop` whose time jumps over every idle wait."""

    def __init__(self) -> None:
        self.clock = VirtualClock()
        selector = _JumpingSelector()
        selector.clock = self.clock
        super().__init__(selector)
        # asyncio runs a timer only when it is due *before* now plus this resolution (a
        # timer due exactly now would wait for a zero-second select forever); a nanosecond
        # also absorbs the rounding of `now + (when - now)`.
        self._clock_resolution = 1e-9

    def time(self) -> float:
        return self.clock.now


def new_virtual_time_loop() -> asyncio.AbstractEventLoop:
    return VirtualTimeLoop()
