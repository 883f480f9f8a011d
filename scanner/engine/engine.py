"""The scan engine: schedules probes, keeps deadlines, retries silence, never classifies.

Design, and why:

* **One dispatcher, callbacks for completions.** A probe is a socket registered with the
  loop's poller; its completion is a plain callback. There is no task and no timer per
  probe: a task per probe costs memory proportional to the inventory, and a timer per
  probe costs about a third of the throughput (FIELD_NOTES.md). Deadlines live in one
  heap, swept by the dispatcher; it sleeps until the earliest deadline, a retry falling
  due, a rate slot, new input or freed capacity.
* **Bounded memory.** Targets arrive through a bounded stream fed by the resolver stage;
  the dispatcher holds at most `lookahead` targets that wait for a per-host slot. Per-host
  bookkeeping is dropped once a host has nothing queued, in flight or waiting to retry.
* **Silence is retried, and paced where ICMP is rate-limited.** Linux sends at most about
  one ICMP error per second per destination after a burst of six (IPv6: one per 100 ms).
  A host that has answered a probe with an ICMP error in this run may be swallowing
  further errors, so its silent ports are retried one per pacing interval rather than in a
  burst that would only meet the same limit. Hosts that never sent ICMP (resets, or no
  answer at all) are retried at once.
* **Scanner-side errors are not target states.** Out of descriptors, out of source ports,
  out of buffers: the engine lowers its concurrency, says so, waits a little and tries the
  same probe again. A self-connect (TCP simultaneous open onto our own source port) is
  retried on a fresh socket. Only after many fruitless tries does it give up, with state
  `error`, which says the scanner failed, never that the target refused.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import anyio
from anyio.abc import ObjectReceiveStream

from scanner.core.classify import classify_target_side, is_scanner_side
from scanner.core.loss import PathLoss, allowed_retries, udp_tries_that_count
from scanner.core.model import Event, Outcome, Proto, Reason, Result, State, Target, Verdict
from scanner.core.paths import PrefixPaths
from scanner.net.base import Connector, ProbeHandle

ResultCallback = Callable[[Result], None]
WarningCallback = Callable[[str], None]

SELF_CONNECT_GIVE_UP = 8

RTT_SAMPLES_BEFORE_ADAPTING = 4

PATH_FIRST_TRY_MARGIN = 2.0
"""A host with no answer of its own waits this many times its path's adaptive wait on its
first try (at least --min-timeout, at most --timeout); its retry waits the full --timeout,
so a far host behind a fast neighbourhood is still heard (docs/ARCHITECTURE.md)."""
ON_LINK_RETRY_FACTOR = 4.0
ON_LINK_RETRY_FLOOR = 0.5
"""The retry of a silent neighbour on the link: nothing far hides behind a link, and a
host that neither answers a SYN nor ARP within half a second there is not answering."""


class Paths(Protocol):
    """Which hosts share a path, and whether an on-link neighbour never answered ARP
    (scanner/core/paths.py; scanner/net/routes.py reads this machine's tables)."""

    def path_of(self, address: str) -> Hashable: ...

    def on_link(self, address: str) -> bool: ...

    def unanswered_neighbour(self, address: str) -> bool: ...


RATE_TOKEN_SLACK = 1e-9
"""A refill computed in floating point can fall short of a whole token by a rounding
error; waiting for that shortfall would ask for a timer shorter than the clock can
represent, and the dispatcher would wake again at the same instant, forever."""

IDLE_HOSTS_REMEMBERED = 1024
"""Idle hosts whose round trip or ICMP habits are kept for later probes. A sweep of many
hosts with one port each gains nothing from more, and each costs memory."""


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How hard to probe. Every field has a command-line option."""

    concurrency: int = 2000
    per_host: int = 1000
    rate: float | None = None  # new probes per second, None for no limit
    timeout: float = 1.5  # seconds a probe may wait for an answer (the ceiling)
    min_timeout: float = 0.1  # floor of the adaptive wait (nmap's at default and -T4 timing)
    retries: int | None = None  # extra tries for silent probes: None, as the loss asks
    # (scanner/core/loss.py: 2 on a clean path, up to 10 on a lossy one); N: at most N
    icmp_pace_v4: float = 1.05  # net.ipv4.icmp_ratelimit is 1000 ms by default
    icmp_pace_v6: float = 0.25  # net.ipv6.icmp.ratelimit is 100 ms by default
    lookahead: int = 4096  # targets held while they wait for a per-host slot
    backoff_floor: int = 8  # concurrency never drops below this
    resource_retry_limit: int = 40  # scanner-side failures of one probe before it is `error`
    resource_backoff_max: float = 1.0  # longest wait before retrying such a failure
    max_time: float | None = None  # seconds the whole scan may take (--max-time)


@dataclass(slots=True, eq=False)
class Job:
    """One target's journey through the engine (mutable bookkeeping, never output)."""

    target: Target
    attempts: int = 0  # probes that reached a verdict-bearing outcome
    scanner_side_tries: int = 0
    self_connects: int = 0
    handle: ProbeHandle | None = None
    deadline: float = 0.0
    started: float = 0.0  # when the try in flight went out
    last_message: str | None = None


@dataclass(slots=True, eq=False)
class HostState:
    """Per-address bookkeeping, dropped when idle."""

    inflight: int = 0
    queued: deque[Job] = field(default_factory=deque)
    pending_retries: int = 0
    sent_icmp: bool = False  # an ICMP error from this host decided a probe: pace retries
    next_paced_retry: float = 0.0
    rtt: RttEstimator | None = None  # learned from this host's answers
    best_try: int = 1  # the latest attempt (1 = the first) that drew an answer
    path: Hashable = None  # the route it is reached by (`Paths.path_of`)
    on_link: bool = False  # a neighbour on a link, no router between (`Paths.on_link`)
    loss: PathLoss = field(default_factory=PathLoss)  # TCP tries lost on the way, answered
    udp_loss: PathLoss = field(default_factory=PathLoss)  # UDP's, past the ICMP limit


@dataclass(slots=True)
class RttEstimator:
    """Smoothed round trip and its variation (RFC 6298's estimator, as TCP and nmap use).

    A host that answers some probes quickly (resets, handshakes, ICMP) need not be given
    the full --timeout on the rest: silence after several of its round trips is silence.
    """

    smoothed: float
    variation: float
    samples: int = 1

    def update(self, sample: float) -> None:
        self.variation = 0.75 * self.variation + 0.25 * abs(self.smoothed - sample)
        self.smoothed = 0.875 * self.smoothed + 0.125 * sample
        self.samples += 1

    def wait(self, floor: float, ceiling: float) -> float:
        if self.samples < RTT_SAMPLES_BEFORE_ADAPTING:
            return ceiling
        return min(ceiling, max(floor, 2.0 * (self.smoothed + 4.0 * self.variation)))


@dataclass(slots=True)
class EngineStats:
    probes: int = 0
    retries: int = 0
    scanner_side_errors: int = 0
    self_connects: int = 0
    concurrency: int = 0
    lowest_concurrency: int = 0
    out_of_time: bool = False  # --max-time ran out; the rest was not probed
    not_probed: int = 0  # targets received but never probed when time ran out


class Engine:
    """Runs probes for a stream of targets and reports one `Result` per target."""

    def __init__(
        self,
        config: EngineConfig,
        connectors: Mapping[Proto, Connector[Job]],
        on_result: ResultCallback,
        on_warning: WarningCallback,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        paths: Paths | None = None,
    ) -> None:
        self.config = config
        self._paths: Paths = PrefixPaths() if paths is None else paths
        self._path_rtt: dict[Hashable, RttEstimator] = {}
        self.stats = EngineStats(
            concurrency=config.concurrency, lowest_concurrency=config.concurrency
        )
        self._connectors = connectors
        self._on_result = on_result
        self._on_warning = on_warning
        self._clock = clock
        self._wall_clock = wall_clock
        self._limit = config.concurrency
        self._inflight: set[Job] = set()
        self._hosts: dict[str, HostState] = {}
        self._ready_hosts: deque[str] = deque()  # hosts with queued jobs, round robin
        self._queued = 0
        self._deadlines: list[tuple[float, int, Job]] = []
        self._retries: list[tuple[float, int, Job]] = []
        self._sequence = itertools.count()
        self._fresh: deque[Target] = deque()
        self._input_done = False
        self._starved = False  # capacity was free and nothing was ready to launch
        self._waiter: asyncio.Future[None] | None = None
        self._feeder_waiter: asyncio.Future[None] | None = None
        self._rate_tokens = 0.0
        self._rate_stamp = 0.0
        self._stop_at: float | None = None

    # ----------------------------------------------------------------- public

    async def run(self, targets: ObjectReceiveStream[Sequence[Target]]) -> EngineStats:
        """Probe every target the stream yields (in batches); return when all have a result.

        Batches, not single targets: a stream hand-off costs two task switches, which at
        tens of thousands of probes a second would cost more than the probes.
        """
        self._rate_stamp = self._clock()
        self._rate_tokens = self._rate_burst()
        if self.config.max_time is not None:
            self._stop_at = self._rate_stamp + self.config.max_time
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._feed, targets)
                await self._dispatch()
                group.cancel_scope.cancel()  # out of time: stop taking input
        finally:
            self._abandon_inflight()
        return self.stats

    # ------------------------------------------------------------- the feeder

    async def _feed(self, targets: ObjectReceiveStream[Sequence[Target]]) -> None:
        """Move targets from the resolver stage into the bounded lookahead."""
        loop = asyncio.get_running_loop()
        async with targets:
            async for batch in targets:
                while len(self._fresh) >= self.config.lookahead:
                    self._feeder_waiter = loop.create_future()
                    await self._feeder_waiter
                self._fresh.extend(batch)
                if self._starved:
                    self._wake()
        self._input_done = True
        self._wake()

    def _wake_feeder(self) -> None:
        waiter = self._feeder_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --------------------------------------------------------- the dispatcher

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = self._clock()
            if self._stop_at is not None and now >= self._stop_at:
                self._run_out_of_time()
                return
            self._expire(now)
            self._release_due_retries(now)
            rate_wait = self._launch(now)
            if self._finished():
                return
            wake_at = self._next_wake(rate_wait)
            self._waiter = loop.create_future()
            timer = None
            if wake_at is not None:
                timer = loop.call_later(max(0.0, wake_at - self._clock()), self._wake)
            try:
                await self._waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _finished(self) -> bool:
        return (
            self._input_done
            and not self._fresh
            and not self._inflight
            and not self._retries
            and self._queued == 0
        )

    def _next_wake(self, rate_wait: float | None) -> float | None:
        candidates = []
        if self._deadlines:
            candidates.append(self._deadlines[0][0])
        if self._retries:
            candidates.append(self._retries[0][0])
        if rate_wait is not None:
            candidates.append(self._clock() + rate_wait)
        if self._stop_at is not None:
            candidates.append(self._stop_at)
        return min(candidates) if candidates else None

    # ------------------------------------------------------------- launching

    def _launch(self, now: float) -> float | None:
        """Start as many probes as the limits allow; return seconds until a rate slot."""
        config = self.config
        self._starved = False
        while len(self._inflight) < self._limit:
            if config.rate is not None:
                self._refill_rate(now)
                if self._rate_tokens < 1.0 - RATE_TOKEN_SLACK:
                    return (1.0 - self._rate_tokens) / config.rate
            job = self._next_job()
            if job is None:
                self._starved = True
                return None
            if config.rate is not None:
                self._rate_tokens -= 1.0
            self._start(job, now)
        return None

    def _next_job(self) -> Job | None:
        """A queued job of a host with a free slot, else a fresh target."""
        per_host = self.config.per_host
        for _ in range(len(self._ready_hosts)):
            address = self._ready_hosts[0]
            host = self._hosts[address]
            if not host.queued:
                self._ready_hosts.popleft()
                continue
            if host.inflight < per_host:
                self._ready_hosts.rotate(-1)
                self._queued -= 1
                job = host.queued.popleft()
                if not host.queued:
                    self._ready_hosts.pop()  # the rotation just moved it to the end
                return job
            self._ready_hosts.rotate(-1)
        while self._fresh and self._queued < self.config.lookahead:
            target = self._fresh.popleft()
            self._wake_feeder()
            host = self._host(target.address)
            job = Job(target)
            if host.inflight < per_host and not host.queued:
                return job
            self._park(target.address, host, job)
        return None

    def _host(self, address: str) -> HostState:
        host = self._hosts.get(address)
        if host is None:
            host = self._hosts[address] = HostState(
                path=self._paths.path_of(address), on_link=self._paths.on_link(address)
            )
        return host

    def _park(self, address: str, host: HostState, job: Job, *, front: bool = False) -> None:
        if not host.queued:
            self._ready_hosts.append(address)
        if front:
            host.queued.appendleft(job)
        else:
            host.queued.append(job)
        self._queued += 1

    def _start(self, job: Job, now: float) -> None:
        target = job.target
        connector = self._connectors[target.endpoint.proto]
        self.stats.probes += 1
        started = connector.start(target, job, self._on_outcome)
        host = self._hosts[target.address]
        if isinstance(started, Outcome):
            self._settle(job, host, started)
            return
        job.handle = started
        job.started = now
        job.deadline = now + self._wait_for(job, host)
        host.inflight += 1
        self._inflight.add(job)
        heapq.heappush(self._deadlines, (job.deadline, next(self._sequence), job))

    def _wait_for(self, job: Job, host: HostState) -> float:
        """The first attempt waits as long as the host's answers suggest (never less than
        min_timeout, never more than --timeout); each retry doubles that wait, as TCP's
        own retransmission timer backs off (RFC 6298 5.5), up to --timeout. A host with
        no answer of its own waits as its path suggests (`_path_wait`)."""
        config = self.config
        if host.rtt is None:
            return self._path_wait(job, host)
        first = host.rtt.wait(config.min_timeout, config.timeout)
        backoff: float = 2.0**job.attempts
        return min(config.timeout, first * backoff)

    def _path_wait(self, job: Job, host: HostState) -> float:
        """What a host that has not answered yet waits, learned from the hosts that share
        its path (docs/ARCHITECTURE.md, "Round trips per path"): its first try
        `PATH_FIRST_TRY_MARGIN` times the path's adaptive wait; its retry the full
        --timeout, or, for a neighbour on the link (no router between: nothing far can
        hide behind it), `ON_LINK_RETRY_FACTOR` times that first wait, at least
        `ON_LINK_RETRY_FLOOR`. Without a path estimate, or with --retries 0 (no retry to
        catch a slow host), every try waits the full --timeout."""
        config = self.config
        path = self._path_rtt.get(host.path)
        if config.retries == 0 or path is None or path.samples < RTT_SAMPLES_BEFORE_ADAPTING:
            return config.timeout
        first = min(
            config.timeout, path.wait(config.min_timeout, config.timeout) * PATH_FIRST_TRY_MARGIN
        )
        if job.attempts == 0:
            return first
        if host.on_link:
            return min(config.timeout, max(ON_LINK_RETRY_FLOOR, first * ON_LINK_RETRY_FACTOR))
        return config.timeout

    def _shorten_first_tries(self, path_key: Hashable) -> None:
        """A path's estimate was just trusted: the first tries in flight to its hosts that
        have no answer of their own (sent before any answer came, with the full wait) now
        wait what the path suggests, counted from when they went out."""
        for job in self._inflight:
            if job.attempts != 0:
                continue
            host = self._hosts.get(job.target.address)
            if host is None or host.rtt is not None or host.path != path_key:
                continue
            deadline = job.started + self._path_wait(job, host)
            if deadline < job.deadline:
                job.deadline = deadline
                heapq.heappush(self._deadlines, (deadline, next(self._sequence), job))

    def _silence_retried(self, job: Job, host: HostState) -> bool:
        """Retry a silent probe? As nmap does, one try beyond the latest try that ever
        drew an answer from this host (a port that DROPs stays silent however often it
        is asked, while a paced ICMP limit shows itself by answering retries), or as many
        as the loss measured on the path to it needs (scanner/core/loss.py); within
        --retries when given."""
        loss = host.loss if job.target.endpoint.proto is Proto.TCP else host.udp_loss
        return job.attempts <= allowed_retries(self.config.retries, host.best_try, loss)

    def _rate_burst(self) -> float:
        rate = self.config.rate
        return 1.0 if rate is None else max(1.0, rate * 0.05)

    def _refill_rate(self, now: float) -> None:
        rate = self.config.rate
        assert rate is not None
        self._rate_tokens = min(
            self._rate_burst(), self._rate_tokens + (now - self._rate_stamp) * rate
        )
        self._rate_stamp = now

    # ------------------------------------------------------------ completion

    def _on_outcome(self, job: Job, outcome: Outcome) -> None:
        """Called by a connector when a probe in flight finishes."""
        host = self._release(job)
        self._settle(job, host, outcome)
        self._wake()

    def _release(self, job: Job) -> HostState:
        job.handle = None
        self._inflight.discard(job)
        host = self._hosts[job.target.address]
        host.inflight -= 1
        return host

    def _expire(self, now: float) -> None:
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _deadline, _seq, job = heapq.heappop(deadlines)
            handle = job.handle
            if handle is None or job.deadline > now:
                continue  # finished already (lazy deletion)
            outcome = handle.expire()
            host = self._release(job)
            self._settle(job, host, outcome)

    def _settle(self, job: Job, host: HostState, outcome: Outcome, *, final: bool = False) -> None:
        """Turn an outcome into a retry or a result (`final`: no more retries)."""
        target = job.target
        if is_scanner_side(outcome) and not final:
            self._retry_scanner_side(job, host, outcome)
            return
        job.attempts += 1
        if outcome.rtt is not None and outcome.event is not Event.SILENCE and not outcome.immediate:
            if host.rtt is None:
                host.rtt = RttEstimator(outcome.rtt, outcome.rtt / 2)
            else:
                host.rtt.update(outcome.rtt)
            path = self._path_rtt.get(host.path)
            if path is None:
                self._path_rtt[host.path] = RttEstimator(outcome.rtt, outcome.rtt / 2)
            else:
                path.update(outcome.rtt)
                if path.samples == RTT_SAMPLES_BEFORE_ADAPTING:
                    self._shorten_first_tries(host.path)
        verdict = classify_target_side(target.endpoint.proto, outcome)
        if verdict.reason is Reason.NO_RESPONSE:
            if not final and self._silence_retried(job, host):
                self._retry_silence(job, host)
                return
            if self._paths.unanswered_neighbour(target.address):
                # On the link and silent through every try, with the kernel's ARP for it
                # still unanswered: no such host (the kernel says so a second later).
                verdict = Verdict(State.FILTERED, Reason.HOST_UNREACH)
        else:
            if job.attempts > host.best_try:
                host.best_try = job.attempts
            if target.endpoint.proto is Proto.TCP:
                host.loss.answered_on(job.attempts)
            else:
                # A UDP port's first silence may be the host's ICMP limit rather than
                # loss; its paced retries each meet a refilled limit (scanner/core/loss.py).
                host.udp_loss.answered_on(udp_tries_that_count(job.attempts, outcome.icmp))
        if outcome.icmp is not None and verdict.state in (State.REFUSED, State.FILTERED):
            host.sent_icmp = True
        offender = outcome.icmp.offender_address if outcome.icmp is not None else None
        message = outcome.message if verdict.state is State.ERROR else None
        rtt = outcome.rtt
        rtt_ms = None if rtt is None or outcome.event is Event.SILENCE else round(rtt * 1000.0, 3)
        self._forget_if_idle(target.address, host)
        self._deliver(job, verdict.state, verdict.reason, rtt_ms, offender, message)

    def _deliver(
        self,
        job: Job,
        state: State,
        reason: Reason,
        rtt_ms: float | None,
        offender: str | None,
        message: str | None,
    ) -> None:
        """Hand the verdict on as a `Result` (in a shard process too: scanner/run/shard.py
        encodes it there, so it never crosses a pipe as an object unless it must)."""
        target = job.target
        # Positional, in Result's field order: this runs once per endpoint.
        self._on_result(
            Result(
                target.endpoint,
                target.address,
                target.resolved_via,
                state,
                reason,
                rtt_ms,
                self._wall_clock(),
                offender,
                message,
                job.attempts,
            )
        )

    def _forget_if_idle(self, address: str, host: HostState) -> None:
        idle = host.inflight == 0 and not host.queued and host.pending_retries == 0
        learned = host.sent_icmp or host.rtt is not None
        worth_remembering = learned and len(self._hosts) <= IDLE_HOSTS_REMEMBERED
        if idle and not worth_remembering:
            self._hosts.pop(address, None)

    def _schedule_retry(self, job: Job, host: HostState, not_before: float) -> None:
        host.pending_retries += 1
        heapq.heappush(self._retries, (not_before, next(self._sequence), job))

    def _retry_silence(self, job: Job, host: HostState) -> None:
        self.stats.retries += 1
        now = self._clock()
        not_before = now
        if host.sent_icmp:
            pace = self.config.icmp_pace_v6 if job.target.family == 6 else self.config.icmp_pace_v4
            not_before = max(now, host.next_paced_retry)
            host.next_paced_retry = not_before + pace
        self._schedule_retry(job, host, not_before)

    def _retry_scanner_side(self, job: Job, host: HostState, outcome: Outcome) -> None:
        if outcome.event is Event.SELF_CONNECT:
            self.stats.self_connects += 1
            job.self_connects += 1
            if job.self_connects < SELF_CONNECT_GIVE_UP:
                self._schedule_retry(job, host, self._clock())
                return
        else:
            self.stats.scanner_side_errors += 1
            job.scanner_side_tries += 1
            job.last_message = outcome.message
            if job.scanner_side_tries < self.config.resource_retry_limit:
                self._lower_concurrency(outcome)
                delay = min(
                    self.config.resource_backoff_max, 0.01 * (2 ** min(job.scanner_side_tries, 7))
                )
                self._schedule_retry(job, host, self._clock() + delay)
                return
        self._forget_if_idle(job.target.address, host)
        self._deliver(
            job,
            State.ERROR,
            Reason.LOCAL_ERROR,
            None,
            None,
            f"gave up after {job.scanner_side_tries + job.self_connects} "
            f"scanner-side failures: {job.last_message or outcome.message}",
        )

    def _lower_concurrency(self, outcome: Outcome) -> None:
        """Our own resources ran out: probe less at once from now on."""
        in_flight = len(self._inflight)
        new_limit = max(self.config.backoff_floor, min(self._limit, in_flight * 3 // 4))
        if new_limit < self._limit:
            self._limit = new_limit
            self.stats.concurrency = new_limit
            self.stats.lowest_concurrency = min(self.stats.lowest_concurrency, new_limit)
            self._on_warning(
                f"lowering concurrency to {new_limit}: {outcome.message} "
                "(a limit of this machine, not of the targets; the probe will be retried)"
            )

    def _release_due_retries(self, now: float) -> None:
        retries = self._retries
        while retries and retries[0][0] <= now:
            _when, _seq, job = heapq.heappop(retries)
            address = job.target.address
            host = self._host(address)
            host.pending_retries -= 1
            self._park(address, host, job, front=True)

    # ------------------------------------------------------------- max time

    def _run_out_of_time(self) -> None:
        """--max-time ran out. Probes in flight are concluded from what their sockets say
        now; a probe that was silent and waited for a retry is reported with the silence
        it met (`filtered` or `open|filtered`, which is what "unconfirmed" means); targets
        never probed are counted and left out, never guessed."""
        self.stats.out_of_time = True
        for job in list(self._inflight):
            handle = job.handle
            if handle is not None:
                outcome = handle.expire()
                self._settle(job, self._release(job), outcome, final=True)
        silence = Outcome(Event.SILENCE)
        waiting = [job for _when, _seq, job in self._retries]
        self._retries.clear()
        for host in self._hosts.values():
            waiting.extend(host.queued)
            host.queued.clear()
            host.pending_retries = 0
        self._ready_hosts.clear()
        self._queued = 0
        for job in waiting:
            if job.attempts > 0:
                self._settle(job, self._host(job.target.address), silence, final=True)
            else:
                self.stats.not_probed += 1
        self.stats.not_probed += len(self._fresh)
        self._fresh.clear()

    # ---------------------------------------------------------- cancellation

    def _abandon_inflight(self) -> None:
        """The scan is stopping (finished, interrupted or failed): close every socket."""
        for job in list(self._inflight):
            handle = job.handle
            if handle is not None:
                handle.cancel()
                job.handle = None
        self._inflight.clear()
