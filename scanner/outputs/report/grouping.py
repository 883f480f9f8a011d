"""Results grouped into a `Report`: refusals by cause (largest group first), filtered
endpoints by who stopped them, names whose addresses disagree; and the one-line evidence
summary of each cause.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from scanner.core.diagnose import REFUSAL_KINDS, describe_filtered, who_filtered
from scanner.core.model import (
    AddressFamilyEvidence,
    BoundElsewhereEvidence,
    Cause,
    CauseKind,
    Expect,
    FilteredEvidence,
    Proto,
    Reason,
    ResolvedVia,
    Result,
    ServiceDownEvidence,
    StaleAddressEvidence,
    State,
    UnknownEvidence,
    WrongHostEvidence,
    WrongPortEvidence,
)
from scanner.outputs.report.records import (
    GROUP_EXPLANATIONS,
    UNDIAGNOSED,
    Disagreement,
    EndpointEntry,
    FilteredGroup,
    HostEntry,
    RefusalGroup,
    Report,
    limited,
)

_NameKey = tuple[str, str | None]  # (host as written, pinned address)
_CauseLookup = Callable[[Result], Cause | None]
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
    by_kind: dict[CauseKind | str, list[Result]] = {}
    for result in refused:
        kind = result.cause.kind if result.cause is not None else UNDIAGNOSED
        by_kind.setdefault(kind, []).append(result)
    groups = [
        RefusalGroup(kind, GROUP_EXPLANATIONS.get(kind), _host_entries(results, _cause_of))
        for kind, results in by_kind.items()
    ]
    groups.sort(key=lambda group: (-group.count, _kind_rank(group.kind), group.kind))
    return tuple(groups)


def _kind_rank(kind: CauseKind | str) -> int:
    """Ties between groups go to the more specific cause; other kinds and the undiagnosed
    come last."""
    return (
        REFUSAL_KINDS.index(kind)
        if isinstance(kind, CauseKind) and kind in REFUSAL_KINDS
        else len(REFUSAL_KINDS)
    )


def _cause_of(result: Result) -> Cause | None:
    return result.cause


def _filtered_groups(
    filtered: Sequence[Result], local_addresses: frozenset[str]
) -> tuple[FilteredGroup, ...]:
    def cause_of(result: Result) -> Cause:
        if result.cause is not None and result.cause.kind is CauseKind.FILTERED:
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
    if isinstance(cause.evidence, FilteredEvidence):
        return cause.evidence.who
    return who_filtered(result, local_addresses)


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
        evidence=cause.evidence.pairs(),
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


def evidence_summary(cause: Cause) -> str:
    """A readable one-liner from a cause's evidence, by kind."""
    match cause.evidence:
        case StaleAddressEvidence() as stale:
            return (
                f"probed {stale.probed_address} (from {stale.resolved_via}); DNS now gives "
                f"{_text(stale.fresh_addresses)}; {_text(stale.answered)} accepts"
            )
        case AddressFamilyEvidence() as family:
            return (
                f"IPv{family.family} {family.probed_address} refuses; "
                f"IPv{family.answered_family} {_text(family.answered)} accepts"
            )
        case BoundElsewhereEvidence() as bound:
            return f"bound to {_text(bound.bound_addresses)} by {_text(bound.processes)}"
        case WrongPortEvidence() as wrong_port:
            text = f"port {wrong_port.answered_port} accepts ({wrong_port.relation})"
            if wrong_port.also_answered:
                text += f"; also {_text(wrong_port.also_answered)}"
            return text
        case ServiceDownEvidence() as down:
            return _service_down_summary(down)
        case WrongHostEvidence() as wrong_host:
            ports = wrong_host.ports_probed
            return f"accepts on none of the {len(ports)} ports tried: {_text(ports)}"
        case UnknownEvidence() as unknown:
            return _unknown_summary(unknown)
        case FilteredEvidence() as filtered:
            if filtered.offender is None:
                return f"{filtered.reason}, no ICMP sender"
            return f"{filtered.reason} from {filtered.offender} ({filtered.who})"


def _service_down_summary(down: ServiceDownEvidence) -> str:
    parts = []
    if down.alive_ports:
        parts.append(f"host accepts on {_text(down.alive_ports)}")
    elif down.local:
        parts.append("this machine; nothing listens on the port")
    if down.last_open:
        parts.append(f"open at {down.last_open}")
    if down.first_refused:
        parts.append(f"refused since {down.first_refused}")
    if not parts:
        parts.append("host answered other ports in earlier runs")
    return "; ".join(parts)


def _unknown_summary(unknown: UnknownEvidence) -> str:
    text = f"tried {_text(unknown.tried)}" if unknown.tried else "nothing could be tried"
    if unknown.budget_exhausted:
        text += "; follow-up budget exhausted"
    if unknown.fresh_dns_failure:
        text += f"; DNS: {unknown.fresh_dns_failure}"
    return text


def _text(value: object) -> str:
    if isinstance(value, list | tuple):
        return limited([str(item) for item in value])
    return str(value)
