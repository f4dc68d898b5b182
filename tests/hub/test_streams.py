"""Many agencies at once, hedging against a slow tail, and a graceful drain."""

from __future__ import annotations

import asyncio
import os
import resource
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients.client import make_query
from clients.devtokens import DevTokens
from clients.services import MANDATES
from dsop.hub.v1 import hub_pb2
from hub.resilience import CallPolicy
from providers.base import BankProvider
from providers.faults import Faults, FaultyBank
from tests.support import Env, EnvFactory


def _accounts(party: str, banks: list[str] | None = None) -> hub_pb2.Query:
    return make_query(
        service="fi-utlegg",
        legal_mandate=MANDATES["fi-utlegg"],
        operation=hub_pb2.OPERATION_ACCOUNTS,
        party_id=party,
        banks=banks or (),
    )


async def test_many_concurrent_agency_streams(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each client its own connection, as separate agencies would have.
    import clients.client  # noqa: PLC0415

    monkeypatch.setattr(
        clients.client,
        "CHANNEL_OPTIONS",
        (*clients.client.CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)),
    )
    streams = int(os.environ.get("DSOP_STREAMS", "10000"))
    parties = env.dataset.party_sample(200)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Many agencies' connections (each carries up to 100 concurrent streams, as HTTP/2
    # servers commonly allow).
    token = DevTokens(env.cert_dir, "974761076")()  # one token, as an agency reuses it
    clients = [env.client(token=token) for _ in range(max(1, streams // 100))]
    if True:
        opened = asyncio.Event()
        started = 0

        async def one(index: int) -> int:
            hub = clients[index % len(clients)]
            nonlocal started
            gate = asyncio.Event()

            async def queries():  # type: ignore[no-untyped-def]
                nonlocal started
                started += 1
                if started == streams:
                    opened.set()
                await opened.wait()  # every stream is open before any query is sent
                yield _accounts(parties[index % len(parties)])
                await gate.wait()

            count = 0
            async for event in hub.stream(queries(), batch_size=1):
                if event.HasField("summary"):
                    count += 1
                    gate.set()
            return count

        began = time.monotonic()
        answered = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(streams))), 300)
        elapsed = time.monotonic() - began
        for client in clients:
            await client.close()
    assert sum(answered) == streams
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    # Client and hub share this process: both sides of the streams in well under 1 GiB.
    assert grown_mb < 1024, grown_mb
    assert env.hub.pipeline.shed.in_flight == 0
    print(f"{streams:,} streams: {elapsed:.1f} s, peak RSS growth {grown_mb:.0f} MB")


def _slow_tail(provider: BankProvider) -> BankProvider:
    return FaultyBank(provider, Faults(tail_rate=0.03, tail_latency=0.5), seed=7)


async def _latencies(env: Env, bank: str, count: int) -> list[float]:
    parties = env.dataset.party_sample(count)
    slots = asyncio.Semaphore(16)
    out: list[float] = []

    async def one(party: str) -> None:
        async with slots:
            started = time.monotonic()
            async for _ in hub.query(_accounts(party, [bank]), timeout=10):
                pass
            out.append(time.monotonic() - started)

    async with env.client() as hub:
        await asyncio.gather(*(one(p) for p in parties))
    return sorted(out)


async def test_hedging_cuts_the_slow_tail(make_env: EnvFactory) -> None:
    """3% of the bank's answers take 0.5 s. Hedging after its p95 sends a second copy for
    those, which almost always comes back fast."""
    slow: dict[float, int] = {}
    for hedge in (0.0, 1.0):
        policy = CallPolicy(
            timeout=5.0, hedge_factor=hedge, hedge_min_samples=20, breaker_failures=1000
        )
        env = await make_env(_slow_tail, calls=policy)
        bank = env.infos[0].bank_id
        await _latencies(env, bank, 40)  # learn the bank's latency
        latencies = await _latencies(env, bank, 300)
        slow[hedge] = sum(1 for latency in latencies if latency >= 0.45)
        hedges = env.hub.banks[bank].hedges
        p99 = latencies[int(len(latencies) * 0.99)]
        print(
            f"hedge_factor={hedge}: p50 {latencies[150] * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, {slow[hedge]} >= 450 ms, hedges {hedges}"
        )
        assert (hedges > 0) == bool(hedge)
    assert slow[0.0] >= 4, "without hedging the slow tail shows"
    assert slow[1.0] * 2 < slow[0.0], "hedging answers most slow calls from the second copy"


async def test_drain_finishes_in_flight_and_refuses_new(make_env: EnvFactory) -> None:
    env = await make_env(lambda p: FaultyBank(p, Faults(latency=0.5)) if p.bank_id == "x" else p)
    slow = env.infos[0].bank_id
    for provider_bank in env.banks:
        if provider_bank.provider.bank_id == slow:
            provider_bank.provider.inner = FaultyBank(
                provider_bank.provider.inner, Faults(latency=0.8)
            )  # type: ignore[attr-defined]
            provider_bank.provider.concurrent = True
    party = env.dataset.party_sample(1)[0]
    async with env.client() as hub:
        in_flight = asyncio.ensure_future(_collect(hub.query(_accounts(party, [slow]), timeout=10)))
        await asyncio.sleep(0.2)
        draining = asyncio.ensure_future(env.hub.drain(grace=5.0))
        await asyncio.sleep(0.1)
        channel = grpc.aio.secure_channel(env.target, env.client_tls().credentials())
        health = health_pb2_grpc.HealthStub(channel)
        check = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _collect(hub.query(_accounts(party, [slow]), timeout=10))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        events = await in_flight
        assert events[-1].summary.banks_answered == 1, "the query in flight finished"
        await draining
        await channel.close()


async def _collect(events):  # type: ignore[no-untyped-def]
    return [event async for event in events]
