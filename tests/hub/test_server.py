"""End to end: agency -> hub -> synthetic banks on loopback, mutual TLS."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import defaultdict

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from clients.client import make_query
from clients.services import MANDATES
from dsop.controlinfo.v2 import bank_pb2, model_pb2
from dsop.hub.v1 import hub_pb2
from providers.base import BankProvider
from tests.support import Env, EnvFactory, filtered

Op = hub_pb2.Operation
TODAY = dt.date.today()


def _query(party: str, operation: int = Op.OPERATION_ACCOUNTS, **fields: object) -> hub_pb2.Query:
    service = str(fields.pop("service", "skatt-kontroll"))
    if service == "skatt-kontroll":
        fields.setdefault("requester_id", "saksbehandler-1")
    return make_query(
        service=service,
        legal_mandate=MANDATES[service],
        operation=operation,  # type: ignore[arg-type]
        party_id=party,
        **fields,  # type: ignore[arg-type]
    )


async def _events(env: Env, query: hub_pb2.Query) -> list[hub_pb2.QueryEvent]:
    async with env.client() as hub:
        return [event async for event in hub.query(query, timeout=20)]


def _expected_banks(env: Env, party: str) -> set[str]:
    return {r.organization_id for r in env.dataset.relations(party, TODAY, TODAY)}


async def test_query_returns_exactly_what_each_bank_holds(env: Env) -> None:
    party = env.dataset.find_party("many_banks")
    events = await _events(env, _query(party, only_primary_owner=False))
    results = [e.result for e in events if e.HasField("result")]
    assert {r.bank_id for r in results} == _expected_banks(env, party)
    for result in results:
        held = env.dataset.bank(result.bank_id).list_accounts(party, False, TODAY, TODAY)
        assert result.outcome == hub_pb2.BANK_OUTCOME_COMPLETE
        assert result.accounts == filtered(held, "skatt-kontroll", "accounts")
    summary = events[-1].summary
    assert events[-1].HasField("summary")
    assert summary.banks_asked == summary.banks_answered == len(results)
    assert summary.banks_failed == 0


async def test_fan_out_reaches_exactly_the_banks_kar_names(env: Env) -> None:
    party = env.dataset.find_party("many_banks")
    await _events(env, _query(party))
    asked = {bank for bank, calls in env.calls.items() if calls}
    assert asked == _expected_banks(env, party)
    assert len(asked) == 5


async def test_accounts_with_balances_carries_every_accounts_details(env: Env) -> None:
    party = env.dataset.find_party("many_banks")
    events = await _events(
        env, _query(party, Op.OPERATION_ACCOUNTS_WITH_BALANCES, service="fi-utlegg")
    )
    results = [e.result for e in events if e.HasField("result")]
    assert len(results) == 5
    for result in results:
        bank = env.dataset.bank(result.bank_id)
        listed = bank.list_accounts(party, True, TODAY, TODAY).accounts
        expected = [
            bank.get_account_details(a.account_reference, TODAY, TODAY).account for a in listed
        ]
        assert result.accounts_with_balances == filtered(
            bank_pb2.ListAccountsWithBalancesResponse(
                response_details={"status": model_pb2.RESPONSE_STATUS_COMPLETE}, accounts=expected
            ),
            "fi-utlegg",
            "accounts_with_balances",
        )
        # One request per bank: the bank composes the answer (BankRequest.accounts_with_balances).
        assert env.calls[result.bank_id] == ["accounts_with_balances"]


class StepByStep(BankProvider):
    """A bank without the one-request form of accounts with balances (it answers ACC-012)."""

    def __init__(self, inner: BankProvider) -> None:
        self.inner = inner
        self.bank_id = inner.bank_id
        self.asked: list[str] = []

    async def list_accounts(self, request):  # type: ignore[no-untyped-def]
        self.asked.append("accounts")
        return await self.inner.list_accounts(request)

    async def get_account_details(self, request):  # type: ignore[no-untyped-def]
        self.asked.append("account_details")
        return await self.inner.get_account_details(request)

    async def list_accounts_with_balances(self, request):  # type: ignore[no-untyped-def]
        self.asked.append("accounts_with_balances")
        raise NotImplementedError


async def test_a_bank_without_the_one_request_form_is_asked_step_by_step(
    make_env: EnvFactory,
) -> None:
    made: dict[str, StepByStep] = {}

    def wrap(provider: BankProvider) -> BankProvider:
        made[provider.bank_id] = StepByStep(provider)
        return made[provider.bank_id]

    env = await make_env(wrap)
    party = env.dataset.find_party("many_banks")
    query = _query(party, Op.OPERATION_ACCOUNTS_WITH_BALANCES, service="fi-utlegg")
    for attempt in range(2):
        events = await _events(env, query)
        results = [e.result for e in events if e.HasField("result")]
        assert len(results) == 5
        for result in results:
            bank = env.dataset.bank(result.bank_id)
            listed = bank.list_accounts(party, True, TODAY, TODAY).accounts
            expected = [
                bank.get_account_details(a.account_reference, TODAY, TODAY).account for a in listed
            ]
            assert result.outcome == hub_pb2.BANK_OUTCOME_COMPLETE
            assert result.accounts_with_balances == filtered(
                bank_pb2.ListAccountsWithBalancesResponse(
                    response_details={"status": model_pb2.RESPONSE_STATUS_COMPLETE},
                    accounts=expected,
                ),
                "fi-utlegg",
                "accounts_with_balances",
            )
            steps = ["accounts"] + ["account_details"] * len(listed)
            # The first query finds out (ACC-012); the hub remembers it for the next.
            tried = ["accounts_with_balances"] if attempt == 0 else []
            assert made[result.bank_id].asked == tried + steps
            made[result.bank_id].asked.clear()


async def test_per_account_operations_reach_only_the_named_bank(env: Env) -> None:
    party = env.dataset.find_party("many_banks")
    bank_id = sorted(_expected_banks(env, party))[0]
    bank = env.dataset.bank(bank_id)
    account = bank.list_accounts(party, False, TODAY, TODAY).accounts[0]
    start = TODAY - dt.timedelta(days=60)
    period = {"from_date": start.isoformat(), "to_date": TODAY.isoformat()}
    for operation, field in (
        (Op.OPERATION_ACCOUNT_DETAILS, "account_details"),
        (Op.OPERATION_CARDS, "cards"),
        (Op.OPERATION_ROLES, "roles"),
    ):
        events = await _events(
            env,
            _query(
                "",
                operation,
                account_reference=account.account_reference,
                banks=[bank_id],
                **period,
            ),
        )
        (result,) = [e.result for e in events if e.HasField("result")]
        assert result.WhichOneof("payload") == field
        expected = getattr(bank, f"{'get' if field == 'account_details' else 'list'}_{field}")(
            account.account_reference, start, TODAY
        )
        assert getattr(result, field) == filtered(expected, "skatt-kontroll", field)
    assert {b for b, calls in env.calls.items() if calls} == {bank_id}


async def test_transactions_stream_page_by_page(env: Env) -> None:
    party = env.dataset.find_party("huge_transactions")
    bank_id = sorted(_expected_banks(env, party))[0]
    bank = env.dataset.bank(bank_id)
    start = TODAY - dt.timedelta(days=30)
    accounts = bank.list_accounts(party, False, start, TODAY).accounts
    expected_pages = []
    chosen = None
    for account in accounts:
        pages = list(bank.iter_transactions(account.account_reference, start, TODAY))
        if len(pages) >= 3:
            chosen, expected_pages = account.account_reference, pages
            break
    assert chosen is not None, "the huge account should have thousands of transactions a month"
    events = await _events(
        env,
        _query(
            "",
            Op.OPERATION_TRANSACTIONS,
            account_reference=chosen,
            banks=[bank_id],
            from_date=start.isoformat(),
            to_date=TODAY.isoformat(),
        ),
    )
    results = [e.result for e in events if e.HasField("result")]
    assert [r.has_more for r in results] == [True] * (len(results) - 1) + [False]
    received = [t for r in results for t in r.transactions.transactions]
    assert received == [
        t
        for page in expected_pages
        for t in filtered(
            bank_pb2.ListTransactionsResponse(transactions=page), "skatt-kontroll", "transactions"
        ).transactions
    ]
    assert all(len(r.transactions.transactions) >= 1000 for r in results[:-1])


class Slow(BankProvider):
    def __init__(self, inner: BankProvider, delay: float) -> None:
        self.inner, self.bank_id, self.delay = inner, inner.bank_id, delay

    async def list_accounts(
        self, request: bank_pb2.ListAccountsRequest
    ) -> bank_pb2.ListAccountsResponse:
        await asyncio.sleep(self.delay)
        return await self.inner.list_accounts(request)


async def test_a_slow_banks_siblings_arrive_first(make_env: EnvFactory, dataset: object) -> None:
    from providers.synthetic.dataset import SyntheticDataset  # noqa: PLC0415
    from providers.synthetic.universe import make_banks  # noqa: PLC0415
    from tests.support import BANKS, SEED  # noqa: PLC0415

    data = SyntheticDataset(SEED, make_banks(BANKS, SEED))
    party = data.find_party("many_banks")
    slow_bank = sorted(r.organization_id for r in data.relations(party, TODAY, TODAY))[0]
    env = await make_env(lambda p: Slow(p, 0.5) if p.bank_id == slow_bank else p)
    async with env.client() as hub:
        arrivals = [
            event.result.bank_id
            async for event in hub.query(_query(party), timeout=20)
            if event.HasField("result")
        ]
    assert arrivals[-1] == slow_bank
    assert len(arrivals) == 5


async def test_a_down_bank_fails_alone(make_env: EnvFactory) -> None:
    env = await make_env()
    party = env.dataset.find_party("many_banks")
    down = sorted(_expected_banks(env, party))[0]
    index = [info.bank_id for info in env.infos].index(down)
    await env.banks[index].server.stop(None)
    events = await _events(env, _query(party))
    results = {e.result.bank_id: e.result for e in events if e.HasField("result")}
    assert results[down].outcome == hub_pb2.BANK_OUTCOME_FAILED
    assert results[down].error.code == "ACC-100"
    assert all(r.outcome == hub_pb2.BANK_OUTCOME_COMPLETE for b, r in results.items() if b != down)
    summary = events[-1].summary
    assert (summary.banks_asked, summary.banks_answered, summary.banks_failed) == (5, 4, 1)
    assert [b.bank_id for b in summary.banks if b.HasField("error")] == [down]


async def test_refused_single_query_gets_invalid_argument_with_details(env: Env) -> None:
    query = _query("12345678901")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _events(env, query)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    assert status is not None
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    assert status.details[0].Unpack(info) and info.reason == "ACC-001"
    assert status.details[1].Unpack(bad)
    assert [v.field for v in bad.field_violations] == ["party_id"]
    assert "12345678901" not in (caught.value.details() or "")
    assert not any(env.calls.values())


async def test_many_queries_on_one_stream_are_correlated(env: Env) -> None:
    parties = env.dataset.party_sample(600)
    queries = [_query(p, Op.OPERATION_ACCOUNTS_WITH_BALANCES, service="fi-utlegg") for p in parties]
    bad = _query("00000000000")
    queries.insert(300, bad)
    by_id = {q.query_id: q for q in queries}
    results: dict[str, list[hub_pb2.BankResult]] = defaultdict(list)
    summaries: dict[str, hub_pb2.QuerySummary] = {}
    async with env.client() as hub:
        async for event in hub.stream(queries, batch_size=100, window=250):
            if event.HasField("result"):
                assert event.result.query_id not in summaries, "a result after its summary"
                results[event.result.query_id].append(event.result)
            else:
                summaries[event.summary.query_id] = event.summary
    assert set(summaries) == set(by_id)
    assert summaries[bad.query_id].error.code == "ACC-001"
    for query_id, query in by_id.items():
        if query_id == bad.query_id:
            continue
        got = {r.bank_id: r for r in results[query_id]}
        assert set(got) == _expected_banks(env, query.party_id)
        for bank_id, result in got.items():
            listed = env.dataset.bank(bank_id).list_accounts(query.party_id, True, TODAY, TODAY)
            assert [a.account_reference for a in result.accounts_with_balances.accounts] == [
                a.account_reference for a in listed.accounts
            ]
        assert summaries[query_id].banks_answered == len(got)


async def test_duplicate_query_id_in_flight_is_refused_alone(env: Env) -> None:
    party = env.dataset.find_party("many_banks")
    first = _query(party, query_id="same")
    second = _query(party, query_id="same")
    async with env.client() as hub:
        events = [e async for e in hub.stream([first, second], batch_size=10)]
    summaries = [e.summary for e in events if e.HasField("summary")]
    assert len(summaries) == 2
    assert sorted(s.error.code for s in summaries) == ["", "ACC-001"]
    assert sum(1 for e in events if e.HasField("result")) == 5


async def test_bank_requests_are_coalesced(env: Env) -> None:
    parties = env.dataset.party_sample(300)
    queries = [_query(p, Op.OPERATION_ACCOUNTS_WITH_BALANCES, service="fi-utlegg") for p in parties]
    async with env.client() as hub:
        async for _ in hub.stream(queries, batch_size=300, window=1000):
            pass
    clients = [bank.client for bank in env.hub.banks.values()]
    requests = sum(c.requests_sent for c in clients)  # type: ignore[attr-defined]
    messages = sum(c.messages_sent for c in clients)  # type: ignore[attr-defined]
    assert requests > 3 * len(queries) / 2
    assert messages * 5 < requests, f"{messages} messages for {requests} requests"
