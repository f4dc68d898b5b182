"""The policy decision, per service and rule, as tables of cases."""

from __future__ import annotations

import datetime as dt
import unicodedata
import uuid
from collections.abc import Callable

import grpc
import pytest

from clients.services import CONSUMERS, MANDATES
from dsop.controlinfo.v2 import bank_pb2
from dsop.hub.v1 import hub_pb2
from hub.context import Identity
from hub.identifiers import make_national_identity_number
from hub.police import OrderError, PoliceOrder
from hub.policy import decide
from hub.profiles import load_profiles

TODAY = dt.date(2026, 11, 23)
NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
PROFILES = load_profiles()
Op = hub_pb2.Operation


def _person(year: int = 1980) -> str:
    for individual in range(100, 400):
        number = make_national_identity_number(dt.date(year, 3, 14), individual)
        if number is not None:
            return number
    raise AssertionError


PARTY = _person()
GUARDIAN = _person(1960)


def _base(service: str) -> hub_pb2.Query:
    """A query each service allows."""
    query = hub_pb2.Query(
        query_id="q",
        service=service,
        legal_mandate=MANDATES[service],
        case_id=str(uuid.uuid4()),
        correlation_id=str(uuid.uuid4()),
        party_id=PARTY,
        operation=Op.OPERATION_ACCOUNTS,
        only_primary_owner=True,
        requester_id="sb-1",
    )
    if service == "konkursbehandling":
        query.reference_date = "2026-06-01"
        query.period.from_date = "2025-07-01"
    if service == "oppgjor-etter-dodsfall":
        query.reference_date = "2026-10-01"
        query.period.from_date = "2026-07-01"
    if service == "vergekontroll":
        query.period.from_date, query.period.to_date = "2025-01-01", "2025-12-31"
        query.additional_reference_id_type = bank_pb2.ADDITIONAL_REFERENCE_ID_TYPE_SRF
        query.additional_reference_id = GUARDIAN
    if service == "politi-utlevering":
        query.additional_reference_id_type = bank_pb2.ADDITIONAL_REFERENCE_ID_TYPE_POL1
        query.additional_reference_id = "a.signed.order"
    if service in ("skatt-kontroll", "nav-kontroll", "politi-utlevering"):
        query.period.from_date = "2020-01-01"
    return query


def _order(query: hub_pb2.Query, **changes: object) -> PoliceOrder:
    fields: dict[str, object] = {
        "party_id": query.party_id,
        "legal_mandate": query.legal_mandate,
        "from_date": dt.date(2019, 1, 1),
        "to_date": TODAY,
        "only_primary_owner": query.only_primary_owner,
        "operations": frozenset({Op.OPERATION_ACCOUNTS, Op.OPERATION_ACCOUNT_DETAILS}),
        "approved_at": NOW - dt.timedelta(days=10),
        "expires_at": NOW + dt.timedelta(days=20),
        "case_id": "c",
        "approved_by": "p",
    }
    fields.update(changes)
    return PoliceOrder(**fields)  # type: ignore[arg-type]


def _identity(service: str, scopes: frozenset[str] | None = None) -> Identity:
    profile = PROFILES.services[service]
    return Identity(CONSUMERS[service], "sub", scopes if scopes is not None else profile.scopes)


def _decide(query: hub_pb2.Query, identity: Identity | None = None, order: object = None):  # type: ignore[no-untyped-def]
    if order is None and query.service == "politi-utlevering":
        order = _order(query)
    return decide(
        query,
        PROFILES.get(query.service),
        identity or _identity(query.service),
        TODAY,
        order=order,  # type: ignore[arg-type]
        now=NOW,
    )


SERVICES = sorted(PROFILES.services)


@pytest.mark.parametrize("service", SERVICES)
def test_a_valid_query_passes(service: str) -> None:
    assert _decide(_base(service)) is None


@pytest.mark.parametrize("service", SERVICES)
def test_mandate_matches_after_nfc_only(service: str) -> None:
    query = _base(service)
    query.legal_mandate = unicodedata.normalize("NFD", query.legal_mandate)
    assert _decide(query) is None
    query.legal_mandate = query.legal_mandate + " "
    refusal = _decide(query)
    assert refusal is not None
    assert [v.field for v in refusal.violations] == ["legal_mandate"]


@pytest.mark.parametrize("service", SERVICES)
def test_unlisted_consumer_and_missing_scope_are_denied(service: str) -> None:
    query = _base(service)
    stranger = Identity("999999999", "sub", _identity(service).scopes)
    refusal = _decide(query, stranger)
    assert refusal is not None
    assert (refusal.status, refusal.code) == (grpc.StatusCode.PERMISSION_DENIED, "ACC-011")
    refusal = _decide(query, _identity(service, frozenset({"dsop:other"})))
    assert refusal is not None
    assert (refusal.status, refusal.code) == (grpc.StatusCode.PERMISSION_DENIED, "ACC-011")
    assert "scope" in refusal.message
    # Mutual TLS alone (no token, no scopes): the organisation decides.
    assert _decide(query, Identity(CONSUMERS[service], "cert", None)) is None


def test_unknown_service_is_invalid() -> None:
    query = _base("skatt-kontroll")
    query.service = "skatt-kontrol"
    refusal = _decide(query, _identity("skatt-kontroll"))
    assert refusal is not None
    assert refusal.code == "ACC-001"
    assert refusal.violations[0].field == "service"


