"""The two ways an inventory can be wrong: a spec that does not parse, and an entry to report.

`SpecError` is raised by the pure parsers for one piece of text; the readers catch it and
turn it into an `InventoryError` value that carries FILE:LINE, so one bad line never stops
the rest of an inventory from being read.
"""

from __future__ import annotations

from dataclasses import dataclass

from scanner.model import Origin


class SpecError(ValueError):
    """A target or port spec that cannot be parsed.

    The message says what is wrong and, where a fix is obvious, what to write instead; it
    never includes the origin, which the caller adds.
    """


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


def decode_inventory(data: bytes, file: str) -> str | InventoryError:
    """A whole inventory file as text (UTF-8, a BOM allowed), or the error that says at
    which line it is not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        message = f"invalid UTF-8 (byte 0x{data[error.start]:02x}); save the file as UTF-8"
        return InventoryError(Origin(file, line), message)
