"""Fault injection: faulty banks fail alone, with the right reason, in time; the hub stays
bounded and keeps serving."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from clients.client import make_query
from clients.services import MANDATES
from dsop.controlinfo.v2 import bank_pb2
from dsop.hub.v1 import hub_pb2
from hub.resilience import CallPolicy
from hub.shed import Limits
from providers.base import BankProvider
from providers.faults import Faults, FaultyBank
from providers.server import start_bank
from tests.support import Env, EnvFactory, filtered

Reason = hub_pb2.FailureReason
TODAY = dt.date.today()
FAST = CallPolicy(timeout=1.0, max_retries=2, backoff_base=0.01, breaker_failures=1000)


def _awb(env: Env, party: str) -> hub_pb2.Query:
    """Accounts with balances asked of every bank (KAR skipped), so faulty banks are asked."""
    return make_query(
        service="fi-utlegg",
        legal_mandate=MANDATES["fi-utlegg"],
        operation=hub_pb2.OPERATION_ACCOUNTS_WITH_BALANCES,
        party_id=party,
        banks=[info.bank_id for info in env.infos],
    )


async def _run(
    env: Env, query: hub_pb2.Query
) -> tuple[dict[str, hub_pb2.BankResult], hub_pb2.QuerySummary, float]:
    started = time.monotonic()
    async with env.client() as hub:
        events = [e async for e in hub.query(query, timeout=30)]
    results = {e.result.bank_id: e.result for e in events if e.HasField("result")}
    return results, events[-1].summary, time.monotonic() - started


def _holding_banks() -> list[int]:
    """Indexes of the banks where the many-banks party owns accounts (so faults show)."""
    from providers.synthetic.dataset import SyntheticDataset  # noqa: PLC0415
    from providers.synthetic.universe import make_banks  # noqa: PLC0415
    from tests.support import BANKS, SEED  # noqa: PLC0415

    infos = make_banks(BANKS, SEED)
    data = SyntheticDataset(SEED, infos)
    party = data.find_party("many_banks")
    return [
        i
        for i, info in enumerate(infos)
        if data.bank(info.bank_id).list_accounts(party, True, TODAY, TODAY).accounts
    ]


HOLDING = _holding_banks()


def _faulty(faults: dict[int, Faults]) -> tuple[object, dict[str, FaultyBank]]:
    """A wrap for make_env making banks faulty: key k is the k-th bank where the test party
    owns accounts."""
    made: dict[str, FaultyBank] = {}
    from providers.synthetic.universe import make_banks  # noqa: PLC0415
    from tests.support import BANKS, SEED  # noqa: PLC0415

    ids = [b.bank_id for b in make_banks(BANKS, SEED)]
    chosen = {ids[HOLDING[k]]: f for k, f in faults.items()}

    def wrap(provider: BankProvider) -> BankProvider:
        if provider.bank_id in chosen:
            made[provider.bank_id] = FaultyBank(provider, chosen[provider.bank_id])
            return made[provider.bank_id]
        return provider

    return wrap, made


def _check_healthy(
    env: Env, results: dict[str, hub_pb2.BankResult], party: str, faulty: set[str]
) -> None:
    """Every healthy bank's data arrived intact."""
    for bank_id, result in results.items():
        if bank_id in faulty:
            continue
        bank = env.dataset.bank(bank_id)
        listed = bank.list_accounts(party, True, TODAY, TODAY).accounts
        expected = bank_pb2.ListAccountsWithBalancesResponse()
        expected.response_details.status = 1
        for account in listed:
            expected.accounts.add().CopyFrom(
                bank.get_account_details(account.account_reference, TODAY, TODAY).account
            )
        assert result.outcome == hub_pb2.BANK_OUTCOME_COMPLETE, (bank_id, result.error)
        got = bank_pb2.ListAccountsWithBalancesResponse()
        got.CopyFrom(result.accounts_with_balances)
        for message in (got, expected):  # "now" balances are stamped when computed
            for account in message.accounts:
                for balance in account.balances:
                    balance.ClearField("registered")
        assert got == filtered(expected, "fi-utlegg", "accounts_with_balances")


