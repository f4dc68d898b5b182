"""Which backend a ``--db`` string names: ``sqlite:PATH`` or ``postgresql://...``."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.audit.log import ChainLog, LogOptions
from hub.audit.postgres import DEFAULT_SCHEMA, PostgresAuditLog
from hub.audit.sqlite import SqliteAuditLog


def open_log(
    db: str,
    key: Ed25519PrivateKey | None = None,
    writer_id: str | None = None,
    options: LogOptions | None = None,
    *,
    schema: str = DEFAULT_SCHEMA,
) -> ChainLog:
    """The (not yet opened) log ``db`` names. Raises ValueError for an unknown form."""
    if db.startswith("sqlite:"):
        path = db.removeprefix("sqlite:")
        if not path:
            raise ValueError("--db: sqlite:PATH needs a path")
        return SqliteAuditLog(Path(path), key, writer_id, options)
    if db.startswith(("postgresql://", "postgres://")):
        return PostgresAuditLog(db, key, writer_id, options, schema=schema)
    raise ValueError("--db: expected sqlite:PATH or postgresql://DSN")
