"""The embedded backend: one SQLite file in WAL mode with ``synchronous=FULL``, so a commit is
on disk when it returns.

sqlite3 blocks, so every write runs on one dedicated thread that owns the write connection,
and reads run on a second thread with their own connection (WAL lets them proceed while a
write is in flight); the event loop only awaits. Several processes may write one file under
different writer ids (SQLite serialises their transactions); one writer id is held by one log
object at a time through an exclusive ``flock`` on a lock file beside the database, which the
kernel drops if the process dies.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import functools
import hashlib
import os
import sqlite3
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.audit.chain import Checkpoint, StoredRow
from hub.audit.log import AuditError, ChainLog, LogOptions, NewRow
from hub.audit.record import format_time, parse_time

T = TypeVar("T")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS records (
    writer TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at TEXT NOT NULL,
    party_id TEXT NOT NULL,
    case_id TEXT NOT NULL,
    consumer TEXT NOT NULL,
    service TEXT NOT NULL,
    body TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (writer, seq)
);
CREATE INDEX IF NOT EXISTS records_party_id ON records (party_id, at);
CREATE INDEX IF NOT EXISTS records_at ON records (at);
CREATE TABLE IF NOT EXISTS checkpoints (
    writer TEXT NOT NULL,
    kind TEXT NOT NULL,
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL,
    at TEXT NOT NULL,
    key_id TEXT NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (writer, kind, seq)
);
CREATE TABLE IF NOT EXISTS keys (
    key_id TEXT PRIMARY KEY,
    public_key BLOB NOT NULL,
    added TEXT NOT NULL
);
"""
_ROW_COLUMNS: Final = (
    "writer", "seq", "at", "party_id", "case_id", "consumer", "service", "body", "prev_hash",
    "hash",
)  # fmt: skip
_ROW: Final = ", ".join(_ROW_COLUMNS)
#: Rows inserted by one statement (10 parameters each; SQLite allows 32766 since 3.32).
_ROWS_PER_INSERT: Final = 1000


@functools.lru_cache(maxsize=64)
def _insert_rows(count: int) -> str:
    """An INSERT of ``count`` rows."""
    row = "(" + ", ".join("?" * len(_ROW_COLUMNS)) + ")"
    return f"INSERT INTO records ({_ROW}) VALUES " + ", ".join([row] * count)


_CHECKPOINT: Final = "kind, writer, seq, hash, at, key_id, signature"
_INSERT_CHECKPOINT: Final = f"INSERT INTO checkpoints ({_CHECKPOINT}) VALUES (?, ?, ?, ?, ?, ?, ?)"


