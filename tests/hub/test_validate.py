from __future__ import annotations

import uuid

import grpc
import pytest

from dsop.hub.v1 import hub_pb2
from hub.validate import check

PERSON = "01019012349"  # replaced below by a computed valid number
CASE = str(uuid.uuid4())


def _person() -> str:
    import datetime as dt  # noqa: PLC0415

    from hub.identifiers import make_national_identity_number  # noqa: PLC0415

    for individual in range(100, 200):
        number = make_national_identity_number(dt.date(1985, 5, 17), individual)
        if number is not None:
            return number
    raise AssertionError("no valid number")


def _query(**fields: object) -> hub_pb2.Query:
    base: dict[str, object] = {
        "query_id": "q1",
        "service": "skatt-kontroll",
        "legal_mandate": "m",
        "case_id": CASE,
        "correlation_id": str(uuid.uuid4()),
        "party_id": _person(),
        "operation": hub_pb2.OPERATION_ACCOUNTS,
    }
    base.update(fields)
    period = base.pop("period", None)
    query = hub_pb2.Query(**base)  # type: ignore[arg-type]
    if period:
        query.period.from_date, query.period.to_date = period  # type: ignore[misc]
    return query


def test_a_well_formed_query_passes() -> None:
    assert check(_query()) is None


def test_account_operation_with_one_bank_and_reference_passes() -> None:
    query = _query(
        operation=hub_pb2.OPERATION_TRANSACTIONS,
        party_id="",
        account_reference="abc",
        banks=["974761076"],
    )
    assert check(query) is None


@pytest.mark.parametrize(
    ("fields", "field", "rule"),
    [
        ({"query_id": ""}, "query_id", "required"),
        ({"query_id": "x" * 129}, "query_id", "at most 128"),
        ({"service": ""}, "service", "required"),
        ({"legal_mandate": ""}, "legal_mandate", "required"),
        ({"case_id": "not-a-uuid"}, "case_id", "uuid"),
        ({"correlation_id": ""}, "correlation_id", "uuid"),
        ({"operation": hub_pb2.OPERATION_UNSPECIFIED}, "operation", "required"),
        ({"operation": 99}, "operation", "known operations"),
        ({"party_id": ""}, "party_id", "required"),
        ({"party_id": "12345678901"}, "party_id", "check digits"),
        ({"party_id": "123"}, "party_id", "check digits"),
        ({"period": ("2024-02-30", "")}, "period.from_date", "YYYY-MM-DD"),
        ({"period": ("", "yesterday")}, "period.to_date", "YYYY-MM-DD"),
        ({"period": ("2024-05-01", "2024-04-01")}, "period", "after"),
        ({"reference_date": "2024-13-01"}, "reference_date", "YYYY-MM-DD"),
        ({"banks": ["123456789"]}, "banks[0]", "organisation number"),
        (
            {"operation": hub_pb2.OPERATION_CARDS, "banks": ["974761076"]},
            "account_reference",
            "required",
        ),
        (
            {"operation": hub_pb2.OPERATION_ROLES, "account_reference": "r"},
            "banks",
            "exactly one bank",
        ),
    ],
)
def test_each_violation_is_refused_naming_field_and_rule(
    fields: dict[str, object], field: str, rule: str
) -> None:
    refusal = check(_query(**fields))
    assert refusal is not None
    assert refusal.status == grpc.StatusCode.INVALID_ARGUMENT
    assert refusal.code == "ACC-001"
    named = {v.field: v.description for v in refusal.violations}
    assert field in named
    assert rule in named[field]
    assert field in refusal.message


def test_all_violations_are_listed_at_once() -> None:
    refusal = check(_query(query_id="", case_id="x", party_id="1"))
    assert refusal is not None
    assert {v.field for v in refusal.violations} == {"query_id", "case_id", "party_id"}