CASES = [
    (Faults(tail_rate=1.0, tail_latency=0.3), None, ""),
    (Faults(error_rate=1.0, error_code="ACC-100"), Reason.FAILURE_REASON_UNAVAILABLE, "ACC-100"),
    (Faults(error_rate=1.0, error_code="ACC-011"), Reason.FAILURE_REASON_REFUSED, "ACC-011"),
    (Faults(error_rate=1.0, error_code="ACC-500"), Reason.FAILURE_REASON_UNAVAILABLE, "ACC-500"),
    (Faults(hang=True), Reason.FAILURE_REASON_DEADLINE, "ACC-100"),
    (Faults(crash_after_pages=0), Reason.FAILURE_REASON_UNAVAILABLE, "ACC-100"),
    (Faults(garbage=True), Reason.FAILURE_REASON_MALFORMED, "ACC-500"),
    (Faults(oversized_bytes=2_000_000), Reason.FAILURE_REASON_UNAVAILABLE, "ACC-100"),
    (Faults(wrong_party=True), Reason.FAILURE_REASON_MALFORMED, "ACC-500"),
    (Faults(wrong_account=True), Reason.FAILURE_REASON_MALFORMED, "ACC-500"),
    (Faults(wrong_bank=True), Reason.FAILURE_REASON_MALFORMED, "ACC-500"),
]


@pytest.mark.parametrize(
    ("faults", "reason", "code"), CASES, ids=[str(i) for i in range(len(CASES))]
)
async def test_a_faulty_bank_fails_alone_with_its_reason(
    make_env: EnvFactory, faults: Faults, reason: int | None, code: str
) -> None:
    wrap, made = _faulty({0: faults, 1: faults})
    env = await make_env(wrap, calls=FAST, bank_max_message_bytes=1_000_000)
    party = env.dataset.find_party("many_banks")
    results, summary, elapsed = await _run(env, _awb(env, party))
    assert set(results) == {info.bank_id for info in env.infos}
    _check_healthy(env, results, party, set(made))
    for bank_id in made:
        result = results[bank_id]
        if reason is None:
            assert result.outcome == hub_pb2.BANK_OUTCOME_COMPLETE
            continue
        assert result.outcome == hub_pb2.BANK_OUTCOME_FAILED
        assert result.reason == reason, result
        assert result.error.code == code
    assert summary.banks_asked == len(env.infos)
    assert summary.banks_failed == (0 if reason is None else len(made))
    assert {b.bank_id for b in summary.banks if b.reason} == (
        set() if reason is None else set(made)
    )
    assert elapsed < FAST.timeout + 1.5, "a faulty bank must not hold the query past its deadline"
    # The hub holds nothing for finished queries, and keeps serving.
    for bank in env.hub.banks.values():
        assert bank.client.in_flight() == 0  # type: ignore[attr-defined]
    for made_bank in made.values():
        made_bank.set(hang=False, error_rate=0.0, garbage=False, crash_after_pages=-1,
                      oversized_bytes=0, wrong_party=False, wrong_account=False, wrong_bank=False)  # fmt: skip
    results, summary, _ = await _run(env, _awb(env, party))
    assert summary.banks_failed == 0
    _check_healthy(env, results, party, set())


async def test_a_failing_bank_is_retried_within_budget(make_env: EnvFactory) -> None:
    wrap, made = _faulty({1: Faults(error_rate=0.5, error_code="ACC-100")})
    env = await make_env(
        wrap,
        calls=CallPolicy(
            timeout=2.0, max_retries=3, backoff_base=0.005, retry_ratio=1.0, breaker_failures=1000
        ),
    )
    party = env.dataset.find_party("many_banks")
    outcomes = []
    for _ in range(10):
        results, _, _ = await _run(env, _awb(env, party))
        outcomes.append(results[next(iter(made))].outcome)
    bank = env.hub.banks[next(iter(made))]
    assert bank.retries > 0
    assert outcomes.count(hub_pb2.BANK_OUTCOME_COMPLETE) >= 6, "retries should rescue most calls"


