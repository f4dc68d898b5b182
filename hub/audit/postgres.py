"""The shared backend: PostgreSQL through psycopg 3 (async), for several hub processes or
replicas writing ONE database.

One chain per writer. Each hub process writes its own chain, named by its writer id, with its
own seq and prev_hash; verification checks every chain. The alternative, one global chain,
would make every append of every replica read the global tail and take a lock on it, so the
replicas would serialise on the hot path (and wait on each other's fsyncs); with one chain
per writer, a writer's next seq and prev_hash live in its own memory and its transactions
touch nothing another writer touches. The price: there is no global order of records across
writers, which an audit does not need (each record carries its release time).

Writer ids must be stable across restarts (a configured name, e.g. the replica's ordinal,
not ``hostname-pid``): a restarted writer resumes its chain by reading its last row. Two live
processes must never share one, so the writer holds a session-level advisory lock on its id
for as long as its connection lives and a second one fails with WriterBusy; if the process
dies the server drops its session and with it the lock.

Durability: commits wait for the WAL flush (``synchronous_commit`` is turned back on for the
writer's session if the server default is off). The writer uses one connection; reads use a
second one so a long verification never delays a commit. Deployment note: the hub's role
needs only SELECT and INSERT on these tables; UPDATE and DELETE belong to the role that
prunes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from collections.abc import AsyncGenerator, Sequence
from typing import Any, Final

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg import sql

from hub.audit.chain import Checkpoint, StoredRow
from hub.audit.log import AuditError, ChainLog, LogOptions, NewRow, WriterBusy

DEFAULT_SCHEMA: Final = "dsop_audit"
_ROW: Final = "writer, seq, at, party_id, case_id, consumer, service, body, prev_hash, hash"
_CHECKPOINT: Final = "kind, writer, seq, hash, at, key_id, signature"
_CHUNK: Final = 2000
_DDL: Final = (
    "CREATE SCHEMA IF NOT EXISTS {s}",
    """CREATE TABLE IF NOT EXISTS {s}.records (
        writer text NOT NULL,
        seq bigint NOT NULL,
        at timestamptz NOT NULL,
        party_id text NOT NULL,
        case_id text NOT NULL,
        consumer text NOT NULL,
        service text NOT NULL,
        body text NOT NULL,
        prev_hash bytea NOT NULL,
        hash bytea NOT NULL,
        PRIMARY KEY (writer, seq)
    )""",
    "CREATE INDEX IF NOT EXISTS records_party_id ON {s}.records (party_id, at)",
    "CREATE INDEX IF NOT EXISTS records_at ON {s}.records (at)",
    """CREATE TABLE IF NOT EXISTS {s}.checkpoints (
        writer text NOT NULL,
        kind text NOT NULL,
        seq bigint NOT NULL,
        hash bytea NOT NULL,
        at timestamptz NOT NULL,
        key_id text NOT NULL,
        signature bytea NOT NULL,
        PRIMARY KEY (writer, kind, seq)
    )""",
    """CREATE TABLE IF NOT EXISTS {s}.keys (
        key_id text PRIMARY KEY,
        public_key bytea NOT NULL,
        added timestamptz NOT NULL DEFAULT now()
    )""",
)
#: Serialises schema creation between processes starting together (CREATE ... IF NOT EXISTS
#: is not safe against a concurrent CREATE).
_DDL_LOCK: Final = 0x64736F70_61756469  # "dsopaudi"

Connection = psycopg.AsyncConnection[tuple[Any, ...]]


def _stored_row(row: tuple[Any, ...]) -> StoredRow:
    writer, seq, at, party_id, case_id, consumer, service, body, prev_hash, hash_ = row
    return StoredRow(
        writer,
        seq,
        at.astimezone(dt.UTC),
        party_id,
        case_id,
        consumer,
        service,
        body.encode(),
        bytes(prev_hash),
        bytes(hash_),
    )


def _checkpoint(row: tuple[Any, ...]) -> Checkpoint:
    kind, writer, seq, hash_, at, kid, signature = row
    return Checkpoint(kind, writer, seq, bytes(hash_), at.astimezone(dt.UTC), kid, bytes(signature))


def _checkpoint_params(c: Checkpoint) -> tuple[Any, ...]:
    return (c.kind, c.writer, c.seq, c.hash, c.at, c.key_id, c.signature)


class PostgresAuditLog(ChainLog):
    """The audit log in schema ``schema`` of the PostgreSQL database at ``dsn``."""

    def __init__(
        self,
        dsn: str,
        key: Ed25519PrivateKey | None = None,
        writer_id: str | None = None,
        options: LogOptions | None = None,
        *,
        schema: str = DEFAULT_SCHEMA,
    ) -> None:
        super().__init__(key, writer_id, options or LogOptions())
        self.dsn = dsn
        self.schema = schema
        self._write_conn: Connection | None = None
        self._read_conn: Connection | None = None
        self._lock_key: int | None = None
        s = sql.Identifier(schema)
        self._sql = {
            name: sql.SQL(text).format(s=s)
            for name, text in {
                "insert_row": f"INSERT INTO {{s}}.records ({_ROW}) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                "insert_checkpoint": f"INSERT INTO {{s}}.checkpoints ({_CHECKPOINT}) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                "insert_key": "INSERT INTO {s}.keys (key_id, public_key) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                "keys": "SELECT key_id, public_key FROM {s}.keys",
                "writers": "WITH RECURSIVE w(writer) AS ("
                " (SELECT writer FROM {s}.records ORDER BY writer LIMIT 1)"
                " UNION ALL SELECT (SELECT r.writer FROM {s}.records r"
                " WHERE r.writer > w.writer ORDER BY r.writer LIMIT 1)"
                " FROM w WHERE w.writer IS NOT NULL)"
                " SELECT writer FROM w WHERE writer IS NOT NULL"
                " UNION SELECT DISTINCT writer FROM {s}.checkpoints",
                "checkpoints": f"SELECT {_CHECKPOINT} FROM {{s}}.checkpoints",
                "writer_checkpoints": f"SELECT {_CHECKPOINT} FROM {{s}}.checkpoints "
                "WHERE writer = %s",
                "rows": f"SELECT {_ROW} FROM {{s}}.records WHERE writer = %s AND seq >= %s "
                f"AND seq <= %s ORDER BY seq LIMIT {_CHUNK}",
                "last_row": f"SELECT {_ROW} FROM {{s}}.records WHERE writer = %s "
                "ORDER BY seq DESC LIMIT 1",
                "party_rows": f"SELECT {_ROW} FROM {{s}}.records WHERE party_id = %s "
                "ORDER BY at, writer, seq",
                "seq_bounds": "SELECT"
                " (SELECT min(seq) FROM {s}.records WHERE writer = %s AND at >= %s),"
                " (SELECT max(seq) FROM {s}.records WHERE writer = %s AND at < %s)",
                "prune": "DELETE FROM {s}.records WHERE writer = %s AND seq <= %s",
                "exists": "SELECT to_regclass(%s)",
            }.items()
        }

    # -- connections ------------------------------------------------------------------------

    async def _connect(self) -> None:
        self._read_conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)

    async def _query(self, name: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        assert self._read_conn is not None
        try:
            cursor = await self._read_conn.execute(self._sql[name], params)
            return await cursor.fetchall()
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            raise AuditError(f"no audit log in schema {self.schema!r}") from None

    async def _prepare_writes(self) -> None:
        if self._write_conn is not None:
            return
        conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        try:
            row = await (await conn.execute("SHOW synchronous_commit")).fetchone()
            if row is not None and row[0] == "off":
                await conn.execute("SET synchronous_commit TO on")
            table = f"{sql.Identifier(self.schema).as_string(conn)}.records"
            exists = await (await conn.execute(self._sql["exists"], [table])).fetchone()
            # Creating only when missing lets the hub run with a role that cannot CREATE.
            if exists is None or exists[0] is None:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", [_DDL_LOCK])
                    for statement in _DDL:
                        await conn.execute(sql.SQL(statement).format(s=sql.Identifier(self.schema)))
        except BaseException:
            await conn.close()
            raise
        self._write_conn = conn

    async def _disconnect(self) -> None:
        for conn in (self._write_conn, self._read_conn):
            if conn is not None:
                await conn.close()
        self._write_conn = self._read_conn = None

    # -- the writer id ----------------------------------------------------------------------

    def _writer_lock_key(self, writer: str) -> int:
        digest = hashlib.sha256(f"dsop-hub audit\0{self.schema}\0{writer}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    async def _lock_writer(self, writer: str) -> bool:
        assert self._write_conn is not None
        key = self._writer_lock_key(writer)
        cursor = await self._write_conn.execute("SELECT pg_try_advisory_lock(%s)", [key])
        row = await cursor.fetchone()
        if row is None or not row[0]:
            return False
        self._lock_key = key
        return True

    async def _unlock_writer(self) -> None:
        if self._lock_key is not None and self._write_conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._write_conn.execute("SELECT pg_advisory_unlock(%s)", [self._lock_key])
        self._lock_key = None

    async def _reopen_writer(self) -> None:
        if self._write_conn is not None and not self._write_conn.closed:
            # The connection (and the lock with it) may still be fine: a failed statement
            # only aborted its transaction.
            try:
                await self._write_conn.execute("SELECT 1")
            except psycopg.Error:
                pass
            else:
                return
        if self._write_conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._write_conn.close()
        self._write_conn = None
        await self._prepare_writes()
        assert self.writer_id is not None
        if not await self._lock_writer(self.writer_id):
            raise WriterBusy(
                f"audit writer id {self.writer_id!r} was taken by another process while this "
                "one was disconnected"
            )
        if self._read_conn is not None and self._read_conn.closed:
            await self._connect()

    # -- writing ----------------------------------------------------------------------------

    async def _write(self, rows: Sequence[NewRow], checkpoints: Sequence[Checkpoint]) -> None:
        conn = self._write_conn
        assert conn is not None
        async with conn.transaction(), conn.cursor() as cursor:
            if rows:
                await cursor.executemany(
                    self._sql["insert_row"],
                    [
                        (
                            r.writer,
                            r.seq,
                            r.at,
                            r.party_id,
                            r.case_id,
                            r.consumer,
                            r.service,
                            r.body,
                            r.prev_hash,
                            r.hash,
                        )
                        for r in rows
                    ],
                )
            if checkpoints:
                await cursor.executemany(
                    self._sql["insert_checkpoint"], [_checkpoint_params(c) for c in checkpoints]
                )

    async def _store_key(self, key_id: str, public: bytes) -> None:
        assert self._write_conn is not None
        await self._write_conn.execute(self._sql["insert_key"], [key_id, public])

    async def _prune_chain(self, checkpoint: Checkpoint) -> int:
        conn = self._write_conn
        assert conn is not None
        async with conn.transaction(), conn.cursor() as cursor:
            await cursor.execute(self._sql["insert_checkpoint"], _checkpoint_params(checkpoint))
            await cursor.execute(self._sql["prune"], [checkpoint.writer, checkpoint.seq])
            return cursor.rowcount

    # -- reading ----------------------------------------------------------------------------

    async def _stored_keys(self) -> dict[str, bytes]:
        return {kid: bytes(raw) for kid, raw in await self._query("keys")}

    async def _writers(self) -> list[str]:
        return [writer for (writer,) in await self._query("writers")]

    async def _checkpoints(self, writer: str | None) -> list[Checkpoint]:
        rows = await (
            self._query("checkpoints")
            if writer is None
            else self._query("writer_checkpoints", [writer])
        )
        return [_checkpoint(row) for row in rows]

    async def _rows(
        self, writer: str, first: int, last: int | None
    ) -> AsyncGenerator[list[StoredRow], None]:
        high = last if last is not None else 2**63 - 1
        while True:
            rows = await self._query("rows", [writer, first, high])
            if not rows:
                return
            yield [_stored_row(row) for row in rows]
            first = rows[-1][1] + 1

    async def _last_row(self, writer: str) -> StoredRow | None:
        rows = await self._query("last_row", [writer])
        return _stored_row(rows[0]) if rows else None

    async def _party_rows(self, party_id: str) -> list[StoredRow]:
        return [_stored_row(row) for row in await self._query("party_rows", [party_id])]

    async def _seq_bounds(
        self, writer: str, start: dt.datetime, end: dt.datetime
    ) -> tuple[int, int] | None:
        ((low, high),) = await self._query("seq_bounds", [writer, start, writer, end])
        if low is None or high is None:
            return None
        return int(low), int(high)
