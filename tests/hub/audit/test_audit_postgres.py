"""PostgreSQL: several writers on one database, one chain each; the advisory lock on writer
ids; recovery when the writer's connection is cut."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.audit import AuditError, AuditUnavailable, PostgresAuditLog, WriterBusy
from tests.hub.audit.audit_support import Backend, postgres_dsn, records


@pytest.fixture
def pg() -> Iterator[Backend]:
    dsn = postgres_dsn()
    schema = f"audit_test_{uuid.uuid4().hex[:12]}"
    yield Backend("postgres", dsn, schema, dsn=dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                psycopg.sql.Identifier(schema)
            )
        )


async def test_two_writers_append_concurrently_each_to_its_own_chain(
    pg: Backend, key: Ed25519PrivateKey
) -> None:
    other_key = Ed25519PrivateKey.generate()  # replicas may sign with keys of their own
    async with (
        pg.log(key, "replica-0", checkpoint_every=25) as a,
        pg.log(other_key, "replica-1", checkpoint_every=25) as b,
    ):

        async def load(log: PostgresAuditLog, lane: int) -> None:  # type: ignore[type-arg]
            for i in range(10):
                await log.append(records(5, lane * 1000 + i * 5))

        await asyncio.gather(*(load(log, lane) for lane in range(4) for log in (a, b)))  # type: ignore[arg-type]
        assert a.last_seq == b.last_seq == 200
    async with pg.log() as reader:
        report = await reader.verify(public_keys=[key.public_key(), other_key.public_key()])
    assert report.ok, report.problems
    assert [(c.writer, c.first_seq, c.last_seq) for c in report.chains] == [
        ("replica-0", 1, 200),
        ("replica-1", 1, 200),
    ]
    assert all(c.checkpoints_checked >= 2 and c.unsigned_tail == 0 for c in report.chains)


async def test_the_advisory_lock_refuses_a_second_live_writer_and_frees_on_close(
    pg: Backend, key: Ed25519PrivateKey
) -> None:
    first = await pg.log(key, "replica-0").open()
    try:
        with pytest.raises(WriterBusy):
            await pg.log(key, "replica-0").open()
        waiting = asyncio.ensure_future(pg.log(key, "replica-0", lock_wait=5.0).open())
        await asyncio.sleep(0.2)
        assert not waiting.done()
    finally:
        await first.close()
    second = await waiting
    await second.close()


async def test_the_writer_reconnects_after_its_session_is_killed(
    pg: Backend, key: Ed25519PrivateKey
) -> None:
    async with pg.log(key, "replica-0") as log:
        await log.append(records(3))
        assert isinstance(log, PostgresAuditLog) and log._write_conn is not None
        pid = log._write_conn.info.backend_pid
        pg.sql("SELECT pg_terminate_backend(?)", (pid,))
        with pytest.raises(AuditUnavailable):
            await log.append(records(1, 3))
        await log.append(records(2, 3))  # reconnected, lock retaken, chain resumed
        assert log.last_seq == 5
    async with pg.log() as reader:
        assert (await reader.verify(public_keys=[key.public_key()])).ok


async def test_a_reader_on_a_missing_schema_says_so(pg: Backend) -> None:
    async with pg.log() as reader:
        with pytest.raises(AuditError, match="no audit log in schema"):
            await reader.verify()
