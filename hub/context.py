"""The per-query context every stage reads and extends, and the typed refusal.

What is fixed when a query enters the hub (the query, where its events go, when it arrived)
is never reassigned; the fields below the marker are the ones stages add, each owned by the
stage named beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from dsop.controlinfo.v2 import model_pb2
from dsop.hub.v1 import hub_pb2
from providers.errors import ERROR_DOMAIN

if TYPE_CHECKING:
    from hub.profiles import Profile
    from hub.resilience import Call


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is asking, as authenticated once per stream."""

    #: The consumer's organisation number.
    organisation: str
    #: The authenticated subject (token client id or certificate name), for the audit log.
    subject: str
    #: Scopes granted by the token; None when no token is used (mutual TLS alone).
    scopes: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One field of the query that broke a rule: ``field`` is the query's field name."""

    field: str
    description: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the hub refused a query before asking any bank."""

    status: grpc.StatusCode
    code: str  # the standard's ACC code
    message: str
    violations: tuple[FieldViolation, ...] = ()
    #: Seconds after which a retry may succeed (sent as google.rpc.RetryInfo).
    retry_after: float | None = None

    def to_proto(self) -> model_pb2.Error:
        return model_pb2.Error(status=self.status.value[0], code=self.code, message=self.message)

    def to_rpc_status(self) -> status_pb2.Status:
        """The rich status: an ErrorInfo whose reason is the ACC code and, when fields broke
        rules, a BadRequest naming each field and rule."""
        info = any_pb2.Any()
        info.Pack(error_details_pb2.ErrorInfo(reason=self.code, domain=ERROR_DOMAIN))
        details = [info]
        if self.violations:
            bad_request = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in self.violations
                ]
            )
            packed = any_pb2.Any()
            packed.Pack(bad_request)
            details.append(packed)
        if self.retry_after is not None:
            retry = error_details_pb2.RetryInfo()
            retry.retry_delay.FromNanoseconds(int(self.retry_after * 1e9))
            packed = any_pb2.Any()
            packed.Pack(retry)
            details.append(packed)
        return status_pb2.Status(code=self.status.value[0], message=self.message, details=details)


class EventSink(Protocol):
    """Where a query's encoded events go: the agency's stream."""

    def send(
        self, ctx: QueryContext, event: bytes, on_sent: Callable[[], None] | None = None
    ) -> None:
        """Queues one encoded ``QueryEvent`` of the query; ``on_sent`` runs once it has been
        written to the agency's stream."""

    def finished(self, ctx: QueryContext) -> None:
        """Called once per query, after its summary was sent."""


@dataclass(slots=True, eq=False)
class BankOutcome:
    bank_id: str
    outcome: hub_pb2.BankOutcome.ValueType
    error: model_pb2.Error | None = None
    reason: int = 0  # hub_pb2.FailureReason


@dataclass(slots=True, eq=False)
class QueryContext:
    # Fixed at entry.
    query: hub_pb2.Query
    sink: EventSink
    received_ns: int
    identity: Identity | None = None  # authenticated once per stream
    #: time.monotonic() by which the query must be answered (the agency's deadline, or the
    #: hub's default per query, whichever is sooner).
    deadline: float = float("inf")
    # Added by stages.
    refusal: Refusal | None = None  # any ingress stage; the query stops there
    profile: Profile | None = None  # policy
    banks: list[str] = field(default_factory=list)  # resolve
    request_body: bytes = b""  # fanout: what every bank of the query is asked, encoded
    outstanding: int = 0  # fanout: bank calls not yet ended
    outcomes: list[BankOutcome] = field(default_factory=list)  # fanout
    calls: list[Call] = field(default_factory=list)  # fanout: bank calls, for cancellation
    cancelled: bool = False  # server: the agency went away; nothing more is delivered
    admitted: bool = False  # shed: counted in flight until released
    finished: bool = False  # respond: the summary went out
    #: audit: what each of the query's records says about it, read from the query once.
    audit_facts: Any = None
