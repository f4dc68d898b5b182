"""Stage: fan each query out to its banks; turn bank answers into events as they arrive.

For every (query, bank) pair a small call object drives the operation over the bank's
:class:`~hub.resilience.ResilientBank`: one request for most operations (accounts with
balances included: the bank composes them), pages for transactions, and for a bank that does
not offer accounts with balances in one request, the accounts list followed by one details
request per account. No task per query: answers arrive as callbacks from the bank's reader, and
every event goes to the egress, which batches them for the outbound stages. Each bank's part
ends exactly once: complete, partial (the bank said more exists offline) or failed with a
reason.

Bank answers arrive as views (hub.wire): a payload stays the bytes the bank sent, and only
the few fields the checks here need are parsed, through small subset types; the egress
filters and frames the bytes. The request every bank of a query gets is encoded once per
query.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import grpc
from google.protobuf.message import Message

from dsop.controlinfo.v2 import bank_pb2, model_pb2
from dsop.hub.v1 import hub_pb2
from hub import respond, wire
from hub.context import BankOutcome, QueryContext
from hub.resilience import Call, Fill, ResilientBank
from hub.respond import Outgoing
from providers.balances import BalancesAnswer

Op = hub_pb2.Operation
Outcome = hub_pb2.BankOutcome
Reason = hub_pb2.FailureReason
# Module constants: an enum wrapper's attribute lookup costs more than the code around it.
COMPLETE: Final = hub_pb2.BANK_OUTCOME_COMPLETE
PARTIAL_OUTCOME: Final = hub_pb2.BANK_OUTCOME_PARTIAL
FAILED: Final = hub_pb2.BANK_OUTCOME_FAILED
PARTIAL: Final = model_pb2.RESPONSE_STATUS_PARTIAL
#: A bank's answer to a request it does not offer.
NOT_OFFERED: Final = "ACC-012"

#: Transaction pages a bank may send ahead of what the agency has taken, per query and bank
#: (BankRequest.page_window): what bounds the hub's buffer for a slow reader.
PAGE_WINDOW: Final = 16
#: Credit goes back to the bank in steps of this many pages taken.
CREDIT_STEP: Final = 4

#: Emits one event of one query to the egress.
Emit = Callable[[Outgoing], None]
#: A bank's outcome as the audit log names it.
_DISCLOSED: Final = {
    Outcome.BANK_OUTCOME_COMPLETE: respond.COMPLETE,
    Outcome.BANK_OUTCOME_PARTIAL: respond.PARTIAL,
    Outcome.BANK_OUTCOME_FAILED: respond.FAILED,
}

# What the checks read of a payload: the status, and whose accounts at which bank.
_OWNERS: Final[wire.Keep] = {
    "servicer": {"identifier": {"value": None}},
    "primary_owner": {"identifier": {"value": None}},
}
_STATUS: Final[wire.Keep] = {"status": None}
_LISTING_CHECK: Final = wire.subset_type(
    bank_pb2.ListAccountsResponse.DESCRIPTOR,
    {"response_details": _STATUS, "accounts": _OWNERS},
    "listing_check",
)
_BALANCES_CHECK: Final = wire.subset_type(
    bank_pb2.ListAccountsWithBalancesResponse.DESCRIPTOR,
    {"response_details": _STATUS, "accounts": _OWNERS},
    "balances_check",
)
#: Account details, cards, roles and transaction pages: the status (and for details, which
#: account they are about).
_SINGLE_CHECK: Final = {
    "account_details": wire.subset_type(
        bank_pb2.GetAccountDetailsResponse.DESCRIPTOR,
        {"response_details": _STATUS, "account": {"account_reference": None}},
        "details_check",
    ),
    **{
        kind: wire.subset_type(
            wire.PAYLOAD_TYPES[kind].DESCRIPTOR, {"response_details": _STATUS}, f"{kind}_check"
        )
        for kind in ("transactions", "cards", "roles")
    },
}


@functools.lru_cache(maxsize=4096)
def _servicer_field(bank_id: str) -> bytes:
    """An account's servicer field naming the bank (Account and AccountDetail alike)."""
    account = model_pb2.Account()
    account.servicer.identifier.value = bank_id
    return account.SerializeToString()


