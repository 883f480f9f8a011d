"""The engine's scheduling logic against a fake connector: limits, retries, back-off, pacing.

The fake answers from a script (port -> outcomes per attempt) after a delay of loop time,
and every test here runs on the virtual-time loop (tests/support/virtual_time.py): time
jumps over idle waits, so a pace, a rate or a deadline is asserted exactly, never as a
wall-clock bound that a busy machine would break. The kernel's side is in
tests/integration.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

import anyio
import pytest

from scanner.core.model import Outcome, Proto, Reason, Result, State, Target
from scanner.engine.engine import Engine, EngineConfig
from tests.support.fake_connector import (
    EMFILE,
    ICMP_CLOSED,
    OPEN,
    RST,
    SELF,
    SILENT,
    FakeConnector,
    make_targets,
)

pytestmark = pytest.mark.virtual_time


async def run_engine(
    config: EngineConfig, connector: FakeConnector, targets: Sequence[Target]
) -> tuple[list[Result], list[str], Engine]:
    results: list[Result] = []
    warnings: list[str] = []
    engine = Engine(
        config,
        {Proto.TCP: connector, Proto.UDP: connector},
        results.append,
        warnings.append,
        clock=asyncio.get_running_loop().time,
    )
    send, receive = anyio.create_memory_object_stream[list[Target]](16)

    async def feed() -> None:
        async with send:
            for start in range(0, len(targets), 7):
                await send.send(list(targets[start : start + 7]))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            group.start_soon(feed)
            await engine.run(receive)
    return results, warnings, engine


def start_times(connector: FakeConnector) -> list[float]:
    """When each probe started, in seconds of loop time after the first one."""
    first = connector.starts[0][0]
    return [when - first for when, _ in connector.starts]


def exactly(times: Sequence[float]) -> object:
    """Virtual time is exact up to the rounding of float additions."""
    return pytest.approx(list(times), abs=1e-9)


def states(results: Sequence[Result]) -> Counter[tuple[State, Reason]]:
    return Counter((result.state, result.reason) for result in results)


@pytest.mark.asyncio
async def test_every_target_gets_exactly_one_result() -> None:
    connector = FakeConnector(script={22: [OPEN]})
    targets = make_targets([f"10.0.0.{i}" for i in range(1, 21)], range(20, 30))
    results, warnings, _ = await run_engine(EngineConfig(concurrency=7), connector, targets)
    assert sorted((r.address, r.endpoint.port) for r in results) == sorted(
        (t.address, t.endpoint.port) for t in targets
    )
    assert states(results) == Counter(
        {(State.OPEN, Reason.SYN_ACK): 20, (State.REFUSED, Reason.CONN_REFUSED): 180}
    )
    assert warnings == []


@pytest.mark.asyncio
async def test_concurrency_and_per_host_limits_hold() -> None:
    connector = FakeConnector(delay=0.005)
    targets = make_targets(["10.0.0.1", "10.0.0.2", "10.0.0.3"], range(1, 101))
    results, _, _ = await run_engine(EngineConfig(concurrency=12, per_host=5), connector, targets)
    assert len(results) == 300
    assert connector.max_inflight <= 12
    assert max(connector.max_per_host.values()) <= 5
    assert connector.max_inflight > 5  # several hosts were probed side by side


@pytest.mark.asyncio
async def test_silence_is_retried_then_reported() -> None:
    """A silent port gets one retry while no retry has ever drawn an answer from its host
    (a DROP stays silent however often it is asked)."""
    connector = FakeConnector(script={80: [SILENT]})
    targets = make_targets(["10.0.0.1"], [80])
    results, _, _ = await run_engine(EngineConfig(timeout=0.05, retries=2), connector, targets)
    (result,) = results
    assert (result.state, result.reason) == (State.FILTERED, Reason.NO_RESPONSE)
    assert result.attempts == 2
    assert connector.attempts[("10.0.0.1", 80)] == 2
    assert start_times(connector) == exactly([0.0, 0.05])  # retried the moment it expired


@pytest.mark.asyncio
async def test_retries_that_draw_answers_earn_more_retries_up_to_the_limit() -> None:
    """Port 81 answers its retry, so retries help on this host: port 82 may use all of
    --retries, and port 83, silent for good, stops at the limit."""
    connector = FakeConnector(script={81: [SILENT, OPEN], 82: [SILENT, SILENT, OPEN], 83: [SILENT]})
    targets = make_targets(["10.0.0.1"], [81, 82, 83])
    results, _, _ = await run_engine(EngineConfig(timeout=0.05, retries=2), connector, targets)
    by_port = {r.endpoint.port: r for r in results}
    assert (by_port[81].state, by_port[81].attempts) == (State.OPEN, 2)
    assert (by_port[82].state, by_port[82].attempts) == (State.OPEN, 3)
    assert (by_port[83].state, by_port[83].attempts) == (State.FILTERED, 3)


@pytest.mark.asyncio
async def test_udp_silence_is_open_filtered() -> None:
    connector = FakeConnector(default=SILENT)
    targets = make_targets(["10.0.0.1"], [9], Proto.UDP)
    results, _, _ = await run_engine(EngineConfig(timeout=0.02, retries=1), connector, targets)
    assert [(r.state, r.reason) for r in results] == [(State.OPEN_FILTERED, Reason.NO_RESPONSE)]


@pytest.mark.asyncio
async def test_descriptor_exhaustion_lowers_concurrency_and_is_never_a_state() -> None:
    connector = FakeConnector(script={port: [EMFILE, EMFILE, RST] for port in range(1, 51)})
    targets = make_targets(["10.0.0.1"], range(1, 51))
    results, warnings, engine = await run_engine(
        EngineConfig(concurrency=40, backoff_floor=4), connector, targets
    )
    assert states(results) == Counter({(State.REFUSED, Reason.CONN_REFUSED): 50})
    assert engine.stats.scanner_side_errors == 100
    assert any("lowering concurrency" in warning for warning in warnings)


@pytest.mark.asyncio
async def test_persistent_resource_failure_ends_as_error_not_refused() -> None:
    connector = FakeConnector(default=EMFILE)
    targets = make_targets(["10.0.0.1"], [1])
    config = EngineConfig(resource_retry_limit=5, resource_backoff_max=0.01)
    results, _, _ = await run_engine(config, connector, targets)
    assert [(r.state, r.reason) for r in results] == [(State.ERROR, Reason.LOCAL_ERROR)]
    assert connector.attempts[("10.0.0.1", 1)] == 5
    assert "scanner-side" in (results[0].message or "")


@pytest.mark.asyncio
async def test_self_connect_is_retried_on_a_fresh_socket() -> None:
    connector = FakeConnector(script={40000: [SELF, RST]})
    targets = make_targets(["127.0.0.1"], [40000])
    results, _, engine = await run_engine(EngineConfig(), connector, targets)
    assert [(r.state, r.reason) for r in results] == [(State.REFUSED, Reason.CONN_REFUSED)]
    assert engine.stats.self_connects == 1


@pytest.mark.asyncio
async def test_retries_to_an_icmp_sending_host_are_paced() -> None:
    # Ports 1-3 answer with ICMP at once; 10-14 are silent first (rate-limited), then answer.
    script: dict[int, Sequence[Outcome | None]] = {port: [ICMP_CLOSED] for port in (1, 2, 3)}
    script.update({port: [SILENT, ICMP_CLOSED] for port in range(10, 15)})
    connector = FakeConnector(script=script)
    targets = make_targets(["10.0.0.9"], [1, 2, 3, *range(10, 15)])
    pace = 0.05
    results, _, _ = await run_engine(
        EngineConfig(timeout=0.03, retries=2, icmp_pace_v4=pace), connector, targets
    )
    assert states(results) == Counter({(State.REFUSED, Reason.PORT_UNREACH): 8})
    # All eight at once; the five silent ones expire at 0.03 s, and since the host has
    # sent ICMP, their retries go out one per pace rather than in a burst.
    assert start_times(connector) == exactly([0.0] * 8 + [0.03 + pace * k for k in range(5)])


@pytest.mark.asyncio
async def test_rate_limit_spaces_new_probes() -> None:
    connector = FakeConnector(delay=0.001)
    targets = make_targets(["10.0.0.1"], range(1, 41))
    await run_engine(EngineConfig(rate=200.0), connector, targets)
    # A burst of 10 (50 ms worth), then one probe every 1/200 s.
    assert start_times(connector) == exactly([0.0] * 10 + [k / 200 for k in range(1, 31)])


@pytest.mark.asyncio
async def test_cancellation_abandons_every_probe_in_flight() -> None:
    connector = FakeConnector(default=SILENT)
    targets = make_targets(["10.0.0.1", "10.0.0.2"], range(1, 51))
    results: list[Result] = []
    engine = Engine(
        EngineConfig(timeout=30), {Proto.TCP: connector}, results.append, lambda _message: None
    )
    send, receive = anyio.create_memory_object_stream[list[Target]](1)
    send.send_nowait(list(targets))
    send.close()
    with anyio.move_on_after(0.1):
        await engine.run(receive)
    assert results == []
    assert connector.cancelled == 100
    assert connector.inflight == 0


@pytest.mark.asyncio
async def test_max_time_reports_unconfirmed_silence_and_counts_what_was_never_probed() -> None:
    # One probe in flight per host at a time, silent ports with retries pending, and far
    # more targets than can be probed before the time runs out.
    connector = FakeConnector(default=SILENT)
    targets = make_targets(["10.0.0.1"], range(1, 201), Proto.UDP)
    config = EngineConfig(timeout=0.05, retries=50, per_host=4, max_time=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    results, _, engine = await run_engine(config, connector, targets)
    assert loop.time() - started == pytest.approx(0.3, abs=1e-9)  # stopped at --max-time
    assert engine.stats.out_of_time
    assert {(r.state, r.reason) for r in results} == {(State.OPEN_FILTERED, Reason.NO_RESPONSE)}
    # Four ports at a time, each wave expiring after 0.05 s; every port that was tried is
    # reported once, everything else is counted as never probed.
    assert start_times(connector) == exactly([0.05 * (k // 4) for k in range(24)])
    probed = [r.endpoint.port for r in results]
    assert len(probed) == len(set(probed)) == 12
    assert engine.stats.not_probed == 200 - 12
    assert connector.inflight == 0


@pytest.mark.asyncio
async def test_a_lossy_path_earns_the_retries_its_measured_loss_needs() -> None:
    """A host whose path loses probes: a fifth of its ports answer only their second try,
    a twenty-fifth only their fifth. The loss measured on the first (answered after one
    lost try) gives the silent ports enough tries (scanner/core/loss.py): no port is
    called filtered. With --retries 2 the cap holds and the deepest losses are filtered."""

    def script(port: int) -> list[Outcome | None]:
        if port % 25 == 0:
            return [SILENT, SILENT, SILENT, SILENT, RST]
        if port % 5 == 0:
            return [SILENT, RST]
        return [RST]

    ports = list(range(1, 251))
    adaptive = FakeConnector(script={port: script(port) for port in ports})
    targets = make_targets(["10.0.0.1"], ports)
    results, _, _ = await run_engine(EngineConfig(timeout=0.05), adaptive, targets)
    assert states(results) == Counter({(State.REFUSED, Reason.CONN_REFUSED): 250})
    assert {r.attempts for r in results if r.endpoint.port % 25 == 0} == {5}

    capped = FakeConnector(script={port: script(port) for port in ports})
    results, _, _ = await run_engine(EngineConfig(timeout=0.05, retries=2), capped, targets)
    filtered = {r.endpoint.port for r in results if r.state is State.FILTERED}
    assert filtered == set(range(25, 251, 25))


@pytest.mark.asyncio
async def test_a_drop_on_a_clean_path_costs_no_more_tries_than_before() -> None:
    """Every port of the host answers at once but one, which DROPs: no loss was measured,
    so the dropped port gets today's one retry, and the scan is no slower."""
    connector = FakeConnector(script={9: [SILENT]})
    targets = make_targets(["10.0.0.2"], list(range(1, 201)))
    results, _, _ = await run_engine(EngineConfig(timeout=0.05), connector, targets)
    (dropped,) = [r for r in results if r.state is State.FILTERED]
    assert dropped.endpoint.port == 9
    assert connector.attempts[("10.0.0.2", 9)] == 2


