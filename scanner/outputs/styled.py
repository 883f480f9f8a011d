"""Lines of styled text, printed plain or with ANSI colour: shared by the table and report.

A line is a list of (text, rich style) segments laid out by its producer; rendering never
re-wraps it. Colour goes through rich only on a terminal (or when asked for).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

Segment = tuple[str, str]  # (text, rich style; "" for none)
Line = list[Segment]


def render(lines: Sequence[Line], *, color: bool) -> str:
    return to_ansi(lines) if color else to_plain(lines)


def to_plain(lines: Sequence[Line]) -> str:
    return "".join("".join(text for text, _style in line).rstrip() + "\n" for line in lines)


def to_ansi(lines: Sequence[Line]) -> str:
    from rich.console import Console  # only when colour is wanted: rich is slow to import
    from rich.text import Text

    buffer = io.StringIO()
    console = Console(
        file=buffer,
        force_terminal=True,
        color_system="standard",
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=True,  # laid out already; never re-wrap
    )
    for line in lines:
        text = Text()
        for segment, style in line:
            text.append(segment, style=style or None)
        text.rstrip()
        console.print(text)
    return buffer.getvalue()
