"""Stage: filter every bank answer through the service's field categories before it leaves.

Deny by default: a field leaves the hub only when field-filters.tsv gives it category T or S
for the service's column (F too when the profile keeps filterable fields); X fields, fields the
table does not list and fields unknown to the contract are removed, whatever a bank sends.

The categories are compiled once, at start-up, into a plan per (column, payload kind): which
fields to clear at each level and which sub-messages to descend into. Applying a plan is a
few ClearField calls per message; nothing walks descriptors per answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from dsop.controlinfo.v2 import bank_pb2
from dsop.hub.v1 import hub_pb2
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
        hub_pb2.AccountsWithBalances.DESCRIPTOR,
        (("Account Details", "account.", "accounts."),),
    ),
}

#: Known misspellings in the standard's table.
_SPELLING: Final = {"creditDebitIdicator": "creditDebitIndicator"}


class FilterConfigError(ValueError):
    """A path in the field table names no field of the contract."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with one message: clear these fields, then apply sub-plans."""

    clear: tuple[str, ...]
    #: (field name, repeated?, plan) for sub-messages that are partly allowed.
    descend: tuple[tuple[str, bool, Plan], ...]

    def apply(self, message: Message) -> None:
        for name in self.clear:
            message.ClearField(name)
        for name, repeated, plan in self.descend:
            if repeated:
                for item in getattr(message, name):
                    plan.apply(item)
            elif message.HasField(name):
                plan.apply(getattr(message, name))


def _compile(descriptor: Descriptor, allowed: dict[str, object], where: str) -> Plan:
    """A plan keeping exactly ``allowed`` (a tree of json names; None marks a whole field)."""
    by_json = {f.json_name: f for f in descriptor.fields}
    for name in allowed:
        if name not in by_json:
            raise FilterConfigError(f"{where}{name}: no such field in {descriptor.full_name}")
    clear = []
    descend = []
    for field in descriptor.fields:
        sub = allowed.get(field.json_name, False)
        if sub is False:
            clear.append(field.name)
        elif isinstance(sub, dict):
            if field.type != FieldDescriptor.TYPE_MESSAGE:
                raise FilterConfigError(f"{where}{field.json_name}: not a message")
            assert field.message_type is not None
            plan = _compile(field.message_type, sub, f"{where}{field.json_name}.")
            if plan.clear or plan.descend:
                repeated = field.is_repeated
                descend.append((field.name, repeated, plan))
    return Plan(tuple(clear), tuple(descend))


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
        plans[kind] = _compile(descriptor, _tree(paths), f"{kind}: ")
    return plans


class FilterStage:
    """Applies each query's plan to each bank result; unknown fields are always dropped."""

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
            event = item.event
            if not event.HasField("result"):
                continue
            result = event.result
            kind = result.WhichOneof("payload")
            if kind is None or kind == "error":
                continue
            payload = getattr(result, kind)
            payload.DiscardUnknownFields()
            plans[item.ctx.query.service][kind].apply(payload)
        return batch
