"""A leaky bank fills every field; each service receives exactly what its column allows."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from clients.services import CONSUMERS, MANDATES
from dsop.controlinfo.v2 import bank_pb2
from dsop.hub.v1 import hub_pb2
from hub.clock import today
from hub.identifiers import make_national_identity_number
from hub.police import sign_order
from hub.profiles import OPERATION_NAMES, load_profiles
from providers.base import BankProvider
from tests.support import Env, EnvFactory

PROFILES = load_profiles()
Op = hub_pb2.Operation
#: field-filters.tsv endpoint per payload, and how its paths name the payload's fields.
ENDPOINTS = {
    "accounts": ("Accounts", "", ""),
    "account_details": ("Account Details", "", ""),
    "transactions": ("Transactions", "", ""),
    "cards": ("Cards", "", ""),
    "roles": ("Roles", "roles.accountRole.", "roles."),
    "accounts_with_balances": ("Account Details", "account.", "accounts."),
}
PAYLOAD = {
    Op.OPERATION_ACCOUNTS: "accounts",
    Op.OPERATION_ACCOUNT_DETAILS: "account_details",
    Op.OPERATION_TRANSACTIONS: "transactions",
    Op.OPERATION_CARDS: "cards",
    Op.OPERATION_ROLES: "roles",
    Op.OPERATION_ACCOUNTS_WITH_BALANCES: "accounts_with_balances",
}
#: An unknown field (number 999, varint 1) a leaky bank appends to every answer.
UNKNOWN = b"\xb8\x3e\x01"


def fill(message: Message) -> Message:
    """Sets every field of the message and its sub-messages (one item per list)."""
    for field in message.DESCRIPTOR.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.is_repeated:
                fill(getattr(message, field.name).add())
            else:
                fill(getattr(message, field.name))
        else:
            value: object = {
                FieldDescriptor.TYPE_STRING: "x",
                FieldDescriptor.TYPE_BOOL: True,
                FieldDescriptor.TYPE_ENUM: 1,
            }.get(field.type, 1)
            if field.is_repeated:
                getattr(message, field.name).append(value)
            else:
                setattr(message, field.name, value)
    message.MergeFromString(UNKNOWN)
    return message


class Leaky(BankProvider):
    """Answers everything with every field filled, and a field the contract does not know."""

    def __init__(self, bank_id: str) -> None:
        self.bank_id = bank_id

    async def list_accounts(self, request):  # type: ignore[no-untyped-def]
        # Over-shares every field, but about the right party at the right bank (answers about
        # anyone else are refused as malformed before filtering).
        response = fill(bank_pb2.ListAccountsResponse())
        for account in response.accounts:  # type: ignore[attr-defined]
            account.servicer.identifier.value = self.bank_id
            account.primary_owner.identifier.value = request.party_id
        return response

    async def get_account_details(self, request):  # type: ignore[no-untyped-def]
        response = fill(bank_pb2.GetAccountDetailsResponse())
        response.account.account_reference = request.account_reference  # type: ignore[attr-defined]
        return response

    async def list_accounts_with_balances(self, request):  # type: ignore[no-untyped-def]
        # Composed from the two answers above, then made about the right party and bank.
        response = await super().list_accounts_with_balances(request)
        for account in response.accounts:
            account.servicer.identifier.value = self.bank_id
            account.primary_owner.identifier.value = request.party_id
        return response

    async def list_transactions(self, request) -> AsyncIterator[bank_pb2.ListTransactionsResponse]:  # type: ignore[no-untyped-def,override]
        yield fill(bank_pb2.ListTransactionsResponse())  # type: ignore[misc]

    async def list_cards(self, request):  # type: ignore[no-untyped-def]
        return fill(bank_pb2.ListCardsResponse())

    async def list_roles(self, request):  # type: ignore[no-untyped-def]
        return fill(bank_pb2.ListRolesResponse())


def leaves(message: Message, prefix: str = "") -> Iterator[str]:
    """Dotted json paths of every scalar set in the message."""
    for field, value in message.ListFields():
        path = f"{prefix}{field.json_name}"
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value if field.is_repeated else [value]:
                yield from leaves(item, f"{path}.")
        else:
            yield path


def allowed(column: str, kind: str, keep_filterable: bool) -> set[str]:
    """The leaves the table allows, read straight from the table (independent of the plans)."""
    endpoint, old, new = ENDPOINTS[kind]
    keep = {"T", "S", "F"} if keep_filterable else {"T", "S"}
    out = set()
    for path, row in PROFILES.fields.table[endpoint].items():
        if row[column] in keep:
            fixed = path.replace("creditDebitIdicator", "creditDebitIndicator")
            out.add(new + fixed.removeprefix(old) if old and fixed.startswith(old) else fixed)
    return out


def _person() -> str:
    number = make_national_identity_number(dt.date(1975, 6, 1), 123)
    assert number is not None
    return number


def valid_query(service: str, operation: int, bank: str, cert_dir: object) -> hub_pb2.Query:
    now = today()
    query = hub_pb2.Query(
        query_id=str(uuid.uuid4()),
        service=service,
        legal_mandate=MANDATES[service],
        case_id=str(uuid.uuid4()),
        correlation_id=str(uuid.uuid4()),
        operation=operation,  # type: ignore[arg-type]
        only_primary_owner=True,
        requester_id="sb-1",
        banks=[bank],
    )
    if operation in (Op.OPERATION_ACCOUNTS, Op.OPERATION_ACCOUNTS_WITH_BALANCES):
        query.party_id = _person()
    else:
        query.account_reference = "ref"
    if service == "konkursbehandling":
        query.reference_date = (now - dt.timedelta(days=30)).isoformat()
    if service == "oppgjor-etter-dodsfall":
        query.reference_date = (now - dt.timedelta(days=10)).isoformat()
    if service == "vergekontroll":
        query.period.from_date, query.period.to_date = (
            f"{now.year - 1}-01-01",
            f"{now.year - 1}-12-31",
        )
        query.additional_reference_id_type = bank_pb2.ADDITIONAL_REFERENCE_ID_TYPE_SRF
        query.additional_reference_id = (
            make_national_identity_number(dt.date(1950, 1, 2), 123) or ""
        )
    if service == "politi-utlevering":
        key = load_pem_private_key((cert_dir / "police.key").read_bytes(), None)  # type: ignore[operator]
        issued = int(dt.datetime.now(dt.UTC).timestamp())
        order = {
            "partyId": query.party_id,
            "legalMandate": query.legal_mandate,
            "fromDate": (now - dt.timedelta(days=365)).isoformat(),
            "toDate": now.isoformat(),
            "onlyPrimaryOwner": True,
            **dict.fromkeys(
                ("accountList", "accountDetails", "transactions", "cards", "roles"), True
            ),
            "caseId": query.case_id,
            "approvedBy": "statsadvokat",
            "iat": issued,
            "exp": issued + 30 * 86400,
        }
        query.additional_reference_id_type = bank_pb2.ADDITIONAL_REFERENCE_ID_TYPE_POL1
        query.additional_reference_id = sign_order(order, key)  # type: ignore[arg-type]
    return query


CASES = [
    (service, operation)
    for service, profile in sorted(PROFILES.services.items())
    for operation in sorted(profile.operations)
]


@pytest.fixture
async def leaky(make_env: EnvFactory) -> Env:
    return await make_env(lambda provider: Leaky(provider.bank_id))


@pytest.mark.parametrize(
    ("service", "operation"), CASES, ids=[f"{s}-{OPERATION_NAMES[o]}" for s, o in CASES]
)
async def test_each_service_receives_exactly_its_allowed_fields(
    leaky: Env, service: str, operation: int
) -> None:
    bank = leaky.infos[0].bank_id
    query = valid_query(service, operation, bank, leaky.cert_dir)
    async with leaky.client(CONSUMERS[service]) as hub:
        events = [e async for e in hub.query(query, timeout=20)]
    (result,) = [e.result for e in events if e.HasField("result")]
    kind = PAYLOAD[operation]
    payload = getattr(result, kind)
    profile = PROFILES.services[service]
    assert set(leaves(payload)) == allowed(profile.fields, kind, profile.keep_filterable)
    # The bank sent a field the contract does not know (number 999); it never leaves the hub.
    assert UNKNOWN[:2] in fill(bank_pb2.ListAccountsResponse()).SerializeToString()
    assert UNKNOWN[:2] not in result.SerializeToString()


def test_x_fields_never_appear_in_any_allowed_set() -> None:
    for endpoint, rows in PROFILES.fields.table.items():
        for path, row in rows.items():
            for column, category in row.items():
                if category == "X":
                    kinds = [k for k, (e, _, _) in ENDPOINTS.items() if e == endpoint]
                    for kind in kinds:
                        assert path not in allowed(column, kind, keep_filterable=True)
