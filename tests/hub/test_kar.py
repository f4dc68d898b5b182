"""A remote KAR over dsop.kar.v1 answers like the embedded one."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from dsop.hub.v1 import hub_pb2
from dsop.kar.v1 import kar_pb2, kar_pb2_grpc
from hub.kar import GrpcKar, KarError, SyntheticKar
from providers.server import ServerTls
from providers.simulator import SyntheticKarServicer
from providers.synthetic.dataset import SyntheticDataset
from providers.synthetic.universe import BankInfo
from tests.support import BANKS, SEED, EnvFactory

TODAY = dt.date.today()


@pytest.fixture
async def kar_target(
    dataset: SyntheticDataset, bank_infos: list[BankInfo], cert_dir: Path
) -> AsyncIterator[str]:
    """A KAR server with TLS (the bank certificate, clients need the CA's certificate)."""
    server = grpc.aio.server()
    kar_pb2_grpc.add_KarServiceServicer_to_server(SyntheticKarServicer(dataset, bank_infos), server)
    tls = ServerTls((cert_dir / "bank.pem").read_bytes(), (cert_dir / "bank.key").read_bytes())
    port = server.add_secure_port("127.0.0.1:0", tls.credentials())
    await server.start()
    yield f"localhost:{port}"
    await server.stop(None)


def _kar_credentials(cert_dir: Path) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials((cert_dir / "ca.pem").read_bytes())


async def test_remote_and_embedded_kar_agree(
    kar_target: str, dataset: SyntheticDataset, cert_dir: Path
) -> None:
    queries = [hub_pb2.Query(party_id=p) for p in dataset.party_sample(200)]
    queries.append(hub_pb2.Query(party_id="00000000000"))
    remote = GrpcKar(kar_target, _kar_credentials(cert_dir))
    embedded = SyntheticKar(SEED, BANKS)
    got = await remote.lookup(queries)
    assert got[:-1] == await embedded.lookup(queries[:-1])
    assert got[-1] == KarError("ERR-002", "Ugyldig KUNDEID")
    await remote.close()


async def test_kar_down_is_reported_per_query() -> None:
    kar = GrpcKar("127.0.0.1:1", timeout=2)
    answers = await kar.lookup([hub_pb2.Query(party_id="974761076")] * 3)
    assert all(isinstance(a, KarError) and a.code == "504" for a in answers)
    await kar.close()


async def test_account_servicing_provider(
    kar_target: str, bank_infos: list[BankInfo], cert_dir: Path
) -> None:
    async with grpc.aio.secure_channel(kar_target, _kar_credentials(cert_dir)) as channel:
        stub = kar_pb2_grpc.KarServiceStub(channel)
        from hub.identifiers import make_account_number  # noqa: PLC0415

        bank = bank_infos[3]
        number = next(
            n for body in range(1000, 2000) if (n := make_account_number(bank.prefix, body))
        )
        answer = await stub.GetAccountServicingProvider(
            kar_pb2.GetAccountServicingProviderRequest(account_number=number)
        )
        assert answer.organization_id == bank.bank_id
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetAccountServicingProvider(
                kar_pb2.GetAccountServicingProviderRequest(account_number="12345678901")
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_hub_with_remote_kar(make_env: EnvFactory, kar_target: str) -> None:
    env = await make_env(kar=f"grpc://{kar_target}")
    party = env.dataset.find_party("many_banks")
    from clients.client import make_query  # noqa: PLC0415

    query = make_query(
        service="fi-utlegg",
        legal_mandate="FI-Utlegg-Test",
        operation=hub_pb2.OPERATION_ACCOUNTS,
        party_id=party,
    )
    async with env.client() as hub:
        events = [e async for e in hub.query(query, timeout=20)]
    assert events[-1].summary.banks_answered == 5
