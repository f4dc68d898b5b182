"""Flow control of transaction pages: an agency that reads slowly slows only its own query.

The bank's pages are produced lazily, so pages produced and not yet read by the agency are
all the hub, the gRPC transports and the bank can be holding for it: bounding that count
bounds every buffer on the way."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable

import pytest

import clients.client
from clients.client import CHANNEL_OPTIONS, HubClient, make_query
from clients.services import MANDATES
from dsop.controlinfo.v2 import bank_pb2
from dsop.hub.v1 import hub_pb2
from hub.context import QueryContext
from hub.fanout import CREDIT_STEP, PAGE_WINDOW, FanoutStage
from hub.resilience import CallPolicy, Deadlines, ResilientBank
from hub.respond import StreamSink
from hub.wire import view_of
from providers.base import BankProvider
from providers.synthetic.dataset import SyntheticDataset
from tests.support import Env, EnvFactory

TODAY = dt.date.today()
PAGES = 120
#: Pages beyond the window the agency's side may hold: the client library takes a response
#: message whole (up to 4 MB, about 11 pages of 350 kB) and yields its events one by one, and
#: the hub's next message sits in the transport (the slow agency's channel keeps HTTP/2's
#: 64 kB initial window: with gRPC's BDP probe on, that window grows to tens of MB on
#: loopback, which is the agency's choice, not the hub's).
TRANSPORT_SLACK = 2 * 11 + 2


class ManyPages(BankProvider):
    """Delegates to a synthetic bank but answers every transactions request with ``PAGES``
    copies of one real page (1000 transactions), counting the pages it produced."""

    def __init__(self, inner: BankProvider, page: bank_pb2.ListTransactionsResponse) -> None:
        self.inner = inner
        self.bank_id = inner.bank_id
        self.page = page
        self.produced: dict[str, int] = {}

    async def list_accounts(self, request):  # type: ignore[no-untyped-def]
        return await self.inner.list_accounts(request)

    async def list_transactions(  # type: ignore[override]
        self, request: bank_pb2.ListTransactionsRequest
    ) -> AsyncIterator[bank_pb2.ListTransactionsResponse]:
        case = request.context.account_info_request_id
        for _ in range(PAGES):
            self.produced[case] = self.produced.get(case, 0) + 1
            yield self.page


def _transactions(reference: str, bank_id: str) -> hub_pb2.Query:
    return make_query(
        service="skatt-kontroll",
        legal_mandate=MANDATES["skatt-kontroll"],
        operation=hub_pb2.OPERATION_TRANSACTIONS,
        account_reference=reference,
        banks=[bank_id],
        requester_id="saksbehandler-1",
        from_date=(TODAY - dt.timedelta(days=90)).isoformat(),
        to_date=TODAY.isoformat(),
    )


async def _busy_bank(
    make_env: EnvFactory, dataset: SyntheticDataset, **hub_options: object
) -> tuple[Env, ManyPages, str, str]:
    """A hub whose bank of a busy account answers with PAGES real pages of 1000; the
    environment, that bank, its id and the account's reference."""
    party = dataset.find_party("huge_transactions")
    bank_id = dataset.relations(party, TODAY, TODAY)[0].organization_id
    data = dataset.bank(bank_id)
    reference = data.list_accounts(party, True, TODAY, TODAY).accounts[0].account_reference
    page = bank_pb2.ListTransactionsResponse()
    page.transactions.extend(
        next(iter(data.iter_transactions(reference, TODAY - dt.timedelta(days=90), TODAY)))
    )
    assert len(page.transactions) == 1000
    wrapped: list[ManyPages] = []

    def wrap(provider: BankProvider) -> BankProvider:
        if provider.bank_id != bank_id:
            return provider
        wrapped.append(ManyPages(provider, page))
        return wrapped[0]

    env = await make_env(wrap, **hub_options)
    return env, wrapped[0], bank_id, reference


def _slow_client(env: Env, monkeypatch: pytest.MonkeyPatch) -> HubClient:
    """An agency client keeping HTTP/2's initial window (see TRANSPORT_SLACK)."""
    with monkeypatch.context() as patch:
        patch.setattr(
            clients.client, "CHANNEL_OPTIONS", (*CHANNEL_OPTIONS, ("grpc.http2.bdp_probe", 0))
        )
        return env.client()


