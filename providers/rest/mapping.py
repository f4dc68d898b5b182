"""The bank API's REST JSON <-> proto mapping, both ways, lossless (DSOP.md §3, protos' header).

The mapping is mechanical and read from the message descriptors, once per message type: a
proto field's lowerCamelCase ``json_name`` is the REST property; an enum value is its enum's
UPPER_SNAKE prefix plus the REST value in UPPER_SNAKE (``ACCOUNT_TYPE_LOAN_ACCOUNT`` <->
``loanAccount``), and ``*_UNSPECIFIED`` (0) is "not delivered", so it is left out; money is a
decimal string in proto and a JSON number in REST. Dates and date-times are strings in both.

Money never passes through a float: JSON is parsed with :func:`loads` (numbers as
``Decimal``) and written with :func:`dumps`, which embeds the proto's decimal text as the JSON
number verbatim, so "1234.50" stays "1234.50".

Requests map to HTTP too (:func:`request_to_http`, :func:`request_from_http`): the request
context travels in the standard's headers, the period and owner rule in the query string, the
accountReference in the path. Both the REST bank and the bridge use this one table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final, TypeVar
from urllib.parse import quote

import orjson
from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from dsop.controlinfo.v2 import bank_pb2, model_pb2

__all__ = [
    "MONEY_FIELDS",
    "OPERATIONS",
    "HttpRequest",
    "MappingError",
    "Operation",
    "RequestError",
    "dumps",
    "enum_from_json",
    "enum_to_json",
    "error_from_json",
    "error_to_json",
    "from_json",
    "kwargs_from_json",
    "loads",
    "path_segment",
    "request_from_http",
    "request_to_http",
    "to_json",
]

M = TypeVar("M", bound=Message)

#: Proto string fields that are money: a JSON number (the OpenAPI ``Amount``) in REST.
#: tests/providers/test_rest.py proves this is exactly the set of number-typed properties.
MONEY_FIELDS: Final = frozenset(
    {
        "dsop.controlinfo.v2.Balance.amount",
        "dsop.controlinfo.v2.Balance.credit_line_amount",
        "dsop.controlinfo.v2.Transaction.amount",
        "dsop.controlinfo.v2.CurrencyExchange.original_amount",
        "dsop.controlinfo.v2.CurrencyExchange.exchange_rate",
    }
)

# A JSON number's text (RFC 8259 §6): what may be embedded in a document as it is.
_JSON_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?\Z")


class MappingError(ValueError):
    """The message or JSON cannot be mapped (wrong JSON type, unknown enum value, money that
    is not a number). The message names the field, never its value."""


def loads(data: bytes | str) -> Any:
    """JSON with every non-integer number as ``Decimal`` (money stays exact)."""
    try:
        return json.loads(data, parse_float=Decimal)
    except ValueError as exc:  # JSONDecodeError and bad UTF-8
        raise MappingError(f"not JSON: {type(exc).__name__}") from None


# -- enums ------------------------------------------------------------------------------------


def _enum_prefix(enum: EnumDescriptor) -> str:
    """``AccountType`` -> ``ACCOUNT_TYPE_``."""
    out = []
    for index, char in enumerate(enum.name):
        if char.isupper() and index:
            out.append("_")
        out.append(char.upper())
    return "".join(out) + "_"


def _wire_value(prefix: str, name: str) -> str:
    """``ACCOUNT_TYPE_LOAN_ACCOUNT`` -> ``loanAccount``."""
    words = name.removeprefix(prefix).lower().split("_")
    return words[0] + "".join(word.capitalize() for word in words[1:])


@dataclass(frozen=True, slots=True)
class _EnumTable:
    to_json: Mapping[int, str]
    from_json: Mapping[str, int]


_ENUMS: dict[str, _EnumTable] = {}


def _enum_table(enum: EnumDescriptor) -> _EnumTable:
    table = _ENUMS.get(enum.full_name)
    if table is None:
        prefix = _enum_prefix(enum)
        names = {v.number: _wire_value(prefix, v.name) for v in enum.values if v.number != 0}
        table = _ENUMS[enum.full_name] = _EnumTable(
            MappingProxyType(names), MappingProxyType({v: k for k, v in names.items()})
        )
    return table


def enum_to_json(enum: EnumDescriptor, number: int) -> str | None:
    """The REST value of an enum number; None for 0 (not delivered)."""
    if number == 0:
        return None
    try:
        return _enum_table(enum).to_json[number]
    except KeyError:
        raise MappingError(f"{enum.name}: unknown value {number}") from None


def enum_from_json(enum: EnumDescriptor, value: str) -> int:
    try:
        return _enum_table(enum).from_json[value]
    except (KeyError, TypeError):
        raise MappingError(f"{enum.name}: unknown value") from None


# -- messages -----------------------------------------------------------------------------------

_SCALAR, _ENUM, _MONEY, _MESSAGE = range(4)
_STRING_TYPES: Final = frozenset({FieldDescriptor.TYPE_STRING})
_INTEGER_TYPES: Final = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FIXED64,
    }
)


class _Field:
    __slots__ = ("codec", "enum", "json_name", "kind", "name", "python_type", "repeated")

    def __init__(self, field: FieldDescriptor) -> None:
        self.name = field.name
        self.json_name = field.json_name
        self.repeated = field.is_repeated
        self.codec: _Codec | None = None
        self.enum: _EnumTable | None = None
        self.python_type: type | tuple[type, ...] = str
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            self.kind = _MESSAGE
        elif field.type == FieldDescriptor.TYPE_ENUM:
            self.kind = _ENUM
            assert field.enum_type is not None
            self.enum = _enum_table(field.enum_type)
        elif field.full_name in MONEY_FIELDS:
            if field.type not in _STRING_TYPES:
                raise TypeError(f"{field.full_name}: money must be a string field")
            self.kind = _MONEY
        elif field.type == FieldDescriptor.TYPE_BOOL:
            self.kind = _SCALAR
            self.python_type = bool
        elif field.type in _STRING_TYPES:
            self.kind = _SCALAR
        elif field.type in _INTEGER_TYPES:
            self.kind = _SCALAR
            self.python_type = int
        else:
            raise TypeError(f"{field.full_name}: no REST mapping for this field type")


class _Codec:
    """One message type's fields, by field number (proto -> JSON) and by JSON name."""

    __slots__ = ("by_json", "by_number", "name")

    def __init__(self, descriptor: Any) -> None:
        self.name = descriptor.name
        self.by_number: dict[int, _Field] = {}
        self.by_json: dict[str, _Field] = {}


