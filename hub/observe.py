"""Accounting for every query that ends: its metrics and its one log line.

A query ends once: its summary went out (:meth:`QueryObserver.finished`, called by the respond
stage) or its agency went away first (:meth:`QueryObserver.abandoned`). Either way it is
counted by service, operation and outcome, and logged at info as one JSON line with the ids an
operator needs to find the case (consumer, case, correlation and query ids) and nothing about
whom it concerned: no party, account or name ever reaches a log line or a label.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from dsop.hub.v1 import hub_pb2
from hub import metrics
from hub.context import QueryContext
from hub.logs import QUERY_LOG

QUERIES: Final = metrics.counter(
    "dsop_hub_queries_total",
    "Queries ended, by service, operation and outcome "
    "(complete, partial, failed, refused, abandoned)",
    ("service", "operation", "outcome"),
)
QUERY_SECONDS: Final = metrics.histogram(
    "dsop_hub_query_duration_seconds",
    "From a query's arrival to its summary",
    ("service",),
    buckets=metrics.SECONDS_BUCKETS,
)
REFUSALS: Final = metrics.counter(
    "dsop_hub_refusals_total", "Queries refused, by service and ACC code", ("service", "code")
)

_OPERATIONS: Final = {
    number: name.removeprefix("OPERATION_").lower().replace("_", "-")
    for name, number in hub_pb2.Operation.items()
}
_FAILED: Final = hub_pb2.BANK_OUTCOME_FAILED
_PARTIAL: Final = hub_pb2.BANK_OUTCOME_PARTIAL


def outcome(ctx: QueryContext) -> str:
    """complete: every bank asked delivered everything; partial: some delivered, some failed
    or said more exists offline; failed: every bank asked failed; refused: no bank asked."""
    if ctx.refusal is not None:
        return "refused"
    failed = partial = 0
    for bank in ctx.outcomes:
        if bank.outcome == _FAILED:
            failed += 1
        elif bank.outcome == _PARTIAL:
            partial += 1
    if failed and failed == len(ctx.outcomes):
        return "failed"
    return "partial" if failed or partial else "complete"


class QueryObserver:
    """Counts and logs each query once, then hands it to ``release`` (the shed stage)."""

    def __init__(self, release: Callable[[QueryContext], None], services: Iterable[str]) -> None:
        """``services``: the profiles' service names, the only ones used as label values (an
        agency may send any text there; labels, and their number, must stay bounded)."""
        self.release = release
        self.services = frozenset(services)
        # Children resolved once per label set: a labels() lookup costs more than the count.
        self._counts: dict[tuple[str, int, str], Any] = {}
        self._seconds: dict[str, Any] = {}

    def finished(self, ctx: QueryContext) -> None:
        """The query's summary went out (a query already abandoned was counted then)."""
        self.release(ctx)
        if not ctx.cancelled:
            self._account(ctx, outcome(ctx))

    def abandoned(self, ctx: QueryContext) -> None:
        """The agency went away before the summary; called before the query is cancelled."""
        if not ctx.cancelled and not ctx.finished:
            self._account(ctx, "abandoned")

    def _label(self, service: str) -> str:
        return service if service in self.services else "unknown"

    def _account(self, ctx: QueryContext, result: str) -> None:
        query = ctx.query
        service = query.service
        key = (service, query.operation, result)
        count = self._counts.get(key)
        if count is None:
            operation = _OPERATIONS.get(query.operation, "unknown")
            count = self._counts[key] = QUERIES.labels(self._label(service), operation, result)
        count.inc()
        elapsed = (time.monotonic_ns() - ctx.received_ns) / 1e9
        seconds = self._seconds.get(service)
        if seconds is None:
            seconds = self._seconds[service] = QUERY_SECONDS.labels(self._label(service))
        seconds.observe(elapsed)
        refusal = ctx.refusal
        if refusal is not None:
            REFUSALS.labels(self._label(service), refusal.code).inc()
        if QUERY_LOG.enabled:
            validated = ctx.profile is not None
            failed = sum(1 for bank in ctx.outcomes if bank.outcome == _FAILED)
            fields: dict[str, object] = {
                "consumer": ctx.identity.organisation if ctx.identity is not None else "",
                "service": self._label(service),
                "operation": _OPERATIONS.get(query.operation, "unknown"),
                "outcome": result,
                # Validated as uuids once the policy passed the query; checked here otherwise.
                "case_id": query.case_id if validated else _id(query.case_id),
                "correlation_id": query.correlation_id if validated else _id(query.correlation_id),
                "query_id": _id(query.query_id),
                "banks_asked": len(ctx.banks),
                "banks_failed": failed,
                "elapsed_ms": round(elapsed * 1000, 3),
            }
            if refusal is not None:
                fields["code"] = refusal.code
            QUERY_LOG.add(fields)


_UUID: Final = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_DIGITS: Final = re.compile(r"\d{6}")


def _id(value: str) -> str:
    """An agency-chosen id as it may be logged. Case and correlation ids are uuids; a query
    id is free text, and what looks like it may hold an identifier (a run of digits, as in a
    national identity, organisation or account number) is not copied into the log."""
    if _UUID.fullmatch(value) or (
        len(value) <= 64 and value.isprintable() and not _DIGITS.search(value)
    ):
        return value
    return "(withheld)"
