"""Stage: load shedding. Admit a query only while the hub, and the consumer, have room.

Beyond the limits a query is refused at once with RESOURCE_EXHAUSTED (ACC-022) and a retry
hint, before it costs anything; while the hub drains, new queries are refused UNAVAILABLE.
Every admitted query is released exactly once: when its summary goes out, or when its agency
goes away.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from hub.context import QueryContext, Refusal


@dataclass(frozen=True, slots=True)
class Limits:
    #: Queries in flight in the whole hub.
    max_in_flight: int = 200_000
    #: Queries in flight per consumer organisation.
    max_per_consumer: int = 100_000
    #: The retry hint given with a refusal, seconds.
    retry_after: float = 1.0


class ShedStage:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.in_flight = 0
        self.per_consumer: defaultdict[str, int] = defaultdict(int)
        self.draining = False
        self.shed = 0
        #: Set whenever no query is in flight (what a drain waits for).
        self.idle = asyncio.Event()
        self.idle.set()
        self._busy = Refusal(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "ACC-022",
            f"the hub is at capacity; retry after {limits.retry_after:g} s",
            retry_after=limits.retry_after,
        )
        self._closing = Refusal(
            grpc.StatusCode.UNAVAILABLE, "ACC-100", "the hub is shutting down; retry elsewhere"
        )

    async def __call__(self, batch: Sequence[QueryContext]) -> list[QueryContext]:
        limits = self.limits
        passed = []
        for ctx in batch:
            consumer = ctx.identity.organisation if ctx.identity is not None else ""
            if self.draining:
                ctx.refusal = self._closing
            elif (
                self.in_flight >= limits.max_in_flight
                or self.per_consumer[consumer] >= limits.max_per_consumer
            ):
                ctx.refusal = self._busy
                self.shed += 1
            else:
                self.in_flight += 1
                self.idle.clear()
                self.per_consumer[consumer] += 1
                ctx.admitted = True
                passed.append(ctx)
        return passed

    def release(self, ctx: QueryContext) -> None:
        if not ctx.admitted:
            return
        ctx.admitted = False
        self.in_flight -= 1
        if self.in_flight == 0:
            self.idle.set()
        consumer = ctx.identity.organisation if ctx.identity is not None else ""
        self.per_consumer[consumer] -= 1