def _stored_row(row: tuple[Any, ...]) -> StoredRow:
    writer, seq, at, party_id, case_id, consumer, service, body, prev_hash, hash_ = row
    return StoredRow(
        writer,
        seq,
        parse_time(at),
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
    return Checkpoint(kind, writer, seq, bytes(hash_), parse_time(at), kid, bytes(signature))


def _checkpoint_params(checkpoint: Checkpoint) -> tuple[Any, ...]:
    return (
        checkpoint.kind,
        checkpoint.writer,
        checkpoint.seq,
        checkpoint.hash,
        format_time(checkpoint.at),
        checkpoint.key_id,
        checkpoint.signature,
    )


class SqliteAuditLog(ChainLog):
    """The audit log in the SQLite file ``path`` (created, with its tables, by a writer)."""

    def __init__(
        self,
        path: Path | str,
        key: Ed25519PrivateKey | None = None,
        writer_id: str | None = None,
        options: LogOptions | None = None,
    ) -> None:
        super().__init__(key, writer_id, options or LogOptions())
        self.path = Path(path)
        self._writes: ThreadPoolExecutor | None = None
        self._reads: ThreadPoolExecutor | None = None
        # Each connection is used only on its own thread.
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None

    # -- threads ----------------------------------------------------------------------------

    async def _on_write_thread(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._writes is not None
        return await asyncio.get_running_loop().run_in_executor(self._writes, fn, *args)

    async def _on_read_thread(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._reads is not None
        return await asyncio.get_running_loop().run_in_executor(self._reads, fn, *args)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        assert self._read_conn is not None
        return self._read_conn.execute(sql, params).fetchall()

    async def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await self._on_read_thread(self._read, sql, params)

    # -- connections ------------------------------------------------------------------------

    async def _connect(self) -> None:
        self._writes = ThreadPoolExecutor(1, thread_name_prefix="audit-sqlite-write")
        self._reads = ThreadPoolExecutor(1, thread_name_prefix="audit-sqlite-read")
        if self.writer_id is not None:
            await self._prepare_writes()  # creates the file and tables before the reader opens
        elif not self.path.exists():
            raise AuditError(f"no audit log at {self.path}")
        await self._on_read_thread(self._open_read)

    def _open_read(self) -> None:
        uri = f"{self.path.absolute().as_uri()}?mode=rw"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA query_only = ON")
        self._read_conn = conn

    async def _prepare_writes(self) -> None:
        if self._write_conn is None:
            await self._on_write_thread(self._open_write)

    def _open_write(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode != "wal":
                raise AuditError(f"{self.path}: SQLite refused WAL mode ({mode})")
            # FULL: the WAL is synced at every commit, so a returned append survives a power
            # loss, not only a crash of the process.
            conn.execute("PRAGMA synchronous = FULL")
            conn.executescript(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        self._write_conn = conn

    async def _disconnect(self) -> None:
        if self._write_conn is not None:
            await self._on_write_thread(self._close_write)
        if self._read_conn is not None:
            await self._on_read_thread(self._close_read)
        for executor in (self._writes, self._reads):
            if executor is not None:
                executor.shutdown(wait=False)
        self._writes = self._reads = None

    def _close_write(self) -> None:
        assert self._write_conn is not None
        self._write_conn.close()
        self._write_conn = None

    def _close_read(self) -> None:
        assert self._read_conn is not None
        self._read_conn.close()
        self._read_conn = None

    # -- the writer id ----------------------------------------------------------------------

    async def _lock_writer(self, writer: str) -> bool:
        name = hashlib.sha256(writer.encode()).hexdigest()[:16]
        path = self.path.with_name(f"{self.path.name}.writer-{name}.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    async def _unlock_writer(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    async def _reopen_writer(self) -> None:
        if self._write_conn is not None:
            await self._on_write_thread(self._close_write)
        await self._prepare_writes()

    # -- writing ----------------------------------------------------------------------------

    async def _write(self, rows: Sequence[NewRow], checkpoints: Sequence[Checkpoint]) -> None:
        await self._on_write_thread(self._write_sync, rows, checkpoints)

    def _write_sync(self, rows: Sequence[NewRow], checkpoints: Sequence[Checkpoint]) -> None:
        conn = self._write_conn
        assert conn is not None
        values = [
            value
            for r in rows
            for value in (
                r.writer,
                r.seq,
                format_time(r.at),
                r.party_id,
                r.case_id,
                r.consumer,
                r.service,
                r.body,
                r.prev_hash,
                r.hash,
            )
        ]
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Many rows per statement, not executemany's one step per row: each step lets
            # go of the GIL and must win it back from a busy event loop, which made a commit
            # of a few hundred rows take tens of milliseconds.
            width = len(_ROW_COLUMNS)
            for start in range(0, len(values), _ROWS_PER_INSERT * width):
                chunk = values[start : start + _ROWS_PER_INSERT * width]
                conn.execute(_insert_rows(len(chunk) // width), chunk)
            conn.executemany(_INSERT_CHECKPOINT, [_checkpoint_params(c) for c in checkpoints])
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def _store_key(self, key_id: str, public: bytes) -> None:
        await self._on_write_thread(self._store_key_sync, key_id, public)

    def _store_key_sync(self, key_id: str, public: bytes) -> None:
        assert self._write_conn is not None
        self._write_conn.execute(
            "INSERT OR IGNORE INTO keys (key_id, public_key, added) VALUES (?, ?, ?)",
            (key_id, public, format_time(dt.datetime.now(dt.UTC))),
        )

    async def _prune_chain(self, checkpoint: Checkpoint) -> int:
        return await self._on_write_thread(self._prune_sync, checkpoint)

    def _prune_sync(self, checkpoint: Checkpoint) -> int:
        conn = self._write_conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_INSERT_CHECKPOINT, _checkpoint_params(checkpoint))
            deleted = conn.execute(
                "DELETE FROM records WHERE writer = ? AND seq <= ?",
                (checkpoint.writer, checkpoint.seq),
            ).rowcount
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return deleted

    # -- reading ----------------------------------------------------------------------------

    async def _stored_keys(self) -> dict[str, bytes]:
        rows = await self._query("SELECT key_id, public_key FROM keys")
        return {kid: bytes(raw) for kid, raw in rows}

    async def _writers(self) -> list[str]:
        rows = await self._query(
            "SELECT DISTINCT writer FROM records UNION SELECT DISTINCT writer FROM checkpoints"
        )
        return [writer for (writer,) in rows]

    async def _checkpoints(self, writer: str | None) -> list[Checkpoint]:
        sql = f"SELECT {_CHECKPOINT} FROM checkpoints"
        rows = await (
            self._query(sql) if writer is None else self._query(f"{sql} WHERE writer = ?", [writer])
        )
        return [_checkpoint(row) for row in rows]

    async def _rows(
        self, writer: str, first: int, last: int | None
    ) -> AsyncGenerator[list[StoredRow], None]:
        high = last if last is not None else 2**63 - 1
        while True:
            rows = await self._query(
                f"SELECT {_ROW} FROM records WHERE writer = ? AND seq >= ? AND seq <= ? "
                "ORDER BY seq LIMIT 2000",
                [writer, first, high],
            )
            if not rows:
                return
            yield [_stored_row(row) for row in rows]
            first = rows[-1][1] + 1

    async def _last_row(self, writer: str) -> StoredRow | None:
        rows = await self._query(
            f"SELECT {_ROW} FROM records WHERE writer = ? ORDER BY seq DESC LIMIT 1", [writer]
        )
        return _stored_row(rows[0]) if rows else None

    async def _party_rows(self, party_id: str) -> list[StoredRow]:
        rows = await self._query(
            f"SELECT {_ROW} FROM records WHERE party_id = ? ORDER BY at, writer, seq", [party_id]
        )
        return [_stored_row(row) for row in rows]

    async def _seq_bounds(
        self, writer: str, start: dt.datetime, end: dt.datetime
    ) -> tuple[int, int] | None:
        ((low, high),) = await self._query(
            "SELECT (SELECT min(seq) FROM records WHERE writer = ? AND at >= ?), "
            "(SELECT max(seq) FROM records WHERE writer = ? AND at < ?)",
            [writer, format_time(start), writer, format_time(end)],
        )
        if low is None or high is None:
            return None
        return int(low), int(high)