@pytest.mark.asyncio
async def test_a_lossy_udp_path_past_the_icmp_limit_earns_retries_too() -> None:
    """UDP on a host whose ICMP errors are rate-limited and whose path loses datagrams:
    some ports answer only their paced retry (the limit, not loss), a third of them only
    the retry after that (one loss), a few only their sixth try. The loss measured past
    the limit gives the deep ones their tries; --retries 2 caps them, as before."""

    def script(port: int) -> list[Outcome | None]:
        if port % 20 == 0:
            return [SILENT] * 5 + [ICMP_CLOSED]
        if port % 3 == 0:
            return [SILENT, SILENT, ICMP_CLOSED]
        if port % 3 == 1:
            return [SILENT, ICMP_CLOSED]
        return [ICMP_CLOSED]

    ports = list(range(1, 121))
    targets = make_targets(["10.0.0.3"], ports, Proto.UDP)
    config = EngineConfig(timeout=0.05, icmp_pace_v4=0.01)
    adaptive = FakeConnector(script={port: script(port) for port in ports})
    results, _, _ = await run_engine(config, adaptive, targets)
    assert states(results) == Counter({(State.REFUSED, Reason.PORT_UNREACH): 120})

    capped = FakeConnector(script={port: script(port) for port in ports})
    results, _, _ = await run_engine(
        EngineConfig(timeout=0.05, icmp_pace_v4=0.01, retries=2), capped, targets
    )
    unanswered = {r.endpoint.port for r in results if r.state is State.OPEN_FILTERED}
    assert unanswered == set(range(20, 121, 20))


