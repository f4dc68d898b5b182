"""Calling one bank well: deadlines, retries under a budget, hedging, a circuit breaker.

:class:`ResilientBank` wraps a raw :class:`~hub.banks.BankClient`. The fan-out asks it for a
*call*: a function that fills in a request (so it can be sent again on a retry or a hedge
without copying), a handler for the answers, and a deadline. The handler is called with every
answer and, once, with a final one: the bank's answer, or one the hub makes up with the reason
it gave up (deadline, unavailable, circuit open). Policies (when to retry, when to open the
circuit) are small pure objects apart from the mechanism that applies them.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import grpc

from dsop.controlinfo.v2 import bank_pb2, model_pb2
from dsop.hub.v1 import hub_pb2
from hub import metrics
from hub.banks import BankClient, failure

log = logging.getLogger(__name__)

BANK_CALLS: Final = metrics.counter(
    "dsop_hub_bank_calls_total",
    "Bank calls ended, by outcome: answered (the bank's own answer, an error included), "
    "deadline, unavailable, circuit-open, cancelled (the agency went away)",
    ("bank", "outcome"),
)
BANK_CALL_SECONDS: Final = metrics.histogram(
    "dsop_hub_bank_call_duration_seconds",
    "From a bank call's first request to its final answer (retries and hedges included)",
    ("bank",),
    buckets=metrics.SECONDS_BUCKETS,
)
#: What a call's end is counted as, by the reason the hub gave up (0: the bank answered).
_CALL_OUTCOMES: Final = {
    0: "answered",
    hub_pb2.FAILURE_REASON_REFUSED: "answered",
    hub_pb2.FAILURE_REASON_DEADLINE: "deadline",
    hub_pb2.FAILURE_REASON_UNAVAILABLE: "unavailable",
    hub_pb2.FAILURE_REASON_CIRCUIT_OPEN: "circuit-open",
}

Reason = hub_pb2.FailureReason
#: A bank's answer as the hub reads it (hub.wire.BankResponseView).
Answer = Any
#: Called with each answer and the reason the hub gave up (0 when the bank answered).
CallHandler = Callable[[Answer, int], None]
#: Fills in a fresh request (sets its oneof); called for every attempt.
Fill = Callable[[bank_pb2.BankRequest], None]

UNAVAILABLE: Final = grpc.StatusCode.UNAVAILABLE.value[0]
_TRANSIENT: Final = frozenset(
    {UNAVAILABLE, grpc.StatusCode.INTERNAL.value[0], grpc.StatusCode.UNKNOWN.value[0]}
)


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """How the hub calls banks (one policy for all, or one per bank)."""

    #: Longest wait for one bank's answer (the known consumer client gives 30 s).
    timeout: float = 30.0
    #: Retries of an idempotent read after UNAVAILABLE, within the deadline.
    max_retries: int = 2
    backoff_base: float = 0.05
    backoff_cap: float = 1.0
    #: Retries may be at most this share of calls (a sick bank is not hammered).
    retry_ratio: float = 0.1
    #: Send a second copy after the bank's recent p95 latency (times this factor); 0: off.
    hedge_factor: float = 0.0
    #: Hedge only once this many latencies are known, and never sooner than this.
    hedge_min_samples: int = 50
    hedge_min_delay: float = 0.005
    #: Consecutive failures that open the circuit, and how long it stays open.
    breaker_failures: int = 5
    breaker_open_for: float = 5.0


class RetryBudget:
    """Retries may be at most ``ratio`` of the calls of the last ``window`` seconds, plus
    ``burst`` (Finagle's retry budget): every call earns ``ratio`` of a retry, a retry spends
    one, and unspent retries are capped at what the window's calls earned.

    The cap follows the traffic because requests travel in batches: the errors of one batched
    answer arrive together, and a fixed cap below their number refuses retries the ratio
    allows (at a steady 5% of errors, a cap of 10 let half the failed calls go unretried).
    """

    __slots__ = ("_calls", "_now", "_total", "burst", "clock", "ratio", "tokens")

    def __init__(
        self,
        ratio: float,
        burst: float = 10.0,
        window: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ratio = ratio
        self.burst = burst
        self.tokens = burst
        self.clock = clock
        #: Calls per second of the window, a ring indexed by the second; and their sum.
        self._calls = [0] * window
        self._total = 0
        self._now = int(clock())

    def _cap(self) -> float:
        now = int(self.clock())
        if now != self._now:
            calls = self._calls
            for second in range(max(self._now + 1, now - len(calls) + 1), now + 1):
                self._total -= calls[second % len(calls)]
                calls[second % len(calls)] = 0
            self._now = now
        return self.burst + self.ratio * self._total

    def earn(self) -> None:
        cap = self._cap()
        self._calls[self._now % len(self._calls)] += 1
        self._total += 1
        self.tokens = min(cap + self.ratio, self.tokens + self.ratio)

    def spend(self) -> bool:
        self.tokens = min(self.tokens, self._cap())
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def backoff(attempt: int, base: float, cap: float) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0.0, min(cap, base * (2**attempt)))


class CircuitBreaker:
    """Closed -> open after N consecutive failures -> half-open after a pause (one probe at a
    time) -> closed on a success, open again on a failure."""

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"

    def __init__(
        self,
        failures: int,
        open_for: float,
        on_change: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = failures
        self.open_for = open_for
        self.state = self.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.probing = False
        self.on_change = on_change
        self.clock = clock

    def _set(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if self.on_change is not None:
                self.on_change(state)

    def allow(self) -> bool:
        if self.state == self.CLOSED:
            return True
        if self.state == self.OPEN:
            if self.clock() - self.opened_at < self.open_for:
                return False
            self._set(self.HALF_OPEN)
        if self.probing:
            return False
        self.probing = True
        return True

    def record(self, success: bool) -> None:
        if success:
            self.failures = 0
            self.probing = False
            self._set(self.CLOSED)
            return
        self.failures += 1
        if self.state == self.HALF_OPEN or self.failures >= self.threshold:
            self.probing = False
            self.opened_at = self.clock()
            self._set(self.OPEN)


class LatencyTracker:
    """Recent answer latencies; the p95 is recomputed every 64 samples."""

    def __init__(self, size: int = 512) -> None:
        self.samples: list[float] = []
        self.size = size
        self.count = 0
        self.p95 = 0.0

    def add(self, seconds: float) -> None:
        if len(self.samples) < self.size:
            self.samples.append(seconds)
        else:
            self.samples[self.count % self.size] = seconds
        self.count += 1
        if self.count % 64 == 0 or self.count < 64:
            ordered = sorted(self.samples)
            self.p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


class Deadlines:
    """Gives up on calls whose deadline has passed: one heap and one sweeper task for all
    calls, instead of a timer per call (precision: ``tick`` seconds)."""

    def __init__(self, tick: float = 0.02) -> None:
        self.tick = tick
        self.heap: list[tuple[float, int, Call]] = []
        self.seq = itertools.count()
        self.task: asyncio.Task[None] | None = None

    def add(self, deadline: float, call: Call) -> None:
        heapq.heappush(self.heap, (deadline, next(self.seq), call))
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        heap = self.heap
        while True:
            await asyncio.sleep(self.tick)
            now = time.monotonic()
            while heap and heap[0][0] <= now:
                _, _, call = heapq.heappop(heap)
                # A paced call's deadline moves (Call.hold, Call.credit): an entry it left
                # behind is stale.
                if not call.done and call.deadline <= now:
                    call.expire()

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()


class Call:
    """One logical request to a bank: one or more attempts (retries, a hedge), one outcome."""

    __slots__ = (
        "attempts",
        "bank",
        "bank_bound",
        "committed",
        "deadline",
        "done",
        "fill",
        "handler",
        "hedge_timer",
        "live",
        "query_deadline",
        "started",
    )

    def __init__(
        self,
        bank: ResilientBank,
        fill: Fill,
        handler: CallHandler,
        deadline: float,
        query_deadline: float | None = None,
    ) -> None:
        self.bank = bank
        self.fill = fill
        self.handler = handler
        self.deadline = deadline
        #: The query's own deadline (``deadline`` may be sooner: the bank's timeout).
        self.query_deadline = deadline if query_deadline is None else query_deadline
        #: Whether the deadline is the bank's own timeout (then missing it is the bank's
        #: failure) rather than the query's (then it says nothing about the bank).
        self.bank_bound = False
        self.done = False
        self.attempts = 0
        #: request id -> its send time, for attempts still awaited.
        self.live: dict[int, float] = {}
        #: The attempt whose pages are being delivered (transactions): no more switching.
        self.committed = 0
        self.hedge_timer: asyncio.TimerHandle | None = None
        self.started = time.monotonic()

    def send(self) -> None:
        bank = self.bank
        now = time.monotonic()
        request = bank.client.request(self.on_answer)
        self.fill(request)
        request.timeout_ms = max(1, int((self.deadline - now) * 1000))
        self.live[request.id] = now
        self.attempts += 1
        if self.attempts == 1:
            bank.budget.earn()  # a tenth of the calls, not of the attempts (retries, hedges)
        delay = bank.hedge_delay()
        if delay is not None and self.attempts == 1:
            self.hedge_timer = asyncio.get_running_loop().call_later(delay, self.hedge)

    def hedge(self) -> None:
        self.hedge_timer = None
        if self.done or self.committed or time.monotonic() >= self.deadline:
            return
        self.bank.hedges += 1
        self.send()

    def on_answer(self, response: Answer) -> None:
        """An answer to one of the call's attempts (its id tells which)."""
        request_id = response.id
        if self.done or request_id not in self.live:
            return
        bank = self.bank
        sent = self.live[request_id]
        if (
            response.HasField("error")
            and response.error.status == UNAVAILABLE
            and not self.committed
        ):
            del self.live[request_id]
            if self.live:
                return  # a hedge is still out; let it answer
            now = time.monotonic()
            policy = bank.policy
            retries = self.attempts - 1
            if retries < policy.max_retries and now < self.deadline and bank.budget.spend():
                delay = backoff(retries, policy.backoff_base, policy.backoff_cap)
                if now + delay < self.deadline:
                    bank.retries += 1
                    asyncio.get_running_loop().call_later(delay, self._retry)
                    return
            self._finish(response, Reason.FAILURE_REASON_UNAVAILABLE, success=False)
            return
        if not self.committed:
            self.committed = request_id
            for other in list(self.live):
                if other != request_id:
                    del self.live[other]
                    bank.client.cancel(other)
            if bank.hedging:
                bank.latency.add(time.monotonic() - sent)
        if response.has_more:
            self.handler(response, 0)
            return
        if response.HasField("error"):
            transient = response.error.status in _TRANSIENT
            reason = (
                Reason.FAILURE_REASON_UNAVAILABLE if transient else Reason.FAILURE_REASON_REFUSED
            )
            self._finish(response, reason, success=not transient)
        else:
            self._finish(response, 0, success=True)

    def credit(self, pages: int) -> None:
        """The agency took ``pages`` pages of this (paced transactions) call: the bank may send
        as many more, and has its own timeout again to do so."""
        if self.done or not self.committed:
            return
        self.bank.client.credit(self.committed, pages)
        own = time.monotonic() + self.bank.policy.timeout
        self.bank_bound = own <= self.query_deadline
        self._move_deadline(min(own, self.query_deadline))

    def hold(self) -> None:
        """The bank has sent all the pages it may until the agency takes some: while it waits,
        only the query's deadline applies (a slow agency is not the bank's failure)."""
        if not self.done:
            self.bank_bound = False
            self._move_deadline(self.query_deadline)

    def _move_deadline(self, deadline: float) -> None:
        self.deadline = deadline
        self.bank.deadlines.add(deadline, self)

    def _retry(self) -> None:
        if not self.done:
            self.send()

    def expire(self) -> None:
        """The deadline passed without a final answer."""
        if self.live:
            self.bank.client.stalled(min(self.live.values()))
        for request_id in self.live:
            self.bank.client.cancel(request_id)
        self.live.clear()
        self._finish(
            failure(
                0, "ACC-100", grpc.StatusCode.DEADLINE_EXCEEDED, "no answer from the bank in time"
            ),
            Reason.FAILURE_REASON_DEADLINE,
            success=False if self.bank_bound else None,
        )

    def cancel(self) -> None:
        """The agency went away: stop, tell the bank, deliver nothing."""
        if self.done:
            return
        self.done = True
        for request_id in self.live:
            self.bank.client.cancel(request_id)
        self.live.clear()
        if self.hedge_timer is not None:
            self.hedge_timer.cancel()
        self.bank.cancelled.inc()
        self._release()

    def _release(self) -> None:
        # The deadline heap keeps a finished call until its deadline passes (up to 30 s);
        # let go of everything it points at (query, answers) so that is all it keeps.
        self.handler = _ignore
        self.fill = _ignore
        self.live.clear()

    def _finish(self, response: Answer, reason: int, *, success: bool | None) -> None:
        """Ends the call; ``success`` None: the outcome says nothing about the bank's health."""
        self.done = True
        if self.hedge_timer is not None:
            self.hedge_timer.cancel()
        bank = self.bank
        if success is not None:
            bank.breaker.record(success)
        bank.ended[reason].inc()
        bank.seconds.observe(time.monotonic() - self.started)
        handler = self.handler
        self._release()
        handler(response, reason)


def _ignore(*_: object) -> None:
    return None


class ResilientBank:
    """A bank behind its breaker, retry budget, latency tracker and deadlines."""

    def __init__(
        self,
        client: BankClient,
        policy: CallPolicy,
        deadlines: Deadlines,
        on_breaker: Callable[[str, str], None] | None = None,
    ) -> None:
        self.client = client
        self.bank_id = client.bank_id
        self.policy = policy
        self.deadlines = deadlines
        self.budget = RetryBudget(policy.retry_ratio)
        self.latency = LatencyTracker()
        self.breaker = CircuitBreaker(
            policy.breaker_failures,
            policy.breaker_open_for,
            on_change=(lambda state: on_breaker(self.bank_id, state)) if on_breaker else None,
        )
        self.retries = 0
        self.hedges = 0
        #: Latencies are tracked only to decide when to hedge.
        self.hedging = policy.hedge_factor > 0
        # Metric children resolved once: a labels() lookup per call would cost more.
        self.ended = {
            reason: BANK_CALLS.labels(self.bank_id, name) for reason, name in _CALL_OUTCOMES.items()
        }
        self.cancelled = BANK_CALLS.labels(self.bank_id, "cancelled")
        self.seconds = BANK_CALL_SECONDS.labels(self.bank_id)

    def hedge_delay(self) -> float | None:
        policy = self.policy
        if policy.hedge_factor <= 0 or self.latency.count < policy.hedge_min_samples:
            return None
        return max(policy.hedge_min_delay, self.latency.p95 * policy.hedge_factor)

    def call(self, fill: Fill, handler: CallHandler, deadline: float) -> Call:
        """Starts a call; its handler may be called before this returns (circuit open)."""
        own = time.monotonic() + self.policy.timeout
        call = Call(self, fill, handler, min(deadline, own), deadline)
        call.bank_bound = own <= deadline
        if not self.breaker.allow():
            call.done = True
            self.ended[Reason.FAILURE_REASON_CIRCUIT_OPEN].inc()
            handler(
                failure(
                    0, "ACC-100", grpc.StatusCode.UNAVAILABLE, "the bank's circuit breaker is open"
                ),
                Reason.FAILURE_REASON_CIRCUIT_OPEN,
            )
            return call
        call.send()
        self.deadlines.add(call.deadline, call)
        return call

    async def close(self) -> None:
        await self.client.close()


def error_reason(error: model_pb2.Error) -> int:
    """The failure reason a bank's own error implies."""
    return (
        Reason.FAILURE_REASON_UNAVAILABLE
        if error.status in _TRANSIENT
        else Reason.FAILURE_REASON_REFUSED
    )
