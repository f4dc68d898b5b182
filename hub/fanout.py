"""Stage: fan each query out to its banks; turn bank answers into events as they arrive.

For every (query, bank) pair a small call object drives the operation over the bank's
:class:`~hub.resilience.ResilientBank`: one request for most operations, pages for
transactions, and for accounts-with-balances the accounts list followed by one details request
per account. No task per query: answers arrive as callbacks from the bank's reader, and every
event goes to the egress, which batches them for the outbound stages. Each bank's part ends
exactly once: complete, partial (the bank said more exists offline) or failed with a reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

import grpc

from dsop.controlinfo.v2 import bank_pb2, model_pb2
from dsop.hub.v1 import hub_pb2
from hub.context import BankOutcome, QueryContext
from hub.resilience import Call, Fill, ResilientBank
from providers.balances import BalancesAnswer

Op = hub_pb2.Operation
Outcome = hub_pb2.BankOutcome
Reason = hub_pb2.FailureReason
PARTIAL: Final = model_pb2.RESPONSE_STATUS_PARTIAL
#: A bank's answer to a request it does not offer.
NOT_OFFERED: Final = "ACC-012"

#: Transaction pages a bank may send ahead of what the agency has taken, per query and bank
#: (BankRequest.page_window): what bounds the hub's buffer for a slow reader.
PAGE_WINDOW: Final = 16
#: Credit goes back to the bank in steps of this many pages taken.
CREDIT_STEP: Final = 4

#: Emits one event of one query to the egress; the callback, if any, runs once the event has
#: been handed to the agency's stream.
Emit = Callable[[QueryContext, hub_pb2.QueryEvent, Callable[[], None] | None], None]


def request_context(query: hub_pb2.Query) -> bank_pb2.RequestContext:
    """The request context every bank call of the query carries (DSOP.md §2)."""
    context = bank_pb2.RequestContext(
        account_info_request_id=query.case_id,
        correlation_id=query.correlation_id,
        legal_mandate=query.legal_mandate,
        additional_reference_id_type=query.additional_reference_id_type,
    )
    if query.HasField("requester_id"):
        context.requester_id = query.requester_id
    if query.HasField("additional_reference_id"):
        context.additional_reference_id = query.additional_reference_id
    return context


def _error(status: grpc.StatusCode, code: str, message: str) -> model_pb2.Error:
    return model_pb2.Error(status=status.value[0], code=code, message=message)


def _malformed(problem: str) -> model_pb2.Error:
    return _error(grpc.StatusCode.INTERNAL, "ACC-500", f"malformed answer from the bank: {problem}")


_NOT_REGISTERED: Final = _error(
    grpc.StatusCode.UNAVAILABLE, "ACC-100", "the bank has no endpoint in the hub's registry"
)


class FanoutStage:
    """Starts every bank call of every query in the batch."""

    def __init__(self, banks: Mapping[str, ResilientBank], emit: Emit) -> None:
        self.banks = banks
        self.emit = emit

    async def __call__(self, batch: Sequence[QueryContext]) -> list[QueryContext]:
        for ctx in batch:
            self.start(ctx)
        return list(batch)

    def start(self, ctx: QueryContext) -> None:
        ctx.request_context = request_context(ctx.query)
        ctx.outstanding = len(ctx.banks)
        if not ctx.banks:
            self._summarize(ctx)
            return
        call_type = _CALLS[ctx.query.operation]
        for bank_id in ctx.banks:
            bank = self.banks.get(bank_id)
            if bank is None:
                self.bank_failed(
                    ctx, bank_id, _NOT_REGISTERED, Reason.FAILURE_REASON_NOT_REGISTERED
                )
            else:
                call_type(self, ctx, bank).start()

    # -- what calls report ---------------------------------------------------------------

    def result(
        self, ctx: QueryContext, bank_id: str
    ) -> tuple[hub_pb2.QueryEvent, hub_pb2.BankResult]:
        """A new result event for the bank, to fill in and pass to :meth:`deliver`."""
        event = hub_pb2.QueryEvent()
        result = event.result
        result.query_id = ctx.query.query_id
        result.bank_id = bank_id
        return event, result

    def deliver(
        self,
        ctx: QueryContext,
        event: hub_pb2.QueryEvent,
        *,
        final: bool = True,
        on_sent: Callable[[], None] | None = None,
    ) -> None:
        if ctx.cancelled:
            return
        self.emit(ctx, event, on_sent)
        if final:
            result = event.result
            error = result.error if result.HasField("error") else None
            self._bank_done(ctx, BankOutcome(result.bank_id, result.outcome, error, result.reason))

    def bank_failed(
        self, ctx: QueryContext, bank_id: str, error: model_pb2.Error, reason: int
    ) -> None:
        event, result = self.result(ctx, bank_id)
        result.outcome = Outcome.BANK_OUTCOME_FAILED
        result.reason = reason  # type: ignore[assignment]
        result.error.CopyFrom(error)
        self.deliver(ctx, event)

    def _bank_done(self, ctx: QueryContext, outcome: BankOutcome) -> None:
        ctx.outcomes.append(outcome)
        ctx.outstanding -= 1
        if ctx.outstanding == 0:
            self._summarize(ctx)

    def _summarize(self, ctx: QueryContext) -> None:
        ctx.calls.clear()
        self.emit(ctx, summary(ctx), None)


def summary(ctx: QueryContext) -> hub_pb2.QueryEvent:
    """The last event of a query: per-bank outcomes, counts, elapsed time, any refusal."""
    event = hub_pb2.QueryEvent()
    s = event.summary
    s.query_id = ctx.query.query_id
    s.elapsed_us = (time.monotonic_ns() - ctx.received_ns) // 1000
    if ctx.refusal is not None:
        s.error.CopyFrom(ctx.refusal.to_proto())
        return event
    s.banks_asked = len(ctx.banks)
    failed = 0
    for outcome in ctx.outcomes:
        status = s.banks.add(bank_id=outcome.bank_id, outcome=outcome.outcome)
        if outcome.error is not None:
            status.error.CopyFrom(outcome.error)
            status.reason = outcome.reason  # type: ignore[assignment]
            failed += 1
    s.banks_failed = failed
    s.banks_answered = len(ctx.outcomes) - failed
    return event


class _Call:
    """One bank's part of one query."""

    __slots__ = ("bank", "bank_id", "ctx", "fanout")

    def __init__(self, fanout: FanoutStage, ctx: QueryContext, bank: ResilientBank) -> None:
        self.fanout = fanout
        self.ctx = ctx
        self.bank = bank
        self.bank_id = bank.bank_id

    def start(self) -> None:
        raise NotImplementedError

    def call(self, fill: Fill, handler: Callable[[bank_pb2.BankResponse, int], None]) -> Call:
        call = self.bank.call(fill, handler, self.ctx.deadline)
        self.ctx.calls.append(call)
        return call

    def fail(self, response: bank_pb2.BankResponse, reason: int) -> None:
        self.fanout.bank_failed(self.ctx, self.bank_id, response.error, reason)

    def malformed(self, problem: str) -> None:
        self.fanout.bank_failed(
            self.ctx, self.bank_id, _malformed(problem), Reason.FAILURE_REASON_MALFORMED
        )

    def fill_accounts(self, request: bank_pb2.BankRequest) -> None:
        self.fill_listing(request.accounts)

    def fill_listing(self, body: bank_pb2.ListAccountsRequest) -> None:
        ctx = self.ctx
        query = ctx.query
        assert ctx.request_context is not None
        body.context.CopyFrom(ctx.request_context)
        body.party_id = query.party_id
        body.only_primary_owner = query.only_primary_owner
        body.period.CopyFrom(query.period)

    def accounts(
        self, response: bank_pb2.BankResponse, reason: int
    ) -> bank_pb2.ListAccountsResponse | None:
        """The accounts list of an answer; None when the bank's part failed here (an error,
        the wrong kind of answer, or accounts of another bank or party)."""
        if response.HasField("error"):
            self.fail(response, reason)
            return None
        if not response.HasField("accounts"):
            self.malformed("expected accounts")
            return None
        problem = self.check_accounts(response.accounts.accounts)
        if problem is not None:
            self.malformed(problem)
            return None
        return response.accounts

    def check_accounts(
        self, accounts: Iterable[model_pb2.Account | model_pb2.AccountDetail]
    ) -> str | None:
        """What is wrong with accounts (listed, or with balances) beyond their shape: another
        bank's or another party's accounts."""
        query = self.ctx.query
        for account in accounts:
            servicer = account.servicer.identifier.value
            if servicer and servicer != self.bank_id:
                return "accounts of another bank"
            owner = account.primary_owner.identifier.value
            if query.only_primary_owner and owner and owner != query.party_id:
                return "accounts of another party"
        return None


