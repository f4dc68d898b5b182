"""Disclosure lookup, export with chain proofs, and pruning that keeps the rest verifiable."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.audit import AuditError, Checkpoint, Disclosure, verify_export
from hub.audit.keys import key_id
from tests.hub.audit.audit_support import OTHER_PARTY, PARTY, Backend, record, records

OLD = dt.datetime(2010, 3, 1, 12, 0, tzinfo=dt.UTC)
NOW = dt.datetime.now(dt.UTC)


async def test_disclosures_list_who_received_what_about_a_party(
    backend: Backend, key: Ed25519PrivateKey
) -> None:
    refused = dataclasses.replace(
        record(7, consumer="915429785", service="politi-utlevering", at=NOW),
        disclosures=(Disclosure(None, "refused", 0, hashlib.sha256(b"r").digest(), "ACC-011"),),
        banks_asked=(),
    )
    async with backend.log(key, "w1") as log:
        # Query 1's banks answer in two egress batches: two records, one query.
        earlier = NOW - dt.timedelta(seconds=2)
        await log.append([record(1, at=earlier), record(2, party=OTHER_PARTY, at=earlier)])
        await log.append([record(1, summary=True, at=NOW), refused])
    async with backend.log() as reader:
        found = await reader.disclosures(PARTY)
        assert await reader.disclosures("00000000000") == []
    assert [(e["query_id"], e["consumer"], e["service"]) for e in found] == [
        ("q1", "974761076", "skatt-kontroll"),
        ("q7", "915429785", "politi-utlevering"),
    ]
    first = found[0]
    assert first["banks"] == [
        {"bank_id": "910000001", "outcome": "complete", "items": 6},
        {"bank_id": "910000002", "outcome": "failed", "items": 0},
    ]
    assert first["items"] == 6 and first["closed"] and not first["refused"]
    assert first["legal_mandate"].startswith("Skatteforvaltningsloven")
    assert first["records"] == ["w1:1", "w1:3"]
    assert found[1]["refused"] == "ACC-011" and found[1]["items"] == 0


async def test_export_lines_carry_proofs_that_check_against_a_signed_checkpoint(
    backend: Backend, key: Ed25519PrivateKey
) -> None:
    async with backend.log(key, "w1", checkpoint_every=4) as log:
        for n in range(12):
            at = NOW - dt.timedelta(days=12 - n)
            await log.append([record(n, at=at)])
    async with backend.log() as reader:
        lines = [
            orjson.loads(line)
            async for line in reader.export(NOW - dt.timedelta(days=9), NOW - dt.timedelta(days=5))
        ]
    header, *rest = lines
    assert header["type"] == "header" and key_id(key) in header["public_keys"]
    rows = [line for line in rest if line["type"] == "record"]
    checkpoints = [Checkpoint.from_json(line) for line in rest if line["type"] == "checkpoint"]
    # Released days 9..6 before now: seq 4..7; seq 8 comes along to reach the checkpoint
    # that signs the run.
    assert [(row["seq"], row.get("beyond_range", False)) for row in rows] == [
        (4, False),
        (5, False),
        (6, False),
        (7, False),
        (8, True),
    ]
    chain = {}
    for row in rows:
        digest = hashlib.sha256(bytes.fromhex(row["prev_hash"]) + row["body"].encode()).digest()
        assert digest.hex() == row["hash"]
        assert orjson.loads(row["body"])["seq"] == row["seq"]
        if row["seq"] - 1 in chain:
            assert chain[row["seq"] - 1] == row["prev_hash"]
        chain[row["seq"]] = row["hash"]
    assert [c.seq for c in checkpoints] == [4, 8]
    assert [c.hash.hex() for c in checkpoints] == [chain[4], chain[8]]

    raw = [orjson.dumps(line) for line in lines]
    report = verify_export(raw, [key.public_key()])
    assert report.ok and report.chains[0].checkpoints_checked == 2
    assert report.chains[0].unsigned_tail == 0
    edited = [line.replace(b'\\"items\\":3', b'\\"items\\":9') for line in raw]
    assert edited != raw
    (problem,) = verify_export(edited, [key.public_key()]).problems
    assert (problem.kind, problem.seq) == ("edited", 4)
    (problem,) = verify_export(raw[:3] + raw[4:], [key.public_key()]).problems
    assert (problem.kind, problem.seq) == ("deleted", 6)
    unanchored = verify_export([line for line in raw if b'"checkpoint"' not in line])
    assert unanchored.ok and unanchored.chains[0].unsigned_tail == 5


async def test_prune_removes_old_records_and_the_rest_still_verifies(
    backend: Backend, key: Ed25519PrivateKey
) -> None:
    async with backend.log(key, "w1", checkpoint_every=5) as log:
        await log.append(records(10, at=OLD, party=OTHER_PARTY))
        await log.append(records(10, 10))
    async with backend.log(key) as admin:
        (result,) = await admin.prune(NOW - dt.timedelta(days=365))
        assert (result.writer, result.deleted, result.checkpoint.seq) == ("w1", 10, 10)
        assert await admin.prune(NOW - dt.timedelta(days=365)) == []
        report = await admin.verify(public_keys=[key.public_key()])
        assert report.ok, report.problems
        assert (report.chains[0].first_seq, report.chains[0].last_seq) == (11, 20)
        assert await admin.disclosures(OTHER_PARTY) == []
        assert len(await admin.disclosures(PARTY)) == 10
    # The writer goes on after a prune; deleting past the prune point is still caught.
    async with backend.log(key, "w1") as log:
        await log.append(records(1, 20))
        assert log.last_seq == 21
    backend.sql("DELETE FROM records WHERE seq = 11")
    async with backend.log() as reader:
        (problem,) = (await reader.verify(public_keys=[key.public_key()])).problems
    assert (problem.kind, problem.seq) == ("deleted", 11)


async def test_a_chain_pruned_to_nothing_resumes_from_its_prune_checkpoint(
    backend: Backend, key: Ed25519PrivateKey
) -> None:
    async with backend.log(key, "w1") as log:
        await log.append(records(4, at=OLD))
    async with backend.log(key) as admin:
        (result,) = await admin.prune(NOW)
        assert result.deleted == 4
        assert (await admin.verify(public_keys=[key.public_key()])).ok
    async with backend.log(key, "w1") as log:
        assert log.last_seq == 4
        await log.append(records(2, 4))
    async with backend.log() as reader:
        report = await reader.verify(public_keys=[key.public_key()])
    assert report.ok, report.problems
    assert (report.chains[0].first_seq, report.chains[0].last_seq) == (5, 6)


async def test_prune_refuses_a_log_that_does_not_verify(
    backend: Backend, key: Ed25519PrivateKey
) -> None:
    async with backend.log(key, "w1") as log:
        await log.append(records(6, at=OLD))
    backend.sql("DELETE FROM records WHERE seq = 3")
    async with backend.log(key) as admin:
        with pytest.raises(AuditError, match="does not verify"):
            await admin.prune(NOW)
    assert backend.sql("SELECT count(*) FROM records")[0][0] == 5
