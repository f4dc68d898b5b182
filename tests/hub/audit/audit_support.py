"""Test support for the audit log: records, and raw access to the database for tampering."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.audit import AuditRecord, ChainLog, Disclosure, LogOptions, Summary, open_log

PARTY = "41018012345"  # synthetic (month + 80); never logged by the audit path
OTHER_PARTY = "974760673"
POSTGRES_ENV = "DSOP_TEST_POSTGRES_DSN"


def record(
    n: int = 0,
    *,
    party: str = PARTY,
    at: dt.datetime | None = None,
    service: str = "skatt-kontroll",
    consumer: str = "974761076",
    summary: bool = False,
) -> AuditRecord:
    disclosures = [
        Disclosure("910000001", "complete", 3, hashlib.sha256(b"result %d" % n).digest()),
        Disclosure("910000002", "failed", 0, hashlib.sha256(b"fail %d" % n).digest(), "ACC-100"),
    ]
    if summary:
        disclosures.append(Disclosure(None, "summary", 0, hashlib.sha256(b"s%d" % n).digest()))
    return AuditRecord(
        at=at or dt.datetime.now(dt.UTC),
        consumer=consumer,
        subject="skatt-client",
        requester_id="caseworker-7",
        service=service,
        legal_mandate="Skatteforvaltningsloven § 10-2 første ledd, jf. § 10-14",
        case_id=str(uuid.UUID(int=7)),
        correlation_id=str(uuid.UUID(int=n + 1000)),
        query_id=f"q{n}",
        party_id=party,
        from_date="2024-01-01",
        to_date="2024-12-31",
        operation="accounts",
        only_primary_owner=True,
        additional_reference_type="",
        additional_reference_digest="",
        banks_asked=("910000001", "910000002"),
        disclosures=tuple(disclosures),
        summary=Summary(2, 1, 1, 1234) if summary else None,
    )


def records(count: int, start: int = 0, **kwargs: Any) -> list[AuditRecord]:
    return [record(start + i, **kwargs) for i in range(count)]


def postgres_dsn() -> str:
    """The test server's DSN; skips the test when none is configured."""
    dsn = os.environ.get(POSTGRES_ENV, "")
    if not dsn:
        pytest.skip(
            f"PostgreSQL audit tests: set {POSTGRES_ENV}, e.g. "
            "postgresql://postgres@127.0.0.1:5432/test"
        )
    return dsn


@dataclass
class Backend:
    """One database holding an audit log, with raw SQL access for tampering (``?`` marks a
    parameter on both backends)."""

    name: str
    db: str
    schema: str
    dsn: str = ""
    path: Path | None = None

    def log(
        self,
        key: Ed25519PrivateKey | None = None,
        writer: str | None = None,
        **options: Any,
    ) -> ChainLog:
        return open_log(self.db, key, writer, LogOptions(**options), schema=self.schema)

    def sql(
        self, statement: str, params: tuple[Any, ...] | list[Any] = ()
    ) -> list[tuple[Any, ...]]:
        if self.name == "sqlite":
            assert self.path is not None
            conn = sqlite3.connect(self.path, isolation_level=None)
            try:
                cursor = conn.execute(statement, params)
                return cursor.fetchall() if cursor.description else []
            finally:
                conn.close()
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("SET search_path TO {}").format(psycopg.sql.Identifier(self.schema))
            )
            cursor = conn.execute(statement.replace("?", "%s"), params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def row(self, seq: int, writer: str = "w1") -> dict[str, Any]:
        (found,) = self.sql(
            "SELECT seq, body, prev_hash, hash FROM records WHERE writer = ? AND seq = ?",
            (writer, seq),
        )
        return {
            "seq": found[0],
            "body": found[1],
            "prev_hash": bytes(found[2]),
            "hash": bytes(found[3]),
        }
