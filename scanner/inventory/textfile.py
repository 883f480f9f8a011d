"""Plain-text inventories: one target spec per line, `#` comments, read lazily.

Files come from many editors and pipes, so the reader forgives what does not change the
meaning (CRLF, tabs, surrounding blanks, a UTF-8 byte-order mark) and reports, with its
line number, what does (invalid UTF-8, a malformed spec), then carries on with the next
line: one typo must not hide the other thousand targets, nor silently drop itself. A file
saved as UTF-16 or UTF-32 is said so once, not as an error on every line.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from typing import BinaryIO, TextIO

from scanner.core.errors import (
    InventoryError,
    SpecError,
    wide_encoding,
    wide_encoding_message,
)
from scanner.core.model import Expect, Origin
from scanner.core.ports import PortSpec
from scanner.core.specs import TargetSpec, parse_target_spec

STDIN_NAME = "<stdin>"

_BOM = "\ufeff"
_TRAILING_COMMENT = re.compile(r"\s#")


def read_text_inventory(
    path: str,
    *,
    default_ports: PortSpec,
    stdin: TextIO | None = None,
    expect: Expect | None = Expect.OPEN,
) -> Iterator[TargetSpec | InventoryError]:
    """Read the file at `path` (`-` reads `stdin`, default sys.stdin), one spec per line.

    An unreadable file gives one InventoryError at line 0 instead of an exception.
    """
    if path == "-":
        stream = sys.stdin if stdin is None else stdin
        # Prefer the raw bytes under a text stream, so an invalid byte spoils one line
        # rather than ending the read with a UnicodeDecodeError.
        binary: BinaryIO | None = getattr(stream, "buffer", None)
        lines: Iterable[bytes | str] = stream if binary is None else binary
        yield from parse_text_lines(
            lines, file=STDIN_NAME, default_ports=default_ports, expect=expect
        )
        return
    try:
        with open(path, "rb") as file:
            yield from parse_text_lines(file, file=path, default_ports=default_ports, expect=expect)
    except OSError as error:
        yield InventoryError(Origin(path, 0), f"cannot read {path}: {error.strerror or error}")


def parse_text_lines(
    lines: Iterable[bytes | str],
    *,
    file: str,
    default_ports: PortSpec,
    expect: Expect | None = Expect.OPEN,
) -> Iterator[TargetSpec | InventoryError]:
    """Parse lines (bytes, or already-decoded text) into specs and errors, lazily."""
    line_number = 0
    try:
        for line_number, raw_line in enumerate(lines, start=1):
            if line_number == 1 and isinstance(raw_line, bytes):
                wide = wide_encoding(raw_line)
                if wide is not None:  # every line would be an error: say why, once
                    yield InventoryError(Origin(file, 1), wide_encoding_message(wide))
                    return
            try:
                line = _decode(raw_line)
            except UnicodeError as error:
                yield InventoryError(Origin(file, line_number), _decode_message(error))
                continue
            if line_number == 1:
                line = line.removeprefix(_BOM)
            spec_text = strip_comment(line)
            if not spec_text:
                continue
            origin = Origin(file, line_number)
            try:
                yield parse_target_spec(
                    spec_text, default_ports=default_ports, expect=expect, origin=origin
                )
            except SpecError as error:
                yield InventoryError(origin, str(error))
    except UnicodeDecodeError as error:  # a text stream that decodes strictly
        yield InventoryError(Origin(file, line_number + 1), _decode_message(error))
    except OSError as error:
        yield InventoryError(
            Origin(file, line_number + 1), f"read failed: {error.strerror or error}"
        )


def strip_comment(line: str) -> str:
    """The spec on a line: without a whole-line `#` comment or one after whitespace.

    A `#` glued to text (`web#1`) is not a comment; the spec parser rejects it, which
    is better than silently probing `web`.
    """
    text = line.strip()
    if text.startswith("#"):
        return ""
    comment = _TRAILING_COMMENT.search(text)
    return text if comment is None else text[: comment.start()].rstrip()


def _decode(raw_line: bytes | str) -> str:
    if isinstance(raw_line, bytes):
        return raw_line.decode("utf-8")
    raw_line.encode("utf-8")  # lone surrogates: bytes a surrogateescape stream could not decode
    return raw_line


def _decode_message(error: UnicodeError) -> str:
    if isinstance(error, UnicodeDecodeError):
        return f"invalid UTF-8 (byte 0x{error.object[error.start]:02x}); save the file as UTF-8"
    return "invalid UTF-8; save the file as UTF-8"
