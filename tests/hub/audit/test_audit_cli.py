"""``dsop audit ...``: verify (exit 1 on tampering), disclosures, export, checkpoints, prune."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from pathlib import Path

import orjson
import pytest

from clients.audit_cli import add_audit_commands
from hub.audit import load_or_create_key
from tests.hub.audit.audit_support import PARTY, Backend, records

OLD = dt.datetime(2010, 1, 1, tzinfo=dt.UTC)


def dsop_audit(backend: Backend | None, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="dsop")
    add_audit_commands(parser.add_subparsers(dest="command", required=True))
    db = ["--db", backend.db, "--schema", backend.schema or "dsop_audit"] if backend else []
    args = parser.parse_args(["audit", argv[0], *db, *argv[1:]])
    return int(args.run(args))


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "audit.key"
    load_or_create_key(path)
    return path


@pytest.fixture
def written(backend: Backend, key_file: Path) -> Backend:
    async def write() -> None:
        key = load_or_create_key(key_file)
        async with backend.log(key, "hub-0", checkpoint_every=5) as log:
            await log.append(records(6, at=OLD))
            await log.append(records(6, 6))

    asyncio.run(write())
    return backend


def test_verify_passes_an_intact_log_and_fails_naming_the_first_bad_record(
    written: Backend, key_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    public = tmp_path / "audit.pub"
    assert dsop_audit(None, "public-key", "--key", str(key_file)) == 0
    public.write_text(capsys.readouterr().out)
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")

    assert dsop_audit(written, "verify", "--public-key", str(public)) == 0
    out, err = capsys.readouterr()
    assert "OK: 1 chains, 12 records" in out and "seq 1..12" in out and not err

    assert dsop_audit(written, "verify") == 0
    assert "keys stored in the log itself" in capsys.readouterr().err

    written.sql("DELETE FROM records WHERE seq = 3")
    assert dsop_audit(written, "verify", "--public-key", str(public)) == 1
    out = capsys.readouterr().out
    assert "TAMPERED: writer 'hub-0' seq 3: deleted" in out
    assert PARTY not in out


def test_an_exported_checkpoint_file_catches_a_truncation_the_log_hides(
    written: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kept = tmp_path / "checkpoints.jsonl"
    assert dsop_audit(written, "checkpoints", "--out", str(kept)) == 0
    assert [orjson.loads(line)["seq"] for line in kept.read_bytes().splitlines()] == [6, 12]
    written.sql("DELETE FROM records WHERE seq > 7")
    written.sql("DELETE FROM checkpoints WHERE seq > 7")
    assert dsop_audit(written, "verify") == 0
    assert dsop_audit(written, "verify", "--checkpoints", str(kept)) == 1
    assert "seq 8: truncated" in capsys.readouterr().out


def test_disclosures_print_a_table_or_json_lines(
    written: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    assert dsop_audit(written, "disclosures", "--party", PARTY) == 0
    out = capsys.readouterr().out
    assert "974761076" in out and "skatt-kontroll" in out and "910000001:3" in out
    assert "mandate: Skatteforvaltningsloven" in out
    assert dsop_audit(written, "disclosures", "--party", PARTY, "--json") == 0
    entries = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(entries) == 12 and entries[0]["banks"][0]["items"] == 3
    assert dsop_audit(written, "disclosures", "--party", "00000000000") == 0
    assert "no disclosures" in capsys.readouterr().out


def test_export_writes_json_lines_with_proofs_that_verify_export_checks(
    written: Backend, tmp_path: Path
) -> None:
    out = tmp_path / "export.jsonl"
    assert (
        dsop_audit(
            written, "export", "--from", "2009-12-31", "--to", "2010-01-02", "--out", str(out)
        )
        == 0
    )
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert lines[0]["type"] == "header"
    assert [line["seq"] for line in lines if line["type"] == "record"] == [1, 2, 3, 4, 5, 6]
    assert all(
        {"prev_hash", "hash", "body"} <= set(line) for line in lines if line["type"] == "record"
    )
    assert [line["seq"] for line in lines if line["type"] == "checkpoint"] == [6]
    assert dsop_audit(None, "verify-export", str(out)) == 0
    out.write_bytes(out.read_bytes().replace(b'\\"items\\":3', b'\\"items\\":0', 1))
    assert dsop_audit(None, "verify-export", str(out)) == 1


def test_prune_needs_confirmation_respects_retention_and_keeps_the_log_verifiable(
    written: Backend, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ("prune", "--key", str(key_file), "--older-than")
    assert dsop_audit(written, *base, "5000") == 2
    assert "--yes" in capsys.readouterr().err
    assert dsop_audit(written, *base, "30", "--yes") == 2
    assert "13-year retention" in capsys.readouterr().err
    assert dsop_audit(written, *base, "5000", "--yes") == 0  # 2010 is older than 13 years
    assert "6 records removed" in capsys.readouterr().out
    assert dsop_audit(written, "verify") == 0
    assert "seq 7..12" in capsys.readouterr().out


def test_bad_input_exits_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="dsop")
    add_audit_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["audit", "verify", "--db", "mysql://nope"])
    assert args.run(args) == 2
    assert "expected sqlite:PATH or postgresql://DSN" in capsys.readouterr().err
    args = parser.parse_args(["audit", "verify", "--db", f"sqlite:{tmp_path / 'none.db'}"])
    assert args.run(args) == 2
    assert "no audit log at" in capsys.readouterr().err
    args = parser.parse_args(
        [
            "audit",
            "export",
            "--db",
            "sqlite:x",
            "--from",
            "later",
            "--to",
            "2020-01-01",
            "--out",
            "-",
        ]
    )
    assert args.run(args) == 2
    assert "--from: not an ISO date" in capsys.readouterr().err
