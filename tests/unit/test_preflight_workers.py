"""--workers auto: in-process for small scans, one worker per core for large ones."""

from __future__ import annotations

import pytest

from scanner.run.preflight import AUTO_WORKERS_FROM, choose_workers


@pytest.mark.parametrize(
    ("requested", "endpoints", "cores", "chosen"),
    [
        (None, AUTO_WORKERS_FROM - 1, 4, 1),  # small: a worker would not pay
        (None, AUTO_WORKERS_FROM, 4, 4),
        (None, 1_000_000, 2, 2),
        (None, 1_000_000, 1, 1),  # one core: nothing to spread over
        (None, 1_000_000, 32, 8),  # at most eight
        (3, 10, 1, 3),  # asked for: always given
        (1, 1_000_000, 8, 1),
    ],
)
def test_workers_chosen(requested: int | None, endpoints: int, cores: int, chosen: int) -> None:
    assert choose_workers(requested, endpoints, cores) == chosen
