"""The synthetic bank simulator: banks that answer from the deterministic synthetic dataset,
and a KAR that agrees with them. One process hosts many banks, each on its own port.

Like a real bank (DSOP.md §4), a synthetic bank validates every request against the service
its legal mandate names before answering: the mandate must be one it knows (after NFC), the
API one the service may call, the owner rule and required context (RequesterID, the
additional reference) the service's. The rules come from the hub's service profiles, read
once; checking a request is a dict lookup and a few comparisons.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
import unicodedata
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import grpc

from dsop.controlinfo.v2 import bank_pb2, model_pb2
from dsop.hub.v1 import hub_pb2
from dsop.kar.v1 import kar_pb2, kar_pb2_grpc
from hub.clock import today
from hub.identifiers import is_valid_account_number, party_kind
from hub.profiles import Profiles, load_profiles
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


# -- bank-side validation (DSOP.md §4) ------------------------------------------------------------

#: The bank APIs (BankRequest oneof names) and the profile operation each is.
API_OPERATIONS: Final = MappingProxyType(
    {
        "accounts": hub_pb2.OPERATION_ACCOUNTS,
        "account_details": hub_pb2.OPERATION_ACCOUNT_DETAILS,
        "transactions": hub_pb2.OPERATION_TRANSACTIONS,
        "cards": hub_pb2.OPERATION_CARDS,
        "roles": hub_pb2.OPERATION_ROLES,
    }
)
#: The police extradition order's claim allowing each API (hub/police.py).
_ORDER_CLAIMS: Final = MappingProxyType(
    {
        "accounts": "accountList",
        "account_details": "accountDetails",
        "transactions": "transactions",
        "cards": "cards",
        "roles": "roles",
    }
)
_POL1: Final = bank_pb2.ADDITIONAL_REFERENCE_ID_TYPE_POL1


@dataclass(frozen=True, slots=True)
class MandateRule:
    """What a request under one legal mandate may ask (from its service's profile)."""

    service: str
    #: BankRequest oneof names of the APIs the service may call.
    apis: frozenset[str]
    primary_only: bool
    requester_id: bool
    additional_reference: bank_pb2.AdditionalReferenceIdType.ValueType | None


def mandate_rules(profiles: Profiles) -> Mapping[str, MandateRule]:
    """NFC mandate text -> its rule. A text two services share gets the looser rule of the
    two (the bank cannot tell them apart)."""
    rules: dict[str, MandateRule] = {}
    for profile in profiles.services.values():
        apis = frozenset(api for api, op in API_OPERATIONS.items() if op in profile.operations)
        rule = MandateRule(
            profile.name,
            apis,
            profile.primary_only,
            profile.requester_id,
            profile.additional_reference,
        )
        for mandate in profile.mandates:
            known = rules.get(mandate)
            if known is not None:
                rule = MandateRule(
                    f"{known.service}|{rule.service}",
                    known.apis | rule.apis,
                    known.primary_only and rule.primary_only,
                    known.requester_id and rule.requester_id,
                    known.additional_reference
                    if known.additional_reference == rule.additional_reference
                    else None,
                )
            rules[mandate] = rule
    return MappingProxyType(rules)


@functools.cache
def default_mandate_rules() -> Mapping[str, MandateRule]:
    """The rules of the shipped service profiles, read once per process."""
    return mandate_rules(load_profiles())


@functools.lru_cache(maxsize=1024)
def _order_claims(token: str) -> dict[str, object] | None:
    """The payload of a police order, unverified: the hub verified the signature; the bank
    only reads which APIs the order allows. None when it is not a JWS with a JSON payload."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def check_request(
    rules: Mapping[str, MandateRule],
    api: str,
    context: bank_pb2.RequestContext,
    only_primary_owner: bool | None = None,
) -> BankError | None:
    """Why the service named by the request's mandate may not make it; None when it may.

    ``only_primary_owner`` is the accounts request's owner rule (None for the other APIs).
    """
    if not context.account_info_request_id or not context.correlation_id:
        return BankError("ACC-001", "AccountInfoRequestID and CorrelationID are required")
    mandate = context.legal_mandate
    rule = rules.get(mandate)
    if rule is None:
        rule = rules.get(unicodedata.normalize("NFC", mandate))
        if rule is None:
            return BankError("ACC-001", "Legal-Mandate: not a legal mandate this bank serves")
    if api not in rule.apis:
        return BankError("ACC-001", f"{api}: outside the service of this legal mandate")
    if rule.primary_only and only_primary_owner is False:
        return BankError("ACC-001", "OnlyPrimaryOwner: must be true under this legal mandate")
    if rule.requester_id and not context.requester_id:
        return BankError("ACC-001", "RequesterID: required under this legal mandate")
    expected = rule.additional_reference
    if expected is not None:
        if context.additional_reference_id_type != expected or not context.additional_reference_id:
            return BankError("ACC-001", "AdditionalReferenceID: required under this legal mandate")
        if expected == _POL1:
            claims = _order_claims(context.additional_reference_id)
            if claims is None:
                return BankError("ACC-011", "AdditionalReferenceID: not an extradition order")
            if claims.get(_ORDER_CLAIMS[api]) is not True:
                return BankError("ACC-011", f"{api}: not covered by the extradition order")
    return None


class SyntheticBank(BankProvider):
    """A bank answering from the synthetic dataset, validating each request first."""

    def __init__(
        self,
        data: SyntheticBankData,
        bank_id: str,
        rules: Mapping[str, MandateRule] | None = None,
    ) -> None:
        self.data = data
        self.bank_id = bank_id
        self.rules = default_mandate_rules() if rules is None else rules

    def check(
        self, api: str, context: bank_pb2.RequestContext, only_primary_owner: bool | None = None
    ) -> None:
        """Raises the BankError refusing a request outside its service."""
        refusal = check_request(self.rules, api, context, only_primary_owner)
        if refusal is not None:
            raise refusal

    async def list_accounts(
        self, request: bank_pb2.ListAccountsRequest
    ) -> bank_pb2.ListAccountsResponse:
        self.check("accounts", request.context, request.only_primary_owner)
        start, end = _period(request.period)
        return self.data.list_accounts(request.party_id, request.only_primary_owner, start, end)

    async def get_account_details(
        self, request: bank_pb2.GetAccountDetailsRequest
    ) -> bank_pb2.GetAccountDetailsResponse:
        self.check("account_details", request.context)
        start, end = _period(request.period)
        try:
            return self.data.get_account_details(request.account_reference, start, end)
        except UnknownAccountError:
            raise _unknown() from None

    async def list_accounts_with_balances(
        self, request: bank_pb2.ListAccountsRequest
    ) -> bank_pb2.ListAccountsWithBalancesResponse:
        """Both steps' checks, then the composed answer straight from the account records
        (no references to encode and decode). A subclass that changes a step (a broken bank
        in the conformance tests) is composed from its steps instead, so it answers as they
        do."""
        cls = type(self)
        if (
            cls.list_accounts is not SyntheticBank.list_accounts
            or cls.get_account_details is not SyntheticBank.get_account_details
        ):
            return await super().list_accounts_with_balances(request)
        self.check("accounts", request.context, request.only_primary_owner)
        self.check("account_details", request.context)
        start, end = _period(request.period)
        try:
            return self.data.list_accounts_with_balances(
                request.party_id, request.only_primary_owner, start, end
            )
        except UnknownAccountError:
            raise _unknown() from None

    async def list_transactions(
        self, request: bank_pb2.ListTransactionsRequest
    ) -> AsyncIterator[bank_pb2.ListTransactionsResponse]:
        self.check("transactions", request.context)
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
        self.check("cards", request.context)
        start, end = _period(request.period)
        try:
            return self.data.list_cards(request.account_reference, start, end)
        except UnknownAccountError:
            raise _unknown() from None

    async def list_roles(self, request: bank_pb2.ListRolesRequest) -> bank_pb2.ListRolesResponse:
        self.check("roles", request.context)
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

    def lookup(
        self, request: kar_pb2.GetCustomerRelationshipsRequest
    ) -> kar_pb2.CustomerRelationshipsResult:
        """The register's answer (or its error) for one lookup; shared with the REST KAR."""
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
        result = self.lookup(request)
        if result.HasField("error"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, result.error.error_code)
        return result.relationships

    async def BatchGetCustomerRelationships(self, request, context):  # type: ignore[no-untyped-def]
        return kar_pb2.BatchGetCustomerRelationshipsResponse(
            results=[self.lookup(item) for item in request.requests]
        )

    def servicing_bank(self, account_number: str) -> BankInfo | None:
        """The bank whose registration prefix starts a valid account number."""
        if not is_valid_account_number(account_number):
            return None
        return self._by_prefix.get(account_number[:4])

    async def GetAccountServicingProvider(self, request, context):  # type: ignore[no-untyped-def]
        bank = self.servicing_bank(request.account_number)
        if bank is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "ERR-004")
        assert bank is not None
        return kar_pb2.GetAccountServicingProviderResponse(
            organization_id=bank.bank_id, bank_name=bank.name
        )
