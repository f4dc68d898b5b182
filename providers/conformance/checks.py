"""Pure checks of the standard's rules on single answers (DSOP.md §3, §6).

Each returns the problems it finds as short texts (empty: the answer keeps the rule). They
read messages only, never call a bank, and never quote personal data: a problem names the
message path and the rule, not the value.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Final

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from dsop.controlinfo.v2 import model_pb2
from hub.identifiers import (
    is_valid_account_number,
    is_valid_national_identity_number,
    is_valid_organisation_number,
)

m = model_pb2

#: Fields that must be present whenever their message is (the OpenAPI ``required`` lists:
#: M fields, and MC fields of an optional parent). tests/providers/test_conformance.py proves
#: this equals the spec's lists.
REQUIRED: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "Account": ("account_identifier", "account_reference"),
        "AccountDetail": ("account_identifier", "account_reference"),
        "Identifier": ("value", "type"),
        "Link": ("rel", "href"),
        "PaymentCard": ("card_identifier",),
        "ResponseDetails": ("status",),
        "Transaction": ("transaction_identifier",),
        "TransactionReference": ("value", "type"),
        "ListAccountsResponse": ("response_details",),
        "GetAccountDetailsResponse": ("response_details",),
        "ListTransactionsResponse": ("response_details",),
        "ListCardsResponse": ("response_details",),
        "ListRolesResponse": ("response_details",),
    }
)
#: Free-text limits of the model (characters).
MAX_LENGTH: Final[Mapping[str, int]] = MappingProxyType(
    {"ResponseDetails.message": 500, "BankTransactionCode.free_text": 500}
)
#: PCI masking: at most the first 6 and the last 4 digits shown, the rest X.
MASKED_CARD: Final = re.compile(r"[0-9]{0,6}X+[0-9]{0,4}\Z")
_ELEVEN_DIGITS: Final = re.compile(r"[0-9]{11}\Z")
_DIGITS: Final = re.compile(r"[0-9]+")


def walk(message: Message, path: str = "") -> Iterator[tuple[str, Message]]:
    """The message and every message inside it, with its path (``accounts[2].servicer``)."""
    yield path or message.DESCRIPTOR.name, message
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        base = f"{path}.{field.name}" if path else field.name
        if field.is_repeated:
            for index, item in enumerate(value):
                yield from walk(item, f"{base}[{index}]")
        else:
            yield from walk(value, base)


def _is_set(message: Message, name: str) -> bool:
    field = message.DESCRIPTOR.fields_by_name[name]
    if field.is_repeated:
        return len(getattr(message, name)) > 0
    if field.has_presence:
        return message.HasField(name)
    return bool(getattr(message, name))


def presence(message: Message, skip: frozenset[str] = frozenset({"response_details"})) -> list[str]:
    """M fields, and MC fields of every message that is present. The envelope's
    responseDetails is :func:`response_details`' to judge, so skipped by default."""
    return [
        f"{path}: {name} is required (M/MC) but missing"
        for path, item in walk(message)
        for name in REQUIRED.get(item.DESCRIPTOR.name, ())
        if name not in skip and not _is_set(item, name)
    ]


def known_enums(message: Message) -> list[str]:
    """Every enum value is one the standard defines."""
    problems: list[str] = []
    for path, item in walk(message):
        for field, value in item.ListFields():
            if field.type != FieldDescriptor.TYPE_ENUM:
                continue
            assert field.enum_type is not None
            values = value if field.is_repeated else (value,)
            problems.extend(
                f"{path}.{field.name}: {number} is not a value of {field.enum_type.name}"
                for number in values
                if number not in field.enum_type.values_by_number
            )
    return problems


def text_limits(message: Message) -> list[str]:
    problems = []
    for path, item in walk(message):
        for name, limit in MAX_LENGTH.items():
            owner, field = name.split(".")
            if item.DESCRIPTOR.name == owner and len(getattr(item, field)) > limit:
                problems.append(f"{path}.{field}: longer than {limit} characters")
    return problems


def response_details(envelope: Message) -> list[str]:
    """The envelope carries responseDetails with status complete or partial."""
    if not envelope.HasField("response_details"):
        return [f"{envelope.DESCRIPTOR.name}: responseDetails missing"]
    details: model_pb2.ResponseDetails = envelope.response_details  # type: ignore[attr-defined]
    if details.status not in (m.RESPONSE_STATUS_COMPLETE, m.RESPONSE_STATUS_PARTIAL):
        return [
            f"{envelope.DESCRIPTOR.name}: responseDetails.status is neither complete nor partial"
        ]
    if len(details.message) > 500:
        return [f"{envelope.DESCRIPTOR.name}: responseDetails.message longer than 500"]
    return []


def _account_number(path: str, value: str) -> list[str]:
    # "Usually 11 digits": an 11-digit number must carry a valid check digit; other forms
    # (foreign, IBAN) are not judged.
    if _ELEVEN_DIGITS.match(value) and not is_valid_account_number(value):
        return [f"{path}: account number with a wrong check digit"]
    return []


def check_digits(message: Message) -> list[str]:
    """Identifiers and account numbers carry valid check digits (DSOP.md §6)."""
    problems = []
    for path, item in walk(message):
        name = item.DESCRIPTOR.name
        if name == "Identifier":
            identifier: model_pb2.Identifier = item  # type: ignore[assignment]
            kind, value = identifier.type, identifier.value
            if kind == m.IDENTIFIER_TYPE_NATIONAL_IDENTITY_NUMBER and not (
                is_valid_national_identity_number(value)
            ):
                problems.append(f"{path}: not a valid national identity number")
            elif kind == m.IDENTIFIER_TYPE_COUNTRY_IDENTIFICATION_CODE and not (
                is_valid_organisation_number(value)
            ):
                problems.append(f"{path}: not a valid organisation number")
        elif name in ("Account", "AccountDetail", "CounterParty"):
            number: str = item.account_identifier  # type: ignore[attr-defined]
            if number:
                problems += _account_number(f"{path}.account_identifier", number)
    return problems


def card_masking(message: Message) -> list[str]:
    """Card numbers show at most the first 6 and last 4 digits, the rest X."""
    return [
        f"{path}.card_identifier: not PCI-masked (at most first 6 and last 4 digits, rest X)"
        for path, item in walk(message)
        if item.DESCRIPTOR.name == "PaymentCard" and not MASKED_CARD.match(item.card_identifier)  # type: ignore[attr-defined]
    ]


def opaque_reference(account: model_pb2.Account | model_pb2.AccountDetail) -> list[str]:
    """The accountReference does not reveal the account number (nor contain it)."""
    number, reference = account.account_identifier, account.account_reference
    if not number or reference == "dataNotDelivered":
        return []
    digits = "".join(_DIGITS.findall(reference))
    if number in reference or (len(number) >= 6 and number.isdigit() and number in digits):
        return ["accountReference reveals the account number"]
    return []


def date_part(text: str) -> dt.date | None:
    """The calendar date of a "YYYY-MM-DD" or RFC 3339 date-time (as written, in its own
    offset); None when it is neither."""
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        return None


def date_time(text: str) -> dt.datetime | None:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def overlaps(detail: model_pb2.AccountDetail, start: dt.date, end: dt.date) -> bool | None:
    """Whether the account's life overlaps the period; None when its dates are not given."""
    if not detail.HasField("start_date"):
        return None
    opened = date_part(detail.start_date)
    closed = date_part(detail.end_date) if detail.HasField("end_date") else None
    if opened is None:
        return None
    return opened <= end and (closed is None or closed >= start)