def _owned_entry(check: type[Message], bank_id: str, party_id: str) -> bytes:
    """One account entry of a check type's list, of the bank and owned by the party."""
    owner = wire.frame(_ROLE_IDENTIFIER, wire.frame(_IDENTIFIER_VALUE, party_id.encode()))
    account = _servicer_field(bank_id) + wire.frame(_OWNER_FIELDS[check], owner)
    return wire.frame(_ACCOUNTS_FIELD, account)


_ACCOUNTS_FIELD: Final = bank_pb2.ListAccountsResponse.ACCOUNTS_FIELD_NUMBER
_ROLE_IDENTIFIER: Final = model_pb2.AccountRole.IDENTIFIER_FIELD_NUMBER
_IDENTIFIER_VALUE: Final = model_pb2.Identifier.VALUE_FIELD_NUMBER
_OWNER_FIELDS: Final = {
    _LISTING_CHECK: model_pb2.Account.PRIMARY_OWNER_FIELD_NUMBER,
    _BALANCES_CHECK: model_pb2.AccountDetail.PRIMARY_OWNER_FIELD_NUMBER,
    bank_pb2.ListAccountsResponse: model_pb2.Account.PRIMARY_OWNER_FIELD_NUMBER,
}
_STATUS_BYTES: Final[dict[tuple[type[Message], int], bytes]] = {}


def _status_of(check: type[Message], view: Any) -> bytes:
    """How a check type encodes the view's status (its response details) alone."""
    if not view.HasField("response_details"):
        return b""
    status = view.response_details.status
    key = (check, status)
    data = _STATUS_BYTES.get(key)
    if data is None:
        message: Any = check()
        message.response_details.SetInParent()
        message.response_details.status = status
        data = _STATUS_BYTES[key] = message.SerializeToString()
    return data


def request_body(query: hub_pb2.Query) -> bytes:
    """The request every bank of the query gets, encoded: the request context of DSOP.md §2
    and the query's party or account, owner rule and period. Accounts (with or without
    balances) are a ListAccountsRequest; the per-account APIs' requests share one layout
    (context, accountReference, period), GetAccountDetailsRequest's. Written field by field
    (hub.wire): setting the same fields on a message costs several times more."""
    frame = wire.frame
    context = (
        _text(_CONTEXT_CASE, query.case_id)
        + _text(_CONTEXT_CORRELATION, query.correlation_id)
        + _text(_CONTEXT_MANDATE, query.legal_mandate)
    )
    if query.HasField("requester_id"):
        context += frame(_CONTEXT_REQUESTER, query.requester_id.encode())
    if query.HasField("additional_reference_id"):
        context += frame(_CONTEXT_REFERENCE, query.additional_reference_id.encode())
    context += wire.varint_field(_CONTEXT_REFERENCE_TYPE, query.additional_reference_id_type)
    period = query.period.SerializeToString()
    if query.operation in _LISTINGS:
        return (
            frame(_LISTING_CONTEXT, context)
            + _text(_LISTING_PARTY, query.party_id)
            + (_OWNER_ONLY if query.only_primary_owner else b"")
            + frame(_LISTING_PERIOD, period)
        )
    return (
        frame(_ACCOUNT_CONTEXT, context)
        + _text(_ACCOUNT_REFERENCE, query.account_reference)
        + frame(_ACCOUNT_PERIOD, period)
    )


def _text(number: int, value: str) -> bytes:
    """A proto3 string field (left out when empty)."""
    return wire.frame(number, value.encode()) if value else b""


