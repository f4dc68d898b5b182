"""Readable output of hub events for people, and JSON for programs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import EnumDescriptor

from dsop.controlinfo.v2 import model_pb2
from dsop.hub.v1 import hub_pb2


def wire_name(enum: EnumDescriptor, value: int) -> str:
    """The standard's JSON name of an enum value: ACCOUNT_TYPE_LOAN_ACCOUNT -> loanAccount."""
    if value == 0 or value not in enum.values_by_number:
        return "-"
    name = enum.values_by_number[value].name
    prefix = "".join(f"{part}_" for part in _snake(enum.name))
    words = name.removeprefix(prefix).lower().split("_")
    return words[0] + "".join(word.capitalize() for word in words[1:])


def _snake(camel: str) -> list[str]:
    parts, current = [], ""
    for char in camel:
        if char.isupper() and current:
            parts.append(current)
            current = ""
        current += char.upper()
    parts.append(current)
    return parts


def event_json(event: hub_pb2.QueryEvent) -> bytes:
    """One event as a JSON line (the standard's camelCase names)."""
    data: dict[str, Any] = json_format.MessageToDict(event)
    return orjson.dumps(data) + b"\n"


def _money(balance: model_pb2.Balance) -> str:
    if not balance.HasField("amount"):
        return "-"
    sign = "-" if balance.credit_debit_indicator == model_pb2.CREDIT_OR_DEBIT_DEBIT else ""
    return f"{sign}{balance.amount}"


def _accounts_table(rows: Iterable[tuple[str, str, str, str, str]]) -> list[str]:
    header = ("account", "type", "status", "balance", "currency")
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return [
        "    " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        for row in table
    ]


def _detail_rows(
    details: Iterable[model_pb2.AccountDetail],
) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for detail in details:
        balances = {b.type: b for b in detail.balances}
        chosen = balances.get(model_pb2.BALANCE_TYPE_AVAILABLE_BALANCE) or balances.get(
            model_pb2.BALANCE_TYPE_BOOKED_BALANCE
        )
        rows.append(
            (
                detail.account_identifier,
                wire_name(model_pb2.AccountType.DESCRIPTOR, detail.type),
                wire_name(model_pb2.AccountStatus.DESCRIPTOR, detail.status),
                _money(chosen) if chosen is not None else "(no balance)",
                detail.currency or "-",
            )
        )
    return rows


def render_event(event: hub_pb2.QueryEvent, *, max_rows: int = 10) -> list[str]:
    """Lines describing one event for a terminal."""
    if event.HasField("summary"):
        s = event.summary
        if s.HasField("error"):
            return [f"  refused: {s.error.code} {s.error.message}"]
        lines = [
            f"  summary: {s.banks_asked} banks asked, {s.banks_answered} answered, "
            f"{s.banks_failed} failed, {s.elapsed_us / 1000:.1f} ms"
        ]
        lines += [
            f"    bank {b.bank_id} failed: {b.error.code} {b.error.message}"
            for b in s.banks
            if b.HasField("error")
        ]
        return lines
    r = event.result
    outcome = wire_name(hub_pb2.BankOutcome.DESCRIPTOR, r.outcome)
    lines = [f"  bank {r.bank_id}: {outcome}"]
    kind = r.WhichOneof("payload")
    if kind == "error":
        lines.append(f"    {r.error.code}: {r.error.message}")
    elif kind == "accounts_with_balances":
        lines += _accounts_table(_detail_rows(r.accounts_with_balances.accounts))
    elif kind == "accounts":
        rows = [
            (
                a.account_identifier,
                wire_name(model_pb2.AccountType.DESCRIPTOR, a.type),
                wire_name(model_pb2.AccountStatus.DESCRIPTOR, a.status),
                f"ref {a.account_reference[:12]}…",
                a.currency or "-",
            )
            for a in r.accounts.accounts
        ]
        lines += _accounts_table(rows) if rows else ["    (no accounts)"]
    elif kind == "account_details":
        lines += _accounts_table(_detail_rows([r.account_details.account]))
    elif kind == "transactions":
        txs = r.transactions.transactions
        lines.append(
            f"    {len(txs)} transactions in this page{' (more follow)' if r.has_more else ''}"
        )
        for tx in txs[:max_rows]:
            sign = "-" if tx.credit_debit_indicator == model_pb2.CREDIT_OR_DEBIT_DEBIT else "+"
            label = tx.transaction_code.free_text or "-"
            who = tx.merchant or (tx.counter_parties[0].name if tx.counter_parties else "")
            amount = f"{sign}{tx.amount:>12} {tx.currency}"
            lines.append(f"    {tx.booking_date[:10]}  {amount}  {label:<18} {who}")
        if len(txs) > max_rows:
            lines.append(f"    … {len(txs) - max_rows} more")
    elif kind == "cards":
        for card in r.cards.payment_cards:
            lines.append(
                f"    {card.card_identifier}  {wire_name(model_pb2.CardType.DESCRIPTOR, card.type)}"
                f"  {wire_name(model_pb2.CardStatus.DESCRIPTOR, card.card_status)}"
                f"  expires {card.expiry_date}"
            )
    elif kind == "roles":
        for role in r.roles.roles:
            lines.append(
                f"    {role.name or '-'}  "
                f"{wire_name(model_pb2.AccountPermissionType.DESCRIPTOR, role.permission)}"
                f"  from {role.start_date or '-'} to {role.end_date or '-'}"
            )
    return lines
