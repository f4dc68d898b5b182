"""Stage: filter every bank answer through the service's field categories before it leaves.

Deny by default: a field leaves the hub only when field-filters.tsv gives it category T or S
for the service's column (F too when the profile keeps filterable fields); X fields, fields the
table does not list and fields unknown to the contract are removed, whatever a bank sends.

The categories are compiled once, at start-up, into a plan per (column, payload kind): a
protobuf type with exactly the allowed fields (hub.wire.subset_type). Applying a plan parses
the bank's bytes through that type and encodes what it kept, in C; nothing walks messages or
descriptors per answer in Python, which matters for pages of a thousand transactions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from dsop.controlinfo.v2 import bank_pb2
from hub import wire
from hub.profiles import FieldCategories, Profiles
from hub.respond import Outgoing

#: BankResult payload -> (its message, the endpoints of the table it is filtered by, and how
#: each endpoint's paths are rewritten to the payload's field names).
PAYLOADS: Final[Mapping[str, tuple[Descriptor, tuple[tuple[str, str, str], ...]]]] = {
    "accounts": (bank_pb2.ListAccountsResponse.DESCRIPTOR, (("Accounts", "", ""),)),
    "account_details": (
        bank_pb2.GetAccountDetailsResponse.DESCRIPTOR,
        (("Account Details", "", ""),),
    ),
    "transactions": (bank_pb2.ListTransactionsResponse.DESCRIPTOR, (("Transactions", "", ""),)),
    "cards": (bank_pb2.ListCardsResponse.DESCRIPTOR, (("Cards", "", ""),)),
    # The table nests each role in an "accountRole" object; the API's list holds them directly.
    "roles": (bank_pb2.ListRolesResponse.DESCRIPTOR, (("Roles", "roles.accountRole.", "roles."),)),
    # Accounts with balances are account details, one per account.
    "accounts_with_balances": (
        bank_pb2.ListAccountsWithBalancesResponse.DESCRIPTOR,
        (("Account Details", "account.", "accounts."),),
    ),
}

#: Known misspellings in the standard's table.
_SPELLING: Final = {"creditDebitIdicator": "creditDebitIndicator"}


class FilterConfigError(ValueError):
    """A path in the field table names no field of the contract."""


@dataclass(frozen=True, slots=True)
class Plan:
    """The filter of one payload kind for one column: a subset type of the payload keeping
    exactly the allowed fields (hub.wire.subset_type). Applying it parses the bank's bytes
    through that type, drops what it does not know and encodes the rest: all in C."""

    type: type[Message]
    #: The payload's list field, whose length is the items disclosed (None: details, one
    #: account or none).
    counted: str | None

    def apply(self, payload: bytes) -> tuple[bytes, int]:
        """The filtered payload, and the items it holds."""
        message: Any = self.type.FromString(payload)
        message.DiscardUnknownFields()
        if self.counted is None:
            items = int(message.HasField("account")) if _HAS_ACCOUNT in self.fields else 0
        else:
            items = len(getattr(message, self.counted)) if self.counted in self.fields else 0
        return message.SerializeToString(), items

    @property
    def fields(self) -> Mapping[str, object]:
        return self.type.DESCRIPTOR.fields_by_name


_HAS_ACCOUNT: Final = "account"
#: The list each payload kind's items are counted in.
_COUNTED: Final[Mapping[str, str | None]] = {
    "accounts": "accounts",
    "account_details": None,
    "transactions": "transactions",
    "cards": "payment_cards",
    "roles": "roles",
    "accounts_with_balances": "accounts",
}


def _keep(descriptor: Descriptor, allowed: dict[str, object], where: str) -> wire.Keep:
    """The fields to keep (by field name) of a tree of allowed json names; None marks a
    whole field. Raises FilterConfigError for a name the contract does not have."""
    by_json = {f.json_name: f for f in descriptor.fields}
    keep: dict[str, wire.Keep | None] = {}
    for name, sub in allowed.items():
        field = by_json.get(name)
        if field is None:
            raise FilterConfigError(f"{where}{name}: no such field in {descriptor.full_name}")
        if sub is None:
            keep[field.name] = None
        else:
            if field.type != FieldDescriptor.TYPE_MESSAGE:
                raise FilterConfigError(f"{where}{name}: not a message")
            assert field.message_type is not None and isinstance(sub, dict)
            keep[field.name] = _keep(field.message_type, sub, f"{where}{name}.")
    return keep


def _tree(paths: Iterable[str]) -> dict[str, object]:
    tree: dict[str, object] = {}
    for path in paths:
        node = tree
        *parents, leaf = [_SPELLING.get(p, p) for p in path.split(".")]
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node.setdefault(leaf, None)
    return tree


def compile_plans(fields: FieldCategories, column: str, keep_filterable: bool) -> dict[str, Plan]:
    """The plan per payload kind for one column of the table."""
    keep = {"T", "S", "F"} if keep_filterable else {"T", "S"}
    plans = {}
    for kind, (descriptor, sources) in PAYLOADS.items():
        paths = []
        for endpoint, old, new in sources:
            for path, row in fields.table.get(endpoint, {}).items():
                if row.get(column) in keep:
                    renamed = old and path.startswith(old)
                    paths.append(new + path.removeprefix(old) if renamed else path)
        kept = _keep(descriptor, _tree(paths), f"{kind}: ")
        plans[kind] = Plan(
            wire.subset_type(descriptor, kept, f"filter_{column}_{kind}"), _COUNTED[kind]
        )
    return plans


class FilterStage:
    """Applies each query's plan to each bank result, and counts the items it discloses;
    unknown fields are always dropped."""

    def __init__(self, profiles: Profiles) -> None:
        cache: dict[tuple[str, bool], dict[str, Plan]] = {}
        self.plans: dict[str, dict[str, Plan]] = {}
        for name, profile in profiles.services.items():
            key = (profile.fields, profile.keep_filterable)
            if key not in cache:
                cache[key] = compile_plans(profiles.fields, *key)
            self.plans[name] = cache[key]

    async def __call__(self, batch: list[Outgoing]) -> list[Outgoing]:
        plans = self.plans
        for item in batch:
            kind = item.kind
            if kind and kind != "error":
                item.payload, item.items = plans[item.ctx.query.service][kind].apply(item.payload)
        return batch
