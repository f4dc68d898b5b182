"""Write-ahead behaviour: group commit, durability on return, checkpoints, resume, one live
process per writer id, recovery after a failed commit, and surviving ``kill -9``."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.audit import AuditUnavailable, WriterBusy, load_or_create_key
from tests.hub.audit.audit_support import Backend, record, records

REPO = Path(__file__).resolve().parents[3]


async def test_concurrent_appends_share_transactions_and_are_durable_on_return(
    backend: Backend, key: Ed25519PrivateKey
) -> None:
    async with backend.log(key, "w1") as log:
        await asyncio.gather(*(log.append(records(10, i * 10)) for i in range(50)))
        assert (log.metrics.appends, log.metrics.records) == (50, 500)
        assert log.metrics.transactions <= 5
        # Durable on return: another connection sees every record while the log is open.
        assert backend.sql("SELECT count(*) FROM records")[0][0] == 500


async def test_appends_arriving_during_a_commit_join_the_next_one(
    backend: Backend, key: Ed25519PrivateKey
) -> None:
    async with backend.log(key, "w1") as log:

        async def caller(lane: int) -> None:
            for i in range(5):
                await log.append(records(2, lane * 100 + i * 2))

        await asyncio.gather(*(caller(lane) for lane in range(20)))
        assert log.metrics.appends == 100
        assert log.metrics.transactions < 50
        assert backend.sql("SELECT count(*) FROM records")[0][0] == 200
    async with backend.log() as reader:
        assert (await reader.verify()).ok


async def test_an_idle_log_commits_a_single_append_at_once(
    backend: Backend, key: Ed25519PrivateKey
) -> None:
    async with backend.log(key, "w1") as log:
        await log.append(records(1))  # warm up the connection
        started = time.perf_counter()
        await log.append(records(1, 1))
        assert time.perf_counter() - started < 0.5
        assert log.metrics.transactions == 2


async def test_checkpoints_every_n_records_after_t_seconds_idle_and_on_close(
    backend: Backend, key: Ed25519PrivateKey
) -> None:
    async with backend.log(key, "w1", checkpoint_every=10, checkpoint_interval=0.2) as log:
        for n in range(12):
            await log.append(records(1, n))
        assert [c.seq for c in await log.checkpoints()] == [10]
        await asyncio.sleep(0.5)  # idle past the interval: the writer signs on its own
        assert [c.seq for c in await log.checkpoints()] == [10, 12]
        await log.append(records(1, 12))
    async with backend.log() as reader:
        assert [c.seq for c in await reader.checkpoints()] == [10, 12, 13]


async def test_checkpoint_signs_the_tail_on_request(
    backend: Backend, key: Ed25519PrivateKey
) -> None:
    async with backend.log(key, "w1") as log:
        await log.append(records(3))
        await log.checkpoint()
        assert [c.seq for c in await log.checkpoints()] == [3]
        await log.checkpoint()  # nothing new: no second checkpoint
        assert log.metrics.checkpoints == 1


async def test_linger_gathers_appends_that_arrive_shortly_after_one_another(
    backend: Backend, key: Ed25519PrivateKey
) -> None:
    async with backend.log(key, "w1", linger=0.05) as log:
        await log.append(records(1))
        first = asyncio.ensure_future(log.append(records(1, 1)))
        await asyncio.sleep(0.005)
        await asyncio.gather(first, log.append(records(1, 2)))
        assert log.metrics.transactions == 2


async def test_a_writer_resumes_its_chain_after_a_restart(
    backend: Backend, key: Ed25519PrivateKey
) -> None:
    async with backend.log(key, "w1") as log:
        await log.append(records(5))
    async with backend.log(key, "w1") as log:
        assert log.last_seq == 5
        await log.append(records(5, 5))
        assert log.last_seq == 10
    async with backend.log() as reader:
        report = await reader.verify(public_keys=[key.public_key()])
    assert report.ok
    assert [(c.writer, c.last_seq) for c in report.chains] == [("w1", 10)]


async def test_one_writer_id_is_held_by_one_log_at_a_time(
    backend: Backend, key: Ed25519PrivateKey
) -> None:
    async with backend.log(key, "w1") as first:
        await first.append(records(1))
        with pytest.raises(WriterBusy, match="'w1' is held by another live process"):
            await backend.log(key, "w1").open()
        async with backend.log(key, "w2") as other:
            await other.append(records(1))
    async with backend.log(key, "w1") as again:
        assert again.last_seq == 1


async def test_a_failed_commit_refuses_its_appends_and_the_log_recovers(
    backend: Backend, key: Ed25519PrivateKey
) -> None:
    async with backend.log(key, "w1") as log:
        await log.append(records(3))
        # A rogue row takes the next seq: the commit fails, and while the rogue row is the
        # chain's tail the writer will not build on it.
        backend.sql(
            "INSERT INTO records (writer, seq, at, party_id, case_id, consumer, service, body, "
            "prev_hash, hash) VALUES ('w1', 4, '2025-01-01T00:00:00.000000Z', '', '', '', '', "
            "'{}', ?, ?)",
            (b"\0" * 32, b"\0" * 32),
        )
        with pytest.raises(AuditUnavailable):
            await log.append(records(1, 3))
        with pytest.raises(AuditUnavailable):
            await log.append(records(1, 3))
        assert log.metrics.failures == 2
        backend.sql("DELETE FROM records WHERE seq = 4")
        await log.append(records(2, 3))
        assert log.last_seq == 5
    async with backend.log() as reader:
        assert (await reader.verify(public_keys=[key.public_key()])).ok


async def test_a_bad_record_fails_only_its_own_append(
    backend: Backend, key: Ed25519PrivateKey
) -> None:
    naive = dataclasses.replace(record(), at=dt.datetime(2025, 1, 1))
    async with backend.log(key, "w1") as log:
        results = await asyncio.gather(
            log.append(records(2)),
            log.append([naive]),
            log.append(records(2, 2)),
            return_exceptions=True,
        )
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], ValueError) and "at" in str(results[1])
        assert log.last_seq == 4


def test_appends_acknowledged_before_kill_9_survive_and_the_chain_verifies(
    backend: Backend, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    key_path = tmp_path / "audit.key"
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.hub.audit.audit_crash_child",
            backend.db,
            backend.schema,
            str(key_path),
            "crash-writer",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.stdout is not None
    acked: set[int] = set()
    try:
        assert child.stdout.readline().strip() == "ready"
        while len(acked) < 150:
            line = child.stdout.readline()
            assert line, "the child stopped early"
            acked.add(int(line.split()[1]))
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    acked |= {int(line.split()[1]) for line in child.stdout.read().splitlines()}
    child.stdout.close()

    async def check() -> None:
        signing = load_or_create_key(key_path)
        async with backend.log() as reader:
            report = await reader.verify(public_keys=[signing.public_key()])
        assert report.ok, report.problems
        stored = {
            orjson.loads(body)["query_id"] for (body,) in backend.sql("SELECT body FROM records")
        }
        missing = {n for n in acked if not {f"q{n}-0", f"q{n}-1", f"q{n}-2"} <= stored}
        assert not missing
        # The writer id is free again and its chain goes on.
        async with backend.log(signing, "crash-writer", lock_wait=5.0) as log:
            before = log.last_seq
            await log.append(records(1))
            assert log.last_seq == before + 1
        async with backend.log() as reader:
            assert (await reader.verify(public_keys=[signing.public_key()])).ok

    asyncio.run(check())