class _Accounts(_Call):
    __slots__ = ()

    def start(self) -> None:
        self.call(self.fill_accounts, self.on_response)

    def on_response(self, response: bank_pb2.BankResponse, reason: int) -> None:
        accounts = self.accounts(response, reason)
        if accounts is None:
            return
        event, result = self.fanout.result(self.ctx, self.bank_id)
        result.outcome = _outcome(accounts.response_details)
        result.accounts.CopyFrom(accounts)
        self.fanout.deliver(self.ctx, event)


def _outcome(details: model_pb2.ResponseDetails) -> hub_pb2.BankOutcome.ValueType:
    return (
        Outcome.BANK_OUTCOME_PARTIAL if details.status == PARTIAL else Outcome.BANK_OUTCOME_COMPLETE
    )


class _Single(_Call):
    """Account details, cards or roles: one request, one answer."""

    __slots__ = ()
    field: str = ""

    def start(self) -> None:
        self.call(self.fill_account, self.on_response)

    def fill_account(self, request: bank_pb2.BankRequest) -> None:
        ctx = self.ctx
        body = getattr(request, self.field)
        assert ctx.request_context is not None
        body.context.CopyFrom(ctx.request_context)
        body.account_reference = ctx.query.account_reference
        body.period.CopyFrom(ctx.query.period)

    def on_response(self, response: bank_pb2.BankResponse, reason: int) -> None:
        if response.HasField("error"):
            self.fail(response, reason)
            return
        if response.WhichOneof("result") != self.field:
            self.malformed(f"expected {self.field}")
            return
        payload = getattr(response, self.field)
        if self.field == "account_details" and (
            payload.account.account_reference not in ("", self.ctx.query.account_reference)
        ):
            self.malformed("details of another account")
            return
        event, result = self.fanout.result(self.ctx, self.bank_id)
        result.outcome = _outcome(payload.response_details)
        getattr(result, self.field).CopyFrom(payload)
        self.fanout.deliver(self.ctx, event)