_LISTINGS: Final = frozenset({Op.OPERATION_ACCOUNTS, Op.OPERATION_ACCOUNTS_WITH_BALANCES})
_CONTEXT_CASE: Final = bank_pb2.RequestContext.ACCOUNT_INFO_REQUEST_ID_FIELD_NUMBER
_CONTEXT_CORRELATION: Final = bank_pb2.RequestContext.CORRELATION_ID_FIELD_NUMBER
_CONTEXT_MANDATE: Final = bank_pb2.RequestContext.LEGAL_MANDATE_FIELD_NUMBER
_CONTEXT_REQUESTER: Final = bank_pb2.RequestContext.REQUESTER_ID_FIELD_NUMBER
_CONTEXT_REFERENCE: Final = bank_pb2.RequestContext.ADDITIONAL_REFERENCE_ID_FIELD_NUMBER
_CONTEXT_REFERENCE_TYPE: Final = bank_pb2.RequestContext.ADDITIONAL_REFERENCE_ID_TYPE_FIELD_NUMBER
_LISTING_CONTEXT: Final = bank_pb2.ListAccountsRequest.CONTEXT_FIELD_NUMBER
_LISTING_PARTY: Final = bank_pb2.ListAccountsRequest.PARTY_ID_FIELD_NUMBER
_OWNER_ONLY: Final = wire.varint_field(
    bank_pb2.ListAccountsRequest.ONLY_PRIMARY_OWNER_FIELD_NUMBER, 1
)
_LISTING_PERIOD: Final = bank_pb2.ListAccountsRequest.PERIOD_FIELD_NUMBER
_ACCOUNT_CONTEXT: Final = bank_pb2.GetAccountDetailsRequest.CONTEXT_FIELD_NUMBER
_ACCOUNT_REFERENCE: Final = bank_pb2.GetAccountDetailsRequest.ACCOUNT_REFERENCE_FIELD_NUMBER
_ACCOUNT_PERIOD: Final = bank_pb2.GetAccountDetailsRequest.PERIOD_FIELD_NUMBER


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
        ctx.request_body = request_body(ctx.query)
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

    def deliver(
        self,
        ctx: QueryContext,
        bank_id: str,
        kind: str,
        payload: bytes,
        outcome: hub_pb2.BankOutcome.ValueType,
        *,
        has_more: bool = False,
        on_sent: Callable[[], None] | None = None,
    ) -> None:
        """Emits a bank's result: ``payload``, the encoded answer of ``kind`` (a BankResult
        payload field); the last result (``has_more`` false) ends the bank's part."""
        if ctx.cancelled:
            return
        self.emit(
            Outgoing(
                ctx,
                _DISCLOSED[outcome],
                bank_id,
                kind=kind,
                payload=payload,
                result_outcome=outcome,
                has_more=has_more,
                on_sent=on_sent,
            )
        )
        if not has_more:
            self._bank_done(ctx, BankOutcome(bank_id, outcome))

    def bank_failed(
        self, ctx: QueryContext, bank_id: str, error: model_pb2.Error, reason: int
    ) -> None:
        if ctx.cancelled:
            return
        self.emit(
            Outgoing(
                ctx,
                respond.FAILED,
                bank_id,
                kind="error",
                payload=error.SerializeToString(),
                result_outcome=FAILED,
                reason=reason,
                error_code=error.code,
            )
        )
        self._bank_done(ctx, BankOutcome(bank_id, FAILED, error, reason))

    def _bank_done(self, ctx: QueryContext, outcome: BankOutcome) -> None:
        ctx.outcomes.append(outcome)
        ctx.outstanding -= 1
        if ctx.outstanding == 0:
            self._summarize(ctx)

    def _summarize(self, ctx: QueryContext) -> None:
        ctx.calls.clear()
        self.emit(last_event(ctx))


def last_event(ctx: QueryContext) -> Outgoing:
    """The query's summary (or its refusal), on its way out."""
    refusal = ctx.refusal
    if refusal is not None:
        return Outgoing(ctx, respond.REFUSED, summary=summary(ctx), error_code=refusal.code)
    return Outgoing(ctx, respond.SUMMARY, summary=summary(ctx))


def summary(ctx: QueryContext) -> hub_pb2.QuerySummary:
    """The last event of a query: per-bank outcomes, counts, elapsed time, any refusal."""
    s = hub_pb2.QuerySummary(
        query_id=ctx.query.query_id,
        elapsed_us=(time.monotonic_ns() - ctx.received_ns) // 1000,
    )
    if ctx.refusal is not None:
        s.error.CopyFrom(ctx.refusal.to_proto())
        return s
    s.banks_asked = len(ctx.banks)
    failed = 0
    banks = s.banks
    for outcome in ctx.outcomes:
        status = banks.add(bank_id=outcome.bank_id, outcome=outcome.outcome)
        if outcome.error is not None:
            status.error.CopyFrom(outcome.error)
            status.reason = outcome.reason  # type: ignore[assignment]
            failed += 1
    s.banks_failed = failed
    s.banks_answered = len(ctx.outcomes) - failed
    return s