_CODECS: dict[str, _Codec] = {}


def _codec(descriptor: Any) -> _Codec:
    """The codec of a message Descriptor (upb's or the pure one), made once."""
    codec = _CODECS.get(descriptor.full_name)
    if codec is not None:
        return codec
    codec = _CODECS[descriptor.full_name] = _Codec(descriptor)  # before the fields: recursion
    for field in descriptor.fields:
        entry = _Field(field)
        if entry.kind == _MESSAGE:
            assert field.message_type is not None
            entry.codec = _codec(field.message_type)
        codec.by_number[field.number] = entry
        codec.by_json[field.json_name] = entry
    return codec


def _money_out(value: str, where: str) -> orjson.Fragment:
    if not _JSON_NUMBER.match(value):
        raise MappingError(f"{where}: money must be a decimal number")
    return orjson.Fragment(value)


def _to_json(codec: _Codec, message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    by_number = codec.by_number
    for descriptor, value in message.ListFields():
        field = by_number[descriptor.number]
        kind = field.kind
        if kind == _SCALAR:
            out[field.json_name] = list(value) if field.repeated else value
        elif kind == _MESSAGE:
            sub = field.codec
            assert sub is not None
            out[field.json_name] = (
                [_to_json(sub, item) for item in value] if field.repeated else _to_json(sub, value)
            )
        elif kind == _ENUM:
            table = field.enum
            assert table is not None
            try:
                out[field.json_name] = (
                    [table.to_json[item] for item in value]
                    if field.repeated
                    else table.to_json[value]
                )
            except KeyError:
                raise MappingError(f"{codec.name}.{field.json_name}: unknown enum value") from None
        else:
            where = f"{codec.name}.{field.json_name}"
            out[field.json_name] = (
                [_money_out(item, where) for item in value]
                if field.repeated
                else _money_out(value, where)
            )
    return out


def to_json(message: Message) -> dict[str, Any]:
    """The REST JSON object of a message (money as ``orjson.Fragment``: use :func:`dumps`)."""
    return _to_json(_codec(message.DESCRIPTOR), message)


def dumps(message: Message) -> bytes:
    return orjson.dumps(_to_json(_codec(message.DESCRIPTOR), message))


def _money_in(value: object, where: str) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise MappingError(f"{where}: money must be a finite number")
        return format(value, "f")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        raise MappingError(f"{where}: money parsed as a float; parse JSON with mapping.loads")
    raise MappingError(f"{where}: money must be a JSON number")


def _value_in(codec: _Codec, field: _Field, value: object) -> object:
    kind = field.kind
    if kind == _SCALAR:
        if not isinstance(value, field.python_type) or (
            field.python_type is int and isinstance(value, bool)
        ):
            raise MappingError(f"{codec.name}.{field.json_name}: wrong JSON type")
        return value
    if kind == _MESSAGE:
        if not isinstance(value, dict):
            raise MappingError(f"{codec.name}.{field.json_name}: expected an object")
        sub = field.codec
        assert sub is not None
        return _kwargs(sub, value)
    if kind == _ENUM:
        table = field.enum
        assert table is not None
        number = table.from_json.get(value) if isinstance(value, str) else None
        if number is None:
            raise MappingError(f"{codec.name}.{field.json_name}: unknown enum value")
        return number
    return _money_in(value, f"{codec.name}.{field.json_name}")


def _kwargs(codec: _Codec, data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    by_json = codec.by_json
    for key, value in data.items():
        field = by_json.get(key)
        if field is None or value is None:
            continue  # a property this version does not know: ignored, as JSON readers do
        if field.repeated:
            if not isinstance(value, list):
                raise MappingError(f"{codec.name}.{key}: expected an array")
            out[field.name] = [_value_in(codec, field, item) for item in value]
        else:
            out[field.name] = _value_in(codec, field, value)
    return out


def kwargs_from_json(descriptor: Any, data: object) -> dict[str, Any]:
    """Constructor keyword arguments for the message (nested messages as dicts): lets a
    caller build a message inside another in one constructor call, without a copy."""
    if not isinstance(data, dict):
        raise MappingError(f"{descriptor.name}: expected a JSON object")
    return _kwargs(_codec(descriptor), data)


def from_json(message_type: type[M], data: object) -> M:
    """The message a REST JSON object (parsed with :func:`loads`) stands for."""
    kwargs = kwargs_from_json(message_type.DESCRIPTOR, data)
    try:
        return message_type(**kwargs)
    except (TypeError, ValueError) as exc:  # e.g. an integer out of range
        raise MappingError(f"{message_type.DESCRIPTOR.name}: {type(exc).__name__}") from None


# -- errors -------------------------------------------------------------------------------------

#: HTTP status of each ACC code (the bank API's responses section).
HTTP_STATUS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "ACC-001": 400,
        "ACC-010": 401,
        "ACC-011": 403,
        "ACC-002": 404,
        "ACC-003": 404,
        "ACC-012": 405,
        "ACC-013": 406,
        "ACC-022": 429,
        "ACC-100": 500,
        "ACC-500": 500,
    }
)
#: The ACC code assumed for an error status whose body names none.
_STATUS_CODE: Final = MappingProxyType(
    {
        400: "ACC-001",
        401: "ACC-010",
        403: "ACC-011",
        404: "ACC-002",
        405: "ACC-012",
        406: "ACC-013",
        429: "ACC-022",
        500: "ACC-500",
    }
)


