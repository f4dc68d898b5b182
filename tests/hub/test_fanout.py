"""The fan-out against a scripted bank: what each bank is asked, and which answers it takes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from dsop.controlinfo.v2 import bank_pb2, model_pb2
from dsop.hub.v1 import hub_pb2
from hub.context import QueryContext
from hub.fanout import FanoutStage, request_body
from hub.resilience import CallPolicy, Deadlines, ResilientBank
from hub.respond import Outgoing, StreamSink
from hub.wire import view_of

Op = hub_pb2.Operation
BANK = "910000001"
PARTY = "41018012345"
CONTEXT = {
    "case_id": "0b3c7a4e-6f1d-4a55-9d6b-2d8f7a1f0c11",
    "correlation_id": "8e0f3b0a-3c2d-4b9e-8f53-1c2b3d4e5f60",
    "legal_mandate": "FI-Utlegg-Test",
}


@pytest.mark.parametrize(
    "fields",
    [
        {"operation": Op.OPERATION_ACCOUNTS_WITH_BALANCES, "party_id": PARTY,
         "only_primary_owner": True},
        {"operation": Op.OPERATION_ACCOUNTS, "party_id": PARTY, "requester_id": "sb-1",
         "period": {"from_date": "2024-01-01", "to_date": "2024-12-31"}},
        {"operation": Op.OPERATION_ACCOUNTS, "party_id": PARTY, "requester_id": "",
         "additional_reference_id": "a.b.c",
         "additional_reference_id_type": bank_pb2.ADDITIONAL_REFERENCE_ID_TYPE_POL1},
        {"operation": Op.OPERATION_TRANSACTIONS, "account_reference": "ref-1",
         "period": {"from_date": "2024-01-01"}},
    ],
)  # fmt: skip
def test_the_request_body_is_the_query_in_the_bank_apis_terms(fields: dict[str, Any]) -> None:
    query = hub_pb2.Query(**CONTEXT, **fields)
    context = bank_pb2.RequestContext(
        account_info_request_id=query.case_id,
        correlation_id=query.correlation_id,
        legal_mandate=query.legal_mandate,
        additional_reference_id_type=query.additional_reference_id_type,
    )
    for name in ("requester_id", "additional_reference_id"):
        if query.HasField(name):  # optional: an empty value given is still given
            setattr(context, name, getattr(query, name))
    expected: Any
    if query.account_reference:
        expected = bank_pb2.GetAccountDetailsRequest(
            context=context, account_reference=query.account_reference, period=query.period
        )
    else:
        expected = bank_pb2.ListAccountsRequest(
            context=context,
            party_id=query.party_id,
            only_primary_owner=query.only_primary_owner,
            period=query.period,
        )
    assert type(expected).FromString(request_body(query)) == expected
    assert type(expected).FromString(request_body(query)).context.HasField("requester_id") == (
        query.HasField("requester_id")
    )


class ScriptedBank:
    """A bank client whose answers the test gives by hand."""

    bank_id = BANK
    composite_balances = True

    def __init__(self) -> None:
        self.requests: list[bank_pb2.BankRequest] = []
        self.handlers: dict[int, Callable[[Any], None]] = {}

    def request(self, on_response: Callable[[Any], None]) -> bank_pb2.BankRequest:
        request = bank_pb2.BankRequest(id=len(self.requests) + 1)
        self.requests.append(request)
        self.handlers[request.id] = on_response
        return request

    def answer(self, response: bank_pb2.BankResponse) -> None:
        self.handlers[response.id](view_of(response))

    def cancel(self, request_id: int) -> None:
        return None

    def credit(self, request_id: int, pages: int) -> None:
        return None

    def in_flight(self) -> int:
        return 0

    def stalled(self, since: float) -> None:
        return None

    async def close(self) -> None:
        return None


def _detail(servicer: str, owner: str) -> model_pb2.AccountDetail:
    detail = model_pb2.AccountDetail(account_identifier="12345678903", account_reference="r")
    if servicer:
        detail.servicer.identifier.value = servicer
    if owner:
        detail.primary_owner.identifier.value = owner
    return detail


@pytest.mark.parametrize(
    ("owners", "owner_only", "failed"),
    [
        ([(BANK, PARTY), (BANK, PARTY)], True, False),
        ([], True, False),
        ([(BANK, PARTY), ("", "")], True, False),  # what a bank leaves out is not wrong
        ([(BANK, PARTY), ("974761076", PARTY)], True, True),
        ([(BANK, "974760673")], True, True),
        ([(BANK, "974760673")], False, False),  # another owner: a role of the party's
    ],
)
async def test_accounts_with_balances_are_taken_only_when_the_banks_and_the_partys(
    owners: list[tuple[str, str]], owner_only: bool, failed: bool
) -> None:
    bank = ScriptedBank()
    deadlines = Deadlines()
    sent: list[Outgoing] = []
    stage = FanoutStage({BANK: ResilientBank(bank, CallPolicy(), deadlines)}, sent.append)
    query = hub_pb2.Query(
        **CONTEXT,
        query_id="q1",
        operation=Op.OPERATION_ACCOUNTS_WITH_BALANCES,
        party_id=PARTY,
        only_primary_owner=owner_only,
    )
    ctx = QueryContext(query, StreamSink(10), 0, deadline=time.monotonic() + 10)
    ctx.banks = [BANK]
    await stage([ctx])
    (request,) = bank.requests
    assert request.WhichOneof("request") == "accounts_with_balances"
    assert request.accounts_with_balances.SerializeToString() == request_body(query)
    answer = bank_pb2.BankResponse(id=request.id)
    answer.accounts_with_balances.accounts.extend(_detail(*owner) for owner in owners)
    answer.accounts_with_balances.response_details.status = model_pb2.RESPONSE_STATUS_COMPLETE
    bank.answer(answer)
    result, last = (hub_pb2.QueryEvent.FromString(item.encode()) for item in sent)
    if failed:
        assert result.result.reason == hub_pb2.FAILURE_REASON_MALFORMED
        assert result.result.error.code == "ACC-500"
    else:
        assert result.result.outcome == hub_pb2.BANK_OUTCOME_COMPLETE
        assert result.result.accounts_with_balances == answer.accounts_with_balances
    assert last.summary.banks_failed == int(failed)
    deadlines.close()
