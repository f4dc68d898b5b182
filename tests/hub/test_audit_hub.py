"""The audit log on the hub's path: every released event is recorded, write-ahead, with the
digest of the exact bytes the agency received; the log survives kill -9."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import signal
from pathlib import Path

import grpc
import orjson
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from clients.client import HubClient, make_query
from clients.devtokens import DevTokens
from clients.services import MANDATES
from dsop.hub.v1 import hub_pb2, hub_pb2_grpc
from hub.audit import open_log
from hub.auth import mint_token
from hub.certs import DEV_AUDIENCE, DEV_ISSUER
from tests.support import Env, agency_tls, spawn, stop, wait_for_file

FAR = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


async def recorded(db: str) -> tuple[set[bytes], list[dict[str, object]], bool]:
    """Digests of every disclosure in the log, its record bodies, and whether it verifies."""
    log = await open_log(db).open()
    try:
        report = await log.verify()
        bodies = [
            orjson.loads(line["body"])
            async for chunk in log.export(EPOCH, FAR)
            if (line := orjson.loads(chunk))["type"] == "record"
        ]
    finally:
        await log.close()
    digests = {bytes.fromhex(d["digest"]) for b in bodies for d in b["disclosures"]}  # type: ignore[attr-defined]
    return digests, bodies, report.ok


def _query(party: str) -> hub_pb2.Query:
    return make_query(
        service="fi-utlegg",
        legal_mandate=MANDATES["fi-utlegg"],
        operation=hub_pb2.OPERATION_ACCOUNTS_WITH_BALANCES,
        party_id=party,
    )


async def test_every_released_event_is_recorded_with_its_digest(env: Env) -> None:
    parties = env.dataset.party_sample(50)
    async with env.client() as hub:
        received = [e async for e in hub.stream([_query(p) for p in parties], batch_size=10)]
    digests, bodies, ok = await recorded(env.hub.config.audit)
    assert ok
    assert {hashlib.sha256(e.SerializeToString()).digest() for e in received} <= digests
    by_query = {b["query_id"] for b in bodies}
    assert by_query == {e.summary.query_id for e in received if e.HasField("summary")}
    body = bodies[0]
    assert body["consumer"] == "974761076"
    assert body["service"] == "fi-utlegg"
    assert body["legal_mandate"] == MANDATES["fi-utlegg"]


async def test_disclosure_lookup_needs_the_audit_role(env: Env) -> None:
    party = env.dataset.find_party("many_banks")
    async with env.client() as hub:
        async for _ in hub.query(_query(party), timeout=20):
            pass
    channel = grpc.aio.secure_channel(env.target, env.client_tls().credentials())
    stub = hub_pb2_grpc.AuditServiceStub(channel)
    request = hub_pb2.ListDisclosuresRequest(party_id=party)
    plain = DevTokens(env.cert_dir, "974761076")()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListDisclosures(request, metadata=(("authorization", f"Bearer {plain}"),))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    key = load_pem_private_key((env.cert_dir / "issuer.key").read_bytes(), None)
    auditor = mint_token(
        key,
        organisation="974761076",
        scopes=["dsop:audit"],
        issuer=DEV_ISSUER,
        audience=DEV_AUDIENCE,
    )
    answer = await stub.ListDisclosures(request, metadata=(("authorization", f"Bearer {auditor}"),))
    (entry,) = answer.disclosures
    assert (entry.consumer, entry.service, entry.closed) == ("974761076", "fi-utlegg", True)
    assert len(entry.banks) == 5
    assert entry.items == sum(b.items for b in entry.banks) > 0
    await channel.close()


async def test_kill_9_mid_batch_loses_no_record(tmp_path: Path, cert_dir: Path) -> None:
    registry, port_file = tmp_path / "registry.json", tmp_path / "hub.port"
    db = f"sqlite:{tmp_path / 'audit.db'}"
    banks = spawn(
        ["bank", "simulate", "--banks", "10", "--seed", "3", "--registry-out", str(registry),
         "--certs", str(cert_dir)],
        tmp_path / "banks.log",
    )  # fmt: skip
    hub_args = ["hub", "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                "--registry", str(registry),
                "--certs", str(cert_dir), "--port-file", str(port_file), "--audit", db,
                "--audit-key", str(tmp_path / "audit.key"), "--audit-writer", "hub-a"]  # fmt: skip
    hub = None
    try:
        wait_for_file(registry, banks)
        hub = spawn(hub_args, tmp_path / "hub.log")
        wait_for_file(port_file, hub)
        from providers.synthetic.dataset import SyntheticDataset  # noqa: PLC0415
        from providers.synthetic.universe import make_banks  # noqa: PLC0415

        parties = SyntheticDataset(3, make_banks(10, 3)).party_sample(4000)
        tls = agency_tls(cert_dir)
        received: list[hub_pb2.QueryEvent] = []
        summaries = 0
        target = f"localhost:{port_file.read_text()}"
        async with HubClient(target, tls=tls, token=DevTokens(cert_dir, "974761076")) as client:
            with pytest.raises(grpc.aio.AioRpcError):
                async for event in client.stream([_query(p) for p in parties], batch_size=100):
                    received.append(event)
                    summaries += event.HasField("summary")
                    if summaries == 500:
                        os.kill(hub.pid, signal.SIGKILL)  # mid-batch, no warning
        hub.wait(10)
        assert 500 <= summaries < len(parties)
        # Restarted on the same log and writer, the hub resumes its chain.
        port_file.unlink()
        hub = spawn(hub_args, tmp_path / "hub2.log")
        wait_for_file(port_file, hub)
        hub.send_signal(signal.SIGTERM)
        assert hub.wait(30) == 0
        digests, _, ok = await recorded(db)
        assert ok, "the log verifies after kill -9 and restart"
        missing = [
            e for e in received if hashlib.sha256(e.SerializeToString()).digest() not in digests
        ]
        assert not missing, f"{len(missing)} received events have no record"
    finally:
        stop(hub, banks)
