"""Output formats behind one small interface: pick one by name with `make_sink`.

Each format is a module with a sink class; the registry below maps the names the CLI
accepts to a factory, so adding a format is one line here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from scanner.core.sinks import (
    OutputClosed,
    OutputError,
    OutputTarget,
    RunInfo,
    RunSummary,
    Sink,
    result_to_record,
)
from scanner.outputs.atomic import AtomicWriter, StreamWriter, open_target
from scanner.outputs.nagios import DEFAULT_CRITICAL, Threshold


@dataclass(frozen=True, slots=True)
class OutputOptions:
    """Settings some formats take; each factory reads only its own."""

    color: bool = False
    aggregates_only: bool = False  # prom: only the run-level metrics
    warning: Threshold | None = None  # nagios: failed endpoints that make a WARNING
    critical: Threshold | None = DEFAULT_CRITICAL  # ... and a CRITICAL
    local_addresses: frozenset[str] = frozenset()  # report: who sent an ICMP error


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """One `--format F [-o PATH]` of the command line."""

    format: str
    path: str  # "-" for stdout


SinkFactory = Callable[[OutputTarget, str, OutputOptions], Sink]
"""Build a sink writing to a target (opened on `path`), with the run's output options."""

# Each factory imports its format's module when the format is asked for: most runs write
# one or two formats, and prometheus_client and rich are a good part of start-up.


def _jsonl(target: OutputTarget, path: str, options: OutputOptions) -> Sink:
    from scanner.outputs.jsonl import JsonLinesSink

    return JsonLinesSink(target)


def _table(target: OutputTarget, path: str, options: OutputOptions) -> Sink:
    from scanner.outputs.table import TableSink

    return TableSink(target, color=options.color)


def _report_json(target: OutputTarget, path: str, options: OutputOptions) -> Sink:
    from scanner.outputs.report_json import ReportJsonSink

    return ReportJsonSink(target, options.local_addresses)


def _prom(target: OutputTarget, path: str, options: OutputOptions) -> Sink:
    from scanner.outputs.prom import PromSink

    return PromSink(
        target, aggregates_only=options.aggregates_only, previous_path=None if path == "-" else path
    )


def _nmap_xml(target: OutputTarget, path: str, options: OutputOptions) -> Sink:
    from scanner.outputs.nmap_xml import NmapXmlSink

    return NmapXmlSink(target)


def _nagios(target: OutputTarget, path: str, options: OutputOptions) -> Sink:
    from scanner.outputs.nagios import NagiosSink

    return NagiosSink(target, options.warning, options.critical)


_FACTORIES: Mapping[str, SinkFactory] = MappingProxyType(
    {
        "jsonl": _jsonl,
        "table": _table,
        "report-json": _report_json,
        "prom": _prom,
        "nmap-xml": _nmap_xml,
        "nagios": _nagios,
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
    "OutputClosed",
    "OutputError",
    "OutputOptions",
    "OutputSpec",
    "OutputTarget",
    "RunInfo",
    "RunSummary",
    "Sink",
    "StreamWriter",
    "make_sink",
    "open_target",
    "result_to_record",
]
