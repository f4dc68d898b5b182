"""Shared fixtures: real servers on loopback with ephemeral ports, TLS on."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from hub import certs
from hub.certs import DEV_ISSUER
from hub.config import HubConfig, TlsFiles
from hub.registry import BankEndpoint, Registry, SyntheticDatasetRef
from hub.server import Hub
from providers.base import BankProvider
from providers.server import HostedBank, ServerTls, start_banks, stop_banks
from providers.simulator import synthetic_banks
from providers.synthetic.dataset import SyntheticDataset
from providers.synthetic.universe import BankInfo, make_banks
from tests.support import BANKS, SEED, Env, EnvFactory, Recording


@pytest.fixture(scope="session")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    certs.init(directory)
    return directory


@pytest.fixture
def pg_schema() -> Iterator[tuple[str, str]]:
    """(DSN, a fresh schema name) on the test PostgreSQL server; the schema is dropped after
    the test. Skips when no server is configured (mandatory in CI)."""
    from tests.hub.audit.audit_support import postgres_dsn  # noqa: PLC0415

    dsn = postgres_dsn()
    name = f"audit_test_{uuid.uuid4().hex[:12]}"
    yield dsn, name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(psycopg.sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def bank_infos() -> list[BankInfo]:
    return make_banks(BANKS, SEED)


@pytest.fixture(scope="session")
def dataset(bank_infos: list[BankInfo]) -> SyntheticDataset:
    return SyntheticDataset(SEED, bank_infos)


@pytest.fixture
async def make_env(
    tmp_path: Path, cert_dir: Path, dataset: SyntheticDataset, bank_infos: list[BankInfo]
) -> AsyncIterator[EnvFactory]:
    """Builds an Env; ``wrap`` may replace any bank's provider (slow, failing, ...)."""
    made: list[Env] = []
    started: list[list[HostedBank]] = []

    async def factory(
        wrap: Callable[[BankProvider], BankProvider] | None = None, **hub_options: object
    ) -> Env:
        calls: dict[str, list[str]] = {}
        providers = [
            Recording(wrap(p) if wrap else p, calls) for p in synthetic_banks(dataset, bank_infos)
        ]
        tls = ServerTls(
            (cert_dir / "bank.pem").read_bytes(),
            (cert_dir / "bank.key").read_bytes(),
            (cert_dir / "ca.pem").read_bytes(),
        )
        hosted = await start_banks(providers, "127.0.0.1", 0, tls)
        started.append(hosted)
        registry = Registry(
            {
                info.bank_id: BankEndpoint(info.bank_id, info.name, f"localhost:{bank.port}")
                for info, bank in zip(bank_infos, hosted, strict=True)
            },
            SyntheticDatasetRef(SEED, BANKS),
        )
        path = tmp_path / f"registry-{len(made)}.json"
        registry.save(path)
        config = HubConfig(
            listen="127.0.0.1:0",
            registry=path,
            tls=TlsFiles(cert_dir / "hub.pem", cert_dir / "hub.key", cert_dir / "ca.pem"),
            bank_tls=TlsFiles(cert_dir / "hub.pem", cert_dir / "hub.key", cert_dir / "ca.pem"),
            **{
                "audit": f"sqlite:{tmp_path}/audit-{len(made)}.db",
                "audit_key": tmp_path / "audit.key",
                "token_jwks": cert_dir / "issuer-jwks.json",
                "token_issuer": DEV_ISSUER,
                "police_jwks": cert_dir / "police-jwks.json",
                "metrics_listen": "",
                **hub_options,
            },  # type: ignore[arg-type]
        )
        hub = await Hub.start(config)
        env = Env(dataset, bank_infos, hub, hosted, cert_dir, calls)
        made.append(env)
        return env

    yield factory
    for env in made:
        await env.hub.stop(grace=None)
    for hosted in started:
        await stop_banks(hosted)


@pytest.fixture
async def env(make_env: EnvFactory) -> Env:
    return await make_env()
