"""De-duplication: first occurrence wins, by `Endpoint.key`, in memory a spec cannot blow up."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.core.model import Endpoint, Expect, Origin, Proto
from scanner.core.specs import parse_ports
from scanner.inventory import (
    DEFAULT_PORTS,
    Deduplicator,
    InventoryError,
    TargetSpec,
    command_line_specs,
    command_line_targets,
    iter_unique,
    parse_target_spec,
)


def spec(text: str, line: int = 0, pin: str | None = None) -> TargetSpec:
    parsed = parse_target_spec(
        text, default_ports=DEFAULT_PORTS, expect=None, origin=Origin("t", line)
    )
    if pin is None:
        return parsed
    return TargetSpec(parsed.hosts, parsed.ports, parsed.expect, (), pin, parsed.origin)


def unique(specs: Iterable[TargetSpec], small_spec_limit: int = 1024) -> list[Endpoint]:
    result = list(iter_unique(specs, Deduplicator(small_spec_limit=small_spec_limit)))
    assert all(isinstance(item, Endpoint) for item in result)
    return result  # type: ignore[return-value]


def naive_unique(specs: Iterable[TargetSpec]) -> list[Endpoint]:
    """The rule, spelled out: expand everything, keep the first of each key."""
    seen: set[object] = set()
    result = []
    for target in specs:
        for endpoint in target.endpoints():
            if endpoint.key not in seen:
                seen.add(endpoint.key)
                result.append(endpoint)
    return result


def keys(endpoints: Iterable[Endpoint]) -> list[tuple[str, int]]:
    return [(e.host, e.port) for e in endpoints]


def test_first_occurrence_wins() -> None:
    result = unique([spec("10.0.0.7:80", 1), spec("10.0.0.6-8:80", 2)])
    assert [(e.host, e.origin.line if e.origin else None) for e in result] == [
        ("10.0.0.7", 1),
        ("10.0.0.6", 2),
        ("10.0.0.8", 2),
    ]


def test_repeated_ports_within_a_spec_are_merged() -> None:
    assert keys(unique([spec("web:80,80,79-81")])) == [("web", 79), ("web", 80), ("web", 81)]


def test_a_big_spec_then_its_members() -> None:
    result = unique(
        [spec("127.0.0.0/20:80"), spec("127.0.0.5:80"), spec("127.0.0.5:81"), spec("127.0.16.0:80")]
    )
    assert len(result) == 4096 + 2
    assert keys(result[-2:]) == [("127.0.0.5", 81), ("127.0.16.0", 80)]


def test_two_overlapping_big_specs() -> None:
    specs = [spec("10.0.0.0/22:80-81"), spec("10.0.3.0/23:80"), spec("10.0.0-7.0-255:81")]
    result = unique(specs)
    assert result == naive_unique(specs)
    # 10.0.3.0/23 is 10.0.2.0-10.0.3.255 (host bits ignored, as in nmap): all repeats.
    assert len(result) == 1024 * 2 + 0 + (2048 - 1024)


def test_a_big_name_spec_claims_its_ports() -> None:
    result = unique([spec("web:1-2000"), spec("web:80,2001"), spec("Web:80")])
    assert keys(result[-2:]) == [("web", 2001), ("Web", 80)]  # names compare as written


def test_address_literals_are_one_host_in_every_spelling() -> None:
    specs = [spec("[2001:db8::/118]:80"), spec("[2001:DB8:0::1]:80"), spec("2001:db8::1")]
    result = unique(specs)
    assert len(result) == 1024 + len(DEFAULT_PORTS) - 1  # port 80 of ::1 was already there


def test_the_pin_is_part_of_identity() -> None:
    specs = [spec("db:5432"), spec("db:5432", pin="10.0.0.5"), spec("db:5432", pin="10.0.0.5")]
    assert [e.pinned_address for e in unique(specs)] == [None, "10.0.0.5"]


def test_protocol_is_part_of_identity() -> None:
    assert len(unique([spec("web:53"), spec("web:U:53"), spec("web:dns/udp")])) == 2


def test_errors_pass_through_in_order() -> None:
    error = InventoryError(Origin("f", 2), "bad")
    result = list(iter_unique([spec("a:1"), error, spec("a:1"), spec("b:1")]))
    assert [str(item) if isinstance(item, InventoryError) else item.host for item in result] == [
        "a",
        "f:2: bad",
        "b",
    ]


def test_one_deduplicator_across_sources() -> None:
    shared = Deduplicator()
    first = list(
        iter_unique(
            command_line_specs(["web:80"], default_ports=DEFAULT_PORTS, expect=None), shared
        )
    )
    second = list(iter_unique([spec("web:80,81")], shared))
    assert keys(first) == [("web", 80)]  # type: ignore[arg-type]
    assert keys(second) == [("web", 81)]  # type: ignore[arg-type]


def test_admit_checks_keys_and_rectangles() -> None:
    deduplicator = Deduplicator(small_spec_limit=2)
    assert len(list(deduplicator.unique_endpoints(spec("10.0.0.0/24:80")))) == 256
    assert not deduplicator.admit(Endpoint("10.0.0.9", 80, Proto.TCP))
    assert deduplicator.admit(Endpoint("10.0.0.9", 81, Proto.TCP))
    assert not deduplicator.admit(Endpoint("10.0.0.9", 81, Proto.TCP))
    assert deduplicator.admit(Endpoint("10.0.0.9", 80, Proto.TCP, pinned_address="10.0.0.1"))
    assert deduplicator.admit(Endpoint("web", 80, Proto.TCP))
    assert deduplicator.admit(Endpoint("fe80::1%eth0", 80, Proto.TCP))


def test_command_line_targets() -> None:
    result = list(
        command_line_targets(
            ["web:80", "bad:0", "web:80,443"], default_ports=DEFAULT_PORTS, expect=Expect.OPEN
        )
    )
    assert result == [
        Endpoint("web", 80, Proto.TCP, Expect.OPEN, origin=Origin("<command line>", 1)),
        InventoryError(Origin("<command line>", 2), "port 0 is out of range (1-65535)"),
        Endpoint("web", 443, Proto.TCP, Expect.OPEN, origin=Origin("<command line>", 3)),
    ]


def test_command_line_targets_without_ports_use_the_defaults() -> None:
    result = list(command_line_targets(["web"], default_ports=parse_ports("U:53"), expect=None))
    assert [(e.port, e.proto, e.expect) for e in result] == [(53, Proto.UDP, None)]  # type: ignore[union-attr]


def test_memory_does_not_grow_with_the_size_of_a_spec() -> None:
    specs = [spec("127.0.0.0/14:80"), spec("127.0.0.1:80"), spec("127.4.0.0:80")]
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        count = 0
        last = None
        for item in iter_unique(specs):
            count += 1
            last = item
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == (1 << 18) + 1
    assert isinstance(last, Endpoint)
    assert last.host == "127.4.0.0"
    # Remembering 262,144 keys would take tens of megabytes; a rectangle takes bytes.
    assert peak - baseline < 1_000_000


# --- property: the arithmetic agrees with expanding everything -------------------------

_small_specs = (
    st.builds(
        lambda a, b, c, ports: f"10.0.{a}.{b}-{c}:{ports}",
        st.integers(0, 1),
        st.integers(0, 3),
        st.integers(3, 6),
        st.sampled_from(["80", "80-82", "81,U:80", "U:80-81", "79-80,443"]),
    )
    | st.builds(
        lambda prefix, ports: f"10.0.0.0/{prefix}:{ports}",
        st.integers(28, 32),
        st.sampled_from(["80", "80-82", "U:80"]),
    )
    | st.builds(
        lambda host, ports: f"{host}:{ports}",
        st.sampled_from(["10.0.0.2", "10.0.1.5", "web", "[::1]", "[::2]"]),
        st.sampled_from(["80", "81-83", "U:80"]),
    )
    | st.just("[::/126]:80-81")
)


@settings(max_examples=200)
@given(
    st.lists(st.tuples(_small_specs, st.sampled_from([None, "10.9.9.9"])), max_size=8),
    st.sampled_from([0, 1, 5, 1024]),
)
def test_dedup_agrees_with_expanding_everything(
    texts: list[tuple[str, str | None]], small_spec_limit: int
) -> None:
    specs = [
        spec(text, line, pin if text.startswith(("web:", "10.0.0.2:", "10.0.1.5:")) else None)
        for line, (text, pin) in enumerate(texts)
    ]
    assert unique(specs, small_spec_limit) == naive_unique(specs)
