"""The provider base class: per-API RPCs and the batched Exchange agree, errors map to the
standard's codes with rich details."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from dsop.controlinfo.v2 import bank_pb2, bank_pb2_grpc, model_pb2
from providers.base import EXCHANGE_CONCURRENCY, BankProvider
from providers.errors import BankError
from providers.server import start_bank

COMPLETE = model_pb2.RESPONSE_STATUS_COMPLETE


class TinyBank(BankProvider):
    """Two accounts for anyone; reference "r1" exists, everything else is unknown."""

    bank_id = "974761076"

    async def list_accounts(
        self, request: bank_pb2.ListAccountsRequest
    ) -> bank_pb2.ListAccountsResponse:
        response = bank_pb2.ListAccountsResponse()
        response.response_details.status = COMPLETE
        for ref in ("r1", "r2"):
            response.accounts.add(account_identifier="12345678903", account_reference=ref)
        return response

    async def get_account_details(
        self, request: bank_pb2.GetAccountDetailsRequest
    ) -> bank_pb2.GetAccountDetailsResponse:
        if request.account_reference != "r1":
            raise BankError("ACC-002", "unknown accountReference")
        response = bank_pb2.GetAccountDetailsResponse()
        response.response_details.status = COMPLETE
        response.account.account_reference = "r1"
        return response

    async def list_transactions(  # type: ignore[override]
        self, request: bank_pb2.ListTransactionsRequest
    ) -> AsyncIterator[bank_pb2.ListTransactionsResponse]:
        for page in range(3):
            response = bank_pb2.ListTransactionsResponse()
            response.response_details.status = COMPLETE
            for index in range(1000 if page < 2 else 10):
                response.transactions.add(transaction_identifier=f"{page}-{index}")
            yield response

    async def list_cards(self, request: bank_pb2.ListCardsRequest) -> bank_pb2.ListCardsResponse:
        raise RuntimeError("a bug with 12345678903 in its text")


@pytest.fixture
async def stub() -> AsyncIterator[bank_pb2_grpc.BankServiceStub]:
    hosted = await start_bank(TinyBank())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{hosted.port}")
    yield bank_pb2_grpc.BankServiceStub(channel)
    await channel.close()
    await hosted.server.stop(None)


def _reason(exc: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info.reason


async def test_per_api_rpcs_answer(stub: bank_pb2_grpc.BankServiceStub) -> None:
    accounts = await stub.ListAccounts(bank_pb2.ListAccountsRequest(party_id="x"))
    assert [a.account_reference for a in accounts.accounts] == ["r1", "r2"]
    details = await stub.GetAccountDetails(
        bank_pb2.GetAccountDetailsRequest(account_reference="r1")
    )
    assert details.account.account_reference == "r1"
    pages = [page async for page in stub.ListTransactions(bank_pb2.ListTransactionsRequest())]
    assert [len(p.transactions) for p in pages] == [1000, 1000, 10]


async def test_bank_error_becomes_status_with_error_info(
    stub: bank_pb2_grpc.BankServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetAccountDetails(bank_pb2.GetAccountDetailsRequest(account_reference="nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert _reason(caught.value) == "ACC-002"


async def test_unimplemented_and_bugs_map_without_leaking_text(
    stub: bank_pb2_grpc.BankServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListRoles(bank_pb2.ListRolesRequest())
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListCards(bank_pb2.ListCardsRequest())
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "12345678903" not in (caught.value.details() or "")


async def test_exchange_agrees_with_per_api_rpcs(stub: bank_pb2_grpc.BankServiceStub) -> None:
    request = bank_pb2.ExchangeRequest()
    request.requests.add(id=1).accounts.party_id = "x"
    request.requests.add(id=2).account_details.account_reference = "r1"
    request.requests.add(id=3).account_details.account_reference = "nope"
    request.requests.add(id=4).transactions.account_reference = "r1"
    request.requests.add(id=5).roles.account_reference = "r1"
    request.requests.add(id=6)  # no API at all
    call = stub.Exchange()
    await call.write(request)
    await call.done_writing()
    answers: dict[int, list[bank_pb2.BankResponse]] = {}
    async for message in call:
        for response in message.responses:
            answers.setdefault(response.id, []).append(response)
    assert answers[1][0].accounts == await stub.ListAccounts(bank_pb2.ListAccountsRequest())
    assert answers[2][0].account_details.account.account_reference == "r1"
    assert answers[3][0].error.code == "ACC-002"
    assert answers[3][0].error.status == grpc.StatusCode.NOT_FOUND.value[0]
    pages = answers[4]
    assert [p.has_more for p in pages] == [True, True, False]
    assert sum(len(p.transactions.transactions) for p in pages) == 2010
    assert answers[5][0].error.code == "ACC-012"
    assert answers[6][0].error.code == "ACC-012"
    assert all(not r[-1].has_more for r in answers.values())


class SlowForSome(TinyBank):
    """Waits 1 s before listing the accounts of party "slow", as a bank waiting on its core
    system would; answers everything else at once."""

    concurrent = True

    async def list_accounts(
        self, request: bank_pb2.ListAccountsRequest
    ) -> bank_pb2.ListAccountsResponse:
        if request.party_id == "slow":
            await asyncio.sleep(1.0)
        return await super().list_accounts(request)


async def test_a_slow_answer_holds_up_neither_its_batch_nor_later_batches() -> None:
    hosted = await start_bank(SlowForSome())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{hosted.port}")
    try:
        call = bank_pb2_grpc.BankServiceStub(channel).Exchange()
        # As many batches with a slow request as the stream answers at once, then one more.
        for batch in range(EXCHANGE_CONCURRENCY + 1):
            request = bank_pb2.ExchangeRequest()
            request.requests.add(id=2 * batch + 1).accounts.party_id = "slow"
            request.requests.add(id=2 * batch + 2).accounts.party_id = "fast"
            await call.write(request)
        await call.done_writing()
        order = [r.id async for message in call for r in message.responses]
    finally:
        await channel.close()
        await hosted.server.stop(None)
    assert sorted(order) == list(range(1, 2 * EXCHANGE_CONCURRENCY + 3))
    fast = [i for i in order if i % 2 == 0]
    assert order[: len(fast)] == fast, "every fast answer comes before any slow one"


class _Reader:
    """Reads an Exchange call in the background (cancelling a read would cancel the call)."""

    def __init__(
        self, call: grpc.aio.StreamStreamCall[bank_pb2.ExchangeRequest, bank_pb2.ExchangeResponse]
    ) -> None:
        self.got: list[bank_pb2.BankResponse] = []
        self.task = asyncio.get_running_loop().create_task(self._read(call))

    async def _read(
        self, call: grpc.aio.StreamStreamCall[object, bank_pb2.ExchangeResponse]
    ) -> None:
        async for message in call:
            self.got.extend(message.responses)

    async def new(self, seconds: float = 0.3) -> list[bank_pb2.BankResponse]:
        """What arrived in the next ``seconds``."""
        before = len(self.got)
        await asyncio.sleep(seconds)
        return self.got[before:]


async def test_paced_transactions_wait_for_credit_and_other_requests_do_not(
    stub: bank_pb2_grpc.BankServiceStub,
) -> None:
    call = stub.Exchange()
    first = bank_pb2.ExchangeRequest()
    paced = first.requests.add(id=1, page_window=1)
    paced.transactions.account_reference = "r1"
    first.requests.add(id=2).accounts.party_id = "x"  # in the same message: not held up
    reader = _Reader(call)
    await call.write(first)
    answers = await reader.new()
    # One page with has_more (the window), then nothing until credit; the accounts answered.
    assert sorted((a.id, a.has_more) for a in answers) == [(1, True), (2, False)]
    credit = bank_pb2.ExchangeRequest()
    credit.requests.add(id=3).credit.CopyFrom(bank_pb2.PageCredit(request_id=1, pages=1))
    await call.write(credit)
    # The last page needs no credit: one credit brings the second page and the last.
    answers = await reader.new()
    assert [(a.id, a.has_more) for a in answers] == [(1, True), (1, False)]
    assert [len(a.transactions.transactions) for a in answers] == [1000, 10]
    call.cancel()


async def test_a_cancelled_paced_request_stops_waiting_for_credit(
    stub: bank_pb2_grpc.BankServiceStub,
) -> None:
    call = stub.Exchange()
    first = bank_pb2.ExchangeRequest()
    first.requests.add(id=1, page_window=1).transactions.account_reference = "r1"
    reader = _Reader(call)
    await call.write(first)
    assert [a.has_more for a in await reader.new()] == [True]
    cancel = bank_pb2.ExchangeRequest()
    cancel.requests.add(id=2).cancel.request_id = 1
    cancel.requests.add(id=3).accounts.party_id = "x"
    await call.write(cancel)
    await call.done_writing()
    # Nothing more for the cancelled request, and the stream ends: no task was left waiting.
    await asyncio.wait_for(reader.task, 5)
    assert [r.id for r in reader.got] == [1, 3]
