"""The scope guard, exclusions and special addresses (pure)."""

from __future__ import annotations

import pickle

import pytest

from scanner.core.model import Origin, Reason
from scanner.core.scope import (
    Scope,
    ScopeError,
    broadcast_addresses,
    measure,
    oversize_message,
    parse_exclusions,
    scientific,
)
from scanner.inventory import DEFAULT_PORTS, InventoryError, parse_target_spec


def spec(text: str):  # type: ignore[no-untyped-def]
    return parse_target_spec(
        text, default_ports=DEFAULT_PORTS, expect=None, origin=Origin("<command line>", 1)
    )


def test_a_slash_eight_times_every_port_is_counted_without_expanding() -> None:
    expansion = measure([spec("10.0.0.0/8:1-65535"), spec("127.0.0.1:80")])
    assert expansion.total == 2**24 * 65535 + 1
    message = oversize_message(expansion, 1_000_000)
    assert "1.1 × 10¹² endpoints" in message
    assert "10.0.0.0/8:1-65535" in message
    assert "<command line>:1" in message
    assert "127.0.0.1:80" not in message  # too small to matter


def test_measure_skips_errors() -> None:
    error = InventoryError(Origin("f", 3), "bad")
    assert measure([error, spec("127.0.0.1:1-10")]).total == 10


@pytest.mark.parametrize(
    ("count", "text"), [(999, "999"), (1_000_000, "1,000,000"), (1_099_494_850_560, "1.1 × 10¹²")]
)
def test_scientific(count: int, text: str) -> None:
    assert scientific(count) == text


def test_exclusions_parse_the_masscan_format() -> None:
    networks = parse_exclusions(
        ["# comment", "10.0.0.0/8, 192.0.2.1", "  [2001:db8::]/32 # x"], "ex.txt"
    )
    assert [str(network) for network in networks] == ["10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32"]


def test_a_bad_exclusion_names_file_and_line() -> None:
    with pytest.raises(ScopeError, match=r"ex.txt:2: '10.0.0.0/33'"):
        parse_exclusions(["10.0.0.0/8", "10.0.0.0/33"], "ex.txt")


def test_scope_excludes_networks_and_special_addresses() -> None:
    scope = Scope(excluded=parse_exclusions(["127.0.0.2/31"], "x"))
    assert scope.allows("127.0.0.1")
    assert not scope.allows("127.0.0.2") and not scope.allows("127.0.0.3")
    for special in ("224.0.0.1", "239.255.255.250", "255.255.255.255", "ff02::1", "0.0.0.0"):
        assert not scope.allows(special)
        assert Scope(include_special=True).allows(special)


def test_broadcast_of_every_ipv4_block() -> None:
    found = broadcast_addresses(
        [
            spec("10.1.0.0/24:22"),
            spec("10.2.0.0/31:22"),
            spec("[2001:db8::/120]:22"),
            spec("host.example:22"),
        ]
    )
    assert [str(network) for network in found] == ["10.1.0.255/32"]


def test_an_ipv4_mapped_address_is_judged_as_its_ipv4_address() -> None:
    """`::ffff:a.b.c.d` leaves as IPv4 to a.b.c.d: exclusions and the special rules
    written for IPv4 hold for it, and exclusions written in its IPv6 form too."""
    scope = Scope(excluded=parse_exclusions(["127.0.0.0/8"], "x"))
    assert scope.refusal("::ffff:127.0.0.5") is Reason.EXCLUDE_LIST
    assert scope.refusal("::ffff:7f00:5") is Reason.EXCLUDE_LIST
    assert scope.allows("::ffff:192.0.2.1")
    assert (
        Scope(excluded=parse_exclusions(["::ffff:192.0.2.0/120"], "x")).refusal("::ffff:192.0.2.1")
        is Reason.EXCLUDE_LIST
    )
    for special in ("::ffff:255.255.255.255", "::ffff:224.0.0.1", "::ffff:0.0.0.0"):
        assert Scope().refusal(special) is Reason.SPECIAL_ADDRESS
        assert Scope(include_special=True).allows(special)


def test_an_exclusion_outranks_the_special_rules_in_the_reason() -> None:
    scope = Scope(excluded=parse_exclusions(["224.0.0.0/24"], "x"))
    assert scope.refusal("224.0.0.1") is Reason.EXCLUDE_LIST
    assert scope.refusal("224.0.1.1") is Reason.SPECIAL_ADDRESS
    assert scope.refusal("192.0.2.1") is None


def test_the_broadcast_of_an_ipv4_mapped_block_is_its_ipv4_broadcast() -> None:
    found = broadcast_addresses(
        [spec("[::ffff:10.1.0.0/120]:22"), spec("[::ffff:10.2.0.0/127]:22")]
    )
    assert [str(network) for network in found] == ["10.1.0.255/32"]
    scope = Scope().with_broadcast(found)
    assert scope.refusal("::ffff:10.1.0.255") is Reason.SPECIAL_ADDRESS
    assert scope.allows("::ffff:10.1.0.254")


def test_a_scope_travels_to_a_shard_as_its_values_and_judges_alike() -> None:
    """A shard's scope is pickled with its work (scanner/run/shard.py): the exclusions,
    the special-address rule and the inventory's broadcast addresses all arrive."""
    scope = Scope(
        excluded=parse_exclusions(["127.0.0.2/31", "::1"], "x"),
        include_special=False,
        broadcast=parse_exclusions(["127.0.9.255"], "y"),
    )
    scope.allows("127.0.0.1")  # a filled cache must not travel or matter
    copy = pickle.loads(pickle.dumps(scope))
    assert copy == scope and hash(copy) == hash(scope)
    assert copy != Scope(excluded=scope.excluded, include_special=True, broadcast=scope.broadcast)
    for address in ("127.0.0.1", "127.0.0.3", "::1", "127.0.9.255", "224.0.0.1", "::ffff:7f00:2"):
        assert copy.refusal(address) == scope.refusal(address), address
    assert copy.refusal("127.0.0.3") is Reason.EXCLUDE_LIST
    assert copy.refusal("127.0.9.255") is Reason.SPECIAL_ADDRESS
