"""The two ways an inventory can be wrong: a spec that does not parse, and an entry to report.

`SpecError` is raised by the pure parsers for one piece of text; the readers catch it and
turn it into an `InventoryError` value that carries FILE:LINE, so one bad line never stops
the rest of an inventory from being read.
"""

from __future__ import annotations

from dataclasses import dataclass

from scanner.core.model import Origin


class SpecError(ValueError):
    """A target or port spec that cannot be parsed.

    The message says what is wrong and, where a fix is obvious, what to write instead; it
    never includes the origin, which the caller adds.
    """


ECHOED_CHARACTERS = 40
"""How much of a bad token a message repeats: enough to find it in the file, never a
10 MB line copied to stderr."""


def cut(text: str) -> str:
    """`text` as a message shows it: at most ECHOED_CHARACTERS, then "…"."""
    return text if len(text) <= ECHOED_CHARACTERS else text[:ECHOED_CHARACTERS] + "…"


def quoted(text: str) -> str:
    """`text` quoted (as `repr` does) and cut like `cut`: `'web#1'`, `'aaaa…'…`."""
    return repr(text) if len(text) <= ECHOED_CHARACTERS else repr(text[:ECHOED_CHARACTERS]) + "…"


@dataclass(frozen=True, slots=True)
class InventoryError:
    """One problem found while reading an inventory, reported instead of raised."""

    origin: Origin
    message: str

    def __str__(self) -> str:
        """`FILE:LINE: message` on one line, whatever the inventory's text held: a line
        break or other control character quoted from the input is shown escaped."""
        return f"{self.origin}: {self.message.translate(_ESCAPE_CONTROLS)}"


_ESCAPE_CONTROLS = {
    code: repr(chr(code))[1:-1] for code in (*range(0x20), 0x7F, 0x85, 0x2028, 0x2029)
}
"""Control characters and line separators -> their Python escapes (`\n`, `\x00`)."""


_WIDE_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),  # before UTF-16's: it starts the same way
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
_WIDE_SAMPLE = 64
"""Bytes of the first line looked at for NULs between the characters."""


def wide_encoding(first_line: bytes) -> str | None:
    """UTF-16 or UTF-32, when a file's first line shows it is in that encoding: its
    byte-order mark, or ASCII text with NUL bytes between the characters (one in two,
    three in four). Windows tools save text so; read as UTF-8 every line would be
    "invalid UTF-8" or garbage, so the reader says the encoding once instead."""
    for bom, name in _WIDE_BOMS:
        if first_line.startswith(bom):
            return name
    sample = first_line.rstrip(b"\n")[:_WIDE_SAMPLE]
    if len(sample) < 4:
        return None
    for name, period in (("UTF-32", 4), ("UTF-16", 2)):
        for text_at in (0, period - 1):  # where the character byte is: little, big endian
            nul_bytes = [byte for index, byte in enumerate(sample) if index % period != text_at]
            if not any(nul_bytes) and any(sample[text_at::period]):
                return name
    return None


def wide_encoding_message(name: str) -> str:
    return f"looks like {name}, not UTF-8; save it as UTF-8 (nothing in it was read)"


def decode_inventory(data: bytes, file: str) -> str | InventoryError:
    """A whole inventory file as text (UTF-8, a BOM allowed), or the error that says at
    which line it is not UTF-8 (or, once, that it is UTF-16 or UTF-32)."""
    wide = wide_encoding(data[: data.find(b"\n") + 1] if b"\n" in data else data)
    if wide is not None:
        return InventoryError(Origin(file, 1), wide_encoding_message(wide))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        message = f"invalid UTF-8 (byte 0x{data[error.start]:02x}); save the file as UTF-8"
        return InventoryError(Origin(file, line), message)
