"""The signal guard's phases, with real signals sent to this process (`signal.raise_signal`
runs the handler before it returns) and the guard's own handlers, restored after each."""

from __future__ import annotations

import asyncio
import signal

import pytest

from scanner.run.interrupts import HANDLED, Interrupt, Phase, ScanControl, SignalGuard
from scanner.status import ExitStatus


class Said(list[str]):
    """The lines the guard wrote to stderr."""

    def __call__(self, line: str) -> None:
        self.append(line)


def test_before_the_scan_an_interrupt_stops_at_once_naming_the_signal() -> None:
    said = Said()
    guard = SignalGuard(said)
    with guard.installed(), pytest.raises(Interrupt, match="SIGHUP before the scan started"):
        signal.raise_signal(signal.SIGHUP)
    assert guard.received is signal.SIGHUP


def test_while_writing_the_first_interrupt_is_said_and_the_second_quits() -> None:
    said = Said()
    quit: list[str] = []
    guard = SignalGuard(said)
    with guard.installed():
        guard.begin_scan()
        guard.finishing(quit.append)
        signal.raise_signal(signal.SIGTERM)  # no exception: the writing goes on
        assert guard.phase is Phase.FINISHING
        assert said == [
            "reachscan: interrupted by SIGTERM while writing the outputs: every result is "
            "in, so the writing is finished first (interrupt again to quit at once)"
        ]
        assert quit == []
        signal.raise_signal(signal.SIGINT)  # quits from the handler itself: no exception
        assert quit == [
            "reachscan: interrupted again (SIGINT): quit at once; outputs not yet written "
            "keep their previous files, the history run is stored as interrupted"
        ]
    assert guard.exit_status(ExitStatus.OK) == ExitStatus.INTERRUPTED


@pytest.mark.asyncio
async def test_while_scanning_interrupts_go_to_the_loop_and_wait_for_its_control() -> None:
    said = Said()
    guard = SignalGuard(said)
    stopped: list[str] = []
    quit: list[str] = []
    with guard.installed():
        guard.begin_scan()
        signal.raise_signal(signal.SIGQUIT)  # before the scan can be stopped: it waits
        assert guard.received is signal.SIGQUIT and stopped == []
        loop = asyncio.get_running_loop()
        guard.control_scan(ScanControl(loop, stopped.append, quit.append))
        assert len(stopped) == 1 and "interrupted by SIGQUIT" in stopped[0]
        signal.raise_signal(signal.SIGTERM)
        assert quit == []  # only from the loop, never inside the interrupted code
        for _ in range(3):
            await asyncio.sleep(0)
        assert len(quit) == 1 and "interrupted again (SIGTERM)" in quit[0]
    assert said == []


def test_a_second_interrupt_that_came_before_the_writing_quits_when_it_begins() -> None:
    said = Said()
    quit: list[str] = []
    guard = SignalGuard(said)
    with guard.installed():
        guard.begin_scan()
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
        guard.finishing(quit.append)
    assert len(said) == 1 and "every result is in" in said[0]
    assert len(quit) == 1 and "quit at once" in quit[0]


def test_usr1_prints_the_status_and_usr2_is_ignored() -> None:
    said = Said()
    guard = SignalGuard(said)
    with guard.installed():
        guard.status = lambda: "reachscan: 12 results so far"
        signal.raise_signal(signal.SIGUSR1)
        signal.raise_signal(signal.SIGUSR2)  # its default action would end this process
    assert said == ["reachscan: 12 results so far"]
    assert guard.received is None
    assert guard.exit_status(ExitStatus.NOT_AS_EXPECTED) == ExitStatus.NOT_AS_EXPECTED


def test_the_previous_handlers_come_back_and_important_statuses_stay() -> None:
    before = {number: signal.getsignal(number) for number in HANDLED}
    guard = SignalGuard(Said())
    with guard.installed():
        assert all(signal.getsignal(number) != before[number] for number in HANDLED)
        guard.begin_scan()
        guard.finishing(lambda message: None)
        signal.raise_signal(signal.SIGTERM)
    assert {number: signal.getsignal(number) for number in HANDLED} == before
    assert guard.exit_status(ExitStatus.OUTPUT_FAILED) == ExitStatus.OUTPUT_FAILED
    assert guard.exit_status(ExitStatus.OUT_OF_TIME) == ExitStatus.INTERRUPTED


def test_after_a_failure_every_interrupt_quits_at_once_also_one_that_waited() -> None:
    """The outputs could not be opened (no loop control was ever given): the interrupt
    that came meanwhile is obeyed when the run starts closing, and so is the next."""
    quit: list[str] = []
    guard = SignalGuard(Said())
    with guard.installed():
        guard.begin_scan()
        signal.raise_signal(signal.SIGTERM)  # while the outputs were opened: it waits
        assert quit == []
        guard.ending(quit.append)
        assert guard.phase is Phase.ENDING
        assert quit == [
            "reachscan: interrupted by SIGTERM while closing after a failure: quit at "
            "once; outputs not yet written keep their previous files"
        ]
        signal.raise_signal(signal.SIGHUP)  # the first there, too, quits
        assert len(quit) == 2 and "SIGHUP while closing after a failure" in quit[1]


def test_an_interrupt_once_the_scans_loop_is_closed_quits_instead_of_vanishing() -> None:
    """The scan raised and its loop is closed while the workers and the history are
    closed: an interrupt cannot go to the loop any more, so it quits from the handler."""
    said = Said()
    stopped: list[str] = []
    quit: list[str] = []
    guard = SignalGuard(said)
    loop = asyncio.new_event_loop()
    with guard.installed():
        guard.begin_scan()
        guard.control_scan(ScanControl(loop, stopped.append, quit.append))
        loop.close()
        signal.raise_signal(signal.SIGTERM)
    assert stopped == [] and said == []
    assert len(quit) == 1 and "SIGTERM while closing after a failure: quit at once" in quit[0]
    assert guard.exit_status(ExitStatus.OUTPUT_FAILED) == ExitStatus.OUTPUT_FAILED
