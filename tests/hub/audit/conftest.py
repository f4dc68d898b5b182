"""Fixtures for the audit log tests: every behaviour runs against SQLite and PostgreSQL.

PostgreSQL runs when DSOP_TEST_POSTGRES_DSN names a server (each test gets its own schema,
dropped afterwards); otherwise those cases skip and say how to enable them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.hub.audit.audit_support import Backend, postgres_dsn


@pytest.fixture(scope="session")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        path = tmp_path / "audit.db"
        yield Backend("sqlite", f"sqlite:{path}", "", path=path)
        return
    dsn = postgres_dsn()
    schema = f"audit_test_{uuid.uuid4().hex[:12]}"
    yield Backend("postgres", dsn, schema, dsn=dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                psycopg.sql.Identifier(schema)
            )
        )
