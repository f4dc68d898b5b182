"""The bank provider base class: five plain async methods, no gRPC plumbing.

A bank subclasses :class:`BankProvider` and implements the five methods of the standard's
APIs; :class:`BankServicer` turns one provider into the whole ``BankService``: the per-API
RPCs and the batched ``Exchange`` RPC the hub uses on its hot path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final, TypeVar

import grpc
from grpc_status import rpc_status

from dsop.controlinfo.v2 import bank_pb2, bank_pb2_grpc, model_pb2
from providers.errors import BankError

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")

#: Responses are flushed to the wire once this many items wait (accounts, transactions...).
EXCHANGE_FLUSH_ITEMS: Final = 1000
#: Batches of one Exchange stream processed at once; more wait (flow control to the hub).
EXCHANGE_CONCURRENCY: Final = 8


class BankProvider:
    """What a bank implements. Each method receives the request with its context (case id,
    correlation id, mandate, requester, additional reference, period) and returns the
    standard's response envelope; raise :class:`BankError` to refuse (e.g. ACC-002 for an
    unknown accountReference).

    Methods should not block the event loop; they may await I/O.
    """

    #: The bank's organisation number.
    bank_id: str = ""

    async def list_accounts(
        self, request: bank_pb2.ListAccountsRequest
    ) -> bank_pb2.ListAccountsResponse:
        raise NotImplementedError

    async def get_account_details(
        self, request: bank_pb2.GetAccountDetailsRequest
    ) -> bank_pb2.GetAccountDetailsResponse:
        raise NotImplementedError

    def list_transactions(
        self, request: bank_pb2.ListTransactionsRequest
    ) -> AsyncIterator[bank_pb2.ListTransactionsResponse]:
        """Pages of at least 1000 transactions (the last may hold fewer)."""
        raise NotImplementedError

    async def list_cards(self, request: bank_pb2.ListCardsRequest) -> bank_pb2.ListCardsResponse:
        raise NotImplementedError

    async def list_roles(self, request: bank_pb2.ListRolesRequest) -> bank_pb2.ListRolesResponse:
        raise NotImplementedError


def _internal(exc: BaseException) -> BankError:
    # The exception text may hold request data; operators get only its type.
    log.exception("bank provider failed: %s", type(exc).__name__)
    return BankError("ACC-500", "internal error in the bank provider")


def _unimplemented() -> BankError:
    return BankError("ACC-012", "this API is not offered by the bank")


class BankServicer(bank_pb2_grpc.BankServiceServicer):
    """Serves one :class:`BankProvider` as ``dsop.controlinfo.v2.BankService``."""

    def __init__(self, provider: BankProvider) -> None:
        self.provider = provider

    async def _unary(
        self,
        method: Callable[[Req], Awaitable[Resp]],
        request: Req,
        context: grpc.aio.ServicerContext[Req, Resp],
    ) -> Resp:
        try:
            return await method(request)
        except BankError as exc:
            await context.abort_with_status(rpc_status.to_status(exc.to_rpc_status()))
        except NotImplementedError:
            await context.abort_with_status(rpc_status.to_status(_unimplemented().to_rpc_status()))
        except Exception as exc:
            await context.abort_with_status(rpc_status.to_status(_internal(exc).to_rpc_status()))
        raise AssertionError("unreachable: abort raises")

    async def ListAccounts(self, request, context):  # type: ignore[no-untyped-def]
        return await self._unary(self.provider.list_accounts, request, context)

    async def GetAccountDetails(self, request, context):  # type: ignore[no-untyped-def]
        return await self._unary(self.provider.get_account_details, request, context)

    async def ListCards(self, request, context):  # type: ignore[no-untyped-def]
        return await self._unary(self.provider.list_cards, request, context)

    async def ListRoles(self, request, context):  # type: ignore[no-untyped-def]
        return await self._unary(self.provider.list_roles, request, context)

    async def ListTransactions(self, request, context):  # type: ignore[no-untyped-def]
        try:
            async for page in self.provider.list_transactions(request):
                yield page
        except BankError as exc:
            await context.abort_with_status(rpc_status.to_status(exc.to_rpc_status()))
        except NotImplementedError:
            await context.abort_with_status(rpc_status.to_status(_unimplemented().to_rpc_status()))
        except Exception as exc:
            await context.abort_with_status(rpc_status.to_status(_internal(exc).to_rpc_status()))

    async def Exchange(self, request_iterator, context):  # type: ignore[no-untyped-def]
        """Batches are answered concurrently (up to EXCHANGE_CONCURRENCY at once), the
        requests inside one batch in order; answers are written as they are ready."""
        out: asyncio.Queue[bank_pb2.ExchangeResponse | None] = asyncio.Queue(maxsize=64)
        slots = asyncio.Semaphore(EXCHANGE_CONCURRENCY)
        workers: set[asyncio.Task[None]] = set()
        # Requests the hub no longer wants (cancelled, or given up on after their timeout):
        # skipped if not yet started, stopped between transaction pages if running.
        dropped: set[int] = set()

        async def answer(batch: bank_pb2.ExchangeRequest) -> None:
            try:
                await self._answer_batch(batch, out, dropped)
            finally:
                slots.release()

        async def read() -> None:
            try:
                async for batch in request_iterator:
                    for request in batch.requests:
                        if request.HasField("cancel"):
                            dropped.add(request.cancel.request_id)
                    await slots.acquire()
                    task = asyncio.create_task(answer(batch))
                    workers.add(task)
                    task.add_done_callback(workers.discard)
                if workers:
                    await asyncio.wait(set(workers))
            finally:
                await out.put(None)

        reader = asyncio.create_task(read())
        try:
            while (response := await out.get()) is not None:
                yield response
        finally:
            reader.cancel()
            for task in list(workers):
                task.cancel()

    async def _answer_batch(
        self,
        batch: bank_pb2.ExchangeRequest,
        out: asyncio.Queue[bank_pb2.ExchangeResponse | None],
        dropped: set[int],
    ) -> None:
        response = bank_pb2.ExchangeResponse()
        items = 0
        read_at = time.monotonic()
        for request in batch.requests:
            kind = request.WhichOneof("request")
            if kind == "cancel":
                continue
            if request.id in dropped:
                dropped.discard(request.id)
                continue
            if request.timeout_ms and time.monotonic() - read_at > request.timeout_ms / 1000:
                continue  # the hub has given up on it; an answer would only be dropped
            try:
                if kind == "transactions":
                    async for page in self.provider.list_transactions(request.transactions):
                        if request.id in dropped:
                            dropped.discard(request.id)
                            break
                        answer = response.responses.add(id=request.id, has_more=True)
                        answer.transactions.CopyFrom(page)
                        items += len(page.transactions)
                        if items >= EXCHANGE_FLUSH_ITEMS:
                            await out.put(response)
                            response, items = bank_pb2.ExchangeResponse(), 0
                    # The last page said has_more; a closing answer ends the request.
                    last = _last_answer(response, request.id)
                    if last is not None:
                        last.has_more = False
                    else:
                        response.responses.add(id=request.id).transactions.SetInParent()
                    continue
                answer = response.responses.add(id=request.id)
                if kind == "accounts":
                    result = await self.provider.list_accounts(request.accounts)
                    answer.accounts.CopyFrom(result)
                    items += len(result.accounts)
                elif kind == "account_details":
                    answer.account_details.CopyFrom(
                        await self.provider.get_account_details(request.account_details)
                    )
                elif kind == "cards":
                    result_cards = await self.provider.list_cards(request.cards)
                    answer.cards.CopyFrom(result_cards)
                    items += len(result_cards.payment_cards)
                elif kind == "roles":
                    answer.roles.CopyFrom(await self.provider.list_roles(request.roles))
                else:
                    raise BankError("ACC-001", "request carries no known API")
                items += 1
            except BankError as exc:
                _fail(response, request.id, exc.to_proto())
            except NotImplementedError:
                _fail(response, request.id, _unimplemented().to_proto())
            except Exception as exc:
                _fail(response, request.id, _internal(exc).to_proto())
            if items >= EXCHANGE_FLUSH_ITEMS:
                await out.put(response)
                response, items = bank_pb2.ExchangeResponse(), 0
        if response.responses:
            await out.put(response)


def _last_answer(
    response: bank_pb2.ExchangeResponse, request_id: int
) -> bank_pb2.BankResponse | None:
    if response.responses and response.responses[-1].id == request_id:
        return response.responses[-1]
    return None


def _fail(response: bank_pb2.ExchangeResponse, request_id: int, error: model_pb2.Error) -> None:
    """Ends the request with an error, replacing a half-built answer for it, if any."""
    last = _last_answer(response, request_id)
    if last is None:
        last = response.responses.add(id=request_id)
    last.has_more = False
    last.error.CopyFrom(error)
