"""Output formats behind one small interface: pick one by name with `make_sink`.

Each format is a module with a sink class; the registry below maps the names the CLI
accepts to a factory, so adding a format is one line here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from scanner.outputs.atomic import AtomicWriter, StreamWriter, open_target
from scanner.outputs.base import (
    OutputClosed,
    OutputError,
    OutputTarget,
    RunInfo,
    RunSummary,
    Sink,
    result_to_record,
)
from scanner.outputs.jsonl import JsonLinesSink
from scanner.outputs.nagios import NagiosSink
from scanner.outputs.nmap_xml import NmapXmlSink
from scanner.outputs.prom import PromSink
from scanner.outputs.report_json import ReportJsonSink
from scanner.outputs.table import TableSink

SinkFactory = Callable[[OutputTarget, bool], Sink]
"""Build a sink writing to a target; the bool says whether colour is wanted."""

_FACTORIES: Mapping[str, SinkFactory] = MappingProxyType(
    {
        "jsonl": lambda target, color: JsonLinesSink(target),
        "table": lambda target, color: TableSink(target, color=color),
        "report-json": lambda target, color: ReportJsonSink(target),
        "prom": lambda target, color: PromSink(target),
        "nmap-xml": lambda target, color: NmapXmlSink(target),
        "nagios": lambda target, color: NagiosSink(target),
    }
)

FORMATS: tuple[str, ...] = tuple(_FACTORIES)


def make_sink(format: str, path: str, *, color: bool) -> Sink:
    """The sink for `format` writing to `path` (`-` for stdout).

    The format is checked before the file is opened, so a typo creates no temporary file.
    Raises ValueError for an unknown format and `OutputError` when `path` cannot be written.
    """
    factory = _FACTORIES.get(format)
    if factory is None:
        raise ValueError(f"unknown output format {format!r}; known formats: {', '.join(FORMATS)}")
    return factory(open_target(path), color)


__all__ = [
    "FORMATS",
    "AtomicWriter",
    "JsonLinesSink",
    "OutputClosed",
    "OutputError",
    "OutputTarget",
    "ReportJsonSink",
    "RunInfo",
    "RunSummary",
    "Sink",
    "StreamWriter",
    "TableSink",
    "make_sink",
    "open_target",
    "result_to_record",
]