async def test_a_slow_reader_holds_a_bounded_number_of_pages_and_slows_no_one_else(
    make_env: EnvFactory, dataset: SyntheticDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, bank, bank_id, reference = await _busy_bank(make_env, dataset)
    party = dataset.find_party("huge_transactions")
    slow_query = _transactions(reference, bank_id)
    fast_query = _transactions(reference, bank_id)
    other = env.client()
    slow = _slow_client(env, monkeypatch)
    async with slow, other:
        # The slow agency reads one page, then stops reading.
        slow_events = slow.stream([slow_query], batch_size=1)
        first = await anext(slow_events)
        assert first.result.has_more
        await asyncio.sleep(1.0)
        stalled_at = bank.produced[slow_query.case_id]
        await asyncio.sleep(0.5)
        assert bank.produced[slow_query.case_id] == stalled_at  # no more while not read

        # Meanwhile, another agency at the same bank (the same hub -> bank Exchange stream):
        # accounts queries and a whole transactions query, read at full speed.
        started = time.monotonic()
        accounts = make_query(
            service="skatt-kontroll",
            legal_mandate=MANDATES["skatt-kontroll"],
            operation=hub_pb2.OPERATION_ACCOUNTS,
            party_id=party,
            banks=[bank_id],
            requester_id="saksbehandler-1",
        )
        answered = [e async for e in other.query(accounts, timeout=10) if e.HasField("summary")]
        accounts_s = time.monotonic() - started
        pages = 0
        async for event in other.stream([fast_query], batch_size=1):
            if event.HasField("result"):
                pages += 1
            else:
                assert event.summary.banks_answered == 1
        fast_s = time.monotonic() - started

        # The slow query's bank kept to the window while its agency did not read.
        assert bank.produced[slow_query.case_id] == stalled_at
        assert stalled_at <= 1 + PAGE_WINDOW + TRANSPORT_SLACK < PAGES
        assert len(answered) == 1 and accounts_s < 2.0
        assert pages == PAGES and fast_s < 30

        # The slow agency reads on and gets every page, and a complete summary.
        rest = [event async for event in slow_events]
    results = [e.result for e in [first, *rest] if e.HasField("result")]
    assert len(results) == PAGES
    assert [r.has_more for r in results] == [True] * (PAGES - 1) + [False]
    assert rest[-1].summary.banks_answered == 1
    assert bank.produced[slow_query.case_id] == PAGES


async def test_a_reader_slower_than_the_banks_timeout_is_not_the_banks_failure(
    make_env: EnvFactory, dataset: SyntheticDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bank's own timeout bounds its time to answer; while the hub withholds credit
    # (the agency is not reading), only the query's deadline applies.
    env, bank, bank_id, reference = await _busy_bank(
        make_env, dataset, calls=CallPolicy(timeout=0.5)
    )
    async with _slow_client(env, monkeypatch) as agency:
        query = _transactions(reference, bank_id)
        events = agency.stream([query], batch_size=1)
        first = await anext(events)
        await asyncio.sleep(1.5)  # three times the bank's timeout, without reading
        assert bank.produced[query.case_id] < PAGES  # the bank was held, waiting for credit
        rest = [event async for event in events]
    results = [e.result for e in [first, *rest] if e.HasField("result")]
    assert len(results) == PAGES
    assert rest[-1].summary.banks_answered == 1
    assert rest[-1].summary.banks_failed == 0


class ScriptedBank:
    """A bank client the test answers by hand, recording credit and cancellations."""

    bank_id = "b1"

    def __init__(self) -> None:
        self.requests: list[bank_pb2.BankRequest] = []
        self.handlers: dict[int, Callable[[bank_pb2.BankResponse], None]] = {}
        self.credits: list[tuple[int, int]] = []
        self.cancelled: list[int] = []

    def request(self, on_response: Callable[[bank_pb2.BankResponse], None]) -> bank_pb2.BankRequest:
        request = bank_pb2.BankRequest(id=len(self.requests) + 1)
        self.requests.append(request)
        self.handlers[request.id] = on_response
        return request

    def cancel(self, request_id: int) -> None:
        self.cancelled.append(request_id)

    def credit(self, request_id: int, pages: int) -> None:
        self.credits.append((request_id, pages))

    def stalled(self, since: float) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_the_hub_credits_pages_as_they_are_sent_and_fails_a_bank_that_overruns() -> None:
    bank = ScriptedBank()
    deadlines = Deadlines()
    sent: list[tuple[hub_pb2.QueryEvent, Callable[[], None] | None]] = []
    stage = FanoutStage(
        {"b1": ResilientBank(bank, CallPolicy(), deadlines)},
        lambda item: sent.append((hub_pb2.QueryEvent.FromString(item.encode()), item.on_sent)),
    )
    query = _transactions("r1", "b1")
    ctx = QueryContext(query, StreamSink(10), 0, deadline=time.monotonic() + 10)
    ctx.banks = ["b1"]
    await stage([ctx])
    (request,) = bank.requests
    assert request.page_window == PAGE_WINDOW

    def page() -> object:
        response = bank_pb2.BankResponse(id=request.id, has_more=True)
        response.transactions.transactions.add(transaction_identifier="t")
        return view_of(response)  # as the hub reads answers

    for _ in range(PAGE_WINDOW):
        bank.handlers[request.id](page())
    assert len(sent) == PAGE_WINDOW and not bank.credits
    for _, on_sent in sent[:CREDIT_STEP]:
        assert on_sent is not None
        on_sent()
    assert bank.credits == [(request.id, CREDIT_STEP)]
    for _ in range(CREDIT_STEP):
        bank.handlers[request.id](page())
    assert not bank.cancelled  # within the credit
    bank.handlers[request.id](page())  # one beyond
    assert bank.cancelled == [request.id]
    failed, last = sent[-2][0], sent[-1][0]
    assert failed.result.outcome == hub_pb2.BANK_OUTCOME_FAILED
    assert failed.result.reason == hub_pb2.FAILURE_REASON_MALFORMED
    assert last.summary.banks_failed == 1  # the query ends there
    deadlines.close()
