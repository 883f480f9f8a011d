"""The grouped report as a JSON-ready dict (the schema in docs/report-json.md)."""

from __future__ import annotations

from enum import Enum

from scanner.outputs.report.records import (
    SCHEMA,
    Disagreement,
    FilteredGroup,
    HostEntry,
    RefusalGroup,
    Report,
)


def report_to_json(report: Report) -> dict[str, object]:
    """The report as JSON-native values, for `--format report-json`.

    Schema (`reachscan-report/1`; docs/report-json.md has the same with an example)::

        {
          "schema": "reachscan-report/1",
          "refused": {
            "count": int,                 # refused endpoints expected open
            "groups": [                   # largest first; ties: most specific kind first
              {"kind": str,               # stale-address, address-family, bound-elsewhere,
                                          # wrong-port, service-down, wrong-host, unknown,
                                          # undiagnosed (no cause), or another cause kind
               "count": int,
               "confidence": {"min": float, "max": float} | null,
               "explanation": str | null, # generic sentence for the kind
               "advice": str | null,      # when every endpoint of the group shares it
               "hosts": [HOST, ...]}
            ]
          },
          "filtered": {
            "count": int,                 # filtered or open|filtered endpoints expected open
            "groups": [                   # by (reason, offender), largest first
              {"reason": str, "offender": str | null,
               "who": "target" | "router" | "this machine" | "unknown",
               "title": str, "count": int, "advice": str | null, "hosts": [HOST, ...]}
            ]
          },
          "disagreements": [              # names whose addresses answered differently
            {"host": str, "port": int, "proto": "tcp" | "udp",
             "addresses": [str],          # every address of the name seen in the run
             "not_as_expected": {STATE: [str]},   # e.g. {"refused": ["10.0.0.3"]}
             "as_expected": [str],
             "summary": str}
          ]
        }
        HOST = {"host": str, "address": str | null, "resolved_via": str,
                "ports": str,             # collapsed, e.g. "22/tcp, 8000-8003/tcp"
                "endpoints": [{"port": int, "proto": str, "confidence": float | null,
                               "evidence": {str: value}, "summary": str,
                               "advice": str | null}]}
    """
    return {
        "schema": SCHEMA,
        "refused": {
            "count": sum(group.count for group in report.refusals),
            "groups": [_refusal_group_json(group) for group in report.refusals],
        },
        "filtered": {
            "count": sum(group.count for group in report.filtered),
            "groups": [_filtered_group_json(group) for group in report.filtered],
        },
        "disagreements": [_disagreement_json(item) for item in report.disagreements],
    }


def _refusal_group_json(group: RefusalGroup) -> dict[str, object]:
    confidence = group.confidence_range
    return {
        "kind": str(group.kind),
        "count": group.count,
        "confidence": None if confidence is None else {"min": confidence[0], "max": confidence[1]},
        "explanation": group.explanation,
        "advice": group.common_advice,
        "hosts": [_host_json(host) for host in group.hosts],
    }


def _filtered_group_json(group: FilteredGroup) -> dict[str, object]:
    return {
        "reason": group.reason.value,
        "offender": group.offender,
        "who": group.who,
        "title": group.title,
        "count": group.count,
        "advice": group.common_advice,
        "hosts": [_host_json(host) for host in group.hosts],
    }


def _host_json(host: HostEntry) -> dict[str, object]:
    return {
        "host": host.host,
        "address": host.address,
        "resolved_via": host.resolved_via.value,
        "ports": host.ports,
        "endpoints": [
            {
                "port": entry.port,
                "proto": entry.proto.value,
                "confidence": entry.confidence,
                "evidence": {key: _json_value(value) for key, value in entry.evidence},
                "summary": entry.summary,
                "advice": entry.advice,
            }
            for entry in host.endpoints
        ],
    }


def _disagreement_json(item: Disagreement) -> dict[str, object]:
    return {
        "host": item.host,
        "port": item.port,
        "proto": item.proto.value,
        "addresses": list(item.addresses),
        "not_as_expected": {
            state.value: list(addresses) for state, addresses in item.not_as_expected
        },
        "as_expected": list(item.as_expected),
        "summary": item.summary,
    }


def _json_value(value: object) -> object:
    """Tuples become lists and enum members their values, so the dict is JSON-native for
    any serialiser."""
    if isinstance(value, tuple | list):
        return [_json_value(item) for item in value]
    if isinstance(value, Enum):
        return value.value
    return value
