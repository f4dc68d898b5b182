"""Service profiles as data: who may ask what, for which period, and see which fields.

The profiles live in ``hub/data/profiles.toml`` (overridable with a file of the same shape);
the field categories in ``hub/data/field-filters.tsv``. Both are loaded and checked once at
start-up: a malformed file stops the hub with a message naming the line and the problem.
"""

from __future__ import annotations

import enum
import re
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from dsop.controlinfo.v2 import bank_pb2
from dsop.hub.v1 import hub_pb2

#: Operation names in profiles, the CLI and batch files.
OPERATIONS: Final[Mapping[str, hub_pb2.Operation.ValueType]] = MappingProxyType(
    {
        "accounts": hub_pb2.OPERATION_ACCOUNTS,
        "account-details": hub_pb2.OPERATION_ACCOUNT_DETAILS,
        "transactions": hub_pb2.OPERATION_TRANSACTIONS,
        "cards": hub_pb2.OPERATION_CARDS,
        "roles": hub_pb2.OPERATION_ROLES,
        "accounts-with-balances": hub_pb2.OPERATION_ACCOUNTS_WITH_BALANCES,
    }
)
OPERATION_NAMES: Final = MappingProxyType({v: k for k, v in OPERATIONS.items()})

ADDITIONAL_REFERENCES: Final = MappingProxyType(
    {
        "pol1": bank_pb2.ADDITIONAL_REFERENCE_ID_TYPE_POL1,
        "srf": bank_pb2.ADDITIONAL_REFERENCE_ID_TYPE_SRF,
    }
)

_KEYS: Final = frozenset(
    {
        "consumers",
        "scopes",
        "mandates",
        "operations",
        "owner",
        "period",
        "requester_id",
        "additional_reference",
        "fields",
        "keep_filterable",
    }
)
_REQUIRED: Final = frozenset(
    {"consumers", "scopes", "mandates", "operations", "owner", "period", "fields"}
)
_ORGNO: Final = re.compile(r"^[0-9]{9}$")


class ProfileError(ValueError):
    """The profiles file is malformed; the message names the line and the problem."""


class PeriodKind(enum.StrEnum):
    YEARS_BACK = "years-back"
    MONTHS_BEFORE_REFERENCE = "months-before-reference"
    PREVIOUS_CALENDAR_YEAR = "previous-calendar-year"
    TODAY = "today"


_PERIOD_AMOUNT: Final = {
    PeriodKind.YEARS_BACK: "years",
    PeriodKind.MONTHS_BEFORE_REFERENCE: "months",
}


@dataclass(frozen=True, slots=True)
class PeriodRule:
    kind: PeriodKind
    #: Years back, or months before the reference date; 0 for the other kinds.
    amount: int = 0


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    consumers: frozenset[str]
    scopes: frozenset[str]
    #: NFC-normalised.
    mandates: frozenset[str]
    #: The first mandate listed: what clients send when not told otherwise.
    default_mandate: str
    operations: frozenset[hub_pb2.Operation.ValueType]
    primary_only: bool
    period: PeriodRule
    requester_id: bool
    additional_reference: bank_pb2.AdditionalReferenceIdType.ValueType | None
    #: The field-filters.tsv column.
    fields: str
    keep_filterable: bool


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _line_of(text: str, service: str, key: str | None = None) -> int:
    """The line of a service's table (or of a key inside it), for error messages."""
    lines = text.splitlines()
    header = re.compile(rf"^\s*\[\s*services\.\"?{re.escape(service)}\"?\s*\]")
    for number, line in enumerate(lines, 1):
        if header.match(line):
            if key is None:
                return number
            for offset, inner in enumerate(lines[number:], number + 1):
                if inner.lstrip().startswith("["):
                    break
                if re.match(rf"^\s*{re.escape(key)}\s*=", inner):
                    return offset
            return number
    return 1


