"""`@fast_init` builds exactly what the dataclass's own `__init__` builds, and refuses what
it does not handle when the class is defined."""

from __future__ import annotations

import dataclasses
from dataclasses import InitVar, dataclass, field

import pytest

from scanner.core.fastinit import fast_init
from scanner.core.model import (
    Endpoint,
    Event,
    IcmpOrigin,
    IcmpReport,
    Offender,
    Outcome,
    Proto,
    ResolvedVia,
    Result,
    State,
    Target,
)
from scanner.core.model import Reason as R


def declare_sample(fast: bool) -> type:
    """The same declaration twice: as the dataclass makes it, and with `@fast_init`."""

    @dataclass(frozen=True, slots=True)
    class Sample:
        name: str
        size: int = 3
        tags: list[str] = field(default_factory=list)
        doubled: int = field(init=False)
        seen: tuple[str, ...] = field(init=False, default=())

        def __post_init__(self) -> None:
            object.__setattr__(self, "doubled", 2 * self.size)

    return fast_init(Sample) if fast else Sample


Plain, Fast = declare_sample(fast=False), declare_sample(fast=True)


def as_dict(instance: object) -> dict[str, object]:
    return {item.name: getattr(instance, item.name) for item in dataclasses.fields(instance)}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [(("a",), {}), (("a", 5), {}), ((), {"name": "b", "tags": ["x"]}), (("c", 1, ["y"]), {})],
)
def test_the_same_fields_defaults_factories_and_post_init_as_the_dataclass(
    args: tuple[object, ...], kwargs: dict[str, object]
) -> None:
    assert as_dict(Fast(*args, **kwargs)) == as_dict(Plain(*args, **kwargs))


def test_each_instance_gets_its_own_factory_value() -> None:
    first, second = Fast("a"), Fast("b")
    assert first.tags == [] and first.tags is not second.tags


def test_the_same_errors_for_missing_and_unexpected_arguments() -> None:
    with pytest.raises(TypeError):
        Fast()
    with pytest.raises(TypeError):
        Fast("a", doubled=4)
    with pytest.raises(TypeError):
        Fast("a", 1, [], 9)


def test_an_instance_stays_frozen() -> None:
    endpoint = Endpoint("db1", 5432, Proto.TCP)
    with pytest.raises(dataclasses.FrozenInstanceError):
        endpoint.port = 1  # type: ignore[misc]


def test_the_per_endpoint_records_are_built_as_declared() -> None:
    endpoint = Endpoint("db1", 5432, Proto.TCP)
    assert (endpoint.expect, endpoint.labels, endpoint.origin) == (
        dataclasses.fields(Endpoint)[3].default,
        (),
        None,
    )
    assert endpoint == dataclasses.replace(endpoint) and hash(endpoint) == hash(
        dataclasses.replace(endpoint)
    )
    target = Target(endpoint, "10.0.0.5", 4, ResolvedVia.DNS)
    report = IcmpReport(IcmpOrigin.ICMP4, 3, 3, 111, "10.0.0.5", Offender.TARGET)
    outcome = Outcome(Event.ERROR, errno=111, icmp=report, rtt=0.002)
    assert (outcome.immediate, outcome.message) == (False, None)
    result = Result(
        target.endpoint,
        target.address,
        target.resolved_via,
        State.REFUSED,
        R.PORT_UNREACH,
        2.0,
        1.5,
    )
    # __post_init__ ran: `ok` is computed, and the defaults are in place.
    assert (result.ok, result.attempts, result.cause, result.offender) == (False, 1, None, None)


@pytest.mark.parametrize(
    "declare",
    [
        lambda: dataclass(frozen=True)(type("NoSlots", (), {"__annotations__": {"a": "int"}})),
        lambda: dataclass(frozen=True, slots=True, kw_only=True)(
            type("KeywordOnly", (), {"__annotations__": {"a": "int"}})
        ),
        lambda: dataclass(frozen=True, slots=True)(
            type("WithInitVar", (), {"__annotations__": {"a": "int", "b": InitVar[int]}})
        ),
        lambda: type("NotADataclass", (), {}),
    ],
)
def test_what_it_does_not_handle_is_refused_at_definition(declare: object) -> None:
    with pytest.raises(TypeError):
        fast_init(declare())  # type: ignore[operator]
