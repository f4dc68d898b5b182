"""Audit records from what the egress releases: one record per query per batch.

The egress hands over each released event with the exact bytes the agency receives; the
record keeps their SHA-256, so a disputed disclosure can be matched to the bytes delivered.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Final

from dsop.controlinfo.v2 import bank_pb2
from dsop.hub.v1 import hub_pb2
from hub.audit.record import AuditRecord, Disclosure, Summary, reference_digest
from hub.context import QueryContext
from hub.profiles import OPERATION_NAMES

#: One released event: its query, the event, and the encoded bytes sent to the agency.
Released = tuple[QueryContext, hub_pb2.QueryEvent, bytes]

_OUTCOMES: Final = {
    hub_pb2.BANK_OUTCOME_COMPLETE: "complete",
    hub_pb2.BANK_OUTCOME_PARTIAL: "partial",
}
_REFERENCE_TYPES: Final = {
    bank_pb2.ADDITIONAL_REFERENCE_ID_TYPE_POL1: "pol1",
    bank_pb2.ADDITIONAL_REFERENCE_ID_TYPE_SRF: "srf",
}


def items(result: hub_pb2.BankResult) -> int:
    """Accounts, transactions, cards or roles in a bank result's payload."""
    match result.WhichOneof("payload"):
        case "accounts":
            return len(result.accounts.accounts)
        case "account_details":
            return int(result.account_details.HasField("account"))
        case "transactions":
            return len(result.transactions.transactions)
        case "cards":
            return len(result.cards.payment_cards)
        case "roles":
            return len(result.roles.roles)
        case "accounts_with_balances":
            return len(result.accounts_with_balances.accounts)
        case _:
            return 0


def disclosure(event: hub_pb2.QueryEvent, encoded: bytes) -> tuple[Disclosure, Summary | None]:
    digest = hashlib.sha256(encoded).digest()
    if event.HasField("summary"):
        s = event.summary
        if s.HasField("error"):
            return Disclosure(None, "refused", 0, digest, s.error.code), None
        totals = Summary(s.banks_asked, s.banks_answered, s.banks_failed, s.elapsed_us)
        return Disclosure(None, "summary", 0, digest), totals
    result = event.result
    error = result.error.code if result.HasField("error") else ""
    outcome = _OUTCOMES.get(result.outcome, "failed")
    return Disclosure(result.bank_id, outcome, items(result), digest, error), None


def records_for_batch(
    batch: Sequence[Released], at: dt.datetime | None = None
) -> list[AuditRecord]:
    """One record per query in ``batch`` (in the order of each query's first event), covering
    that query's events in the batch; the record holding the summary closes the query.
    ``at`` is the release time (default: now)."""
    at = at or dt.datetime.now(dt.UTC)
    grouped: dict[int, tuple[QueryContext, list[Disclosure], list[Summary]]] = {}
    for ctx, event, encoded in batch:
        entry = grouped.get(id(ctx))
        if entry is None:
            entry = grouped[id(ctx)] = (ctx, [], [])
        released, summary = disclosure(event, encoded)
        entry[1].append(released)
        if summary is not None:
            entry[2].append(summary)
    return [
        _record(ctx, at, tuple(disclosures), summaries[-1] if summaries else None)
        for ctx, disclosures, summaries in grouped.values()
    ]


def _record(
    ctx: QueryContext,
    at: dt.datetime,
    disclosures: tuple[Disclosure, ...],
    summary: Summary | None,
) -> AuditRecord:
    query = ctx.query
    identity = ctx.identity
    return AuditRecord(
        at=at,
        consumer=identity.organisation if identity is not None else "",
        subject=identity.subject if identity is not None else "",
        requester_id=query.requester_id,
        service=query.service,
        legal_mandate=query.legal_mandate,
        case_id=query.case_id,
        correlation_id=query.correlation_id,
        query_id=query.query_id,
        party_id=query.party_id,
        from_date=query.period.from_date,
        to_date=query.period.to_date,
        operation=OPERATION_NAMES.get(query.operation, "unspecified"),
        only_primary_owner=query.only_primary_owner,
        additional_reference_type=_REFERENCE_TYPES.get(query.additional_reference_id_type, ""),
        additional_reference_digest=reference_digest(
            query.additional_reference_id if query.HasField("additional_reference_id") else None
        ),
        banks_asked=tuple(ctx.banks),
        disclosures=disclosures,
        summary=summary,
    )
