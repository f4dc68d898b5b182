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
from google.protobuf.message import Message
from grpc_status import rpc_status

from dsop.controlinfo.v2 import bank_pb2, bank_pb2_grpc, model_pb2
from providers.balances import BalancesAnswer
from providers.errors import BankError

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")

#: Responses are flushed to the wire once this many items wait (accounts, transactions...).
EXCHANGE_FLUSH_ITEMS: Final = 1000
#: Batches of one Exchange stream processed at once; more wait (flow control to the hub).
EXCHANGE_CONCURRENCY: Final = 8
#: Requests of one Exchange stream answered at once by a ``concurrent`` provider (as many as
#: EXCHANGE_CONCURRENCY full batches from the hub); more wait, as batches do.
EXCHANGE_CONCURRENT_REQUESTS: Final = 8000


class StreamBroken(Exception):
    """Raised by a provider to break the whole Exchange stream, as a crash or a dropped
    connection would (fault injection)."""


class BankProvider:
    """What a bank implements. Each method receives the request with its context (case id,
    correlation id, mandate, requester, additional reference, period) and returns the
    standard's response envelope; raise :class:`BankError` to refuse (e.g. ACC-002 for an
    unknown accountReference).

    Methods should not block the event loop; they may await I/O.
    """

    #: The bank's organisation number.
    bank_id: str = ""
    #: True when the methods wait on I/O (a core system, a database): requests of one batch
    #: are then answered concurrently, each as soon as it is ready. False suits methods that
    #: compute their answer at once: a batch is answered in order, with less overhead.
    concurrent: bool = False

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

    async def list_accounts_with_balances(
        self, request: bank_pb2.ListAccountsRequest
    ) -> bank_pb2.ListAccountsWithBalancesResponse:
        """Accounts with balances in one request (``Exchange`` only): by default this
        provider's own :meth:`list_accounts`, then :meth:`get_account_details` for each
        account (concurrently when ``concurrent``), composed as :mod:`providers.balances`
        says. A refusal of any step refuses the whole. Override it only when the core system
        answers the combination more cheaply; the answer must be the same."""
        listing = await self.list_accounts(request)
        if not isinstance(listing, bank_pb2.ListAccountsResponse):
            return _as_is(listing)
        composed = BalancesAnswer(listing)
        if not composed.wanted:
            return composed.answer()
        asks = [
            bank_pb2.GetAccountDetailsRequest(
                context=request.context, account_reference=reference, period=request.period
            )
            for _, reference in composed.wanted
        ]
        if self.concurrent:
            answers = await asyncio.gather(*(self.get_account_details(ask) for ask in asks))
        else:
            answers = [await self.get_account_details(ask) for ask in asks]
        for (index, _), details in zip(composed.wanted, answers, strict=True):
            if not isinstance(details, bank_pb2.GetAccountDetailsResponse):
                return _as_is(details)
            composed.add(index, details)
        return composed.answer()