class _Details(_Single):
    __slots__ = ()
    field = "account_details"


class _Cards(_Single):
    __slots__ = ()
    field = "cards"


class _Roles(_Single):
    __slots__ = ()
    field = "roles"


class _Transactions(_Single):
    """Pages stream through as they arrive; the last one ends the bank's part.

    Paced: the bank may send PAGE_WINDOW pages ahead of what the agency's stream has taken,
    and gets credit back as pages are taken. A slow reader thus slows only its own query's
    pages, never the bank's Exchange stream that other queries share.
    """

    __slots__ = ("credit", "handle", "partial", "taken")
    field = "transactions"

    def start(self) -> None:
        self.partial = False
        #: Pages the bank may still send; pages taken by the agency not yet credited back.
        self.credit = PAGE_WINDOW
        self.taken = 0
        self.handle = self.call(self.fill_account, self.on_response)

    def fill_account(self, request: bank_pb2.BankRequest) -> None:
        super().fill_account(request)
        request.page_window = PAGE_WINDOW

    def on_sent(self) -> None:
        self.taken += 1
        if self.taken >= CREDIT_STEP:
            self.credit += self.taken
            self.handle.credit(self.taken)
            self.taken = 0

    def on_response(self, response: bank_pb2.BankResponse, reason: int) -> None:
        if response.HasField("error"):
            self.fail(response, reason)
            return
        if not response.HasField("transactions"):
            self.malformed("expected transactions")
            return
        if response.has_more:
            if not self.credit:
                self.handle.cancel()  # tells the bank; later pages are not delivered
                self.malformed("more pages than the hub's credit allowed")
                return
            self.credit -= 1
            if not self.credit:
                self.handle.hold()
        page = response.transactions
        self.partial |= page.response_details.status == PARTIAL
        event, result = self.fanout.result(self.ctx, self.bank_id)
        result.outcome = (
            Outcome.BANK_OUTCOME_PARTIAL if self.partial else Outcome.BANK_OUTCOME_COMPLETE
        )
        result.has_more = response.has_more
        result.transactions.CopyFrom(page)
        if response.has_more:
            self.fanout.deliver(self.ctx, event, final=False, on_sent=self.on_sent)
        else:
            self.fanout.deliver(self.ctx, event)


