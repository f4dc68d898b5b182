"""The request path in one place: the stages a query passes, and why in this order.

Authentication happens once per stream, before any query is read (hub/auth.py, called by the
server); every query of the stream carries the identity. Then:

Ingress (per batch of queries from one agency message)::

    shed -> validate -> policy -> resolve banks (KAR) -> fan-out

Egress (per batch of events emitted during one loop turn)::

    filter -> encode -> audit -> respond (hand the bytes to the agency's stream)

Shedding comes first: a refusal for want of room must cost nothing. Validation comes next so
the policy reads only well-formed queries; the policy comes before
resolve so a refused query never reaches KAR or a bank. Resolve comes before fan-out because
fan-out needs the bank list. On the way out, filtering comes before anything that sees the
bytes an agency receives; encoding happens once, so the audit log records the digest of exactly
the bytes sent; audit comes before respond because it is write-ahead (no data leaves before
its record is durable), and respond is last: nothing may be added after the bytes leave.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

import grpc

from hub.audit import AuditLog
from hub.audit_stage import AuditStage
from hub.context import QueryContext, Refusal
from hub.fanout import FanoutStage, last_event
from hub.filter import FilterStage
from hub.kar import Kar
from hub.observe import QueryObserver
from hub.police import PoliceOrderVerifier
from hub.policy import PolicyStage
from hub.profiles import Profiles
from hub.resilience import ResilientBank
from hub.resolve import ResolveStage
from hub.respond import Egress, EgressStage, EncodeStage, Outgoing, RespondStage
from hub.shed import Limits, ShedStage
from hub.validate import ValidateStage

log = logging.getLogger(__name__)

#: An inbound stage: takes the live queries of a batch, returns those that go on; a query it
#: stops carries a refusal.
IngressStage = Callable[[list[QueryContext]], Awaitable[list[QueryContext]]]

_INTERNAL = Refusal(grpc.StatusCode.INTERNAL, "ACC-500", "internal error in the hub")
_AUDIT_DOWN = Refusal(
    grpc.StatusCode.UNAVAILABLE, "ACC-100", "the audit log is unavailable; nothing was released"
)


class Pipeline:
    def __init__(
        self,
        ingress: Sequence[IngressStage],
        egress: Egress,
        shed: ShedStage,
        observer: QueryObserver,
    ) -> None:
        self.ingress = tuple(ingress)
        self.egress = egress
        self.shed = shed
        self.observer = observer

    def abandon(self, contexts: Iterable[QueryContext]) -> None:
        """The agency went away: stop these queries, cancel their bank calls, free their room."""
        for ctx in contexts:
            self.observer.abandoned(ctx)
            ctx.cancelled = True
            for call in ctx.calls:
                call.cancel()
            ctx.calls.clear()
            self.shed.release(ctx)

    async def admit(self, batch: list[QueryContext]) -> None:
        """Runs the batch through the inbound stages; every refused query (here or before,
        e.g. a duplicate id) gets its summary with the refusal."""
        live = [ctx for ctx in batch if ctx.refusal is None]
        try:
            for stage in self.ingress:
                if not live:
                    break
                live = await stage(live)
        except Exception:
            log.exception("inbound stage failed for a batch of %d queries", len(live))
            for ctx in live:
                if not ctx.request_body:  # not yet handed to any bank
                    ctx.refusal = _INTERNAL
        for ctx in batch:
            if ctx.refusal is not None:
                self.shed.release(ctx)  # refused after admission (policy, KAR, a bug)
                self.egress.emit(last_event(ctx))

    async def close(self) -> None:
        await self.egress.close()


def build_pipeline(
    kar: Kar,
    banks: Mapping[str, ResilientBank],
    *,
    profiles: Profiles,
    orders: PoliceOrderVerifier | None,
    limits: Limits,
    audit: AuditLog | None,
) -> Pipeline:
    shed = ShedStage(limits)
    observer = QueryObserver(release=shed.release, services=profiles.services)
    outbound: list[EgressStage] = [FilterStage(profiles), EncodeStage()]
    if audit is not None:
        outbound.append(AuditStage(audit))
    outbound.append(RespondStage(on_finished=observer.finished))

    def withheld(batch: list[Outgoing]) -> None:
        # The batch could not be audited: its data is withheld; each query still ends, with
        # an error summary (which discloses nothing) and its room released.
        for ctx in {id(item.ctx): item.ctx for item in batch}.values():
            if ctx.cancelled or ctx.finished:
                continue
            ctx.refusal = _AUDIT_DOWN
            for call in ctx.calls:
                call.cancel()
            ctx.sink.send(ctx, last_event(ctx).encode())
            ctx.sink.finished(ctx)
            observer.finished(ctx)
            ctx.cancelled = True

    egress = Egress(outbound, on_failure=withheld)
    ingress: list[IngressStage] = [
        shed,
        ValidateStage(),
        PolicyStage(profiles, orders),
        ResolveStage(kar),
        FanoutStage(banks, egress.emit),
    ]
    return Pipeline(ingress, egress, shed, observer)
