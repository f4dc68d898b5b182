"""What one audit record holds, and its canonical encoding: :func:`encode_body` is the only
encoder; what it returns is hashed and stored, and verification reads those stored bytes.

A record covers the events of ONE query released to the agency in ONE egress batch. A query
whose banks answer at different moments gets several records; the one carrying ``summary``
closes the query.

The body is JSON with sorted keys (orjson ``OPT_SORT_KEYS``), UTF-8, no insignificant
whitespace. It is stored as it is, so a verifier recomputes each hash from exactly the stored
bytes and never re-encodes. Personal data in it: the party id (needed for the disclosure
lookup) and the requester id; the additional reference (a police order, or a guardian's
national identity number) only as its SHA-256.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

#: The body format; a new format gets a new number and verifiers keep reading old ones.
FORMAT: Final = 1
OUTCOMES: Final = frozenset({"complete", "partial", "failed", "summary", "refused"})
_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"
_MAX_WRITER_ID: Final = 128


@dataclass(slots=True)
class Disclosure:
    """One event released to the agency."""

    #: The bank's organisation number; None for the query's summary event.
    bank_id: str | None
    #: "complete" | "partial" | "failed" for a bank's result; "summary" | "refused" for the
    #: query's last event.
    outcome: str
    #: Accounts, transactions, cards or roles in the payload (0 for errors and summaries).
    items: int
    #: SHA-256 of the exact encoded event bytes released.
    digest: bytes
    #: The standard's ACC code when failed or refused.
    error_code: str = ""


@dataclass(slots=True)
class Summary:
    """The query's totals; present on the record that closes the query."""

    banks_asked: int
    banks_answered: int
    banks_failed: int
    elapsed_us: int


@dataclass(slots=True)
class AuditRecord:
    """One query's events released in one egress batch. ``at`` must be timezone-aware.

    Records, like their disclosures and summaries, are values, never changed once made; they
    are not frozen only because a frozen dataclass costs several times more to make, and the
    hub makes one per query per batch."""

    at: dt.datetime
    consumer: str
    subject: str
    requester_id: str
    service: str
    legal_mandate: str
    case_id: str
    correlation_id: str
    query_id: str
    party_id: str
    from_date: str
    to_date: str
    operation: str
    only_primary_owner: bool
    additional_reference_type: str
    #: Hex SHA-256 of the additional reference; "" when the query has none.
    additional_reference_digest: str
    banks_asked: tuple[str, ...]
    disclosures: tuple[Disclosure, ...]
    summary: Summary | None = None


def reference_digest(reference: str | None) -> str:
    """The hex SHA-256 stored in place of an additional reference; "" for none."""
    if not reference:
        return ""
    return hashlib.sha256(reference.encode()).hexdigest()


@functools.lru_cache(maxsize=256)  # the records of one egress batch share one release time
def format_time(at: dt.datetime) -> str:
    """The one text form of a time in bodies, checkpoints and the SQLite ``at`` column: UTC,
    microseconds, ``Z``; fixed width, so text order is time order."""
    return at.astimezone(dt.UTC).strftime(_TIME_FORMAT)


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


def check_writer_id(writer: str) -> str:
    """Returns ``writer`` when it can name a chain: 1..128 printable characters."""
    if not writer or len(writer) > _MAX_WRITER_ID or not writer.isprintable():
        raise ValueError(f"writer id: 1..{_MAX_WRITER_ID} printable characters")
    return writer


def check_records(records: Sequence[AuditRecord]) -> None:
    """Raises ValueError for a record the log must not accept. Done per caller, before the
    record joins a group commit, so one bad record fails only its own append. The message
    names the field, never its value."""
    for index, record in enumerate(records):
        if record.at.utcoffset() is None:
            raise ValueError(f"records[{index}].at: must be timezone-aware")
        for number, disclosure in enumerate(record.disclosures):
            if disclosure.outcome not in OUTCOMES:
                raise ValueError(
                    f"records[{index}].disclosures[{number}].outcome: one of {sorted(OUTCOMES)}"
                )
            if len(disclosure.digest) != 32:
                raise ValueError(f"records[{index}].disclosures[{number}].digest: 32 bytes")
            if disclosure.items < 0:
                raise ValueError(f"records[{index}].disclosures[{number}].items: must be >= 0")


def encode_body(record: AuditRecord, writer: str, seq: int) -> bytes:
    """The canonical body of ``record`` as the ``seq``-th record of ``writer``'s chain.

    Writer and seq are inside the hashed body, so a record moved to another position or
    another chain no longer matches its hash.
    """
    summary = record.summary
    return orjson.dumps(
        {
            "v": FORMAT,
            "writer": writer,
            "seq": seq,
            "at": format_time(record.at),
            "consumer": record.consumer,
            "subject": record.subject,
            "requester_id": record.requester_id,
            "service": record.service,
            "legal_mandate": record.legal_mandate,
            "case_id": record.case_id,
            "correlation_id": record.correlation_id,
            "query_id": record.query_id,
            "party_id": record.party_id,
            "from_date": record.from_date,
            "to_date": record.to_date,
            "operation": record.operation,
            "only_primary_owner": record.only_primary_owner,
            "additional_reference_type": record.additional_reference_type,
            "additional_reference_digest": record.additional_reference_digest,
            "banks_asked": record.banks_asked,
            "disclosures": [
                {
                    "bank_id": d.bank_id,
                    "outcome": d.outcome,
                    "items": d.items,
                    "digest": d.digest.hex(),
                    "error_code": d.error_code,
                }
                for d in record.disclosures
            ],
            "summary": None
            if summary is None
            else {
                "banks_asked": summary.banks_asked,
                "banks_answered": summary.banks_answered,
                "banks_failed": summary.banks_failed,
                "elapsed_us": summary.elapsed_us,
            },
        },
        option=orjson.OPT_SORT_KEYS,
    )


def decode_body(body: bytes | str) -> dict[str, Any]:
    """The body as a dict; ValueError when it is not a JSON object."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError("body is not JSON") from exc
    if not isinstance(value, dict):
        raise ValueError("body is not a JSON object")
    return value
