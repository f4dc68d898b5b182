"""The agency client library and the dsop CLI against a real hub."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from pathlib import Path

import grpc
import orjson
import pytest

import clients
from clients.cli import main, read_queries
from clients.client import SyncHubClient, make_query
from clients.devtokens import DevTokens
from clients.services import MANDATES
from dsop.hub.v1 import hub_pb2
from tests.support import Env

TODAY = dt.date.today()


def test_public_surface_is_pinned() -> None:
    assert sorted(clients.__all__) == ["ClientTls", "HubClient", "SyncHubClient", "make_query"]


def _tls_args(env: Env) -> list[str]:
    return ["--hub", env.target, "--certs", str(env.cert_dir), "--agency", "974761076"]


async def test_sync_client_query_and_stream(env: Env) -> None:
    parties = env.dataset.party_sample(50)

    def work() -> tuple[list[hub_pb2.QueryEvent], list[hub_pb2.QueryEvent]]:
        with SyncHubClient(
            env.target, tls=env.client_tls(), token=DevTokens(env.cert_dir, "974761076")
        ) as hub:
            one = list(
                hub.query(
                    make_query(
                        service="fi-utlegg",
                        legal_mandate=MANDATES["fi-utlegg"],
                        operation=hub_pb2.OPERATION_ACCOUNTS,
                        party_id=parties[0],
                    ),
                    timeout=20,
                )
            )
            many = list(
                hub.stream(
                    (
                        make_query(
                            service="fi-utlegg",
                            legal_mandate=MANDATES["fi-utlegg"],
                            operation=hub_pb2.OPERATION_ACCOUNTS,
                            party_id=party,
                        )
                        for party in parties
                    ),
                    batch_size=7,
                    window=10,
                )
            )
        return one, many

    one, many = await asyncio.to_thread(work)
    assert one[-1].HasField("summary")
    assert sum(e.HasField("summary") for e in many) == len(parties)


async def test_sync_client_raises_on_refusal(env: Env) -> None:
    def work() -> None:
        with SyncHubClient(
            env.target, tls=env.client_tls(), token=DevTokens(env.cert_dir, "974761076")
        ) as hub:
            list(
                hub.query(
                    make_query(service="x", legal_mandate="m", operation=hub_pb2.OPERATION_ACCOUNTS)
                )
            )

    with pytest.raises(grpc.RpcError) as caught:
        await asyncio.to_thread(work)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]


async def test_cli_query_prints_a_table_and_json(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    party = env.dataset.find_party("many_banks")
    args = ["query", *_tls_args(env), "--service", "fi-utlegg", "--party", party]
    args += ["--operation", "accounts-with-balances"]
    assert await asyncio.to_thread(main, args) == 0
    table = capsys.readouterr().out
    assert "summary: 5 banks asked, 5 answered, 0 failed" in table
    assert "balance" in table
    assert await asyncio.to_thread(main, [*args, "--json"]) == 0
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 6
    assert lines[-1]["summary"]["banksAnswered"] == 5
    assert "accountsWithBalances" in lines[0]["result"]


async def test_cli_query_reports_a_refusal(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["query", *_tls_args(env), "--service", "fi-utlegg", "--party", "12345678901"]
    assert await asyncio.to_thread(main, args) == 2
    assert "INVALID_ARGUMENT: party_id" in capsys.readouterr().err


async def test_cli_batch_from_csv_to_jsonl(env: Env, tmp_path: Path) -> None:
    parties = env.dataset.party_sample(40)
    source = tmp_path / "queries.csv"
    lines = ["query_id,service,operation,party_id,fromDate,toDate"]
    lines += [f"q{i},fi-utlegg,accounts-with-balances,{p},," for i, p in enumerate(parties)]
    lines.append("bad,fi-utlegg,accounts,00000000000,,")
    source.write_text("\n".join(lines) + "\n")
    output = tmp_path / "out.jsonl"
    args = ["batch", *_tls_args(env), "--input", str(source), "--output", str(output)]
    assert await asyncio.to_thread(main, [*args, "--batch-size", "8", "--window", "16"]) == 0
    events = [orjson.loads(line) for line in output.read_bytes().splitlines()]
    summaries = {e["summary"]["queryId"]: e["summary"] for e in events if "summary" in e}
    assert set(summaries) == {f"q{i}" for i in range(len(parties))} | {"bad"}
    assert summaries["bad"]["error"]["code"] == "ACC-001"


def test_batch_input_errors_name_the_line(tmp_path: Path) -> None:
    source = tmp_path / "q.jsonl"
    source.write_text('{"service": "fi-utlegg", "operation": "accounts"}\n{"operation": "nope"}\n')
    from clients.cli import UsageError  # noqa: PLC0415

    with pytest.raises(UsageError, match=r"q\.jsonl:2"):
        list(read_queries(source))


def test_cli_refuses_plaintext_unless_asked(tmp_path: Path) -> None:
    err = io.StringIO()
    import contextlib  # noqa: PLC0415

    with contextlib.redirect_stderr(err):
        code = main(["hub", "serve", "--registry", str(tmp_path / "r.json")])
    assert code == 2
    assert "TLS is on by default" in err.getvalue()