def error_to_json(error: model_pb2.Error) -> tuple[int, bytes]:
    """The HTTP status and ``{code, message}`` body of an error (``status``, the gRPC code,
    is carried by the HTTP status)."""
    status = HTTP_STATUS.get(error.code, 500)
    return status, orjson.dumps({"code": error.code, "message": error.message})


def error_from_json(
    http_status: int, data: object, grpc_status: Callable[[str], int]
) -> model_pb2.Error:
    """The error an HTTP error answer stands for. The body's ACC code wins; without one the
    HTTP status decides (any other 5xx: ACC-100, the bank is unavailable). ``grpc_status``
    gives the google.rpc.Code of an ACC code (providers.errors.ACC_STATUS, in one place)."""
    code = message = None
    if isinstance(data, dict):
        code = data.get("code") if isinstance(data.get("code"), str) else None
        message = data.get("message") if isinstance(data.get("message"), str) else None
    if code is None or code not in HTTP_STATUS:
        code = _STATUS_CODE.get(http_status, "ACC-100" if http_status >= 500 else "ACC-001")
    if message is None:
        message = f"the bank answered HTTP {http_status}"
    return model_pb2.Error(status=grpc_status(code), code=code, message=message)


# -- requests -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Operation:
    """One API of the standard as the REST API serves it."""

    #: The BankRequest oneof and BankResponse result name.
    kind: str
    #: The OpenAPI operationId.
    operation_id: str
    request: type[Message]
    response: type[Message]
    #: The path after ``/accounts/{accountReference}`` ("" for details); None: ``/accounts``.
    suffix: str | None


