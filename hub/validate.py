"""Stage: validate the shape of each query before anything else looks at it.

Checks only what every query needs whatever its service: required fields, identifier check
digits, uuids, dates, and the fields each operation needs. Service-specific rules (mandate,
period rules, owner rule, scopes) belong to the policy stage. The decision is a pure function
(:func:`check`) so it is tested with tables of cases; the stage only applies it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Final

import grpc

from dsop.hub.v1 import hub_pb2
from hub.context import FieldViolation, QueryContext, Refusal
from hub.identifiers import is_valid_organisation_number, party_kind

Op = hub_pb2.Operation
#: Operations on one account: the accountReference is the bank's, so exactly one bank.
ACCOUNT_OPERATIONS: Final = frozenset(
    {
        Op.OPERATION_ACCOUNT_DETAILS,
        Op.OPERATION_TRANSACTIONS,
        Op.OPERATION_CARDS,
        Op.OPERATION_ROLES,
    }
)
KNOWN_OPERATIONS: Final = frozenset(Op.values()) - {Op.OPERATION_UNSPECIFIED}
MAX_ID_LENGTH: Final = 128


#: The canonical text form of a uuid (8-4-4-4-12 hex digits).
_UUID: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def _is_uuid(value: str) -> bool:
    return _UUID.fullmatch(value) is not None


def _is_date(value: str) -> bool:
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


def check(query: hub_pb2.Query) -> Refusal | None:
    """The refusal for a malformed query, naming every field and rule it breaks; None when
    the query is well-formed."""
    bad: list[FieldViolation] = []
    if not query.query_id:
        bad.append(FieldViolation("query_id", "required"))
    elif len(query.query_id) > MAX_ID_LENGTH:
        bad.append(FieldViolation("query_id", f"at most {MAX_ID_LENGTH} characters"))
    if not query.service:
        bad.append(FieldViolation("service", "required"))
    if not query.legal_mandate:
        bad.append(FieldViolation("legal_mandate", "required"))
    if not _is_uuid(query.case_id):
        bad.append(FieldViolation("case_id", "required, a uuid"))
    if not _is_uuid(query.correlation_id):
        bad.append(FieldViolation("correlation_id", "required, a uuid"))
    operation = query.operation
    if operation not in KNOWN_OPERATIONS:
        bad.append(FieldViolation("operation", "required, one of the known operations"))
    if query.party_id:
        if party_kind(query.party_id) is None:
            bad.append(
                FieldViolation(
                    "party_id",
                    "must be a national identity/D-number (11 digits) or an organisation "
                    "number (9 digits) with valid check digits and date",
                )
            )
    elif operation not in ACCOUNT_OPERATIONS:
        bad.append(FieldViolation("party_id", "required for this operation"))
    period = query.period
    from_ok = not period.from_date or _is_date(period.from_date)
    to_ok = not period.to_date or _is_date(period.to_date)
    if not from_ok:
        bad.append(FieldViolation("period.from_date", "must be a date, YYYY-MM-DD"))
    if not to_ok:
        bad.append(FieldViolation("period.to_date", "must be a date, YYYY-MM-DD"))
    both = from_ok and to_ok and period.from_date and period.to_date
    if both and period.from_date > period.to_date:
        bad.append(FieldViolation("period", "from_date must not be after to_date"))
    if query.HasField("reference_date") and not _is_date(query.reference_date):
        bad.append(FieldViolation("reference_date", "must be a date, YYYY-MM-DD"))
    for index, bank in enumerate(query.banks):
        if not is_valid_organisation_number(bank):
            bad.append(FieldViolation(f"banks[{index}]", "must be a valid organisation number"))
    if operation in ACCOUNT_OPERATIONS:
        if not query.account_reference:
            bad.append(FieldViolation("account_reference", "required for this operation"))
        if len(query.banks) != 1:
            bad.append(
                FieldViolation(
                    "banks", "exactly one bank for an account operation (references are per bank)"
                )
            )
    if not bad:
        return None
    summary = "; ".join(f"{v.field}: {v.description}" for v in bad)
    return Refusal(grpc.StatusCode.INVALID_ARGUMENT, "ACC-001", summary, tuple(bad))


class ValidateStage:
    """Refuses malformed queries (INVALID_ARGUMENT, ACC-001)."""

    async def __call__(self, batch: Sequence[QueryContext]) -> list[QueryContext]:
        passed = []
        for ctx in batch:
            refusal = check(ctx.query)
            if refusal is None:
                passed.append(ctx)
            else:
                ctx.refusal = refusal
        return passed
