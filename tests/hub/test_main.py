"""`dsop hub serve --workers N`: processes sharing one port, one PostgreSQL audit log, a clean
stop on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import clients.client
from clients.client import HubClient
from clients.devtokens import DevTokens
from dsop.hub.v1 import hub_pb2
from hub.audit import open_log
from hub.config import HubConfig
from hub.main import worker_config
from providers.synthetic.dataset import SyntheticDataset
from providers.synthetic.universe import make_banks
from tests.support import agency_tls, balance_query, free_port, spawn, stop, wait_for_file


def test_each_worker_gets_its_own_chain_and_metrics_port() -> None:
    config = HubConfig(listen="0.0.0.0:7000", workers=3, metrics_listen="127.0.0.1:9500")
    second = worker_config(config, 1)
    assert second.metrics_listen == "127.0.0.1:9501"
    assert second.audit_writer.endswith(":7000/w1")
    assert worker_config(config, 2).audit_writer != second.audit_writer


def _queries_served(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "dsop_hub_queries"
        for sample in family.samples
        if sample.name == "dsop_hub_queries_total"
    )


async def test_two_workers_share_the_port_and_the_audit_log(
    tmp_path: Path, cert_dir: Path, pg_schema: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn, schema_name = pg_schema
    # Each client its own connection, so the kernel spreads them over the workers.
    monkeypatch.setattr(
        clients.client,
        "CHANNEL_OPTIONS",
        (*clients.client.CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)),
    )
    registry, port_file = tmp_path / "registry.json", tmp_path / "hub.port"
    port, metrics_port = free_port(), free_port()
    banks = spawn(
        ["bank", "simulate", "--banks", "8", "--seed", "3", "--registry-out", str(registry),
         "--certs", str(cert_dir)],
        tmp_path / "banks.log",
    )  # fmt: skip
    hub = None
    try:
        wait_for_file(registry, banks)
        hub = spawn(
            ["hub", "serve", "--workers", "2", "--listen", f"127.0.0.1:{port}",
             "--metrics-listen", f"127.0.0.1:{metrics_port}", "--registry", str(registry),
             "--certs", str(cert_dir), "--port-file", str(port_file), "--audit", dsn,
             "--audit-schema", schema_name, "--audit-key", str(tmp_path / "audit.key")],
            tmp_path / "hub.log",
        )  # fmt: skip
        wait_for_file(port_file, hub)
        assert int(port_file.read_text()) == port
        parties = SyntheticDataset(3, make_banks(8, 3)).party_sample(160)
        tls = agency_tls(cert_dir)
        token = DevTokens(cert_dir, "974761076")

        async def agency(share: list[str]) -> int:
            async with HubClient(f"localhost:{port}", tls=tls, token=token) as client:
                queries = [balance_query(party, hub_pb2.OPERATION_ACCOUNTS) for party in share]
                return sum([event.HasField("summary") async for event in client.stream(queries)])

        answered = await asyncio.gather(*(agency(parties[i::16]) for i in range(16)))
        assert sum(answered) == len(parties)
        served = [await asyncio.to_thread(_queries_served, metrics_port + i) for i in range(2)]
        assert all(count > 0 for count in served), f"one worker took every connection: {served}"
        assert sum(served) == len(parties)

        hub.send_signal(signal.SIGTERM)
        assert hub.wait(60) == 0, (tmp_path / "hub.log").read_text()[-2000:]
        async with open_log(dsn, schema=schema_name) as log:
            report = await log.verify()
        assert report.ok, report.problems
        writers = sorted(chain.writer for chain in report.chains)
        assert [writer.rpartition("/")[2] for writer in writers] == ["w0", "w1"]
        assert report.records >= len(parties)
    finally:
        stop(hub, banks)
