"""Protobuf on the hub's hot path: bank answers read as views, events written as bytes.

Python pays for every protobuf object it touches, in C it pays little per byte. So the hub
reads each ``Exchange`` answer through a *view* whose payload fields are plain bytes
(:data:`ExchangeResponseView`: the bank's message, never parsed into objects on the way
through), and parses a payload only into *subset types*: message types built at start-up with
just the fields a purpose needs, under the same numbers. Parsing a payload through a subset type
and discarding unknown fields keeps exactly those fields, all in C; that is how the field
filter works (hub/filter.py) and how the fan-out reads the few fields it checks. Events are
written by concatenating encoded fields (:func:`frame`, :func:`varint_field`), which the
protobuf encoding allows: a message is the sequence of its fields.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from dsop.controlinfo.v2 import bank_pb2, model_pb2

_POOL: Final = descriptor_pool.Default()
_PACKAGE: Final = "dsop.hub.internal"
_FILES: Final = (model_pb2.DESCRIPTOR.name, bank_pb2.DESCRIPTOR.name)
_names = itertools.count(1)
F = descriptor_pb2.FieldDescriptorProto

#: A tree of field names: None keeps the whole field, a subtree keeps part of a message.
Keep = Mapping[str, "Keep | None"]


def varint(value: int) -> bytes:
    """``value`` (>= 0) as a base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def frame(field_number: int, payload: bytes) -> bytes:
    """``payload`` as a length-delimited field: how a message embeds a sub-message, a string
    or bytes."""
    size = len(payload)
    if field_number < 16:
        if size < 0x80:
            return bytes(((field_number << 3) | 2, size)) + payload
        if size < 0x4000:
            return bytes(((field_number << 3) | 2, size & 0x7F | 0x80, size >> 7)) + payload
    return varint((field_number << 3) | 2) + varint(size) + payload


def varint_field(field_number: int, value: int) -> bytes:
    """An integer, enum or bool field; empty for 0 (proto3 leaves defaults out)."""
    if not value:
        return b""
    return varint(field_number << 3) + varint(value)


def subset_type(descriptor: Any, keep: Keep, name: str) -> type[Message]:
    """A message type holding only the ``keep`` fields of ``descriptor``, with the same
    numbers and presence. A message's bytes parsed through it, with unknown fields then
    discarded, are exactly the kept fields; serialized, they are what the message would give
    with every other field cleared. Enums become int32 (the same encoding, and open, as
    proto3 enums are)."""
    tag = f"{re.sub(r'[^A-Za-z0-9]', '_', name)}_{next(_names)}"
    file = descriptor_pb2.FileDescriptorProto(
        name=f"dsop/hub/internal/{tag}.proto",
        package=f"{_PACKAGE}.{tag}",
        syntax="proto3",
        dependency=_FILES,
    )
    top = _subset(file, descriptor, keep)
    _POOL.Add(file)
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(top))


def _subset(file: descriptor_pb2.FileDescriptorProto, descriptor: Descriptor, keep: Keep) -> str:
    """Adds the subset of ``descriptor`` (and of its partly kept sub-messages) to ``file``;
    returns its full name."""
    unknown = set(keep) - set(descriptor.fields_by_name)
    if unknown:
        raise ValueError(f"{descriptor.full_name} has no field {sorted(unknown)[0]}")
    original = descriptor_pb2.DescriptorProto()
    descriptor.CopyToProto(original)
    out = file.message_type.add(name=f"{descriptor.name}_{next(_names)}")
    oneofs: dict[int, int] = {}
    for field in original.field:
        if field.name not in keep:
            continue
        copy = out.field.add()
        copy.CopyFrom(field)
        if field.HasField("oneof_index"):
            if field.oneof_index not in oneofs:
                oneofs[field.oneof_index] = len(out.oneof_decl)
                out.oneof_decl.add().CopyFrom(original.oneof_decl[field.oneof_index])
            copy.oneof_index = oneofs[field.oneof_index]
        if field.type == F.TYPE_ENUM:
            copy.type = F.TYPE_INT32
            copy.ClearField("type_name")
        sub = keep[field.name]
        if sub is not None:
            if field.type != F.TYPE_MESSAGE:
                raise ValueError(f"{descriptor.full_name}.{field.name} is not a message")
            message = descriptor.fields_by_name[field.name].message_type
            assert message is not None
            copy.type_name = "." + _subset(file, message, sub)
    return f"{file.package}.{out.name}"


def _bytes_view(
    descriptor: Descriptor, name: str, keep_typed: frozenset[str]
) -> descriptor_pb2.DescriptorProto:
    view = descriptor_pb2.DescriptorProto()
    descriptor.CopyToProto(view)
    view.name = name
    for field in view.field:
        if field.type == F.TYPE_MESSAGE and field.name not in keep_typed:
            field.type = F.TYPE_BYTES
            field.ClearField("type_name")
    return view


def _views() -> tuple[Any, Any]:
    file = descriptor_pb2.FileDescriptorProto(
        name="dsop/hub/internal/bank_views.proto",
        package=_PACKAGE,
        syntax="proto3",
        dependency=_FILES,
    )
    # Errors are small and read at once (retries, outcomes): they stay typed.
    file.message_type.append(
        _bytes_view(bank_pb2.BankResponse.DESCRIPTOR, "BankResponseView", frozenset({"error"}))
    )
    exchange = file.message_type.add(name="ExchangeResponseView")
    exchange.field.add(
        name="responses",
        number=1,
        label=F.LABEL_REPEATED,
        type=F.TYPE_MESSAGE,
        type_name=f".{_PACKAGE}.BankResponseView",
    )
    _POOL.Add(file)
    find = _POOL.FindMessageTypeByName
    return (
        message_factory.GetMessageClass(find(f"{_PACKAGE}.BankResponseView")),
        message_factory.GetMessageClass(find(f"{_PACKAGE}.ExchangeResponseView")),
    )


#: ``dsop.controlinfo.v2.BankResponse`` with every payload (the ``result`` oneof but
#: ``error``) as the bytes the bank sent; and ``ExchangeResponse`` made of those.
BankResponseView, ExchangeResponseView = _views()
#: The BankResponse payload kinds: oneof field name -> the payload's message type.
PAYLOAD_TYPES: Final[Mapping[str, type[Message]]] = {
    "accounts": bank_pb2.ListAccountsResponse,
    "account_details": bank_pb2.GetAccountDetailsResponse,
    "transactions": bank_pb2.ListTransactionsResponse,
    "cards": bank_pb2.ListCardsResponse,
    "roles": bank_pb2.ListRolesResponse,
    "accounts_with_balances": bank_pb2.ListAccountsWithBalancesResponse,
}


def view_of(response: bank_pb2.BankResponse) -> Any:
    """A typed answer as the view the hub reads (answers made up by the hub, tests)."""
    return BankResponseView.FromString(response.SerializeToString())


def payload(response: Any) -> tuple[str | None, bytes]:
    """The kind of a view's payload (its oneof field name; None when it carries none, or
    ``error``) and its bytes."""
    kind: str | None = response.WhichOneof("result")
    if kind is None or kind == "error":
        return kind, b""
    return kind, getattr(response, kind)