OPERATIONS: Final[Mapping[str, Operation]] = MappingProxyType(
    {
        op.kind: op
        for op in (
            Operation(
                "accounts",
                "listAccounts",
                bank_pb2.ListAccountsRequest,
                bank_pb2.ListAccountsResponse,
                None,
            ),
            Operation(
                "account_details",
                "showAccountById",
                bank_pb2.GetAccountDetailsRequest,
                bank_pb2.GetAccountDetailsResponse,
                "",
            ),
            Operation(
                "transactions",
                "listTransactions",
                bank_pb2.ListTransactionsRequest,
                bank_pb2.ListTransactionsResponse,
                "/transactions",
            ),
            Operation(
                "cards",
                "listCards",
                bank_pb2.ListCardsRequest,
                bank_pb2.ListCardsResponse,
                "/cards",
            ),
            Operation(
                "roles",
                "listRoles",
                bank_pb2.ListRolesRequest,
                bank_pb2.ListRolesResponse,
                "/roles",
            ),
        )
    }
)
#: Path suffix -> operation, for routing ``/accounts/{ref}<suffix>``.
BY_SUFFIX: Final = MappingProxyType(
    {op.suffix: op for op in OPERATIONS.values() if op.suffix is not None}
)

_ADDITIONAL = bank_pb2.AdditionalReferenceIdType.DESCRIPTOR


class RequestError(ValueError):
    """An HTTP request that does not make a valid request of the API (ACC-001)."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request as HTTP: path below the API's base (``/accounts...``), headers (values as
    UTF-8 bytes), query parameters."""

    path: str
    headers: tuple[tuple[bytes, bytes], ...]
    query: tuple[tuple[str, str], ...]


def _header(name: str, value: str) -> tuple[bytes, bytes]:
    if "\r" in value or "\n" in value or "\0" in value:
        raise RequestError(f"{name}: may not contain line breaks")
    return name.encode(), value.encode()


def path_segment(reference: str) -> str:
    """The accountReference as one URL path segment: every reserved character and every dot
    percent-encoded, so no client or proxy can read "." or ".." as a step up the path."""
    return quote(reference, safe="").replace(".", "%2E")


