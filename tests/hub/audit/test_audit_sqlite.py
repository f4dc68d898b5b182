"""SQLite: WAL with synchronous=FULL, every write on one dedicated thread, the event loop
free while a commit is in flight."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.audit import AuditError, SqliteAuditLog
from tests.hub.audit.audit_support import records


async def test_the_writer_uses_wal_and_syncs_every_commit(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    async with SqliteAuditLog(tmp_path / "a.db", key, "w1") as log:
        await log.append(records(1))
        conn = log._write_conn
        assert conn is not None
        (synchronous,) = await log._on_write_thread(
            lambda: conn.execute("PRAGMA synchronous").fetchone()
        )
        assert synchronous == 2  # FULL
    check = sqlite3.connect(tmp_path / "a.db")
    assert check.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    check.close()


async def test_every_write_runs_on_one_dedicated_thread_not_the_event_loop(
    tmp_path: Path, key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: set[str] = set()
    original = SqliteAuditLog._write_sync

    def spy(self: SqliteAuditLog, *args: object) -> None:
        threads.add(threading.current_thread().name)
        original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(SqliteAuditLog, "_write_sync", spy)
    async with SqliteAuditLog(tmp_path / "a.db", key, "w1") as log:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(ticker())
        await asyncio.gather(*(log.append(records(200, i * 200)) for i in range(10)))
        for i in range(5):
            await log.append(records(200, 2000 + i * 200))
        task.cancel()
        assert ticks > 5  # the loop kept running while commits were in flight
    assert len(threads) == 1
    assert next(iter(threads)).startswith("audit-sqlite-write")


async def test_a_reader_on_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="no audit log at"):
        await SqliteAuditLog(tmp_path / "missing.db").open()
    assert not (tmp_path / "missing.db").exists()