async def test_retry_budget_limits_retries_to_a_tenth(make_env: EnvFactory) -> None:
    wrap, made = _faulty({1: Faults(error_rate=1.0, error_code="ACC-100")})
    env = await make_env(
        wrap,
        calls=CallPolicy(timeout=2.0, max_retries=5, backoff_base=0.001, breaker_failures=10_000),
    )
    parties = env.dataset.party_sample(200)
    queries = [_awb(env, p) for p in parties]
    async with env.client() as hub:
        async for _ in hub.stream(queries, batch_size=50):
            pass
    bank = env.hub.banks[next(iter(made))]
    calls = len(queries)
    assert bank.retries <= 0.1 * calls + bank.budget.burst


async def test_circuit_breaker_opens_fails_fast_and_closes(make_env: EnvFactory) -> None:
    wrap, made = _faulty({1: Faults(error_rate=1.0, error_code="ACC-100")})
    env = await make_env(
        wrap, calls=CallPolicy(timeout=1.0, max_retries=0, breaker_failures=3, breaker_open_for=0.5)
    )
    (bank_id,) = made
    party = env.dataset.find_party("many_banks")
    reasons = []
    for _ in range(5):
        results, _, _ = await _run(env, _awb(env, party))
        reasons.append(results[bank_id].reason)
    assert reasons[:3] == [Reason.FAILURE_REASON_UNAVAILABLE] * 3
    assert reasons[3:] == [Reason.FAILURE_REASON_CIRCUIT_OPEN] * 2
    # Operators see it: the bank's health entry says NOT_SERVING.
    channel = grpc.aio.secure_channel(env.target, env.client_tls().credentials())
    health = health_pb2_grpc.HealthStub(channel)
    check = await health.Check(health_pb2.HealthCheckRequest(service=f"dsop.bank.{bank_id}"))
    assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING
    made[bank_id].set(error_rate=0.0)
    await asyncio.sleep(0.6)  # half-open: one probe goes through and closes the circuit
    results, _, _ = await _run(env, _awb(env, party))
    assert results[bank_id].outcome == hub_pb2.BANK_OUTCOME_COMPLETE
    await asyncio.sleep(0.05)
    check = await health.Check(health_pb2.HealthCheckRequest(service=f"dsop.bank.{bank_id}"))
    assert check.status == health_pb2.HealthCheckResponse.SERVING
    await channel.close()


async def test_agency_deadline_reaches_the_bank_calls(make_env: EnvFactory) -> None:
    wrap, made = _faulty({2: Faults(latency=3.0)})
    env = await make_env(wrap)
    party = env.dataset.find_party("many_banks")
    started = time.monotonic()
    async with env.client() as hub:
        events = [e async for e in hub.query(_awb(env, party), timeout=1.0)]
    # The summary came back before the agency's deadline (else the call would have failed
    # with DEADLINE_EXCEEDED), though the slow bank takes 3 s.
    assert time.monotonic() - started < 2.0
    summary = events[-1].summary
    (failed,) = [b for b in summary.banks if b.error.code]
    assert failed.bank_id in made
    assert failed.reason == Reason.FAILURE_REASON_DEADLINE


async def test_load_is_shed_with_a_retry_hint(make_env: EnvFactory) -> None:
    wrap, _ = _faulty({0: Faults(latency=0.5)})
    env = await make_env(wrap, limits=Limits(max_in_flight=5, max_per_consumer=5))
    parties = env.dataset.party_sample(30)
    async with env.client() as hub:
        summaries = [
            event.summary
            async for event in hub.stream([_awb(env, p) for p in parties], batch_size=30)
            if event.HasField("summary")
        ]
    shed = [s for s in summaries if s.error.code == "ACC-022"]
    assert len(shed) == 25 and len(summaries) == 30
    # A single query over the limit gets RESOURCE_EXHAUSTED with RetryInfo.
    async with env.client() as hub:
        stream = hub.stream([_awb(env, p) for p in parties[:5]], batch_size=5)
        first = await anext(stream)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in hub.query(_awb(env, parties[6]), timeout=5):
                pass
        async for _ in stream:
            pass
        del first
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    assert status is not None
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in status.details)
    assert retry.retry_delay.seconds == 1
    assert env.hub.pipeline.shed.in_flight == 0