Case = tuple[str, Callable[[hub_pb2.Query], None], str, str]

CASES: list[Case] = [
    # Operations outside the service.
    ("fi-utlegg", lambda q: setattr(q, "operation", Op.OPERATION_TRANSACTIONS), "operation", "outside"),
    ("konkursbehandling", lambda q: setattr(q, "operation", Op.OPERATION_CARDS), "operation", "outside"),
    ("vergekontroll", lambda q: setattr(q, "operation", Op.OPERATION_CARDS), "operation", "outside"),
    ("oppgjor-etter-dodsfall", lambda q: setattr(q, "operation", Op.OPERATION_ROLES), "operation", "outside"),
    # Owner rule.
    ("fi-utlegg", lambda q: setattr(q, "only_primary_owner", False), "only_primary_owner", "true"),
    ("konkursbehandling", lambda q: setattr(q, "only_primary_owner", False), "only_primary_owner", "true"),
    ("vergekontroll", lambda q: setattr(q, "only_primary_owner", False), "only_primary_owner", "true"),
    # Requester id.
    ("skatt-kontroll", lambda q: q.ClearField("requester_id"), "requester_id", "required"),
    ("nav-kontroll", lambda q: q.ClearField("requester_id"), "requester_id", "required"),
    ("politi-utlevering", lambda q: q.ClearField("requester_id"), "requester_id", "required"),
    # Periods.
    ("skatt-kontroll", lambda q: setattr(q.period, "from_date", "2016-11-22"), "period.from_date", "10 years"),
    ("nav-kontroll", lambda q: setattr(q.period, "to_date", "2026-11-24"), "period.to_date", "after today"),
    ("fi-utlegg", lambda q: setattr(q.period, "from_date", "2026-11-22"), "period", "today only"),
    ("konkursbehandling", lambda q: setattr(q.period, "from_date", "2025-05-31"), "period.from_date", "12 months"),
    ("konkursbehandling", lambda q: q.ClearField("reference_date"), "reference_date", "required"),
    ("konkursbehandling", lambda q: setattr(q, "reference_date", "2026-12-01"), "reference_date", "after today"),
    ("oppgjor-etter-dodsfall", lambda q: setattr(q.period, "from_date", "2026-06-30"), "period.from_date", "3 months"),
    ("vergekontroll", lambda q: setattr(q.period, "to_date", "2026-01-01"), "period", "previous calendar year"),
    ("vergekontroll", lambda q: setattr(q.period, "from_date", "2024-12-31"), "period", "previous calendar year"),
    # Additional references.
    ("vergekontroll", lambda q: q.ClearField("additional_reference_id"), "additional_reference_id", "srf"),
    ("vergekontroll", lambda q: setattr(q, "additional_reference_id", "12345678901"), "additional_reference_id", "guardian"),
    ("politi-utlevering", lambda q: setattr(q, "additional_reference_id_type", 0), "additional_reference_id", "pol1"),
    ("skatt-kontroll", lambda q: setattr(q, "additional_reference_id", "x"), "additional_reference_id", "not used"),
]  # fmt: skip


@pytest.mark.parametrize(("service", "change", "field", "rule"), CASES)
def test_each_rule_is_enforced(
    service: str, change: Callable[[hub_pb2.Query], None], field: str, rule: str
) -> None:
    query = _base(service)
    change(query)
    refusal = _decide(query)
    assert refusal is not None
    assert (refusal.status, refusal.code) == (grpc.StatusCode.INVALID_ARGUMENT, "ACC-001")
    named = {v.field: v.description for v in refusal.violations}
    assert field in named, refusal.message
    assert rule in named[field]


def test_a_leap_day_ten_years_back() -> None:
    query = _base("skatt-kontroll")
    query.period.from_date = "2014-02-28"
    assert (
        decide(
            query,
            PROFILES.get("skatt-kontroll"),
            _identity("skatt-kontroll"),
            dt.date(2024, 2, 29),
            now=NOW,
        )
        is None
    )


ORDER_CASES = [
    ({"party_id": "01010112345"}, "another party"),
    ({"legal_mandate": "Straffeprosessloven §210 (3) andre punktum"}, "another legal mandate"),
    ({"from_date": dt.date(2021, 1, 1)}, "outside the order's period"),
    ({"to_date": dt.date(2026, 11, 1)}, "outside the order's period"),
    ({"only_primary_owner": False}, "owner rule"),
    ({"operations": frozenset({Op.OPERATION_TRANSACTIONS})}, "does not allow accounts"),
    ({"expires_at": NOW - dt.timedelta(seconds=1)}, "expired"),
    (
        {"approved_at": NOW - dt.timedelta(days=100), "expires_at": NOW + dt.timedelta(days=1)},
        "more than 90 days",
    ),
]


@pytest.mark.parametrize(("changes", "reason"), ORDER_CASES)
def test_a_police_query_must_lie_inside_its_order(changes: dict[str, object], reason: str) -> None:
    query = _base("politi-utlevering")
    refusal = _decide(query, order=_order(query, **changes))
    assert refusal is not None
    assert (refusal.status, refusal.code) == (grpc.StatusCode.PERMISSION_DENIED, "ACC-011")
    assert reason in refusal.message


def test_an_invalid_or_missing_order_is_denied() -> None:
    query = _base("politi-utlevering")
    refusal = _decide(query, order=OrderError("bad signature"))
    assert refusal is not None
    assert refusal.code == "ACC-011"
    assert "bad signature" in refusal.message
