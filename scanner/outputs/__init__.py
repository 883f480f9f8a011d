"""Output formats behind one small interface: pick one by name with `make_sink`.

Each format is a module with a sink class; the registry below maps the names the CLI
accepts to a factory, so adding a format is one line here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
from scanner.outputs.nagios import DEFAULT_CRITICAL, NagiosSink, Threshold
from scanner.outputs.nmap_xml import NmapXmlSink
from scanner.outputs.prom import PromSink
from scanner.outputs.report_json import ReportJsonSink
from scanner.outputs.table import TableSink


@dataclass(frozen=True, slots=True)
class OutputOptions:
    """Settings some formats take; each factory reads only its own."""

    color: bool = False
    aggregates_only: bool = False  # prom: only the run-level metrics
    warning: Threshold | None = None  # nagios: failed endpoints that make a WARNING
    critical: Threshold | None = DEFAULT_CRITICAL  # ... and a CRITICAL
    local_addresses: frozenset[str] = frozenset()  # report: who sent an ICMP error


SinkFactory = Callable[[OutputTarget, str, OutputOptions], Sink]
"""Build a sink writing to a target (opened on `path`), with the run's output options."""

_FACTORIES: Mapping[str, SinkFactory] = MappingProxyType(
    {
        "jsonl": lambda target, path, options: JsonLinesSink(target),
        "table": lambda target, path, options: TableSink(target, color=options.color),
        "report-json": lambda target, path, options: ReportJsonSink(
            target, options.local_addresses
        ),
        "prom": lambda target, path, options: PromSink(
            target,
            aggregates_only=options.aggregates_only,
            previous_path=None if path == "-" else path,
        ),
        "nmap-xml": lambda target, path, options: NmapXmlSink(target),
        "nagios": lambda target, path, options: NagiosSink(
            target, options.warning, options.critical
        ),
    }
)

FORMATS: tuple[str, ...] = tuple(_FACTORIES)


def make_sink(format: str, path: str, options: OutputOptions | None = None) -> Sink:
    """The sink for `format` writing to `path` (`-` for stdout).

    The format is checked before the file is opened, so a typo creates no temporary file.
    Raises ValueError for an unknown format and `OutputError` when `path` cannot be written.
    """
    factory = _FACTORIES.get(format)
    if factory is None:
        raise ValueError(f"unknown output format {format!r}; known formats: {', '.join(FORMATS)}")
    return factory(open_target(path), path, options or OutputOptions())


__all__ = [
    "FORMATS",
    "AtomicWriter",
    "JsonLinesSink",
    "OutputClosed",
    "OutputError",
    "OutputOptions",
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
