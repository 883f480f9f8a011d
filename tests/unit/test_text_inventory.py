"""Plain-text inventories: comments, line endings, encodings, stdin, unreadable files."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from scanner.core.model import Endpoint, Expect, Origin, Proto
from scanner.core.ports import PortSpec
from scanner.core.specs import parse_ports
from scanner.inventory import InventoryError, TargetSpec, inventory_specs, read_inventory
from scanner.inventory.textfile import parse_text_lines, strip_comment

PORTS = parse_ports("22")


def items(data: bytes, default_ports: PortSpec = PORTS) -> list[TargetSpec | InventoryError]:
    return list(parse_text_lines(io.BytesIO(data), file="hosts.txt", default_ports=default_ports))


def summary(data: bytes) -> list[tuple[int, str]]:
    """(line, first host or error message) for each item."""
    result = []
    for item in items(data):
        assert item.origin is not None
        if isinstance(item, InventoryError):
            result.append((item.origin.line, f"error: {item.message}"))
        else:
            result.append((item.origin.line, next(item.endpoints()).host))
    return result


@pytest.mark.parametrize(
    ("line", "spec"),
    [
        ("web:80", "web:80"),
        ("  web:80  ", "web:80"),
        ("\tweb:80\t", "web:80"),
        ("# all of it", ""),
        ("   # indented comment", ""),
        ("web:80 # trailing", "web:80"),
        ("web:80\t# after a tab", "web:80"),
        ("web#1", "web#1"),  # not a comment: rejected by the spec parser instead
        ("", ""),
    ],
)
def test_strip_comment(line: str, spec: str) -> None:
    assert strip_comment(line) == spec


def test_lines_become_specs_with_their_line_numbers() -> None:
    data = b"# fleet\n\nweb1:80\n  web2:80,443   # the new one\n\t10.0.0.1\n"
    assert summary(data) == [(3, "web1"), (4, "web2"), (5, "10.0.0.1")]
    parsed = items(data)
    assert isinstance(parsed[2], TargetSpec)
    assert parsed[2].ports == PORTS  # no ports on the line: the default ones
    assert all(isinstance(item, TargetSpec) and item.expect is Expect.OPEN for item in parsed)


def test_crlf_and_bom_are_tolerated() -> None:
    data = b"\xef\xbb\xbfweb1:80\r\n# comment\r\nweb2:80\r\n\r\n"
    assert summary(data) == [(1, "web1"), (3, "web2")]


def test_invalid_utf8_is_reported_and_reading_continues() -> None:
    data = b"web1:80\nweb\xff2:80\nweb3:80\n"
    assert summary(data) == [
        (1, "web1"),
        (2, "error: invalid UTF-8 (byte 0xff); save the file as UTF-8"),
        (3, "web3"),
    ]


def test_a_malformed_line_is_reported_and_reading_continues() -> None:
    data = b"web1:80\nweb2:0\nweb3 web4\nweb5:https\n"
    assert summary(data) == [
        (1, "web1"),
        (2, "error: port 0 is out of range (1-65535)"),
        (3, "error: one target per spec, without spaces: 'web3 web4'"),
        (4, "web5"),
    ]


def test_reading_is_lazy() -> None:
    def lines() -> object:
        yield b"web1:80\n"
        raise AssertionError("read past the first spec")

    specs = parse_text_lines(lines(), file="x", default_ports=PORTS)  # type: ignore[arg-type]
    first = next(specs)
    assert isinstance(first, TargetSpec)


def test_stdin_text_stream() -> None:
    stdin = io.StringIO("\ufeffweb1:80\n# c\nbad:0\n")
    result = list(read_inventory("-", stdin=stdin, default_ports=PORTS))
    assert result == [
        Endpoint("web1", 80, Proto.TCP, Expect.OPEN, origin=Origin("<stdin>", 1)),
        InventoryError(Origin("<stdin>", 3), "port 0 is out of range (1-65535)"),
    ]


def test_stdin_with_a_byte_buffer_survives_invalid_utf8() -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"web1:80\n\xc3(\nweb3:80\n"), encoding="utf-8")
    result = list(read_inventory("-", stdin=stdin))
    assert [str(item) if isinstance(item, InventoryError) else item.host for item in result] == [
        "web1",
        "<stdin>:2: invalid UTF-8 (byte 0xc3); save the file as UTF-8",
        "web3",
    ]


def test_text_lines_with_undecodable_surrogates_are_reported() -> None:
    lines = ["web1:80\n", "web\udcff2:80\n", "web3:80\n"]
    result = list(parse_text_lines(lines, file="f", default_ports=PORTS))
    assert [type(item).__name__ for item in result] == [
        "TargetSpec",
        "InventoryError",
        "TargetSpec",
    ]


def test_a_file_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "targets.txt"
    path.write_bytes(b"web1:80,443\nweb1:443\n")
    result = list(read_inventory(str(path)))
    assert [(e.host, e.port) for e in result if isinstance(e, Endpoint)] == [
        ("web1", 80),
        ("web1", 443),
    ]
    assert all(not isinstance(e, InventoryError) for e in result)


def test_text_without_ports_uses_the_callers_default_ports(tmp_path: Path) -> None:
    path = tmp_path / "targets"
    path.write_text("web1\n")
    result = list(read_inventory(str(path), default_ports=parse_ports("U:161")))
    assert [(e.port, e.proto) for e in result if isinstance(e, Endpoint)] == [(161, Proto.UDP)]


def test_missing_file_is_one_error_at_line_zero(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.txt")
    assert list(inventory_specs(path)) == [
        InventoryError(Origin(path, 0), f"cannot read {path}: No such file or directory")
    ]


def test_a_directory_is_one_error(tmp_path: Path) -> None:
    result = list(read_inventory(str(tmp_path)))
    assert len(result) == 1
    assert isinstance(result[0], InventoryError)
    assert result[0].origin.line == 0
    assert "Is a directory" in result[0].message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_text("web:80\n")
    path.chmod(0)
    result = list(read_inventory(str(path)))
    assert len(result) == 1
    assert isinstance(result[0], InventoryError)
    assert "Permission denied" in result[0].message


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-be"])
def test_a_utf16_or_utf32_file_is_one_error_saying_so(encoding: str) -> None:
    data = "".join(f"192.0.2.{n}:22\n" for n in range(1, 20)).encode(encoding)

    items = list(parse_text_lines(data.splitlines(keepends=True), file="f", default_ports=PORTS))

    name = encoding[:6].upper()
    assert [str(item) for item in items] == [
        f"f:1: looks like {name}, not UTF-8; save it as UTF-8 (nothing in it was read)"
    ]


def test_nul_bytes_that_are_no_wide_encoding_stay_per_line_errors() -> None:
    items = list(
        parse_text_lines([b"192.0.2.1:22\x00\n", b"\x00\x00\x00\n"], file="f", default_ports=PORTS)
    )

    assert [item.origin.line for item in items if isinstance(item, InventoryError)] == [1, 2]
