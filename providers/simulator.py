"""The synthetic bank simulator: banks that answer from the deterministic synthetic dataset,
and a KAR that agrees with them. One process hosts many banks, each on its own port.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence

import grpc

from dsop.controlinfo.v2 import bank_pb2, model_pb2
from dsop.kar.v1 import kar_pb2, kar_pb2_grpc
from hub.clock import today
from hub.identifiers import is_valid_account_number, party_kind
from providers.base import BankProvider
from providers.errors import BankError
from providers.synthetic.dataset import SyntheticBankData, SyntheticDataset, UnknownAccountError
from providers.synthetic.universe import BankInfo

COMPLETE = model_pb2.RESPONSE_STATUS_COMPLETE


def _period(period: bank_pb2.Period) -> tuple[dt.date, dt.date]:
    try:
        start = dt.date.fromisoformat(period.from_date) if period.from_date else None
        end = dt.date.fromisoformat(period.to_date) if period.to_date else None
    except ValueError:
        raise BankError("ACC-001", "fromDate/toDate must be dates, YYYY-MM-DD") from None
    now = today()
    start, end = start or now, end or now
    if start > end:
        raise BankError("ACC-001", "fromDate must not be after toDate")
    return start, end


def _unknown() -> BankError:
    return BankError("ACC-002", "unknown accountReference")


class SyntheticBank(BankProvider):
    """A bank answering from the synthetic dataset."""

    def __init__(self, data: SyntheticBankData, bank_id: str) -> None:
        self.data = data
        self.bank_id = bank_id

    async def list_accounts(
        self, request: bank_pb2.ListAccountsRequest
    ) -> bank_pb2.ListAccountsResponse:
        start, end = _period(request.period)
        return self.data.list_accounts(request.party_id, request.only_primary_owner, start, end)

    async def get_account_details(
        self, request: bank_pb2.GetAccountDetailsRequest
    ) -> bank_pb2.GetAccountDetailsResponse:
        start, end = _period(request.period)
        try:
            return self.data.get_account_details(request.account_reference, start, end)
        except UnknownAccountError:
            raise _unknown() from None

    async def list_transactions(
        self, request: bank_pb2.ListTransactionsRequest
    ) -> AsyncIterator[bank_pb2.ListTransactionsResponse]:
        start, end = _period(request.period)
        try:
            pages = self.data.iter_transactions(request.account_reference, start, end)
            for page in pages:
                response = bank_pb2.ListTransactionsResponse()
                response.response_details.status = COMPLETE
                response.transactions.extend(page)
                yield response
        except UnknownAccountError:
            raise _unknown() from None

    async def list_cards(self, request: bank_pb2.ListCardsRequest) -> bank_pb2.ListCardsResponse:
        start, end = _period(request.period)
        try:
            return self.data.list_cards(request.account_reference, start, end)
        except UnknownAccountError:
            raise _unknown() from None

    async def list_roles(self, request: bank_pb2.ListRolesRequest) -> bank_pb2.ListRolesResponse:
        start, end = _period(request.period)
        try:
            return self.data.list_roles(request.account_reference, start, end)
        except UnknownAccountError:
            raise _unknown() from None


def synthetic_banks(dataset: SyntheticDataset, banks: Sequence[BankInfo]) -> list[SyntheticBank]:
    return [SyntheticBank(dataset.bank(bank.bank_id), bank.bank_id) for bank in banks]


class SyntheticKarServicer(kar_pb2_grpc.KarServiceServicer):
    """``dsop.kar.v1.KarService`` answering from the synthetic dataset."""

    def __init__(self, dataset: SyntheticDataset, banks: Sequence[BankInfo]) -> None:
        self.dataset = dataset
        self._by_prefix = {f"{bank.prefix:04d}": bank for bank in banks}

    def _lookup(
        self, request: kar_pb2.GetCustomerRelationshipsRequest
    ) -> kar_pb2.CustomerRelationshipsResult:
        result = kar_pb2.CustomerRelationshipsResult()
        if party_kind(request.customer_id) is None:
            result.error.error_code, result.error.error_message = "ERR-002", "Ugyldig KUNDEID"
            return result
        try:
            now = today()
            start = dt.date.fromisoformat(request.from_date) if request.from_date else now
            end = dt.date.fromisoformat(request.to_date) if request.to_date else now
            valid = start <= end
        except ValueError:
            valid = False
        if not valid:
            result.error.error_code = "ERR-003"
            result.error.error_message = "Ugyldig periode eller datoformat"
            return result
        result.relationships.banks.extend(self.dataset.relations(request.customer_id, start, end))
        return result

    async def GetCustomerRelationships(self, request, context):  # type: ignore[no-untyped-def]
        result = self._lookup(request)
        if result.HasField("error"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, result.error.error_code)
        return result.relationships

    async def BatchGetCustomerRelationships(self, request, context):  # type: ignore[no-untyped-def]
        return kar_pb2.BatchGetCustomerRelationshipsResponse(
            results=[self._lookup(item) for item in request.requests]
        )

    async def GetAccountServicingProvider(self, request, context):  # type: ignore[no-untyped-def]
        number = request.account_number
        bank = self._by_prefix.get(number[:4]) if is_valid_account_number(number) else None
        if bank is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "ERR-004")
        assert bank is not None
        return kar_pb2.GetAccountServicingProviderResponse(
            organization_id=bank.bank_id, bank_name=bank.name
        )
