"""Shared test configuration: every async test runs on the default loop and on uvloop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest

from tests.support.virtual_time import new_virtual_time_loop

pytest_plugins = ["tests.support.fixtures"]


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The loops reachscan supports; uvloop where it is installed. A test marked
    `virtual_time` asserts exact times, which only the virtual-time loop can give."""
    if item.get_closest_marker("virtual_time") is not None:
        return {"virtual-time": new_virtual_time_loop}
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop,
    }
    try:
        import uvloop
    except ImportError:
        return factories
    factories["uvloop"] = uvloop.new_event_loop
    return factories


@pytest.fixture(autouse=True)
def private_state_directory(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test (and every reachscan it starts) gets its own history database, never the
    user's: tests must not share a run lock or leave runs in ~/.local/state."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
