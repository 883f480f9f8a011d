"""The loss rule as values (scanner/core/loss.py): how many tries a measured loss needs,
and what the results say of each path."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.core.loss import (
    MAX_RETRIES_FOR_LOSS,
    MIN_ANSWERED,
    WRONG_VERDICT_BOUND,
    HostLoss,
    PathLoss,
    allowed_retries,
    lossy_hosts,
    retries_for_loss,
    udp_tries_that_count,
)
from scanner.core.model import Proto, State
from tests.support.history import make_result


@pytest.mark.parametrize(
    ("rate", "retries"), [(0.0, 0), (0.05, 3), (0.2, 7), (0.3, 9), (0.35, 10), (0.9, 10), (1.0, 10)]
)
def test_the_retries_a_loss_rate_needs(rate: float, retries: int) -> None:
    assert retries_for_loss(rate) == retries


@given(st.floats(min_value=0.001, max_value=0.34))
def test_the_tries_given_meet_the_bound_and_one_fewer_would_not(rate: float) -> None:
    tries = retries_for_loss(rate) + 1
    assert rate**tries <= WRONG_VERDICT_BOUND * (1 + 1e-9)
    assert tries == 1 or rate ** (tries - 1) > WRONG_VERDICT_BOUND


def test_a_clean_path_keeps_todays_rule_and_a_lossy_one_earns_more() -> None:
    clean = PathLoss()
    for _ in range(100):
        clean.answered_on(1)
    assert clean.rate == 0.0 and clean.retries_needed() == 0
    assert allowed_retries(None, best_try=1, loss=clean) == 1  # one beyond the best try
    assert allowed_retries(None, best_try=3, loss=clean) == 2  # at most 2
    lossy = PathLoss()
    for attempt in [2] * 20 + [1] * 80:
        lossy.answered_on(attempt)
    assert lossy.rate == pytest.approx(20 / 120)
    assert allowed_retries(None, best_try=2, loss=lossy) == lossy.retries_needed() == 6
    assert allowed_retries(3, best_try=2, loss=lossy) == 3  # --retries caps it
    assert allowed_retries(0, best_try=2, loss=lossy) == 0


def test_a_couple_of_answers_are_no_rate() -> None:
    few = PathLoss()
    for _ in range(MIN_ANSWERED - 1):
        few.answered_on(3)
    assert few.retries_needed() == 0
    few.answered_on(3)
    assert few.retries_needed() == MAX_RETRIES_FOR_LOSS


def test_the_results_say_which_paths_lost_probes() -> None:
    results = [
        *(make_result(port=port, address="10.0.0.5", state=State.REFUSED) for port in range(8)),
        make_result(port=9, address="10.0.0.9", state=State.REFUSED),
    ]
    assert lossy_hosts(results) == []  # every port answered its first try
    lossy = [
        replace(result, attempts=2) if result.endpoint.port < 2 else result for result in results
    ]
    udp = replace(results[0], endpoint=replace(results[0].endpoint, proto=Proto.UDP), attempts=5)
    (host,) = lossy_hosts([*lossy, udp])
    assert host == HostLoss("10.0.0.5", 2, 8)
    assert str(host) == (
        "the path to 10.0.0.5 lost ~20% of the probes (2 of 10 tries to ports that answered)"
    )


def test_a_udp_answer_counts_its_tries_past_the_icmp_limit() -> None:
    assert udp_tries_that_count(1, icmp_answer=None) == 1
    assert udp_tries_that_count(3, icmp_answer=None) == 3  # data: two tries lost
    assert udp_tries_that_count(1, icmp_answer="port-unreach") == 1
    assert udp_tries_that_count(2, icmp_answer="port-unreach") == 1  # the limit, no loss
    assert udp_tries_that_count(4, icmp_answer="port-unreach") == 3  # two paced tries lost
