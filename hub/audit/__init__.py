"""The write-ahead, tamper-evident audit log of disclosures (DSOP.md §2: kept 13 years).

Wiring, at start-up::

    log = SqliteAuditLog(path, load_or_create_key(key_path), writer_id=configured_name)
    await log.open()            # or PostgresAuditLog(dsn, key, writer_id); close() on stop

and in the egress, once per batch, after encoding and before anything leaves::

    await log.append(records_for_batch(released))   # raises AuditError: do not release

Operations: ``dsop audit verify | verify-export | disclosures | export | checkpoints | prune``
(clients/audit_cli.py). Design notes: hub/audit/log.py (group commit), hub/audit/chain.py
(hash chain, checkpoints, what verification can and cannot see), hub/audit/postgres.py (one
chain per writer).
"""

from hub.audit.chain import (
    ChainReport,
    Checkpoint,
    Problem,
    VerifyReport,
    read_checkpoint_lines,
    verify_export,
)
from hub.audit.database import open_log
from hub.audit.events import records_for_batch
from hub.audit.keys import load_or_create_key, load_public_keys, public_key_pem
from hub.audit.log import (
    AuditError,
    AuditLog,
    AuditMetrics,
    AuditUnavailable,
    ChainBroken,
    ChainLog,
    LogOptions,
    PruneResult,
    WriterBusy,
)
from hub.audit.postgres import PostgresAuditLog
from hub.audit.record import AuditRecord, Disclosure, Summary, reference_digest
from hub.audit.sqlite import SqliteAuditLog

__all__ = [
    "AuditError",
    "AuditLog",
    "AuditMetrics",
    "AuditRecord",
    "AuditUnavailable",
    "ChainBroken",
    "ChainLog",
    "ChainReport",
    "Checkpoint",
    "Disclosure",
    "LogOptions",
    "PostgresAuditLog",
    "Problem",
    "PruneResult",
    "SqliteAuditLog",
    "Summary",
    "VerifyReport",
    "WriterBusy",
    "load_or_create_key",
    "load_public_keys",
    "open_log",
    "public_key_pem",
    "read_checkpoint_lines",
    "records_for_batch",
    "reference_digest",
    "verify_export",
]