def _as_is(answer: object) -> bank_pb2.ListAccountsWithBalancesResponse:
    """A step's answer of the wrong kind (a provider's bug), passed on as it is: like any
    answer it goes where its type says, and the caller refuses it as malformed."""
    return answer  # type: ignore[return-value]


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
        """Batches are answered concurrently (up to EXCHANGE_CONCURRENCY at once); inside a
        batch, requests are answered in order, or each on its own when the provider says it
        is ``concurrent`` (up to EXCHANGE_CONCURRENT_REQUESTS at once: a slow request then
        holds up neither its batch nor the batches after it). Answers are written as they are
        ready, several per message."""
        out: asyncio.Queue[bank_pb2.ExchangeResponse | None] = asyncio.Queue(maxsize=64)
        slots = asyncio.Semaphore(EXCHANGE_CONCURRENCY)
        requests = asyncio.Semaphore(EXCHANGE_CONCURRENT_REQUESTS)
        # Requests answered each on its own share one outbox: the answers ready in one turn
        # of the loop travel in one message, as a batch's do, not one message each.
        shared = _SharedOutbox(out)
        workers: set[asyncio.Task[None]] = set()
        # Requests the hub no longer wants (cancelled, or given up on after their timeout):
        # skipped if not yet started, stopped between transaction pages if running.
        dropped: set[int] = set()
        #: Page credit of paced transactions requests in progress, by request id.
        credits: dict[int, PageCredit] = {}
        broken = asyncio.Event()

        def spawn(work: Awaitable[None]) -> None:
            task = asyncio.ensure_future(work)
            workers.add(task)
            task.add_done_callback(workers.discard)

        async def answer_alone(request: bank_pb2.BankRequest, read_at: float) -> None:
            try:
                await self._answer(request, shared, dropped, read_at)
                await shared.settle()
            except StreamBroken:
                broken.set()
            finally:
                requests.release()

        async def answer(batch: bank_pb2.ExchangeRequest) -> None:
            try:
                if self.provider.concurrent:
                    # The batch's slot is held only until its requests are under way.
                    read_at = time.monotonic()
                    for request in _wanted(batch, dropped):
                        await requests.acquire()
                        spawn(answer_alone(request, read_at))
                else:
                    await self._answer_batch(batch, out, dropped)
            except StreamBroken:
                broken.set()
            finally:
                slots.release()

        async def read() -> None:
            try:
                async for batch in request_iterator:
                    paced = []
                    for request in batch.requests:
                        kind = request.WhichOneof("request")
                        if kind == "cancel":
                            cancelled = request.cancel.request_id
                            dropped.add(cancelled)
                            if cancelled in credits:
                                credits[cancelled].cancel()
                        elif kind == "credit":
                            credit = credits.get(request.credit.request_id)
                            if credit is not None:
                                credit.grant(request.credit.pages)
                        elif kind == "transactions" and request.page_window:
                            paced.append(request)
                    # A paced transactions request may wait for credit as long as its agency
                    # reads slowly: it runs on its own, holding neither a slot nor its batch.
                    for request in paced:
                        credits[request.id] = PageCredit(request.page_window)
                        spawn(self._answer_paced(request, out, dropped, credits))
                    await slots.acquire()
                    spawn(answer(batch))
                # A batch still starting may add workers while the others are awaited.
                while workers:
                    await asyncio.wait(set(workers))
            finally:
                await out.put(None)

        reader = asyncio.create_task(read())

        async def watch() -> None:
            await broken.wait()
            await out.put(None)

        watcher = asyncio.create_task(watch())
        try:
            while (response := await out.get()) is not None:
                # Coalesce what else is ready into the same message (per-message cost).
                while len(response.responses) < EXCHANGE_FLUSH_ITEMS and not out.empty():
                    more = out.get_nowait()
                    if more is None:
                        yield response
                        return
                    response.responses.extend(more.responses)
                yield response
            if broken.is_set():
                await context.abort(grpc.StatusCode.UNAVAILABLE, "the bank's stream broke")
        finally:
            reader.cancel()
            watcher.cancel()
            for task in list(workers):
                task.cancel()

    async def _answer_batch(
        self,
        batch: bank_pb2.ExchangeRequest,
        out: asyncio.Queue[bank_pb2.ExchangeResponse | None],
        dropped: set[int],
    ) -> None:
        """Answers a batch's requests one after another (a provider that is not concurrent)."""
        read_at = time.monotonic()
        outbox = _Outbox(out)
        for request in _wanted(batch, dropped):
            await self._answer(request, outbox, dropped, read_at)
        await outbox.flush()

    async def _answer_paced(
        self,
        request: bank_pb2.BankRequest,
        out: asyncio.Queue[bank_pb2.ExchangeResponse | None],
        dropped: set[int],
        credits: dict[int, PageCredit],
    ) -> None:
        """Answers a paced transactions request on its own: each page (but the last) waits
        for the credit its agency's reading gives back."""
        try:
            outbox = _Outbox(out)
            await self._answer(request, outbox, dropped, time.monotonic(), credits[request.id])
            await outbox.flush()
        finally:
            del credits[request.id]

    async def _answer(
        self,
        request: bank_pb2.BankRequest,
        outbox: _Outbox,
        dropped: set[int],
        read_at: float,
        credit: PageCredit | None = None,
    ) -> None:
        """Answers one request into the outbox (several answers for transaction pages, each
        but the last taking one of the request's ``credit``, when it is paced)."""
        if request.timeout_ms and time.monotonic() - read_at > request.timeout_ms / 1000:
            return  # the hub has given up on it; an answer would only be dropped
        kind = request.WhichOneof("request")
        provider = self.provider
        try:
            if kind == "transactions":
                await self._pages(request, outbox, dropped, credit)
                return
            result: Message
            if kind == "accounts":
                result = await provider.list_accounts(request.accounts)
            elif kind == "account_details":
                result = await provider.get_account_details(request.account_details)
            elif kind == "cards":
                result = await provider.list_cards(request.cards)
            elif kind == "roles":
                result = await provider.list_roles(request.roles)
            elif kind == "accounts_with_balances":
                result = await provider.list_accounts_with_balances(request.accounts_with_balances)
            else:
                # Unknown to this bank (a newer caller's API) or none at all: not offered.
                raise _unimplemented()
            # The answer goes where its type says: a provider that returns the wrong kind
            # is seen by the caller as doing so (and refused as malformed there).
            answer = outbox.response.responses.add(id=request.id)
            getattr(answer, _RESULT_FIELDS[type(result)]).CopyFrom(result)
            await outbox.added(1 + result.ByteSize() // 256)
        except BankError as exc:
            _fail(outbox.response, request.id, exc.to_proto())
        except NotImplementedError:
            _fail(outbox.response, request.id, _unimplemented().to_proto())
        except StreamBroken:
            raise
        except Exception as exc:
            _fail(outbox.response, request.id, _internal(exc).to_proto())

    async def _pages(
        self,
        request: bank_pb2.BankRequest,
        outbox: _Outbox,
        dropped: set[int],
        credit: PageCredit | None,
    ) -> None:
        # One page of lookahead: a page is known to be the last (has_more false, no credit
        # needed, no empty closing answer) when the one after it does not come.
        pages = aiter(self.provider.list_transactions(request.transactions))
        page = await anext(pages, None)
        if page is None:
            outbox.response.responses.add(id=request.id).transactions.SetInParent()
            return
        while page is not None:
            following = await anext(pages, None)
            if following is not None and credit is not None and not credit.pages:
                await outbox.flush()  # what was granted goes out before waiting for more
                await credit.wait()
            if request.id in dropped:
                dropped.discard(request.id)
                return
            if following is not None and credit is not None:
                credit.pages -= 1
            answer = outbox.response.responses.add(id=request.id, has_more=following is not None)
            answer.transactions.CopyFrom(page)
            await outbox.added(len(page.transactions))
            page = following


class PageCredit:
    """Pages a paced transactions request may still send (see ``page_window`` in
    bank.proto)."""

    __slots__ = ("_granted", "cancelled", "pages")

    def __init__(self, pages: int) -> None:
        self.pages = pages
        self.cancelled = False
        self._granted = asyncio.Event()

    def grant(self, pages: int) -> None:
        self.pages += pages
        self._granted.set()

    def cancel(self) -> None:
        self.cancelled = True
        self._granted.set()

    async def wait(self) -> None:
        """Until there is credit, or the request is cancelled."""
        while not self.pages and not self.cancelled:
            self._granted.clear()
            await self._granted.wait()


#: Requests that ask for no answer.
_NOTICES: Final = frozenset({"cancel", "credit"})


def _wanted(batch: bank_pb2.ExchangeRequest, dropped: set[int]) -> list[bank_pb2.BankRequest]:
    """The batch's requests to answer: not notices (cancel, credit: Exchange reads those), nor
    paced transactions requests (they run on their own), nor requests already dropped."""
    wanted = []
    for request in batch.requests:
        kind = request.WhichOneof("request")
        if kind in _NOTICES or (kind == "transactions" and request.page_window):
            continue
        if request.id in dropped:
            dropped.discard(request.id)
            continue
        wanted.append(request)
    return wanted


_RESULT_FIELDS: Final = {
    bank_pb2.ListAccountsResponse: "accounts",
    bank_pb2.GetAccountDetailsResponse: "account_details",
    bank_pb2.ListCardsResponse: "cards",
    bank_pb2.ListRolesResponse: "roles",
    bank_pb2.ListAccountsWithBalancesResponse: "accounts_with_balances",
}


class _Outbox:
    """Answers gathered into one ExchangeResponse, flushed every EXCHANGE_FLUSH_ITEMS items."""

    __slots__ = ("items", "out", "response")

    def __init__(self, out: asyncio.Queue[bank_pb2.ExchangeResponse | None]) -> None:
        self.out = out
        self.response = bank_pb2.ExchangeResponse()
        self.items = 0

    async def added(self, items: int) -> None:
        self.items += items
        if self.items >= EXCHANGE_FLUSH_ITEMS:
            await self.flush()

    async def flush(self) -> None:
        if self.response.responses:
            await self.out.put(self.response)
            self.response = bank_pb2.ExchangeResponse()
        self.items = 0


class _SharedOutbox(_Outbox):
    """An outbox many requests answer into at once (a concurrent provider's)."""

    __slots__ = ("_turn",)

    def __init__(self, out: asyncio.Queue[bank_pb2.ExchangeResponse | None]) -> None:
        super().__init__(out)
        self._turn: asyncio.Future[None] | None = None

    async def settle(self) -> None:
        """Returns once the answers added so far are on their way. The first caller in a turn
        of the event loop lets the others of that turn add theirs, then flushes for all; a
        full queue holds them all back (flow control to the hub, as for batches)."""
        turn = self._turn
        if turn is not None:
            await turn
            return
        turn = self._turn = asyncio.get_running_loop().create_future()
        try:
            await asyncio.sleep(0)
            self._turn = None  # answers added from now on go with the next flush
            await self.flush()
        finally:
            if self._turn is turn:
                self._turn = None
            if not turn.done():
                turn.set_result(None)


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
