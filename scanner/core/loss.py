"""Loss on the path to a host, measured as the scan goes, and the retries it calls for.

A port that stays silent is `filtered` only if asking again would not have drawn an
answer. On a clean path one or two tries settle that; on a path that drops a share p of
the probes at random, an answering port stays silent through k tries with probability
p**k, so a fixed number of retries turns a lossy path into false `filtered` verdicts
(20 % loss, 3 tries: 0.8 % of the ports). The evidence is in the scan itself: every port
of the host that answered after a silent try was lost that many times on the way, so

    p = (tries lost) / (tries lost + tries answered),

counted over the host's answered TCP ports. A silent port of that host then gets as many
tries as make p**tries smaller than `WRONG_VERDICT_BOUND` (one in 100,000), capped at
`MAX_RETRIES_FOR_LOSS` (or at --retries when given). A port behind a real DROP on a
clean host costs nothing more (p is 0 there, and the rule is today's), and a host that
never answered has no p at all: silence everywhere is a firewall, not loss.

UDP gets the same rule, measured apart (its own `PathLoss` per host) and within the ICMP
rate limit's physics: a closed UDP port answers with an ICMP error, which the target's
kernel sends at most about once a second after a burst, so a port's *first* silence may
be the limit rather than loss. Its retries are paced to the limit (scanner/engine/
engine.py), so each of them meets a refilled limit: a paced retry that stays silent was
lost. A port that answered with data (a UDP service) meets no limit: every silent try
before the answer was lost (`udp_tries_that_count`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from scanner.core.model import Proto, Result, State

WRONG_VERDICT_BOUND = 1e-5
"""The chance, per silent port of a lossy host, that all its tries were lost although
it answers: one in 100,000 endpoints."""

MAX_RETRIES_FOR_LOSS = 10
"""The most retries the loss rule gives (11 tries): p**11 < 1e-5 holds up to p = 0.35. A
path losing more than a third of the probes is broken, not lossy; its silent ports are
reported after 11 tries, and the loss is reported with them."""

DEFAULT_RETRIES = 2
"""Retries for a silent port where no loss was measured (today's rule: one try beyond
the latest that ever drew an answer from the host, at most this many)."""

MIN_ANSWERED = 8
"""Answered ports of a host before its loss rate is trusted to raise retries (a couple
of answers are no rate)."""


def retries_for_loss(rate: float) -> int:
    """Retries (beyond the first try) that bring `rate`**tries below the bound; 0 for a
    clean path, `MAX_RETRIES_FOR_LOSS` for a path too lossy to reach the bound."""
    if rate <= 0.0:
        return 0
    if rate >= 1.0:
        return MAX_RETRIES_FOR_LOSS
    tries = math.ceil(math.log(WRONG_VERDICT_BOUND) / math.log(rate))
    return min(MAX_RETRIES_FOR_LOSS, max(0, tries - 1))


@dataclass(slots=True)
class PathLoss:
    """One host's tries: those lost on the way (silent, then answered on a later try) and
    those answered."""

    lost: int = 0
    answered: int = 0

    def answered_on(self, attempt: int) -> None:
        """A port answered on its `attempt`-th try (1 = the first): the tries before were
        lost, since the port answers."""
        self.lost += attempt - 1
        self.answered += 1

    @property
    def rate(self) -> float:
        """Tries lost per try (0.0 with no answer yet)."""
        tries = self.lost + self.answered
        return self.lost / tries if tries else 0.0

    def retries_needed(self) -> int:
        """Retries a silent port of this host needs under the bound; 0 until the host has
        answered `MIN_ANSWERED` ports. The rate is taken a little high (one more loss
        than seen, Laplace's rule), so that a few lucky answers never lower it to 0."""
        if self.answered < MIN_ANSWERED or self.lost == 0:
            return 0
        cautious = (self.lost + 1) / (self.lost + self.answered + 2)
        return retries_for_loss(cautious)


def udp_tries_that_count(attempt: int, icmp_answer: object | None) -> int:
    """The try a UDP answer counts as, for the loss: a data answer on try k lost k - 1
    tries; an ICMP error on try k lost k - 2 (the first silence is taken for the target's
    ICMP limit, not for loss), and never fewer than none."""
    return attempt if icmp_answer is None else max(1, attempt - 1)


def allowed_retries(explicit: int | None, best_try: int, loss: PathLoss) -> int:
    """How many retries a silent port of a host may have: today's rule (one beyond the
    latest try that drew an answer, at most `DEFAULT_RETRIES`) or what the host's measured
    loss needs, whichever is more, within the cap (`--retries` when given)."""
    cap = MAX_RETRIES_FOR_LOSS if explicit is None else explicit
    base = min(DEFAULT_RETRIES if explicit is None else explicit, best_try)
    return min(cap, max(base, loss.retries_needed()))


@dataclass(frozen=True, slots=True)
class HostLoss:
    """What the results say of the path to one address: tries lost, tries answered."""

    address: str
    lost: int
    answered: int

    @property
    def rate(self) -> float:
        return self.lost / (self.lost + self.answered)

    def __str__(self) -> str:
        return (
            f"the path to {self.address} lost ~{self.rate:.0%} of the probes "
            f"({self.lost:,} of {self.lost + self.answered:,} tries to ports that answered)"
        )


class LossTally:
    """What the results say of each path, added up as they stream: every extra try of a
    TCP port that answered (open or refused) was a probe lost on the way. One small record
    per address, whatever the number of ports."""

    def __init__(self) -> None:
        self._per_host: dict[str, PathLoss] = {}

    def add(self, result: Result) -> None:
        if (
            result.address is not None
            and result.endpoint.proto is Proto.TCP
            and result.state in (State.OPEN, State.REFUSED)
            and result.attempts >= 1
        ):
            self._per_host.setdefault(result.address, PathLoss()).answered_on(result.attempts)

    def lossy(self) -> list[HostLoss]:
        """The addresses that lost probes, worst first."""
        found = [
            HostLoss(address, loss.lost, loss.answered)
            for address, loss in self._per_host.items()
            if loss.lost
        ]
        found.sort(key=lambda host: (-host.rate, host.address))
        return found


def lossy_hosts(results: Iterable[Result]) -> list[HostLoss]:
    """The addresses whose answered TCP ports took more than one try, worst first."""
    tally = LossTally()
    for result in results:
        tally.add(result)
    return tally.lossy()