def _strings(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{what} must be a non-empty list of non-empty strings")
    return value


def _profile(name: str, raw: Any, columns: frozenset[str]) -> Profile:
    """One service's profile; raises ValueError("<key>: <problem>")."""
    if not isinstance(raw, dict):
        raise ValueError("must be a table")
    unknown = set(raw) - _KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise ValueError(f"{key}: unknown key (known: {', '.join(sorted(_KEYS))})")
    missing = _REQUIRED - set(raw)
    if missing:
        raise ValueError(f"{sorted(missing)[0]}: required")
    consumers = _strings(raw["consumers"], "consumers")
    if not all(_ORGNO.match(c) for c in consumers):
        raise ValueError("consumers: each must be a 9-digit organisation number")
    operations = []
    for op in _strings(raw["operations"], "operations"):
        if op not in OPERATIONS:
            raise ValueError(
                f"operations: unknown operation {op!r} (known: {', '.join(OPERATIONS)})"
            )
        operations.append(OPERATIONS[op])
    if hub_pb2.OPERATION_ACCOUNTS_WITH_BALANCES in operations and not {
        hub_pb2.OPERATION_ACCOUNTS,
        hub_pb2.OPERATION_ACCOUNT_DETAILS,
    } <= set(operations):
        raise ValueError("operations: accounts-with-balances needs accounts and account-details")
    if raw["owner"] not in ("any", "primary-only"):
        raise ValueError("owner: must be 'any' or 'primary-only'")
    period = raw["period"]
    if not isinstance(period, dict) or period.get("kind") not in set(PeriodKind):
        raise ValueError(f"period: kind must be one of {', '.join(PeriodKind)}")
    kind = PeriodKind(period["kind"])
    amount_key = _PERIOD_AMOUNT.get(kind)
    amount = period.get(amount_key, 0) if amount_key else 0
    if set(period) - {"kind", *([amount_key] if amount_key else [])}:
        raise ValueError(f"period: unexpected keys for kind {kind}")
    if amount_key and (not isinstance(amount, int) or isinstance(amount, bool) or amount < 1):
        raise ValueError(f"period: {kind} needs {amount_key} = a positive whole number")
    reference = raw.get("additional_reference")
    if reference is not None and reference not in ADDITIONAL_REFERENCES:
        raise ValueError(f"additional_reference: must be one of {', '.join(ADDITIONAL_REFERENCES)}")
    for key in ("requester_id", "keep_filterable"):
        if not isinstance(raw.get(key, False), bool):
            raise ValueError(f"{key}: must be true or false")
    if raw["fields"] not in columns:
        raise ValueError(
            f"fields: unknown column {raw['fields']!r} (columns: {', '.join(sorted(columns))})"
        )
    return Profile(
        name=name,
        consumers=frozenset(consumers),
        scopes=frozenset(_strings(raw["scopes"], "scopes")),
        mandates=frozenset(nfc(m) for m in _strings(raw["mandates"], "mandates")),
        default_mandate=nfc(raw["mandates"][0]),
        operations=frozenset(operations),
        primary_only=raw["owner"] == "primary-only",
        period=PeriodRule(kind, amount),
        requester_id=raw.get("requester_id", False),
        additional_reference=ADDITIONAL_REFERENCES[reference] if reference else None,
        fields=raw["fields"],
        keep_filterable=raw.get("keep_filterable", False),
    )


@dataclass(frozen=True, slots=True)
class FieldCategories:
    """field-filters.tsv: (endpoint, dotted field path) -> category per column."""

    columns: tuple[str, ...]
    #: endpoint -> path -> column -> category ("T", "S", "F", "X", "-"); "?" read as "S".
    table: Mapping[str, Mapping[str, Mapping[str, str]]]

    @classmethod
    def parse(cls, text: str, source: str = "field-filters.tsv") -> FieldCategories:
        lines = text.splitlines()
        if not lines:
            raise ProfileError(f"{source}:1: empty file")
        header = lines[0].split("\t")
        if header[:2] != ["endpoint", "field"] or len(header) < 3:
            raise ProfileError(f"{source}:1: header must be endpoint, field, then columns")
        columns = tuple(header[2:])
        table: dict[str, dict[str, dict[str, str]]] = {}
        for number, line in enumerate(lines[1:], 2):
            if not line.strip():
                continue
            cells = line.split("\t")
            if len(cells) != len(header):
                raise ProfileError(
                    f"{source}:{number}: expected {len(header)} cells, got {len(cells)}"
                )
            endpoint, path, *categories = cells
            row = {}
            for column, category in zip(columns, categories, strict=True):
                if category not in ("T", "S", "F", "X", "?", "-"):
                    raise ProfileError(
                        f"{source}:{number}: {column}: unknown category {category!r}"
                    )
                row[column] = "S" if category == "?" else category
            table.setdefault(endpoint, {})[path] = row
        return cls(columns, table)


@dataclass(frozen=True, slots=True)
class Profiles:
    services: Mapping[str, Profile]
    fields: FieldCategories

    def get(self, service: str) -> Profile | None:
        return self.services.get(service)


def _default_text(name: str) -> str:
    return resources.files("hub.data").joinpath(name).read_text(encoding="utf-8")


def load_profiles(path: Path | None = None, fields_path: Path | None = None) -> Profiles:
    """The shipped profiles, or the file at ``path``; raises ProfileError naming the line."""
    source = str(path) if path else "hub/data/profiles.toml"
    try:
        text = path.read_text(encoding="utf-8") if path else _default_text("profiles.toml")
        fields_text = (
            fields_path.read_text(encoding="utf-8")
            if fields_path
            else _default_text("field-filters.tsv")
        )
    except OSError as exc:
        raise ProfileError(f"{exc.filename}: cannot read: {exc.strerror}") from exc
    fields = FieldCategories.parse(fields_text, str(fields_path or "hub/data/field-filters.tsv"))
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{source}: {exc}") from exc
    if set(raw) != {"services"} or not isinstance(raw["services"], dict) or not raw["services"]:
        raise ProfileError(f"{source}:1: expected only [services.NAME] tables")
    services = {}
    for name, body in raw["services"].items():
        try:
            services[name] = _profile(name, body, frozenset(fields.columns))
        except ValueError as exc:
            key = str(exc).split(":", 1)[0]
            line = _line_of(text, name, key if key in _KEYS else None)
            raise ProfileError(f"{source}:{line}: services.{name}.{exc}") from None
    return Profiles(MappingProxyType(services), fields)
