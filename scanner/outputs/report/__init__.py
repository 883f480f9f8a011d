"""The grouped diagnosis: what is wrong across a run, said once per cause, not once per row.

The table lists endpoints; this report answers the on-call question "why": refusals grouped
by cause (largest group first), each with the endpoints collapsed per host, one evidence
line per endpoint and the advice said once where it is the same; filtered endpoints grouped
by who stopped them; and names whose addresses disagree (a dead member behind round-robin
DNS). Pure: `Result`s in, a `Report` value out, then text or a JSON-ready dict.

Only endpoints expected open appear in the refused and filtered sections: that is what the
diagnosis explains. Other mismatches show in the table, and in the disagreements.

Memory stays bounded for big sweeps: the builder keeps only results that are not as
expected (which every output shows anyway), plus the set of addresses seen per name. A
65,535-port sweep where everything is as expected keeps no result at all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from scanner.core.diagnose import (
    KIND_FILTERED,
    PROHIBITED_REASONS,
    REFUSAL_KINDS,
    WHO_SELF,
    WHO_TARGET,
    describe_filtered,
    who_filtered,
)
from scanner.core.model import Cause, Expect, Proto, Reason, ResolvedVia, Result, State
from scanner.outputs.styled import Line, render

SCHEMA = "reachscan-report/1"
UNDIAGNOSED = "undiagnosed"
"""The group of refusals that carry no cause (the diagnosis did not run for them)."""

LIST_LIMIT = 8
"""Evidence lines list at most this many ports or addresses, then say how many more."""

GROUP_EXPLANATIONS: Mapping[str, str] = MappingProxyType(
    {
        "stale-address": (
            "The address probed came from the hosts file, a pin or an old DNS answer; DNS now "
            "gives another address, and that one accepts."
        ),
        "address-family": (
            "The service listens on one address family only; clients trying the other one "
            "are refused."
        ),
        "bound-elsewhere": (
            "On this machine the port is bound to another address, so the probed address refuses."
        ),
        "wrong-port": "A related port accepts instead: the service or the inventory is off.",
        "service-down": (
            "The host is up but nothing listens on the port: the service is stopped, crashed "
            "or was never started."
        ),
        "wrong-host": (
            "Nothing on the address accepts on any port tried: the inventory may point at "
            "the wrong machine."
        ),
        "unknown": "The follow-up checks could not tell why.",
        UNDIAGNOSED: "No diagnosis ran for these refusals.",
    }
)
"""The generic sentence a refusal group opens with, by cause kind."""


@dataclass(frozen=True, slots=True)
class EndpointEntry:
    """One endpoint in a group: where, how sure, what shows it, what to do."""

    port: int
    proto: Proto
    confidence: float | None
    evidence: tuple[tuple[str, object], ...]
    summary: str  # the evidence as one readable line
    advice: str | None


@dataclass(frozen=True, slots=True)
class HostEntry:
    """The endpoints of one (host, address) pair inside a group."""

    host: str
    address: str | None
    resolved_via: ResolvedVia
    endpoints: tuple[EndpointEntry, ...]

    @property
    def ports(self) -> str:
        """The ports, collapsed into ranges: `22/tcp, 8000-8003/tcp, 53/udp`."""
        return collapse_ports((entry.port, entry.proto) for entry in self.endpoints)

    @property
    def common_advice(self) -> str | None:
        return _common(entry.advice for entry in self.endpoints)


@dataclass(frozen=True, slots=True)
class RefusalGroup:
    """Refused endpoints that share a cause kind."""

    kind: str
    explanation: str | None
    hosts: tuple[HostEntry, ...]

    @property
    def count(self) -> int:
        return sum(len(host.endpoints) for host in self.hosts)

    @property
    def confidence_range(self) -> tuple[float, float] | None:
        values = [
            entry.confidence
            for host in self.hosts
            for entry in host.endpoints
            if entry.confidence is not None
        ]
        return (min(values), max(values)) if values else None

    @property
    def common_advice(self) -> str | None:
        return _common(entry.advice for host in self.hosts for entry in host.endpoints)


@dataclass(frozen=True, slots=True)
class FilteredGroup:
    """Filtered endpoints stopped in the same way by the same sender."""

    reason: Reason
    offender: str | None
    who: str
    hosts: tuple[HostEntry, ...]

    @property
    def count(self) -> int:
        return sum(len(host.endpoints) for host in self.hosts)

    @property
    def title(self) -> str:
        return filtered_title(self.reason, self.offender, self.who)

    @property
    def common_advice(self) -> str | None:
        return _common(entry.advice for host in self.hosts for entry in host.endpoints)


@dataclass(frozen=True, slots=True)
class Disagreement:
    """One (name, port, protocol) whose addresses answered differently."""

    host: str
    port: int
    proto: Proto
    addresses: tuple[str, ...]  # every address of the name seen in the run
    not_as_expected: tuple[tuple[State, tuple[str, ...]], ...]  # state -> its addresses
    as_expected: tuple[str, ...]

    @property
    def summary(self) -> str:
        """`db.example.com:5432/tcp: 1 of 3 addresses refuses (10.0.0.3)`."""
        total = len(self.addresses)
        parts = []
        for index, (state, addresses) in enumerate(self.not_as_expected):
            singular, plural = _STATE_VERBS.get(state, ("is " + state, "are " + state))
            verb = singular if len(addresses) == 1 else plural
            counted = f"{len(addresses)} of {total} addresses" if index == 0 else len(addresses)
            parts.append(f"{counted} {verb} ({_limited(addresses)})")
        return f"{self.host}:{self.port}/{self.proto.value}: " + ", ".join(parts)


_STATE_VERBS: Mapping[State, tuple[str, str]] = MappingProxyType(
    {
        State.REFUSED: ("refuses", "refuse"),
        State.FILTERED: ("is filtered", "are filtered"),
        State.OPEN_FILTERED: ("does not answer", "do not answer"),
        State.OPEN: ("is open", "are open"),
        State.ERROR: ("could not be probed", "could not be probed"),
        State.EXCLUDED: ("is excluded (not probed)", "are excluded (not probed)"),
    }
)


@dataclass(frozen=True, slots=True)
class Report:
    """Everything the grouped diagnosis has to say about a run."""

    refusals: tuple[RefusalGroup, ...]
    filtered: tuple[FilteredGroup, ...]
    disagreements: tuple[Disagreement, ...]

    @property
    def empty(self) -> bool:
        return not (self.refusals or self.filtered or self.disagreements)


# --- building -----------------------------------------------------------------------------

_NameKey = tuple[str, str | None]  # (host as written, pinned address)
_CauseLookup = Callable[[Result], Cause | None]
_Summariser = Callable[[Mapping[str, object]], str]
_FILTERED_STATES = frozenset({State.FILTERED, State.OPEN_FILTERED})


@dataclass(slots=True)
class ReportBuilder:
    """Accumulate results as they stream in; `build` makes the report.

    `local_addresses` lets a filtered verdict sent by this machine be named as such.
    """

    local_addresses: frozenset[str] = frozenset()
    _kept: list[Result] = field(default_factory=list)
    # Addresses seen per name, in order; names only (a literal has one address).
    _addresses: dict[_NameKey, dict[str, None]] = field(default_factory=dict)

    @property
    def results_held(self) -> int:
        """How many results are kept: those not as expected, nothing else."""
        return len(self._kept)

    def add(self, result: Result) -> None:
        if result.address is None:
            return  # unresolved: no address to diagnose or compare
        is_name = result.resolved_via is not ResolvedVia.LITERAL
        if is_name:
            self._addresses.setdefault(_name_key(result), {})[result.address] = None
        if not result.ok and (is_name or result.endpoint.expect is Expect.OPEN):
            self._kept.append(result)

    def add_all(self, results: Iterable[Result]) -> None:
        for result in results:
            self.add(result)

    def build(self) -> Report:
        expected_open = [result for result in self._kept if result.endpoint.expect is Expect.OPEN]
        refused = [result for result in expected_open if result.state is State.REFUSED]
        filtered = [result for result in expected_open if result.state in _FILTERED_STATES]
        return Report(
            refusals=_refusal_groups(refused),
            filtered=_filtered_groups(filtered, self.local_addresses),
            disagreements=_disagreements(self._kept, self._addresses),
        )


def build_report(
    results: Iterable[Result], local_addresses: frozenset[str] = frozenset()
) -> Report:
    """The report for a finished run (see `ReportBuilder` to accumulate while streaming)."""
    builder = ReportBuilder(local_addresses)
    builder.add_all(results)
    return builder.build()


def _name_key(result: Result) -> _NameKey:
    return (result.endpoint.host, result.endpoint.pinned_address)


def _refusal_groups(refused: Sequence[Result]) -> tuple[RefusalGroup, ...]:
    by_kind: dict[str, list[Result]] = {}
    for result in refused:
        kind = result.cause.kind if result.cause is not None else UNDIAGNOSED
        by_kind.setdefault(kind, []).append(result)
    groups = [
        RefusalGroup(kind, GROUP_EXPLANATIONS.get(kind), _host_entries(results, _cause_of))
        for kind, results in by_kind.items()
    ]
    groups.sort(key=lambda group: (-group.count, _kind_rank(group.kind), group.kind))
    return tuple(groups)


def _kind_rank(kind: str) -> int:
    """Ties between groups go to the more specific cause; unknown kinds come last."""
    return REFUSAL_KINDS.index(kind) if kind in REFUSAL_KINDS else len(REFUSAL_KINDS)


def _cause_of(result: Result) -> Cause | None:
    return result.cause


def _filtered_groups(
    filtered: Sequence[Result], local_addresses: frozenset[str]
) -> tuple[FilteredGroup, ...]:
    def cause_of(result: Result) -> Cause:
        if result.cause is not None and result.cause.kind == KIND_FILTERED:
            return result.cause
        return describe_filtered(result, local_addresses=local_addresses)

    by_sender: dict[tuple[Reason, str | None], list[Result]] = {}
    for result in filtered:
        by_sender.setdefault((result.reason, result.offender), []).append(result)
    groups = [
        FilteredGroup(
            reason=reason,
            offender=offender,
            who=_who(cause_of(results[0]), results[0], local_addresses),
            hosts=_host_entries(results, cause_of),
        )
        for (reason, offender), results in by_sender.items()
    ]
    groups.sort(key=lambda group: (-group.count, group.reason.value, group.offender or ""))
    return tuple(groups)


def _who(cause: Cause, result: Result, local_addresses: frozenset[str]) -> str:
    """Who stopped it: as the diagnosis said (it may know this machine's addresses), else
    as far as the offender address tells."""
    who = dict(cause.evidence).get("who")
    return who if isinstance(who, str) else who_filtered(result, local_addresses)


def filtered_title(reason: Reason, offender: str | None, who: str) -> str:
    """How a filtered group is headed: `rejected by 10.1.0.1 (admin-prohibited)`."""
    if offender is None:
        if reason is Reason.NO_RESPONSE:
            return "no response (dropped silently, or a UDP service that did not answer)"
        return reason.value
    sender = offender
    if who == WHO_TARGET:
        sender = f"{offender} (the target itself)"
    elif who == WHO_SELF:
        sender = f"this machine ({offender})"
    if reason in PROHIBITED_REASONS:
        return f"rejected by {sender} ({reason.value})"
    return f"{reason.value} from {sender}"


def _host_entries(results: Sequence[Result], cause_of: _CauseLookup) -> tuple[HostEntry, ...]:
    by_host: dict[tuple[str, str | None], list[Result]] = {}
    for result in results:
        by_host.setdefault((result.endpoint.host, result.address), []).append(result)
    entries = []
    for (host, address), host_results in sorted(by_host.items(), key=_host_sort_key):
        host_results.sort(key=lambda result: (result.endpoint.port, result.endpoint.proto.value))
        entries.append(
            HostEntry(
                host=host,
                address=address,
                resolved_via=host_results[0].resolved_via,
                endpoints=tuple(
                    _endpoint_entry(result, cause_of(result)) for result in host_results
                ),
            )
        )
    return tuple(entries)


def _host_sort_key(item: tuple[tuple[str, str | None], list[Result]]) -> tuple[str, int, int]:
    (host, address), _results = item
    if address is None:
        return (host, 0, 0)
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return (host, 9, 0)
    return (host, parsed.version, int(parsed))


def _endpoint_entry(result: Result, cause: Cause | None) -> EndpointEntry:
    endpoint = result.endpoint
    if cause is None:
        return EndpointEntry(
            port=endpoint.port,
            proto=endpoint.proto,
            confidence=None,
            evidence=(),
            summary=f"{result.state.value} ({result.reason.value}); no diagnosis",
            advice=None,
        )
    return EndpointEntry(
        port=endpoint.port,
        proto=endpoint.proto,
        confidence=cause.confidence,
        evidence=cause.evidence,
        summary=evidence_summary(cause),
        advice=cause.advice or None,
    )


def _disagreements(
    kept: Sequence[Result], addresses_by_name: Mapping[_NameKey, Mapping[str, None]]
) -> tuple[Disagreement, ...]:
    """Endpoints of names with several addresses whose results differ between addresses.

    Only results not as expected are kept, so an address without a kept result for an
    endpoint is taken to have answered as expected. That holds because the engine probes
    every endpoint of a name at every address of the name; in an interrupted run an
    address not yet probed is counted as expected too.
    """
    by_endpoint: dict[tuple[_NameKey, int, Proto], dict[str, State]] = {}
    for result in kept:
        name = _name_key(result)
        if len(addresses_by_name.get(name, ())) < 2 or result.address is None:
            continue
        key = (name, result.endpoint.port, result.endpoint.proto)
        by_endpoint.setdefault(key, {})[result.address] = result.state
    found = []
    for (name, port, proto), states in by_endpoint.items():
        addresses = tuple(addresses_by_name[name])
        as_expected = tuple(address for address in addresses if address not in states)
        by_state: dict[State, list[str]] = {}
        for address, state in states.items():
            by_state.setdefault(state, []).append(address)
        if not as_expected and len(by_state) < 2:
            continue  # every address says the same: no disagreement
        not_as_expected = tuple(
            (state, tuple(by_state[state])) for state in State if state in by_state
        )
        found.append(Disagreement(name[0], port, proto, addresses, not_as_expected, as_expected))
    found.sort(key=lambda item: (item.host, item.port, item.proto.value))
    return tuple(found)


def _common(advice: Iterable[str | None]) -> str | None:
    """The one advice every entry shares, or None when they differ."""
    distinct = set(advice)
    if len(distinct) == 1:
        return distinct.pop()
    return None


# --- evidence as one line -----------------------------------------------------------------


def evidence_summary(cause: Cause) -> str:
    """A readable one-liner from a cause's evidence, by kind; `k=v` pairs for other kinds."""
    facts = dict(cause.evidence)
    summarise = _SUMMARIES.get(cause.kind)
    if summarise is not None:
        try:
            return summarise(facts)
        except (KeyError, TypeError, ValueError):
            pass  # evidence of an unexpected shape: fall back to the raw pairs
    return "; ".join(f"{key}={_text(value)}" for key, value in cause.evidence) or cause.kind


def _stale_summary(facts: Mapping[str, object]) -> str:
    return (
        f"probed {facts['probed_address']} (from {facts['resolved_via']}); DNS now gives "
        f"{_text(facts['fresh_addresses'])}; {_text(facts['answered'])} accepts"
    )


def _family_summary(facts: Mapping[str, object]) -> str:
    return (
        f"IPv{facts['family']} {facts['probed_address']} refuses; "
        f"IPv{facts['answered_family']} {_text(facts['answered'])} accepts"
    )


def _bound_summary(facts: Mapping[str, object]) -> str:
    return f"bound to {_text(facts['bound_addresses'])} by {_text(facts['processes'])}"


def _wrong_port_summary(facts: Mapping[str, object]) -> str:
    text = f"port {facts['answered_port']} accepts ({facts['relation']})"
    also = _as_tuple(facts.get("also_answered"))
    if also:
        text += f"; also {_text(also)}"
    return text


def _service_down_summary(facts: Mapping[str, object]) -> str:
    parts = []
    alive = _as_tuple(facts.get("alive_ports"))
    if alive:
        parts.append(f"host accepts on {_text(alive)}")
    elif facts.get("local"):
        parts.append("this machine; nothing listens on the port")
    if facts.get("last_open"):
        parts.append(f"open at {facts['last_open']}")
    if facts.get("first_refused"):
        parts.append(f"refused since {facts['first_refused']}")
    if not parts:
        parts.append("host answered other ports in earlier runs")
    return "; ".join(parts)


def _wrong_host_summary(facts: Mapping[str, object]) -> str:
    ports = _as_tuple(facts["ports_probed"])
    return f"accepts on none of the {len(ports)} ports tried: {_text(ports)}"


def _unknown_summary(facts: Mapping[str, object]) -> str:
    tried = _as_tuple(facts.get("tried"))
    text = f"tried {_text(tried)}" if tried else "nothing could be tried"
    if facts.get("budget_exhausted"):
        text += "; follow-up budget exhausted"
    if facts.get("fresh_dns_failure"):
        text += f"; DNS: {facts['fresh_dns_failure']}"
    return text


def _filtered_summary(facts: Mapping[str, object]) -> str:
    if facts.get("offender") is None:
        return f"{facts['reason']}, no ICMP sender"
    return f"{facts['reason']} from {facts['offender']} ({facts['who']})"


_SUMMARIES: Mapping[str, _Summariser] = MappingProxyType(
    {
        "stale-address": _stale_summary,
        "address-family": _family_summary,
        "bound-elsewhere": _bound_summary,
        "wrong-port": _wrong_port_summary,
        "service-down": _service_down_summary,
        "wrong-host": _wrong_host_summary,
        "unknown": _unknown_summary,
        KIND_FILTERED: _filtered_summary,
    }
)


def _as_tuple(value: object) -> tuple[object, ...]:
    if isinstance(value, list | tuple):
        return tuple(value)
    return () if value is None else (value,)


def _text(value: object) -> str:
    if isinstance(value, list | tuple):
        return _limited([str(item) for item in value])
    return str(value)


def _limited(items: Sequence[str]) -> str:
    if len(items) <= LIST_LIMIT:
        return ", ".join(items)
    return ", ".join(items[:LIST_LIMIT]) + f" and {len(items) - LIST_LIMIT} more"


def collapse_ports(ports: Iterable[tuple[int, Proto]]) -> str:
    """`22/tcp, 8000-8003/tcp, 53/udp`: sorted per protocol, runs of three or more joined."""
    by_proto: dict[Proto, set[int]] = {}
    for port, proto in ports:
        by_proto.setdefault(proto, set()).add(port)
    parts: list[str] = []
    for proto in Proto:
        numbers = sorted(by_proto.get(proto, ()))
        for first, last in _runs(numbers):
            if last - first >= 2:
                parts.append(f"{first}-{last}/{proto.value}")
            else:
                parts.extend(f"{port}/{proto.value}" for port in range(first, last + 1))
    return ", ".join(parts)


def _runs(numbers: Sequence[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], number)
        else:
            runs.append((number, number))
    return runs


# --- text ---------------------------------------------------------------------------------

ADVICE_MARK = "-> "


def render_text(report: Report, color: bool = False) -> str:
    """The report for people; empty when there is nothing to say. Plain text reads the
    same as the coloured form with the escape codes removed."""
    lines = render_lines(report)
    if not lines:
        return ""
    return render(lines, color=color)


def render_lines(report: Report) -> list[Line]:
    lines: list[Line] = []
    if report.refusals:
        total = sum(group.count for group in report.refusals)
        lines.append([(f"Why {_endpoints(total)} expected open {_are(total)} refused", "bold")])
        for group in report.refusals:
            lines.extend(_refusal_group_lines(group))
    if report.filtered:
        if lines:
            lines.append([])
        total = sum(group.count for group in report.filtered)
        lines.append([(f"Why {_endpoints(total)} expected open {_are(total)} filtered", "bold")])
        for filtered_group in report.filtered:
            lines.extend(_filtered_group_lines(filtered_group))
    if report.disagreements:
        if lines:
            lines.append([])
        lines.append([("Names whose addresses disagree", "bold")])
        lines.extend([("  " + item.summary, "yellow")] for item in report.disagreements)
    return lines


def _refusal_group_lines(group: RefusalGroup) -> list[Line]:
    heading = f"  {group.kind}: {_endpoints(group.count)}"
    confidence = group.confidence_range
    if confidence is not None:
        low, high = confidence
        heading += (
            f" (confidence {low:.2f})" if low == high else f" (confidence {low:.2f}-{high:.2f})"
        )
    lines: list[Line] = [[(heading, "bold yellow")]]
    if group.explanation:
        lines.append([("    " + group.explanation, "")])
    lines.extend(_host_lines(group.hosts, group.common_advice, with_evidence=True))
    return lines


def _filtered_group_lines(group: FilteredGroup) -> list[Line]:
    lines: list[Line] = [[(f"  {group.title}: {_endpoints(group.count)}", "bold magenta")]]
    lines.extend(_host_lines(group.hosts, group.common_advice, with_evidence=False))
    return lines


def _host_lines(
    hosts: Sequence[HostEntry], group_advice: str | None, *, with_evidence: bool
) -> list[Line]:
    """Hosts with their ports; the advice at the highest level where it is the same:
    once for the group, else once per host, else once per endpoint."""
    lines: list[Line] = []
    for host in hosts:
        lines.append([(f"    {_host_label(host)}: {host.ports}", "")])
        host_advice = host.common_advice if group_advice is None else None
        for entry in host.endpoints:
            if with_evidence:
                port = f"{entry.port}/{entry.proto.value}"
                lines.append([(f"      {port}  {entry.summary}", "")])
            if group_advice is None and host_advice is None and entry.advice:
                prefix = "        " if with_evidence else f"      {entry.port}/{entry.proto.value} "
                lines.append([(prefix + ADVICE_MARK + entry.advice, "cyan")])
        if host_advice:
            lines.append([("      " + ADVICE_MARK + host_advice, "cyan")])
    if group_advice:
        lines.append([("    " + ADVICE_MARK + group_advice, "cyan")])
    return lines


def _host_label(host: HostEntry) -> str:
    if host.address is None:
        return host.host
    if host.address == host.host:
        return host.address
    return f"{host.host} ({host.address} via {host.resolved_via.value})"


def _endpoints(count: int) -> str:
    return f"{count} endpoint" if count == 1 else f"{count} endpoints"


def _are(count: int) -> str:
    return "is" if count == 1 else "are"


# --- JSON ---------------------------------------------------------------------------------


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
        "kind": group.kind,
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
    """Tuples become lists, so the dict is JSON-native for any serialiser."""
    if isinstance(value, tuple | list):
        return [_json_value(item) for item in value]
    return value
