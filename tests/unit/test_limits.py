"""What a scan needs of this machine, and running out of it: the pure parts of
scanner/procs/limits.py (the descriptor arithmetic, recognising exhaustion) and the loop's
exception handler on a real event loop."""

from __future__ import annotations

import asyncio
import errno

import pytest

from scanner.procs.limits import (
    HISTORY_DESCRIPTORS,
    SPARE_DESCRIPTORS,
    DescriptorNeeds,
    FatalCallbackWatch,
    exhaustion_message,
    fit_workers,
    is_exhaustion,
    is_out_of_descriptors,
    is_out_of_memory,
    shortage_message,
)

NEEDS = DescriptorNeeds(
    already_open=3, loop=9, file_outputs=5, history=True, history_writer=True, workers=4
)
IN_ONE_PROCESS = 3 + 9 + 5 + HISTORY_DESCRIPTORS + 2 + SPARE_DESCRIPTORS


def test_one_process_needs_no_worker_pipes_and_each_worker_two() -> None:
    assert fit_workers(NEEDS, 10_000) == NEEDS
    assert NEEDS.total == IN_ONE_PROCESS + 4 * 2
    assert fit_workers(NEEDS, IN_ONE_PROCESS + 4 * 2 - 1) == DescriptorNeeds(3, 9, 5, True, True, 3)
    fitted = fit_workers(NEEDS, IN_ONE_PROCESS + 3)  # two workers need 4 more
    assert fitted is not None and fitted.workers == 1 and fitted.total == IN_ONE_PROCESS


def test_a_limit_below_one_process_fits_nothing_and_says_how_many() -> None:
    assert fit_workers(NEEDS, IN_ONE_PROCESS - 1) is None
    one = fit_workers(NEEDS, IN_ONE_PROCESS)
    assert one is not None
    message = shortage_message(one, 24)
    assert message.startswith(
        f"reachscan: needs at least {IN_ONE_PROCESS} file descriptors (ulimit -n is 24): "
        "3 already open, 9 for the event loop, 5 for 5 output files, "
    )
    assert "\n" not in message


def test_exhaustion_is_found_inside_task_groups() -> None:
    nested = ExceptionGroup("outer", [ValueError("x"), ExceptionGroup("inner", [MemoryError()])])
    assert is_out_of_memory(nested) and is_exhaustion(nested)
    assert is_out_of_memory(ImportError("x.so: failed to map segment from shared object"))
    assert is_out_of_descriptors(ExceptionGroup("g", [OSError(errno.EMFILE, "Too many")]))
    assert not is_exhaustion(ExceptionGroup("g", [OSError(errno.ECONNREFUSED, "refused")]))
    assert exhaustion_message(ValueError("not ours")) is None
    message = exhaustion_message(MemoryError())
    assert message is not None and message.startswith("reachscan: out of memory")


def test_the_first_exhaustion_in_a_callback_stops_the_run_once_and_later_ones_are_quiet(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A callback failing at every turn (a readable pipe) must not log each time."""
    stops: list[int] = []
    loop = asyncio.new_event_loop()
    watch = FatalCallbackWatch(lambda: stops.append(1), last_resort=None)
    loop.set_exception_handler(watch)

    def out_of_memory() -> None:
        raise MemoryError("test")

    try:
        for _ in range(100):
            loop.call_soon(out_of_memory)
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    assert stops == [1]
    assert isinstance(watch.error, MemoryError)
    with pytest.raises(MemoryError):
        watch.raise_error()
    assert capsys.readouterr().err == ""


def test_other_callback_errors_still_reach_the_default_handler() -> None:
    logged: list[object] = []
    loop = asyncio.new_event_loop()
    watch = FatalCallbackWatch(lambda: None, last_resort=None)
    loop.set_exception_handler(watch)
    loop.default_exception_handler = lambda context: logged.append(context)  # type: ignore[method-assign]

    def fails() -> None:
        raise ValueError("not an exhaustion")

    try:
        loop.call_soon(fails)
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    assert watch.error is None and len(logged) == 1
