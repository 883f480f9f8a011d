"""The hosts-file parser (glibc's rules) and the `--nameserver` parser: pure, no I/O."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner.core.model import Origin, ResolvedVia
from scanner.resolve import (
    HostsTable,
    ResolvedAddress,
    load_hosts,
    normalize_name,
    parse_address_literal,
    parse_hosts,
    parse_nameserver,
)


def addresses_of(table: HostsTable, name: str) -> list[str] | None:
    found = table.lookup(name)
    return None if found is None else [address.address for address in found]


def test_address_name_and_aliases() -> None:
    table = parse_hosts("192.0.2.10 web.example.test web www\n", "hosts")
    for name in ("web.example.test", "web", "www"):
        assert addresses_of(table, name) == ["192.0.2.10"]
    assert table.lookup("example.test") is None
    assert table.warnings == ()


def test_entries_are_tagged_as_hosts_file_with_family() -> None:
    table = parse_hosts("192.0.2.1 a\n2001:db8::1 a\n", "hosts")
    assert table.lookup("a") == (
        ResolvedAddress("192.0.2.1", 4, ResolvedVia.HOSTS_FILE),
        ResolvedAddress("2001:db8::1", 6, ResolvedVia.HOSTS_FILE),
    )


def test_names_on_several_lines_collect_every_address_in_file_order() -> None:
    text = "2001:db8::2 multi\n192.0.2.2 multi\n192.0.2.1 other multi\n192.0.2.2 multi\n"
    table = parse_hosts(text, "hosts")
    assert addresses_of(table, "multi") == ["2001:db8::2", "192.0.2.2", "192.0.2.1"]


def test_names_compare_case_insensitively_and_ignore_a_trailing_dot() -> None:
    table = parse_hosts("192.0.2.3 MixedCase.Example.TEST.\n", "hosts")
    assert addresses_of(table, "mixedcase.example.test") == ["192.0.2.3"]
    assert addresses_of(table, "MIXEDCASE.example.test.") == ["192.0.2.3"]


def test_case_folding_is_ascii_only_like_strcasecmp() -> None:
    table = parse_hosts("192.0.2.4 \u00c9cole\n", "hosts")
    assert table.lookup("\u00e9cole") is None
    assert addresses_of(table, "\u00c9COLE") == ["192.0.2.4"]


def test_comments_blank_lines_and_tabs() -> None:
    text = "# a comment\n\n   \n192.0.2.5\tcommented # not-a-name\n  192.0.2.6   indented\n"
    table = parse_hosts(text, "hosts")
    assert addresses_of(table, "commented") == ["192.0.2.5"]
    assert table.lookup("not-a-name") is None
    assert addresses_of(table, "indented") == ["192.0.2.6"]
    assert table.warnings == ()


def test_ipv6_addresses_are_canonicalized() -> None:
    table = parse_hosts("2001:0DB8:0000::0001 six\n::ffff:192.0.2.7 mapped\n", "hosts")
    assert addresses_of(table, "six") == ["2001:db8::1"]
    assert table.lookup("mapped") == (
        ResolvedAddress("::ffff:192.0.2.7", 6, ResolvedVia.HOSTS_FILE),
    )


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("999.0.0.1 toobig", "not an IP address"),
        ("192.0.2.01 leadingzero", "not an IP address"),
        ("127.1 shortform", "not an IP address"),
        ("fe80::1%eth0 scoped", "not an IP address"),
        ("not-an-address name", "not an IP address"),
        ("192.0.2.8", "has no host name"),
        ("192.0.2.9 .", "is not a host name"),
    ],
)
def test_invalid_lines_are_skipped_with_a_warning(line: str, fragment: str) -> None:
    table = parse_hosts(f"192.0.2.1 good\n{line}\n", "/tmp/h")
    assert addresses_of(table, "good") == ["192.0.2.1"]
    assert len(table.warnings) == 1
    warning = table.warnings[0]
    assert warning.origin == Origin("/tmp/h", 2)
    assert fragment in warning.message
    assert str(warning).startswith("/tmp/h:2: ")
    for name in line.split()[1:]:
        assert table.lookup(name) is None


def test_a_skipped_line_does_not_stop_the_parse() -> None:
    table = parse_hosts("bogus a\n192.0.2.1 b\nbogus c\n192.0.2.2 d\n", "hosts")
    assert [warning.origin.line for warning in table.warnings] == [1, 3]
    assert addresses_of(table, "b") == ["192.0.2.1"]
    assert addresses_of(table, "d") == ["192.0.2.2"]


def test_load_hosts_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("192.0.2.1 filed\n", encoding="utf-8")
    assert addresses_of(load_hosts(str(path)), "filed") == ["192.0.2.1"]


def test_load_hosts_none_is_empty_and_a_missing_file_is_a_warning(tmp_path: Path) -> None:
    assert load_hosts(None) == HostsTable()
    missing = str(tmp_path / "absent")
    table = load_hosts(missing)
    assert table.entries == {}
    assert [(str(w.origin), "cannot read" in w.message) for w in table.warnings] == [
        (f"{missing}:0", True)
    ]


def test_normalize_name() -> None:
    assert normalize_name("Host.Example.") == "host.example"
    assert normalize_name("host") == "host"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", ResolvedAddress("192.0.2.1", 4, ResolvedVia.LITERAL)),
        ("[192.0.2.1]", ResolvedAddress("192.0.2.1", 4, ResolvedVia.LITERAL)),
        ("::1", ResolvedAddress("::1", 6, ResolvedVia.LITERAL)),
        ("[2001:DB8:0::1]", ResolvedAddress("2001:db8::1", 6, ResolvedVia.LITERAL)),
        ("example.test", None),
        ("[example.test]", None),
        ("192.0.2", None),
    ],
)
def test_parse_address_literal(text: str, expected: ResolvedAddress | None) -> None:
    assert parse_address_literal(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("[::1]:5353", ("::1", 5353)),
        ("[::1]", ("::1", 53)),
        ("::1", ("::1", 53)),
        ("2001:DB8::53", ("2001:db8::53", 53)),
        (" 127.0.0.1:1 ", ("127.0.0.1", 1)),
        ("127.0.0.1:65535", ("127.0.0.1", 65535)),
    ],
)
def test_parse_nameserver(text: str, expected: tuple[str, int]) -> None:
    assert parse_nameserver(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("ns.example.test", "is not an IP address"),
        ("ns.example.test:53", "is not an IP address"),
        ("127.0.0.1:", "empty port"),
        ("127.0.0.1:0", "not in 1-65535"),
        ("127.0.0.1:65536", "not in 1-65535"),
        ("127.0.0.1:dns", "not in 1-65535"),
        ("[::1", "missing ']'"),
        ("[::1]5353", "unexpected"),
        ("[::1]:", "empty port"),
        ("", "is not an IP address"),
    ],
)
def test_parse_nameserver_rejects_with_a_clear_message(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="nameserver") as raised:
        parse_nameserver(text)
    assert fragment in str(raised.value)
    assert "127.0.0.1:5353" in str(raised.value)  # says what a good value looks like