def _outcome(details: model_pb2.ResponseDetails) -> hub_pb2.BankOutcome.ValueType:
    return PARTIAL_OUTCOME if details.status == PARTIAL else COMPLETE


#: A bank's answer as the hub reads it (hub.wire.BankResponseView).
Answer = Any


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

    def call(self, fill: Fill, handler: Callable[[Answer, int], None]) -> Call:
        call = self.bank.call(fill, handler, self.ctx.deadline)
        self.ctx.calls.append(call)
        return call

    def fail(self, response: Answer, reason: int) -> None:
        self.fanout.bank_failed(self.ctx, self.bank_id, response.error, reason)

    def malformed(self, problem: str) -> None:
        self.fanout.bank_failed(
            self.ctx, self.bank_id, _malformed(problem), Reason.FAILURE_REASON_MALFORMED
        )

    def deliver(self, kind: str, payload: bytes, outcome: hub_pb2.BankOutcome.ValueType) -> None:
        self.fanout.deliver(self.ctx, self.bank_id, kind, payload, outcome)

    def fill_accounts(self, request: bank_pb2.BankRequest) -> None:
        request.accounts.MergeFromString(self.ctx.request_body)

    def expect(self, response: Answer, reason: int, kind: str) -> bytes | None:
        """The payload of an answer of ``kind``; None when the bank's part failed here (an
        error, or the wrong kind of answer)."""
        got = response.WhichOneof("result")
        if got == kind:
            data: bytes = getattr(response, kind)
            return data
        if got == "error":
            self.fail(response, reason)
        else:
            self.malformed(f"expected {kind}")
        return None

    def check_accounts(
        self, accounts: Iterable[model_pb2.Account | model_pb2.AccountDetail]
    ) -> str | None:
        """What is wrong with accounts (listed, or with balances) beyond their shape: another
        bank's or another party's accounts."""
        query = self.ctx.query
        bank_id = self.bank_id
        owner_only = query.only_primary_owner
        party = query.party_id
        for account in accounts:
            servicer = account.servicer.identifier.value
            if servicer and servicer != bank_id:
                return "accounts of another bank"
            if owner_only:
                owner = account.primary_owner.identifier.value
                if owner and owner != party:
                    return "accounts of another party"
        return None

    def checked(self, data: bytes, check: type[Message]) -> Any:
        """The checked fields of an accounts list (or accounts with balances); None when the
        accounts are another bank's or another party's (the part failed here).

        The usual answer is decided without looking at each account: through the check type
        (status, servicer and owner only), every account at this bank owned by the party
        encodes the same, so such an answer encodes as its status and that entry repeated.
        Anything else is looked at account by account."""
        view: Any = check.FromString(data)
        view.DiscardUnknownFields()  # what the check type does not know is not compared
        entry = _owned_entry(check, self.bank_id, self.ctx.query.party_id)
        if view.SerializeToString() == _status_of(check, view) + entry * len(view.accounts):
            return view
        problem = self.check_accounts(view.accounts)
        if problem is not None:
            self.malformed(problem)
            return None
        return view


class _Accounts(_Call):
    __slots__ = ()

    def start(self) -> None:
        self.call(self.fill_accounts, self.on_response)

    def on_response(self, response: Answer, reason: int) -> None:
        data = self.expect(response, reason, "accounts")
        if data is None:
            return
        view = self.checked(data, _LISTING_CHECK)
        if view is not None:
            self.deliver("accounts", data, _outcome(view.response_details))


