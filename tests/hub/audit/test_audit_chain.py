"""Tamper evidence: every kind of change to a stored log is caught and its first bad record
named, on both backends."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.audit import ChainBroken, ChainLog, Checkpoint, VerifyReport, read_checkpoint_lines
from hub.audit.chain import chain_hash
from hub.audit.record import encode_body, format_time
from tests.hub.audit.audit_support import PARTY, Backend, record, records

WRITER = "w1"
#: 25 records in appends of 5; checkpoints at seq 10 and 20 (every 10) and 25 (on close).
TOTAL = 25


async def write_log(backend: Backend, key: Ed25519PrivateKey, checkpoint_file: Path) -> None:
    log = backend.log(key, WRITER, checkpoint_every=10, checkpoint_file=checkpoint_file)
    async with log:
        for start in range(0, TOTAL, 5):
            await log.append(records(5, start))


def checkpoint_file(path: Path | None) -> list[Checkpoint]:
    return read_checkpoint_lines(path.read_bytes().splitlines()) if path else []


async def verify(
    backend: Backend, key: Ed25519PrivateKey, file: Path | None = None
) -> VerifyReport:
    async with backend.log() as log:
        return await log.verify(public_keys=[key.public_key()], external=checkpoint_file(file))


def _relink(backend: Backend, first: int) -> None:
    """Recomputes hashes from ``first`` on, as an attacker with write access can."""
    prev = backend.row(first - 1)["hash"]
    for seq in range(first, TOTAL + 1):
        body = backend.row(seq)["body"]
        digest = chain_hash(prev, body.encode())
        backend.sql(
            "UPDATE records SET prev_hash = ?, hash = ? WHERE writer = ? AND seq = ?",
            (prev, digest, WRITER, seq),
        )
        prev = digest


def edit_body(b: Backend) -> None:
    body = b.row(5)["body"].replace('"items":3', '"items":30')
    b.sql("UPDATE records SET body = ? WHERE seq = 5", (body,))


def edit_hash(b: Backend) -> None:
    b.sql("UPDATE records SET hash = ? WHERE seq = 5", (b"\x01" * 32,))


def edit_column(b: Backend) -> None:
    b.sql("UPDATE records SET party_id = ? WHERE seq = 5", ("01010112345",))


def rewrite_and_rehash(b: Backend) -> None:
    body = b.row(12)["body"].replace('"items":3', '"items":0')
    b.sql("UPDATE records SET body = ? WHERE seq = 12", (body,))
    _relink(b, 12)


def delete_middle(b: Backend) -> None:
    b.sql("DELETE FROM records WHERE seq = 5")


def delete_and_renumber(b: Backend) -> None:
    b.sql("DELETE FROM records WHERE seq = 5")
    b.sql("UPDATE records SET seq = -seq WHERE seq > 5")
    b.sql("UPDATE records SET seq = -seq - 1 WHERE seq < 0")


def delete_head(b: Backend) -> None:
    b.sql("DELETE FROM records WHERE seq <= 3")


def swap_seqs(b: Backend) -> None:
    b.sql("UPDATE records SET seq = -1 WHERE seq = 5")
    b.sql("UPDATE records SET seq = 5 WHERE seq = 8")
    b.sql("UPDATE records SET seq = 8 WHERE seq = -1")


def insert_forged(b: Backend) -> None:
    b.sql("UPDATE records SET seq = -seq WHERE seq >= 5")
    b.sql("UPDATE records SET seq = 1 - seq WHERE seq < 0")
    forged = record(999, party="01010112345")
    body = encode_body(forged, WRITER, 5)
    prev = b.row(4)["hash"]
    b.sql(
        "INSERT INTO records (writer, seq, at, party_id, case_id, consumer, service, body, "
        "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            WRITER,
            5,
            format_time(forged.at),
            forged.party_id,
            forged.case_id,
            forged.consumer,
            forged.service,
            body.decode(),
            prev,
            chain_hash(prev, body),
        ),
    )


def truncate_tail(b: Backend) -> None:
    b.sql("DELETE FROM records WHERE seq > 22")


def truncate_tail_and_checkpoints(b: Backend) -> None:
    b.sql("DELETE FROM records WHERE seq > 15")
    b.sql("DELETE FROM checkpoints WHERE seq > 15")


def bad_signature(b: Backend) -> None:
    (signature,) = b.sql("SELECT signature FROM checkpoints WHERE seq = 10")[0]
    forged = bytes([signature[0] ^ 1]) + bytes(signature[1:])
    b.sql("UPDATE checkpoints SET signature = ? WHERE seq = 10", (forged,))


def checkpoint_hash_moved(b: Backend) -> None:
    b.sql("UPDATE checkpoints SET hash = ? WHERE seq = 10", (b.row(9)["hash"],))


CASES: list[tuple[Callable[[Backend], None], str, int, str]] = [
    (edit_body, "edited", 5, "hash does not match"),
    (edit_hash, "edited", 5, "hash does not match"),
    (edit_column, "edited", 5, "column party_id"),
    (rewrite_and_rehash, "edited", 11, "11..20"),
    (delete_middle, "deleted", 5, "5..5 are missing"),
    (delete_and_renumber, "deleted", 5, "renumbered"),
    (delete_head, "deleted", 1, "no prune checkpoint"),
    (swap_seqs, "reordered", 5, "written as seq 8"),
    (insert_forged, "inserted", 5, "not part of the chain"),
    (truncate_tail, "truncated", 23, "ends at seq 22"),
    (bad_signature, "bad_signature", 10, "does not verify"),
    (checkpoint_hash_moved, "bad_signature", 10, "does not verify"),
]


async def test_an_untouched_log_verifies_with_the_public_key(
    backend: Backend, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    await write_log(backend, key, tmp_path / "checkpoints.jsonl")
    report = await verify(backend, key, tmp_path / "checkpoints.jsonl")
    assert report.ok, report.problems
    (chain,) = report.chains
    assert (chain.writer, chain.first_seq, chain.last_seq, chain.records) == (WRITER, 1, 25, 25)
    assert chain.checkpoints_checked == 3  # 10, 20, 25 (the file repeats them)
    assert chain.unsigned_tail == 0
    assert not report.keys_from_log


@pytest.mark.parametrize("case", CASES, ids=[case[0].__name__ for case in CASES])
async def test_tampering_is_caught_and_the_first_bad_record_named(
    backend: Backend,
    key: Ed25519PrivateKey,
    tmp_path: Path,
    case: tuple[Callable[[Backend], None], str, int, str],
) -> None:
    tamper, kind, seq, detail = case
    await write_log(backend, key, tmp_path / "checkpoints.jsonl")
    tamper(backend)
    report = await verify(backend, key)
    assert not report.ok
    (problem,) = report.problems
    assert (problem.kind, problem.writer, problem.seq) == (kind, WRITER, seq), str(problem)
    assert detail in problem.detail
    assert PARTY not in str(problem) and "01010112345" not in str(problem)


async def test_a_truncated_tail_whose_stored_checkpoints_were_deleted_is_caught_by_the_file(
    backend: Backend, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    file = tmp_path / "checkpoints.jsonl"
    await write_log(backend, key, file)
    truncate_tail_and_checkpoints(backend)
    # What the log alone cannot show: it still verifies up to the checkpoint at seq 10.
    assert (await verify(backend, key)).ok
    report = await verify(backend, key, file)
    (problem,) = report.problems
    assert (problem.kind, problem.seq) == ("truncated", 16)
    assert "from the checkpoint file" in problem.detail


async def test_checkpoints_signed_by_another_key_are_not_trusted(
    backend: Backend, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    await write_log(backend, key, tmp_path / "checkpoints.jsonl")
    async with backend.log() as log:
        report = await log.verify(public_keys=[Ed25519PrivateKey.generate().public_key()])
        from_log = await log.verify()
    (problem,) = report.problems
    assert (problem.kind, problem.seq) == ("bad_signature", 10)
    assert "not a trusted key" in problem.detail
    assert from_log.ok and from_log.keys_from_log


def edit_last(b: Backend) -> None:
    body = b.row(TOTAL)["body"].replace('"items":3', '"items":30')
    b.sql("UPDATE records SET body = ? WHERE seq = ?", (body, TOTAL))


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [(truncate_tail, "records were removed"), (edit_last, "seq 25: edited")],
)
async def test_a_writer_refuses_to_resume_a_chain_whose_tail_was_altered(
    backend: Backend,
    key: Ed25519PrivateKey,
    tmp_path: Path,
    tamper: Callable[[Backend], None],
    reason: str,
) -> None:
    await write_log(backend, key, tmp_path / "checkpoints.jsonl")
    tamper(backend)
    log: ChainLog = backend.log(key, WRITER)
    with pytest.raises(ChainBroken, match=reason):
        await log.open()
