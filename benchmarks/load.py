"""Load shapes for the latency scenarios, over any way of answering one query.

``open_loop`` sends at Poisson arrival times of a fixed rate whatever the answers do, and
times each query from its *intended* send time, so a system that falls behind shows it as
latency instead of quietly sending less (no coordinated omission). ``closed_loop`` keeps a
fixed number of queries in flight, for throughput.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import grpc
from hdrh.histogram import HdrHistogram

from benchmarks import direct, processes, report
from benchmarks.enforcement import Meter
from benchmarks.fleet import Fleet, cdf
from benchmarks.processes import Children
from clients.client import HubClient
from dsop.hub.v1 import hub_pb2

#: Measures one way of answering queries (``hub``, ``direct`` or ``ceiling``): its steps. The
#: meter reads the CPU of the server (hub or relay; none for direct), banks and driver.
Measure = Callable[[str, "Send", Meter], Awaitable[list[dict[str, object]]]]

#: Answers one query; True when every bank answered. Raises grpc.aio.AioRpcError on refusal.
Send = Callable[[hub_pb2.Query], Awaitable[bool]]


@dataclass(slots=True)
class Step:
    """What one load step measured."""

    sent: int = 0
    answered: int = 0
    failed: int = 0  # refused, or a bank failed
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    #: Open loop: arrivals not sent because ``max_in_flight`` queries were waiting.
    saturated: bool = False
    histogram: HdrHistogram = field(default_factory=report.new_histogram)

    def summary(self, bank_calls_per_query: float = 0.0) -> dict[str, object]:
        achieved = self.answered / self.seconds if self.seconds else 0.0
        out: dict[str, object] = {
            "sent": self.sent,
            "answered": self.answered,
            "failed": self.failed,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "achieved_qps": round(achieved, 1),
            "saturated": self.saturated,
            "latency_ms": report.latency_ms(self.histogram),
        }
        if bank_calls_per_query:
            out["bank_calls_per_s"] = round(achieved * bank_calls_per_query, 1)
        out["latency_cdf"] = cdf(self.histogram)
        return out


async def _timed(send: Send, query: hub_pb2.Query, since_ns: int, step: Step) -> None:
    try:
        complete = await send(query)
    except grpc.aio.AioRpcError as exc:
        complete = False
        key = exc.code().name
        step.errors[key] = step.errors.get(key, 0) + 1
    report.record_us(step.histogram, time.perf_counter_ns() - since_ns)
    step.answered += 1
    if not complete:
        step.failed += 1


async def metered(meter: Meter, step: Awaitable[Step], **summary: float) -> dict[str, object]:
    """Runs a step under the meter; its summary with the CPU each process used (seconds, and
    cores: seconds per second of the step), which shows what bounds a saturated step."""
    machine = processes.machine_cpu_seconds()
    meter.start()
    done = await step
    meter.stop()
    machine = processes.machine_cpu_seconds() - machine
    out = done.summary(**summary)
    seconds = done.seconds or 1.0
    out["cpu"] = {
        f"{who}_{unit}": round(value / (seconds if unit == "cores" else 1.0), 2)
        for who, value in (
            ("server", meter.hub_s),
            ("banks", meter.banks_s),
            ("driver", meter.driver_s),
            # Everything else on the machine (other work sharing the cores).
            ("other", max(0.0, machine - meter.hub_s - meter.banks_s - meter.driver_s)),
        )
        for unit in ("s", "cores")
    }
    return out


async def arrivals(rate: float, seconds: float, seed: int) -> AsyncIterator[int]:
    """Poisson arrival times (perf_counter_ns) at ``rate`` over ``seconds``, each yielded at
    its time (or at once, when the caller is late: the time stays the intended one)."""
    rng = random.Random(seed)
    intended = time.perf_counter_ns()
    end = intended + int(seconds * 1e9)
    while True:
        intended += int(rng.expovariate(rate) * 1e9)
        if intended >= end:
            return
        delay = (intended - time.perf_counter_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        yield intended


async def open_loop(
    send: Send,
    queries: Sequence[hub_pb2.Query],
    *,
    rate: float,
    seconds: float,
    seed: int,
    max_in_flight: int,
) -> Step:
    """Poisson arrivals at ``rate`` for ``seconds`` (queries taken in turn, cycling)."""
    step = Step()
    in_flight: set[asyncio.Task[None]] = set()
    began = time.perf_counter_ns()
    async for intended in arrivals(rate, seconds, seed):
        if len(in_flight) >= max_in_flight:
            step.saturated = True
            break
        task = asyncio.get_running_loop().create_task(
            _timed(send, queries[step.sent % len(queries)], intended, step)
        )
        step.sent += 1
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.wait(set(in_flight))
    step.seconds = (time.perf_counter_ns() - began) / 1e9
    return step


async def closed_loop(
    send: Send, queries: Sequence[hub_pb2.Query], *, concurrency: int, seconds: float
) -> Step:
    """``concurrency`` queries in flight for ``seconds``."""
    step = Step()
    began = time.perf_counter_ns()
    end = began + int(seconds * 1e9)
    counter = iter(range(1 << 62))

    async def worker() -> None:
        while time.perf_counter_ns() < end:
            query = queries[next(counter) % len(queries)]
            step.sent += 1
            await _timed(send, query, time.perf_counter_ns(), step)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    step.seconds = (time.perf_counter_ns() - began) / 1e9
    return step


def via_hub(clients: dict[str, HubClient], agency_of: Callable[[hub_pb2.Query], str]) -> Send:
    """Each query as one ``Query`` call of its agency's client (the hub or the relay)."""

    async def send(query: hub_pb2.Query) -> bool:
        complete = True
        async for event in clients[agency_of(query)].query(query, timeout=60):
            if event.HasField("summary"):
                complete = not event.summary.banks_failed and not event.summary.HasField("error")
        return complete

    return send


def via_direct(client: direct.DirectClient) -> Send:
    """Each query the way agencies do it today (:mod:`benchmarks.direct`)."""

    async def send(query: hub_pb2.Query) -> bool:
        result = direct.DirectResult(1)
        await direct.one_query(client, query, result)
        return not (result.refused or result.bank_failures)

    return send


async def hub_direct_ceiling(
    run: Fleet,
    children: Children,
    *,
    agencies: Sequence[str],
    agency_of: Callable[[hub_pb2.Query], str],
    measure: Measure,
    direct_too: bool,
    ceiling_too: bool,
) -> dict[str, list[dict[str, object]]]:
    """Measures the hub, then (the hub stopped, so the machine is theirs) the direct way and
    the ceiling relay; ``measure`` gets each one's name and way of sending."""
    out: dict[str, list[dict[str, object]]] = {}
    assert run.hub is not None
    clients = {agency: run.client(agency) for agency in agencies}
    out["hub"] = await measure("hub", via_hub(clients, agency_of), Meter(run.hub, run.banks))
    for client in clients.values():
        await client.close()
    children.stop(run.hub)
    if direct_too:
        async with direct.DirectClient(run.direct_endpoints()) as direct_client:
            await direct_client.connect()
            out["direct"] = await measure(
                "direct", via_direct(direct_client), Meter(None, run.banks)
            )
    if ceiling_too:
        relay, target = await run.start_ceiling(children)
        clients = {agency: run.client(agency, target) for agency in agencies}
        out["ceiling"] = await measure(
            "ceiling", via_hub(clients, agency_of), Meter(relay, run.banks)
        )
        for client in clients.values():
            await client.close()
        children.stop(relay)
    return out