class _Single(_Call):
    """Account details, cards or roles: one request, one answer."""

    __slots__ = ()
    field: str = ""

    def start(self) -> None:
        self.call(self.fill_account, self.on_response)

    def fill_account(self, request: bank_pb2.BankRequest) -> None:
        getattr(request, self.field).MergeFromString(self.ctx.request_body)

    def on_response(self, response: Answer, reason: int) -> None:
        data = self.expect(response, reason, self.field)
        if data is None:
            return
        view: Any = _SINGLE_CHECK[self.field].FromString(data)
        if self.field == "account_details" and (
            view.account.account_reference not in ("", self.ctx.query.account_reference)
        ):
            self.malformed("details of another account")
            return
        self.deliver(self.field, data, _outcome(view.response_details))


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

    def on_response(self, response: Answer, reason: int) -> None:
        data = self.expect(response, reason, "transactions")
        if data is None:
            return
        has_more = response.has_more
        if has_more:
            if not self.credit:
                self.handle.cancel()  # tells the bank; later pages are not delivered
                self.malformed("more pages than the hub's credit allowed")
                return
            self.credit -= 1
            if not self.credit:
                self.handle.hold()
        view: Any = _SINGLE_CHECK["transactions"].FromString(data)
        self.partial |= view.response_details.status == PARTIAL
        self.fanout.deliver(
            self.ctx,
            self.bank_id,
            "transactions",
            data,
            PARTIAL_OUTCOME if self.partial else COMPLETE,
            has_more=has_more,
            on_sent=self.on_sent if has_more else None,
        )


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
        request.accounts_with_balances.MergeFromString(self.ctx.request_body)

    def on_composite(self, response: Answer, reason: int) -> None:
        if response.WhichOneof("result") == "error" and response.error.code == NOT_OFFERED:
            # Not offered by this bank (its own Exchange, an older kit): ask it step by step
            # from now on.
            self.bank.client.composite_balances = False
            self.call(self.fill_accounts, self.on_accounts)
            return
        data = self.expect(response, reason, "accounts_with_balances")
        if data is None:
            return
        view = self.checked(data, _BALANCES_CHECK)
        if view is not None:
            self.deliver("accounts_with_balances", data, _outcome(view.response_details))

    def on_accounts(self, response: Answer, reason: int) -> None:
        data = self.expect(response, reason, "accounts")
        if data is None:
            return
        listing = self.checked(data, bank_pb2.ListAccountsResponse)
        if listing is None:
            return
        self.composed = BalancesAnswer(listing)
        self.failed = False
        self.waiting = len(self.composed.wanted)
        for index, reference in self.composed.wanted:
            step = _DetailsStep(self, index, reference)
            self.call(step.fill, step.on_response)
        if self.waiting == 0:
            self._finish()

    def on_details(self, index: int, details: bank_pb2.GetAccountDetailsResponse) -> None:
        self.composed.add(index, details)
        self.waiting -= 1
        if self.waiting == 0:
            self._finish()

    def _finish(self) -> None:
        payload = self.composed.answer()
        self.deliver(
            "accounts_with_balances",
            payload.SerializeToString(),
            _outcome(payload.response_details),
        )


class _DetailsStep:
    """One account's details request inside accounts-with-balances asked step by step."""

    __slots__ = ("index", "parent", "reference")

    def __init__(self, parent: _AccountsWithBalances, index: int, reference: str) -> None:
        self.parent = parent
        self.index = index
        self.reference = reference

    def fill(self, request: bank_pb2.BankRequest) -> None:
        listing = bank_pb2.ListAccountsRequest.FromString(self.parent.ctx.request_body)
        body = request.account_details
        body.context.CopyFrom(listing.context)
        body.account_reference = self.reference
        body.period.CopyFrom(listing.period)

    def on_response(self, response: Answer, reason: int) -> None:
        parent = self.parent
        if parent.failed:
            return
        data = parent.expect(response, reason, "account_details")
        if data is None:
            parent.failed = True
            return
        details = bank_pb2.GetAccountDetailsResponse.FromString(data)
        reference = details.account.account_reference
        if reference and reference != self.reference:
            parent.failed = True
            parent.malformed("details of another account")
            return
        parent.on_details(self.index, details)


_CALLS: Final[Mapping[int, type[_Call]]] = {
    Op.OPERATION_ACCOUNTS: _Accounts,
    Op.OPERATION_ACCOUNT_DETAILS: _Details,
    Op.OPERATION_TRANSACTIONS: _Transactions,
    Op.OPERATION_CARDS: _Cards,
    Op.OPERATION_ROLES: _Roles,
    Op.OPERATION_ACCOUNTS_WITH_BALANCES: _AccountsWithBalances,
}
