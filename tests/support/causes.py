"""Causes for tests that only need one of some kind: typed evidence with plausible values,
so an output can be checked without running the diagnosis."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from scanner.core.model import (
    AddressFamilyEvidence,
    BoundElsewhereEvidence,
    Cause,
    CauseEvidence,
    CauseKind,
    FilteredEvidence,
    Reason,
    Relation,
    ResolvedVia,
    ServiceDownEvidence,
    StaleAddressEvidence,
    UnknownEvidence,
    WrongHostEvidence,
    WrongPortEvidence,
)

SAMPLE_EVIDENCE: Mapping[CauseKind, CauseEvidence] = MappingProxyType(
    {
        CauseKind.STALE_ADDRESS: StaleAddressEvidence(
            "db.example", "10.0.0.3", ResolvedVia.HOSTS_FILE, ("10.0.0.4",), ("10.0.0.4",), 5432
        ),
        CauseKind.ADDRESS_FAMILY: AddressFamilyEvidence(
            "localhost", "::1", 6, ("127.0.0.1",), 4, 8080
        ),
        CauseKind.BOUND_ELSEWHERE: BoundElsewhereEvidence(
            "127.0.0.2", 8080, ("127.0.0.1:8080",), ("nginx (pid 42)",)
        ),
        CauseKind.WRONG_PORT: WrongPortEvidence(8080, 36895, Relation.BYTE_SWAPPED, ()),
        CauseKind.SERVICE_DOWN: ServiceDownEvidence(
            "10.0.0.5", 5432, (22,), False, Reason.CONN_REFUSED
        ),
        CauseKind.WRONG_HOST: WrongHostEvidence("10.0.0.9", (22, 80, 443), Reason.CONN_REFUSED),
        CauseKind.UNKNOWN: UnknownEvidence(("history",), False, None),
        CauseKind.FILTERED: FilteredEvidence(Reason.ADMIN_PROHIBITED, "10.0.0.254", "router"),
    }
)
"""One evidence record of each kind."""


def cause_of_kind(kind: CauseKind | str, confidence: float = 0.9, advice: str = "advice") -> Cause:
    """A cause of `kind` (a CauseKind or its value) with the sample evidence."""
    return Cause(confidence, SAMPLE_EVIDENCE[CauseKind(kind)], advice)
