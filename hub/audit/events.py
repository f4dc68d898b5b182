"""Audit records from what the egress releases: one record per query per batch.

The egress hands over each released event with the exact bytes the agency receives and what
the event discloses (outcome, bank, items, error code: set when the event was made, so the
event is never read back here); the record keeps the bytes' SHA-256, so a disputed disclosure
can be matched to the bytes delivered. What a record says about its query is the same in
each of the query's records: it is read from the query once and kept on its context.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Final, Protocol

from dsop.controlinfo.v2 import bank_pb2
from dsop.hub.v1 import hub_pb2
from hub.audit.record import AuditRecord, Disclosure, Summary, reference_digest
from hub.context import QueryContext
from hub.profiles import OPERATION_NAMES

_REFERENCE_TYPES: Final = {
    bank_pb2.ADDITIONAL_REFERENCE_ID_TYPE_POL1: "pol1",
    bank_pb2.ADDITIONAL_REFERENCE_ID_TYPE_SRF: "srf",
}


class Released(Protocol):
    """One released event (hub.respond.Outgoing): its query, the encoded bytes sent to the
    agency, what it discloses and, for the last event, the query's summary."""

    @property
    def ctx(self) -> QueryContext: ...
    @property
    def data(self) -> bytes: ...
    @property
    def summary(self) -> hub_pb2.QuerySummary | None: ...
    @property
    def outcome(self) -> str: ...
    @property
    def bank_id(self) -> str | None: ...
    @property
    def items(self) -> int: ...
    @property
    def error_code(self) -> str: ...


def records_for_batch(
    batch: Sequence[Released], at: dt.datetime | None = None
) -> list[AuditRecord]:
    """One record per query in ``batch`` (in the order of each query's first event), covering
    that query's events in the batch; the record holding the summary closes the query.
    ``at`` is the release time (default: now)."""
    at = at or dt.datetime.now(dt.UTC)
    sha256 = hashlib.sha256
    grouped: dict[int, tuple[QueryContext, list[Disclosure], list[Summary | None]]] = {}
    for item in batch:
        ctx = item.ctx
        entry = grouped.get(id(ctx))
        if entry is None:
            entry = grouped[id(ctx)] = (ctx, [], [None])
        outcome = item.outcome
        entry[1].append(
            Disclosure(
                item.bank_id, outcome, item.items, sha256(item.data).digest(), item.error_code
            )
        )
        s = item.summary
        if outcome == "summary" and s is not None:
            entry[2][0] = Summary(s.banks_asked, s.banks_answered, s.banks_failed, s.elapsed_us)
    return [
        AuditRecord(at, *_facts(ctx), tuple(disclosures), summary[0])
        for ctx, disclosures, summary in grouped.values()
    ]


#: What every record of a query says about it: AuditRecord's fields from ``consumer`` to
#: ``banks_asked``, in that order.
Facts = tuple[str, str, str, str, str, str, str, str, str, str, str, str, bool, str, str,
              tuple[str, ...]]  # fmt: skip


def _facts(ctx: QueryContext) -> Facts:
    facts: Facts | None = ctx.audit_facts
    if facts is None:
        query = ctx.query
        identity = ctx.identity
        period = query.period
        facts = ctx.audit_facts = (
            identity.organisation if identity is not None else "",
            identity.subject if identity is not None else "",
            query.requester_id,
            query.service,
            query.legal_mandate,
            query.case_id,
            query.correlation_id,
            query.query_id,
            query.party_id,
            period.from_date,
            period.to_date,
            OPERATION_NAMES.get(query.operation, "unspecified"),
            query.only_primary_owner,
            _REFERENCE_TYPES.get(query.additional_reference_id_type, ""),
            reference_digest(
                query.additional_reference_id if query.HasField("additional_reference_id") else None
            ),
            tuple(ctx.banks),
        )
    return facts
