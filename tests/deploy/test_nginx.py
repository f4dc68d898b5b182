"""Two hub replicas behind nginx (deploy/nginx/dsop-hub.conf) with one PostgreSQL audit log:
a batch through the balancer survives a replica killed in the middle, and the log verifies.

Mandatory in CI (.ci/run installs Debian's nginx); elsewhere it skips when nginx is missing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import string
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import clients.client
from clients.client import HubClient
from clients.devtokens import DevTokens
from dsop.hub.v1 import hub_pb2
from hub.audit import open_log
from hub.certs import DEV_PROXY
from providers.synthetic.dataset import SyntheticDataset
from providers.synthetic.universe import make_banks
from tests.support import agency_tls, balance_query, free_port, spawn, stop, wait_for_file

CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "dsop-hub.conf"
AGENCY = "974761076"


def _nginx() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None
    )
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is required in CI (.ci/run installs Debian's nginx package)")
        pytest.skip("nginx is not installed (apt-get install nginx)")
    return found


def _render(tmp: Path, certs: Path, listen: int, replicas: list[int]) -> Path:
    site = string.Template(CONF.read_text()).safe_substitute(
        DSOP_LISTEN=f"127.0.0.1:{listen}",
        DSOP_SERVER_CERT=certs / "proxy.pem",
        DSOP_SERVER_KEY=certs / "proxy.key",
        DSOP_AGENCY_CA=certs / "ca.pem",
        DSOP_PROXY_CERT=certs / "proxy.pem",
        DSOP_PROXY_KEY=certs / "proxy.key",
        DSOP_HUB_CA=certs / "ca.pem",
        DSOP_HUB_NAME="localhost",
        DSOP_UPSTREAMS=" ".join(
            f"server 127.0.0.1:{port} max_fails=1 fail_timeout=10s;" for port in replicas
        ),
    )
    (tmp / "dsop-hub.conf").write_text(site)
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / name).mkdir(exist_ok=True)
    main = tmp / "nginx.conf"
    user = "user root;\n" if os.geteuid() == 0 else ""
    main.write_text(
        f"""{user}worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/dsop-hub.conf;
}}
"""
    )
    return main


def _start_nginx(binary: str, tmp: Path, conf: Path) -> subprocess.Popen[bytes]:
    with (tmp / "nginx.out").open("wb") as out:
        return subprocess.Popen(
            [binary, "-p", str(tmp), "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=out,
            start_new_session=True,
        )


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, f"exited with {process.returncode}"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert time.monotonic() < deadline, f"port {port} did not open"
        time.sleep(0.05)


def _gauge(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == name
        for sample in family.samples
    )


def _hub_args(
    port: int,
    metrics: int,
    writer: str,
    *,
    registry: Path,
    certs: Path,
    tmp: Path,
    db: tuple[str, str],
) -> list[str]:
    return [
        "hub", "serve", "--listen", f"127.0.0.1:{port}", "--metrics-listen",
        f"127.0.0.1:{metrics}", "--registry", str(registry), "--certs", str(certs),
        "--port-file", str(tmp / f"{writer}.port"), "--proxy", DEV_PROXY,
        "--audit", db[0], "--audit-schema", db[1], "--audit-key", str(tmp / "audit.key"),
        "--audit-writer", writer,
    ]  # fmt: skip


async def test_a_batch_through_nginx_survives_a_replica_killed_mid_run(
    tmp_path: Path, cert_dir: Path, pg_schema: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    nginx_binary = _nginx()
    monkeypatch.setattr(  # each agency stream its own connection, as agencies would have
        clients.client,
        "CHANNEL_OPTIONS",
        (*clients.client.CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)),
    )
    registry = tmp_path / "registry.json"
    ports = [free_port(), free_port()]
    metrics = [free_port(), free_port()]
    balancer_port = free_port()
    banks = spawn(
        ["bank", "simulate", "--banks", "10", "--seed", "3", "--registry-out", str(registry),
         "--certs", str(cert_dir)],
        tmp_path / "banks.log",
    )  # fmt: skip
    replicas: list[subprocess.Popen[bytes] | None] = [None, None]
    nginx = None
    writers = ["replica-a", "replica-b"]
    where: dict[str, Any] = {
        "registry": registry,
        "certs": cert_dir,
        "tmp": tmp_path,
        "db": pg_schema,
    }
    try:
        wait_for_file(registry, banks)
        for i in range(2):
            args = _hub_args(ports[i], metrics[i], writers[i], **where)
            replicas[i] = spawn(args, tmp_path / f"{writers[i]}.log")
        for i, replica in enumerate(replicas):
            assert replica is not None
            wait_for_file(tmp_path / f"{writers[i]}.port", replica)
        conf = _render(tmp_path, cert_dir, balancer_port, ports)
        nginx = _start_nginx(nginx_binary, tmp_path, conf)
        _wait_for_port(balancer_port, nginx)

        parties = SyntheticDataset(3, make_banks(10, 3)).party_sample(2400)
        tls = agency_tls(cert_dir, AGENCY)
        token = DevTokens(cert_dir, AGENCY)
        answered: dict[str, hub_pb2.QuerySummary] = {}
        killed = asyncio.Event()
        midway = asyncio.Event()

        async def agency(share: list[str]) -> None:
            queries = [balance_query(party) for party in share]
            async with HubClient(f"localhost:{balancer_port}", tls=tls, token=token) as hub:
                async for event in hub.stream(queries, batch_size=50, window=200, retries=5):
                    if event.HasField("summary"):
                        answered[event.summary.query_id] = event.summary
                        if len(answered) >= 600:
                            midway.set()

        async def kill_one() -> None:
            await midway.wait()
            # The replica must be carrying agency streams when it dies.
            open_streams = await asyncio.to_thread(_gauge, metrics[0], "dsop_hub_streams_open")
            assert open_streams > 0, "round-robin gave replica A no stream"
            victim = replicas[0]
            assert victim is not None
            os.kill(victim.pid, signal.SIGKILL)
            killed.set()

        await asyncio.wait_for(
            asyncio.gather(kill_one(), *(agency(parties[i::4]) for i in range(4))), 240
        )
        assert killed.is_set()
        assert replicas[0] is not None and replicas[0].wait(10) == -signal.SIGKILL
        # Every query answered, none refused, every bank accounted for.
        assert len(answered) == len(parties)
        assert not [s for s in answered.values() if s.HasField("error")]
        assert all(s.banks_asked == s.banks_answered + s.banks_failed for s in answered.values())

        # The killed replica comes back on its chain; both stop cleanly; the log verifies.
        (tmp_path / f"{writers[0]}.port").unlink()
        args = _hub_args(ports[0], metrics[0], writers[0], **where)
        replicas[0] = spawn(args, tmp_path / f"{writers[0]}-2.log")
        wait_for_file(tmp_path / f"{writers[0]}.port", replicas[0])
        for replica in replicas:
            assert replica is not None
            replica.send_signal(signal.SIGTERM)
        for replica in replicas:
            assert replica is not None and replica.wait(60) == 0
        async with open_log(pg_schema[0], schema=pg_schema[1]) as log:
            report = await log.verify()
        assert report.ok, report.problems
        assert sorted(chain.writer for chain in report.chains) == writers
        assert report.records >= len(parties)
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        stop(*replicas, banks)