class KnownPaths:
    """Paths as a test wants them: every address on one path; some on the link, some
    never answering ARP."""

    def __init__(self, on_link: bool = False, unanswered: frozenset[str] = frozenset()) -> None:
        self._on_link = on_link
        self._unanswered = unanswered

    def path_of(self, address: str) -> str:
        return "the path"

    def on_link(self, address: str) -> bool:
        return self._on_link

    def unanswered_neighbour(self, address: str) -> bool:
        return address in self._unanswered


async def run_on_paths(
    config: EngineConfig, connector: FakeConnector, targets: Sequence[Target], paths: KnownPaths
) -> tuple[list[Result], float]:
    """The results, and how long the scan took in loop time."""
    results: list[Result] = []
    began = asyncio.get_running_loop().time()
    engine = Engine(
        config,
        {Proto.TCP: connector, Proto.UDP: connector},
        results.append,
        lambda message: None,
        clock=asyncio.get_running_loop().time,
        paths=paths,
    )
    send, receive = anyio.create_memory_object_stream[list[Target]](16)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:

            async def feed() -> None:
                async with send:
                    await send.send(list(targets))

            group.start_soon(feed)
            await engine.run(receive)
    return results, asyncio.get_running_loop().time() - began


def starts_of(connector: FakeConnector, address: str) -> list[float]:
    return [when for when, target in connector.starts if target.address == address]


