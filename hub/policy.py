"""Stage: authorise each query and check it against its service's profile.

The decision is a pure function, :func:`decide`, of (query, profile, identity, today, police
order): tested with tables of cases. The stage only looks up the profile, verifies a police
order when one is carried, and applies the decision. A refused query never reaches KAR or a
bank. Statuses follow DSOP.md §5: PERMISSION_DENIED (ACC-011) for who may not ask or what an
order does not cover; INVALID_ARGUMENT (ACC-001) for a request outside the service's rules.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

import grpc

from dsop.controlinfo.v2 import bank_pb2
from dsop.hub.v1 import hub_pb2
from hub.clock import today as oslo_today
from hub.context import FieldViolation, Identity, QueryContext, Refusal
from hub.identifiers import is_valid_national_identity_number
from hub.police import OrderError, PoliceOrder, PoliceOrderVerifier
from hub.profiles import OPERATION_NAMES, PeriodKind, Profile, Profiles, nfc

Op = hub_pb2.Operation


def _deny(message: str) -> Refusal:
    return Refusal(grpc.StatusCode.PERMISSION_DENIED, "ACC-011", message)


def _invalid(*violations: FieldViolation) -> Refusal:
    message = "; ".join(f"{v.field}: {v.description}" for v in violations)
    return Refusal(grpc.StatusCode.INVALID_ARGUMENT, "ACC-001", message, violations)


def _years_back(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _months_back(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    for candidate in (day.day, 30, 29, 28):
        try:
            return dt.date(year, month + 1, candidate)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def _period(query: hub_pb2.Query, today: dt.date) -> tuple[dt.date, dt.date]:
    period = query.period
    start = dt.date.fromisoformat(period.from_date) if period.from_date else today
    end = dt.date.fromisoformat(period.to_date) if period.to_date else today
    return start, end


def _check_period(query: hub_pb2.Query, profile: Profile, today: dt.date) -> list[FieldViolation]:
    start, end = _period(query, today)
    bad = []
    if end > today:
        bad.append(FieldViolation("period.to_date", "must not be after today (Europe/Oslo)"))
    rule = profile.period
    if rule.kind is PeriodKind.YEARS_BACK:
        if start < _years_back(today, rule.amount):
            bad.append(
                FieldViolation(
                    "period.from_date", f"at most {rule.amount} years back for this service"
                )
            )
    elif rule.kind is PeriodKind.MONTHS_BEFORE_REFERENCE:
        if not query.HasField("reference_date"):
            bad.append(
                FieldViolation(
                    "reference_date", "required for this service (ruling date or date of death)"
                )
            )
        else:
            reference = dt.date.fromisoformat(query.reference_date)
            if reference > today:
                bad.append(FieldViolation("reference_date", "must not be after today"))
            if start < _months_back(reference, rule.amount):
                bad.append(
                    FieldViolation(
                        "period.from_date",
                        f"at most {rule.amount} months before the reference date for this service",
                    )
                )
    elif rule.kind is PeriodKind.PREVIOUS_CALENDAR_YEAR:
        year = today.year - 1
        if start < dt.date(year, 1, 1) or end > dt.date(year, 12, 31):
            bad.append(
                FieldViolation(
                    "period",
                    f"must lie in the previous calendar year ({year}-01-01 to {year}-12-31)",
                )
            )
    elif rule.kind is PeriodKind.TODAY and (start != today or end != today):
        bad.append(FieldViolation("period", "today only for this service"))
    return bad


def _check_order(query: hub_pb2.Query, order: PoliceOrder, now: dt.datetime) -> str | None:
    """Why the extradition order does not cover the query; None when it does."""
    start, end = _period(query, now.date())
    if order.party_id != query.party_id and query.party_id:
        return "the order names another party"
    if nfc(order.legal_mandate) != nfc(query.legal_mandate):
        return "the order names another legal mandate"
    if start < order.from_date or end > order.to_date:
        return "the period lies outside the order's period"
    if order.only_primary_owner != query.only_primary_owner:
        return "the owner rule differs from the order's"
    if query.operation not in order.operations:
        return f"the order does not allow {OPERATION_NAMES.get(query.operation, 'this operation')}"
    if now >= order.expires_at:
        return "the order has expired"
    if order.expires_at - order.approved_at > dt.timedelta(days=90):
        return "the order's expiry is more than 90 days after its approval"
    return None


def decide(
    query: hub_pb2.Query,
    profile: Profile | None,
    identity: Identity,
    today: dt.date,
    *,
    order: PoliceOrder | OrderError | None = None,
    now: dt.datetime | None = None,
) -> Refusal | None:
    """The refusal for a query its service does not allow; None when it may go on.

    Assumes the query passed shape validation (ids, dates and identifiers are well-formed).
    """
    if profile is None:
        return _invalid(FieldViolation("service", "unknown service"))
    if identity.organisation not in profile.consumers:
        return _deny(f"consumer {identity.organisation} is not a consumer of {profile.name}")
    if identity.scopes is not None and not identity.scopes & profile.scopes:
        return _deny(f"the token lacks the scope of {profile.name}")
    bad: list[FieldViolation] = []
    if query.operation not in profile.operations:
        name = OPERATION_NAMES.get(query.operation, "this operation")
        bad.append(FieldViolation("operation", f"{name} is outside the service {profile.name}"))
    if nfc(query.legal_mandate) not in profile.mandates:
        bad.append(
            FieldViolation("legal_mandate", "must be the exact legal mandate text of the service")
        )
    if profile.primary_only and not query.only_primary_owner:
        bad.append(FieldViolation("only_primary_owner", "must be true for this service"))
    if profile.requester_id and not query.requester_id:
        bad.append(FieldViolation("requester_id", "required for this service"))
    bad += _check_period(query, profile, today)
    expected = profile.additional_reference
    kind = query.additional_reference_id_type
    if expected is None:
        if kind or query.additional_reference_id:
            bad.append(FieldViolation("additional_reference_id", "not used by this service"))
    elif kind != expected or not query.additional_reference_id:
        name = bank_pb2.AdditionalReferenceIdType.Name(expected).rsplit("_", 1)[-1].lower()
        bad.append(FieldViolation("additional_reference_id", f"a {name} reference is required"))
    elif expected == bank_pb2.ADDITIONAL_REFERENCE_ID_TYPE_SRF and not (
        is_valid_national_identity_number(query.additional_reference_id)
    ):
        bad.append(
            FieldViolation(
                "additional_reference_id", "must be the guardian's national identity number"
            )
        )
    if bad:
        return _invalid(*bad)
    if expected == bank_pb2.ADDITIONAL_REFERENCE_ID_TYPE_POL1:
        if isinstance(order, OrderError):
            return _deny(f"extradition order: {order}")
        if order is None:
            return _deny("extradition order: missing")
        reason = _check_order(query, order, now or dt.datetime.now(dt.UTC))
        if reason is not None:
            return _deny(f"extradition order: {reason}")
    return None


class PolicyStage:
    """Applies :func:`decide` to each query with its service's profile."""

    def __init__(
        self,
        profiles: Profiles,
        orders: PoliceOrderVerifier | None,
        today: Callable[[], dt.date] = oslo_today,
    ) -> None:
        self.profiles = profiles
        self.orders = orders
        self.today = today

    async def __call__(self, batch: Sequence[QueryContext]) -> list[QueryContext]:
        today = self.today()
        now = dt.datetime.now(dt.UTC)
        passed = []
        for ctx in batch:
            query = ctx.query
            profile = self.profiles.get(query.service)
            order: PoliceOrder | OrderError | None = None
            if query.additional_reference_id_type == bank_pb2.ADDITIONAL_REFERENCE_ID_TYPE_POL1:
                order = (
                    self.orders.verify(query.additional_reference_id)
                    if self.orders is not None
                    else OrderError("no police keys are configured")
                )
            assert ctx.identity is not None
            refusal = decide(query, profile, ctx.identity, today, order=order, now=now)
            if refusal is None:
                ctx.profile = profile
                passed.append(ctx)
            else:
                ctx.refusal = refusal
        return passed
