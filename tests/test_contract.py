"""The proto contract maps every field and enum value of the standard's REST API v2
(reference/bank-api-v2.openapi.yaml) one-to-one, so a REST bridge can translate losslessly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf.descriptor import Descriptor, EnumDescriptor

from dsop.controlinfo.v2 import bank_pb2, model_pb2

SPEC = Path(__file__).resolve().parent.parent / "reference" / "bank-api-v2.openapi.yaml"

#: OpenAPI schema -> proto message.
MESSAGES = {
    "Account": model_pb2.Account,
    "AccountDetail": model_pb2.AccountDetail,
    "AccountDetails": bank_pb2.GetAccountDetailsResponse,
    "Accounts": bank_pb2.ListAccountsResponse,
    "AccountRole": model_pb2.AccountRole,
    "Balance": model_pb2.Balance,
    "BankTransactionCode": model_pb2.BankTransactionCode,
    "Cards": bank_pb2.ListCardsResponse,
    "CounterParty": model_pb2.CounterParty,
    "CurrencyExchange": model_pb2.CurrencyExchange,
    "FinancialInstitution": model_pb2.FinancialInstitution,
    "Identifier": model_pb2.Identifier,
    "Link": model_pb2.Link,
    "PaymentCard": model_pb2.PaymentCard,
    "PostalAddress": model_pb2.PostalAddress,
    "ResponseDetails": model_pb2.ResponseDetails,
    "Roles": bank_pb2.ListRolesResponse,
    "Transaction": model_pb2.Transaction,
    "TransactionReference": model_pb2.TransactionReference,
    "Transactions": bank_pb2.ListTransactionsResponse,
    "Error": model_pb2.Error,
}

#: OpenAPI enum schema -> proto enum.
ENUMS = {
    "AccountPermissionType": model_pb2.AccountPermissionType,
    "AccountStatus": model_pb2.AccountStatus,
    "AccountType": model_pb2.AccountType,
    "AddressType": model_pb2.AddressType,
    "BalanceType": model_pb2.BalanceType,
    "CardStatus": model_pb2.CardStatus,
    "CardType": model_pb2.CardType,
    "CounterPartyType": model_pb2.CounterPartyType,
    "CreditOrDebit": model_pb2.CreditOrDebit,
    "DomainType": model_pb2.DomainType,
    "FamilyType": model_pb2.FamilyType,
    "IdentifierType": model_pb2.IdentifierType,
    "SubFamilyType": model_pb2.SubFamilyType,
    "TransactionReferenceType": model_pb2.TransactionReferenceType,
    "TransactionStatus": model_pb2.TransactionStatus,
}

#: Request headers and query parameters -> RequestContext / request fields.
PARAMETERS = {
    "AccountInfoRequestID": "context.account_info_request_id",
    "CorrelationID": "context.correlation_id",
    "Legal-Mandate": "context.legal_mandate",
    "RequesterID": "context.requester_id",
    "AdditionalReferenceID": "context.additional_reference_id",
    "AdditionalReferenceIDType": "context.additional_reference_id_type",
    "PartyID": "party_id",
    "OnlyPrimaryOwner": "only_primary_owner",
    "fromDate": "period.from_date",
    "toDate": "period.to_date",
    "accountReference": "account_reference",
}
OPERATIONS = {
    "listAccounts": bank_pb2.ListAccountsRequest,
    "showAccountById": bank_pb2.GetAccountDetailsRequest,
    "listTransactions": bank_pb2.ListTransactionsRequest,
    "listCards": bank_pb2.ListCardsRequest,
    "listRoles": bank_pb2.ListRolesRequest,
}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _wire(enum: EnumDescriptor, value_name: str) -> str:
    prefix = "".join(c if c.islower() or c.isdigit() else f"_{c}" for c in enum.name)
    words = value_name.removeprefix(prefix.lstrip("_").upper() + "_").lower().split("_")
    return words[0] + "".join(w.capitalize() for w in words[1:])


def test_every_schema_property_is_a_proto_field(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    for name, message in MESSAGES.items():
        descriptor: Descriptor = message.DESCRIPTOR
        json_names = {f.json_name for f in descriptor.fields}
        properties = set(schemas[name].get("properties", {}))
        missing = properties - json_names
        assert not missing, f"{name}: no proto field for {sorted(missing)}"
        extra = json_names - properties - ({"status"} if name == "Error" else set())
        assert not extra, f"{name}: proto fields not in the standard: {sorted(extra)}"


def test_every_enum_value_maps_both_ways(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    pairs = [(schemas[n]["enum"], e.DESCRIPTOR) for n, e in ENUMS.items()]
    pairs.append(
        (
            schemas["ResponseDetails"]["properties"]["status"]["enum"],
            model_pb2.ResponseStatus.DESCRIPTOR,
        )
    )
    for values, enum in pairs:
        proto = {_wire(enum, v.name) for v in enum.values if v.number != 0}
        assert proto == {str(v).strip() for v in values}, enum.name


def test_additional_reference_types_map(spec: dict[str, Any]) -> None:
    enum = bank_pb2.AdditionalReferenceIdType.DESCRIPTOR
    assert {_wire(enum, v.name) for v in enum.values if v.number} == {"pol1", "srf"}


def test_every_request_parameter_has_a_field(spec: dict[str, Any]) -> None:
    for path in spec["paths"].values():
        for operation in path.values():
            request = OPERATIONS[operation["operationId"]]()
            for parameter in operation["parameters"]:
                target = PARAMETERS[parameter["name"]]
                message: Any = request
                *parents, leaf = target.split(".")
                for part in parents:
                    message = getattr(message, part)
                assert leaf in message.DESCRIPTOR.fields_by_name, (
                    f"{operation['operationId']}: {parameter['name']} -> {target}"
                )
