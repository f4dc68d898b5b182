"""The record, its canonical body, records built from released events, keys, and the
package's public names."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import re
import stat
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import hub.audit
from dsop.controlinfo.v2 import bank_pb2, model_pb2
from dsop.hub.v1 import hub_pb2
from hub.audit import (
    Checkpoint,
    Disclosure,
    load_or_create_key,
    load_public_keys,
    public_key_pem,
    read_checkpoint_lines,
    records_for_batch,
    reference_digest,
)
from hub.audit.chain import sign_checkpoint
from hub.audit.keys import AuditKeyError, key_id
from hub.audit.record import check_records, encode_body
from hub.context import Identity, QueryContext
from hub.respond import Outgoing
from tests.hub.audit.audit_support import PARTY, record

JWS = "eyJhbGciOiJQUzI1NiJ9.eyJwYXJ0eSI6IjQxMDE4MDEyMzQ1In0.c2lnbmF0dXJl"


def test_exported_members() -> None:
    assert sorted(hub.audit.__all__) == [
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


def test_the_body_is_sorted_compact_json_naming_its_writer_and_seq() -> None:
    body = encode_body(record(3, summary=True), "hub-a", 42)
    data = orjson.loads(body)
    assert list(data) == sorted(data)
    assert b'", "' not in body and b'": ' not in body  # compact separators
    assert (data["writer"], data["seq"], data["v"]) == ("hub-a", 42, 1)
    assert data["at"].endswith("Z") and len(data["at"]) == 27
    assert data["disclosures"][0]["digest"] == hashlib.sha256(b"result 3").hexdigest()
    assert data["summary"] == {
        "banks_asked": 2,
        "banks_answered": 1,
        "banks_failed": 1,
        "elapsed_us": 1234,
    }
    # Same record, same place: same bytes (the hash depends on nothing else).
    fixed = record(3, at=dt.datetime(2025, 5, 1, 8, 0, tzinfo=dt.UTC))
    assert encode_body(fixed, "w", 1) == encode_body(fixed, "w", 1)
    assert encode_body(fixed, "w", 1) != encode_body(fixed, "w", 2)


def test_only_the_digest_of_an_additional_reference_is_kept() -> None:
    digest = reference_digest(JWS)
    assert digest == hashlib.sha256(JWS.encode()).hexdigest()
    assert reference_digest(None) == reference_digest("") == ""
    body = encode_body(
        dataclasses.replace(
            record(), additional_reference_type="pol1", additional_reference_digest=digest
        ),
        "w",
        1,
    )
    assert JWS.encode() not in body and digest.encode() in body


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"at": dt.datetime(2025, 1, 1)}, "records[0].at"),
        ({"disclosures": (Disclosure("b", "leaked", 1, bytes(32)),)}, "outcome"),
        ({"disclosures": (Disclosure("b", "complete", 1, b"short"),)}, "digest"),
        ({"disclosures": (Disclosure("b", "complete", -1, bytes(32)),)}, "items"),
    ],
)
def test_records_the_log_must_not_accept_are_refused_naming_the_field(
    change: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(field)) as raised:
        check_records([dataclasses.replace(record(), **change)])  # type: ignore[arg-type]
    assert PARTY not in str(raised.value)


def test_records_for_batch_make_one_record_per_query_with_digests_of_the_released_bytes() -> None:
    query = hub_pb2.Query(
        query_id="q1",
        service="politi-utlevering",
        legal_mandate="Straffeprosessloven §210 (3) første punktum",
        case_id="case",
        correlation_id="corr",
        requester_id="officer-9",
        additional_reference_id=JWS,
        additional_reference_id_type=bank_pb2.ADDITIONAL_REFERENCE_ID_TYPE_POL1,
        party_id=PARTY,
        period=bank_pb2.Period(from_date="2024-01-01", to_date="2024-06-30"),
        only_primary_owner=False,
        operation=hub_pb2.OPERATION_ACCOUNTS,
    )
    ctx = QueryContext(query, None, 0, Identity("915429785", "politi-client"))  # type: ignore[arg-type]
    ctx.banks = ["910000001", "910000002"]
    other = QueryContext(hub_pb2.Query(query_id="q2", party_id="974760673"), None, 0)  # type: ignore[arg-type]
    listed = bank_pb2.ListAccountsResponse()
    listed.accounts.add()
    listed.accounts.add()
    error = model_pb2.Error(code="ACC-100")
    totals = hub_pb2.QuerySummary(banks_asked=2, banks_answered=1, banks_failed=1, elapsed_us=900)
    at = dt.datetime(2025, 5, 1, tzinfo=dt.UTC)
    result = Outgoing(
        ctx, "partial", "910000001", kind="accounts", payload=listed.SerializeToString()
    )
    result.items = 2  # counted by the filter stage
    released = [
        result,
        Outgoing(
            other,
            "refused",
            summary=hub_pb2.QuerySummary(error=model_pb2.Error(code="ACC-011")),
            error_code="ACC-011",
        ),
        Outgoing(
            ctx,
            "failed",
            "910000002",
            kind="error",
            payload=error.SerializeToString(),
            error_code="ACC-100",
        ),
        Outgoing(ctx, "summary", summary=totals),
    ]
    for item in released:
        item.data = item.encode()
    first, second = records_for_batch(released, at)
    assert (first.query_id, first.consumer, first.subject, first.at) == (
        "q1",
        "915429785",
        "politi-client",
        at,
    )
    assert (first.operation, first.from_date, first.to_date, first.only_primary_owner) == (
        "accounts",
        "2024-01-01",
        "2024-06-30",
        False,
    )
    assert first.additional_reference_type == "pol1"
    assert first.additional_reference_digest == hashlib.sha256(JWS.encode()).hexdigest()
    assert first.banks_asked == ("910000001", "910000002")
    assert [(d.bank_id, d.outcome, d.items, d.error_code) for d in first.disclosures] == [
        ("910000001", "partial", 2, ""),
        ("910000002", "failed", 0, "ACC-100"),
        (None, "summary", 0, ""),
    ]
    assert first.disclosures[0].digest == hashlib.sha256(result.encode()).digest()
    assert first.summary is not None and first.summary.banks_failed == 1
    assert [(d.bank_id, d.outcome, d.error_code) for d in second.disclosures] == [
        (None, "refused", "ACC-011")
    ]
    assert second.summary is None and second.consumer == ""
    check_records([first, second])


def test_the_signing_key_is_created_private_and_loaded_again(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit.key"
    key = load_or_create_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert key_id(load_or_create_key(path)) == key_id(key)
    public = tmp_path / "audit.pub"
    public.write_bytes(public_key_pem(key) + public_key_pem(Ed25519PrivateKey.generate()))
    loaded = load_public_keys(public)
    assert len(loaded) == 2 and key_id(loaded[0]) == key_id(key)
    assert [key_id(k) for k in load_public_keys(path)] == [key_id(key)]
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(AuditKeyError, match="no PEM key"):
        load_public_keys(tmp_path / "bad.pem")


def test_checkpoints_round_trip_through_json_lines_and_signatures_bind_every_field() -> None:
    key = Ed25519PrivateKey.generate()
    keys = {key_id(key): key.public_key()}
    checkpoint = sign_checkpoint(key, "prune", "w1", 9, bytes(range(32)))
    line = orjson.dumps(checkpoint.to_json())
    assert orjson.loads(line)["first_kept_seq"] == 10
    (again,) = read_checkpoint_lines([b'{"type": "record"}', line, b""])
    assert again == checkpoint and again.signed_by(keys)
    for change in ({"seq": 10}, {"writer": "w2"}, {"kind": "checkpoint"}, {"hash": bytes(32)}):
        forged = dataclasses.replace(checkpoint, **change)  # type: ignore[arg-type]
        assert not forged.signed_by(keys)
    with pytest.raises(ValueError, match="line 1"):
        read_checkpoint_lines([b'{"type": "checkpoint", "kind": "checkpoint"}'])
    assert isinstance(Checkpoint.from_json(checkpoint.to_json()), Checkpoint)