async def test_a_bank_restarting_during_a_batch(make_env: EnvFactory) -> None:
    env = await make_env(
        calls=CallPolicy(
            timeout=2.0, max_retries=3, backoff_base=0.05, retry_ratio=1.0, breaker_failures=1000
        )
    )
    parties = env.dataset.party_sample(300)
    index = 4
    bank = env.banks[index]
    summaries: list[hub_pb2.QuerySummary] = []

    async def restart() -> None:
        await asyncio.sleep(0.05)
        await bank.server.stop(None)
        await asyncio.sleep(0.2)
        env.banks[index] = await start_bank(bank.provider, "127.0.0.1", bank.port, _tls(env))

    restarting = asyncio.create_task(restart())
    async with env.client() as hub:
        summaries += [
            event.summary
            async for event in hub.stream([_awb(env, p) for p in parties], batch_size=20, window=40)
            if event.HasField("summary")
        ]
    await restarting
    assert len(summaries) == len(parties)
    # Once the hub has reconnected (its reconnect backoff is at most 2 s), queries succeed.
    channel = env.hub.banks[env.infos[index].bank_id].client._channel  # type: ignore[attr-defined]
    for _ in range(100):
        if channel.get_state(try_to_connect=True) == grpc.ChannelConnectivity.READY:
            break
        await asyncio.sleep(0.05)
    _results, summary, _ = await _run(env, _awb(env, parties[0]))
    assert summary.banks_failed == 0


def _tls(env: Env):  # type: ignore[no-untyped-def]
    from providers.server import ServerTls  # noqa: PLC0415

    return ServerTls(
        (env.cert_dir / "bank.pem").read_bytes(),
        (env.cert_dir / "bank.key").read_bytes(),
        (env.cert_dir / "ca.pem").read_bytes(),
    )


async def test_a_client_that_goes_away_cancels_its_bank_calls(make_env: EnvFactory) -> None:
    wrap, _made = _faulty({0: Faults(hang=True)})
    env = await make_env(wrap, calls=CallPolicy(timeout=30.0))
    party = env.dataset.find_party("many_banks")
    async with env.client() as hub:
        stream = hub.stream([_awb(env, party)], batch_size=1)
        async for event in stream:
            if event.HasField("result"):
                break  # got one bank's answer; the agency leaves
        await stream.aclose()
    await asyncio.sleep(0.3)
    assert env.hub.pipeline.shed.in_flight == 0
    for bank in env.hub.banks.values():
        assert bank.client.in_flight() == 0  # type: ignore[attr-defined]


async def test_malformed_and_oversized_agency_messages(env: Env) -> None:
    channel = grpc.aio.secure_channel(env.target, env.client_tls().credentials())
    from clients.devtokens import DevTokens  # noqa: PLC0415

    metadata = (("authorization", f"Bearer {DevTokens(env.cert_dir, '974761076')()}"),)
    garbage = channel.stream_stream(
        "/dsop.hub.v1.HubService/QueryStream",
        request_serializer=lambda b: b,
        response_deserializer=hub_pb2.QueryStreamResponse.FromString,
    )
    call = garbage(iter([b"\xff\xff\xff\xff"]), metadata=metadata)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in call:
            pass
    assert caught.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)
    huge = hub_pb2.QueryStreamRequest()
    huge.queries.add(query_id="x" * (17 * 1024 * 1024))
    call = garbage(iter([huge.SerializeToString()]), metadata=metadata)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in call:
            pass
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    await channel.close()
    # Unknown enum values are refused per query; the hub goes on.
    query = _awb(env, env.dataset.find_party("many_banks"))
    query.operation = 77  # type: ignore[assignment]
    async with env.client() as hub:
        events = [e async for e in hub.stream([query])]
    assert events[-1].summary.error.code == "ACC-001"
    _results, summary, _ = await _run(env, _awb(env, env.dataset.find_party("many_banks")))
    assert summary.banks_failed == 0