@pytest.mark.asyncio
async def test_a_silent_host_waits_what_its_path_shows_then_the_full_timeout() -> None:
    """10.0.0.1 answers at once; 10.0.0.2, on the same path, is silent. Its first try,
    sent before any answer, is cut to twice the path's adaptive wait (0.1 s floor x 2) once
    four answers made the path's estimate; its retry waits the full --timeout, which is
    what a slow host far behind the same next hop needs (10.0.0.3 answers only then)."""
    connector = FakeConnector(script={80: [SILENT], 81: [SILENT, OPEN]}, default=RST, delay=0.001)
    targets = [
        *make_targets(["10.0.0.1"], [1, 2, 3, 4, 5]),
        *make_targets(["10.0.0.2"], [80]),
        *make_targets(["10.0.0.3"], [81]),
    ]
    config = EngineConfig(timeout=1.0, min_timeout=0.1)
    results, took = await run_on_paths(config, connector, targets, KnownPaths())
    assert took == pytest.approx(1.2, abs=0.01)  # 0.2 s, then the full 1.0 s
    by_address = {r.address: r for r in results if r.endpoint.port in (80, 81)}
    assert (by_address["10.0.0.2"].state, by_address["10.0.0.2"].attempts) == (
        State.FILTERED,
        2,
    )
    assert (by_address["10.0.0.3"].state, by_address["10.0.0.3"].reason) == (
        State.OPEN,
        Reason.SYN_ACK,
    )
    assert starts_of(connector, "10.0.0.2") == exactly([0.0, 0.2])


@pytest.mark.asyncio
async def test_without_a_retry_the_path_does_not_shorten_the_wait() -> None:
    connector = FakeConnector(script={80: [SILENT]}, default=RST, delay=0.001)
    targets = [*make_targets(["10.0.0.1"], [1, 2, 3, 4, 5]), *make_targets(["10.0.0.2"], [80])]
    config = EngineConfig(timeout=1.0, min_timeout=0.1, retries=0)
    results, _took = await run_on_paths(config, connector, targets, KnownPaths())
    assert {r.attempts for r in results if r.address == "10.0.0.2"} == {1}
    assert starts_of(connector, "10.0.0.2") == exactly([0.0])
    assert connector.cancelled == 0


@pytest.mark.asyncio
async def test_a_silent_neighbour_is_retried_briefly_and_an_absent_one_unreachable() -> None:
    """On a link nothing far hides behind the neighbours: a silent one's retry waits four
    times its first try, at least 0.5 s; one that never answered ARP is host-unreach."""
    connector = FakeConnector(script={80: [SILENT]}, default=RST, delay=0.001)
    targets = [
        *make_targets(["10.0.0.1"], [1, 2, 3, 4, 5]),
        *make_targets(["10.0.0.2", "10.0.0.9"], [80]),
    ]
    config = EngineConfig(timeout=1.5, min_timeout=0.1)
    paths = KnownPaths(on_link=True, unanswered=frozenset({"10.0.0.9"}))
    results, took = await run_on_paths(config, connector, targets, paths)
    assert took == pytest.approx(1.0, abs=0.01)  # 0.2 s, then 4 x 0.2 s: not 1.5 s
    verdicts = {r.address: (r.state, r.reason) for r in results if r.endpoint.port == 80}
    assert verdicts == {
        "10.0.0.2": (State.FILTERED, Reason.NO_RESPONSE),
        "10.0.0.9": (State.FILTERED, Reason.HOST_UNREACH),
    }
    assert starts_of(connector, "10.0.0.2") == exactly([0.0, 0.2])