class _AccountsWithBalances(_Call):
    """Accounts, then details for every account; one result when all details are in.

    A bank that offers it is asked in one request (``BankRequest.accounts_with_balances``:
    the bank composes the answer); one that answers ACC-012 is remembered and asked for the
    accounts and then each account's details, composed here by the same rules
    (:mod:`providers.balances`). Either way a details failure fails the bank's part as a
    whole: the agency needs every balance.
    """

    __slots__ = ("composed", "failed", "waiting")

    def start(self) -> None:
        if self.bank.client.composite_balances:
            self.call(self.fill_composite, self.on_composite)
        else:
            self.call(self.fill_accounts, self.on_accounts)

    def fill_composite(self, request: bank_pb2.BankRequest) -> None:
        self.fill_listing(request.accounts_with_balances)

    def on_composite(self, response: bank_pb2.BankResponse, reason: int) -> None:
        if response.HasField("error"):
            if response.error.code == NOT_OFFERED:
                # Not offered by this bank (its own Exchange, an older kit): ask it step by
                # step from now on.
                self.bank.client.composite_balances = False
                self.call(self.fill_accounts, self.on_accounts)
                return
            self.fail(response, reason)
            return
        if not response.HasField("accounts_with_balances"):
            self.malformed("expected accounts_with_balances")
            return
        payload = response.accounts_with_balances
        problem = self.check_accounts(payload.accounts)
        if problem is not None:
            self.malformed(problem)
            return
        self._deliver(payload)

    def on_accounts(self, response: bank_pb2.BankResponse, reason: int) -> None:
        accounts = self.accounts(response, reason)
        if accounts is None:
            return
        self.composed = BalancesAnswer(accounts)
        self.failed = False
        self.waiting = len(self.composed.wanted)
        for index, reference in self.composed.wanted:
            step = _DetailsStep(self, index, reference)
            self.call(step.fill, step.on_response)
        if self.waiting == 0:
            self._deliver(self.composed.answer())

    def on_details(self, index: int, response: bank_pb2.BankResponse, reason: int) -> None:
        if self.failed:
            return
        if response.HasField("error"):
            self.failed = True
            self.fail(response, reason)
            return
        if not response.HasField("account_details"):
            self.failed = True
            self.malformed("expected account_details")
            return
        self.composed.add(index, response.account_details)
        self.waiting -= 1
        if self.waiting == 0:
            self._deliver(self.composed.answer())

    def _deliver(self, payload: bank_pb2.ListAccountsWithBalancesResponse) -> None:
        event, result = self.fanout.result(self.ctx, self.bank_id)
        result.outcome = _outcome(payload.response_details)
        # The bank's message and the agency's are wire-identical (see bank.proto).
        result.accounts_with_balances.MergeFromString(payload.SerializeToString())
        self.fanout.deliver(self.ctx, event)


class _DetailsStep:
    """One account's details request inside accounts-with-balances."""

    __slots__ = ("index", "parent", "reference")

    def __init__(self, parent: _AccountsWithBalances, index: int, reference: str) -> None:
        self.parent = parent
        self.index = index
        self.reference = reference

    def fill(self, request: bank_pb2.BankRequest) -> None:
        ctx = self.parent.ctx
        body = request.account_details
        assert ctx.request_context is not None
        body.context.CopyFrom(ctx.request_context)
        body.account_reference = self.reference
        body.period.CopyFrom(ctx.query.period)

    def on_response(self, response: bank_pb2.BankResponse, reason: int) -> None:
        if response.HasField("account_details"):
            reference = response.account_details.account.account_reference
            if reference and reference != self.reference:
                if not self.parent.failed:
                    self.parent.failed = True
                    self.parent.malformed("details of another account")
                return
        self.parent.on_details(self.index, response, reason)


_CALLS: Final[Mapping[int, type[_Call]]] = {
    Op.OPERATION_ACCOUNTS: _Accounts,
    Op.OPERATION_ACCOUNT_DETAILS: _Details,
    Op.OPERATION_TRANSACTIONS: _Transactions,
    Op.OPERATION_CARDS: _Cards,
    Op.OPERATION_ROLES: _Roles,
    Op.OPERATION_ACCOUNTS_WITH_BALANCES: _AccountsWithBalances,
}