def request_to_http(kind: str, request: Message) -> HttpRequest:
    """The HTTP request for one of the five API requests (``kind`` as in OPERATIONS).

    Header values are UTF-8 (the mandate texts carry §, ø, å); the REST bank decodes them as
    UTF-8 and compares after NFC, never after URL-decoding guesses (DSOP.md §4).
    """
    op = OPERATIONS[kind]
    context: bank_pb2.RequestContext = request.context  # type: ignore[attr-defined]
    headers = [
        _header("AccountInfoRequestID", context.account_info_request_id),
        _header("CorrelationID", context.correlation_id),
        _header("Legal-Mandate", context.legal_mandate),
    ]
    if context.HasField("requester_id"):
        headers.append(_header("RequesterID", context.requester_id))
    if context.HasField("additional_reference_id"):
        headers.append(_header("AdditionalReferenceID", context.additional_reference_id))
    kind_name = enum_to_json(_ADDITIONAL, context.additional_reference_id_type)
    if kind_name is not None:
        headers.append(_header("AdditionalReferenceIDType", kind_name))
    query: list[tuple[str, str]] = []
    if op.suffix is None:
        accounts: bank_pb2.ListAccountsRequest = request  # type: ignore[assignment]
        headers.append(_header("PartyID", accounts.party_id))
        query.append(("OnlyPrimaryOwner", "true" if accounts.only_primary_owner else "false"))
        path = "/accounts"
    else:
        reference: str = request.account_reference  # type: ignore[attr-defined]
        if not reference:
            raise RequestError("accountReference: required")
        path = f"/accounts/{path_segment(reference)}{op.suffix}"
    period: bank_pb2.Period = request.period  # type: ignore[attr-defined]
    if period.HasField("from_date"):
        query.append(("fromDate", period.from_date))
    if period.HasField("to_date"):
        query.append(("toDate", period.to_date))
    return HttpRequest(path, tuple(headers), tuple(query))


def _text(headers: Mapping[str, bytes], name: str) -> str | None:
    raw = headers.get(name.lower())
    if raw is None:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise RequestError(f"{name}: must be UTF-8") from None


def _required(headers: Mapping[str, bytes], name: str) -> str:
    value = _text(headers, name)
    if value is None:
        raise RequestError(f"{name}: required header")
    return value


def request_from_http(
    kind: str,
    account_reference: str | None,
    headers: Mapping[str, bytes],
    query: Iterable[tuple[str, str]],
) -> Message:
    """The API request an HTTP request stands for; raises RequestError (ACC-001) when a
    required header or parameter is missing or malformed. ``headers`` are keyed by lower-case
    name; the context and period are always set (possibly empty)."""
    op = OPERATIONS[kind]
    request = op.request()
    context: bank_pb2.RequestContext = request.context  # type: ignore[attr-defined]
    context.account_info_request_id = _required(headers, "AccountInfoRequestID")
    context.correlation_id = _required(headers, "CorrelationID")
    context.legal_mandate = _required(headers, "Legal-Mandate")
    requester = _text(headers, "RequesterID")
    if requester is not None:
        context.requester_id = requester
    reference_id = _text(headers, "AdditionalReferenceID")
    if reference_id is not None:
        context.additional_reference_id = reference_id
    reference_type = _text(headers, "AdditionalReferenceIDType")
    if reference_type is not None:
        try:
            context.additional_reference_id_type = bank_pb2.AdditionalReferenceIdType.ValueType(
                enum_from_json(_ADDITIONAL, reference_type)
            )
        except MappingError:
            raise RequestError("AdditionalReferenceIDType: must be pol1 or srf") from None
    params = dict(query)
    if op.suffix is None:
        accounts: bank_pb2.ListAccountsRequest = request  # type: ignore[assignment]
        accounts.party_id = _required(headers, "PartyID")
        owner = params.get("OnlyPrimaryOwner")
        if owner is None:
            raise RequestError("OnlyPrimaryOwner: required query parameter")
        if owner.lower() not in ("true", "false"):
            raise RequestError("OnlyPrimaryOwner: must be true or false")
        accounts.only_primary_owner = owner.lower() == "true"
    else:
        if not account_reference:
            raise RequestError("accountReference: required")
        request.account_reference = account_reference  # type: ignore[attr-defined]
    period: bank_pb2.Period = request.period  # type: ignore[attr-defined]
    period.SetInParent()
    if "fromDate" in params:
        period.from_date = params["fromDate"]
    if "toDate" in params:
        period.to_date = params["toDate"]
    return request
