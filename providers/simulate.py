"""`dsop bank simulate`: host synthetic banks (and optionally a KAR) until stopped.

Banks can be spread over several processes (``processes``); bank ``i`` of the dataset
listens on ``base_port + i``, so the registry is known before the processes start. The
registry file is written once every bank is listening, so its appearance means "ready".

The last ``rest_banks`` banks speak the standard's REST API v2 instead of gRPC (HTTP/2 over
TLS, providers/rest/), registered as ``"protocol": "rest"`` with their base URL; the KAR can
also be served as its REST API v1 (``kar_rest_port``).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import grpc
import uvloop

from dsop.kar.v1 import kar_pb2_grpc
from hub.registry import BankEndpoint, Registry, SyntheticDatasetRef
from providers.rest.kar import rest_kar_app
from providers.rest.server import HostedApp, start_app, start_rest_bank, stop_apps
from providers.server import HostedBank, ServerTls, start_bank, stop_banks
from providers.simulator import SyntheticKarServicer, synthetic_banks
from providers.synthetic.dataset import SyntheticDataset
from providers.synthetic.universe import BankInfo, make_banks

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SimulateOptions:
    banks: int = 20
    seed: int = 1
    host: str = "127.0.0.1"
    base_port: int = 0
    processes: int = 1
    registry_out: Path = Path("registry.json")
    kar_port: int | None = None
    #: The last N banks speak REST (API v2) instead of gRPC.
    rest_banks: int = 0
    #: Also serve the KAR's REST API v1 on this port.
    kar_rest_port: int | None = None
    cert: Path | None = None
    key: Path | None = None
    client_ca: Path | None = None

    def tls(self) -> ServerTls | None:
        if self.cert is None or self.key is None:
            return None
        return ServerTls(
            self.cert.read_bytes(),
            self.key.read_bytes(),
            self.client_ca.read_bytes() if self.client_ca else None,
        )

    def is_rest(self, index: int) -> bool:
        """Whether bank ``index`` of the dataset speaks REST."""
        return index >= self.banks - self.rest_banks

    def rest_host(self) -> str:
        # The development certificates name localhost; a wildcard is no address to call.
        loopback = {"127.0.0.1", "localhost", "0.0.0.0", "::", "::1", ""}
        return "localhost" if self.host in loopback else self.host


def endpoint(options: SimulateOptions, index: int, info: BankInfo, port: int) -> BankEndpoint:
    """The registry entry of bank ``index`` listening on ``port``."""
    if options.is_rest(index):
        scheme = "http" if options.cert is None or options.key is None else "https"
        target = f"{scheme}://{options.rest_host()}:{port}/v2"
        return BankEndpoint(info.bank_id, info.name, target, "rest")
    return BankEndpoint(info.bank_id, info.name, f"{options.host}:{port}")


def _write_registry(options: SimulateOptions, ports: list[int]) -> None:
    infos = make_banks(options.banks, options.seed)
    registry = Registry(
        {
            info.bank_id: endpoint(options, index, info, port)
            for index, (info, port) in enumerate(zip(infos, ports, strict=True))
        },
        SyntheticDatasetRef(options.seed, options.banks),
    )
    tmp = options.registry_out.with_suffix(".tmp")
    registry.save(tmp)
    os.replace(tmp, options.registry_out)


async def _host(
    options: SimulateOptions, shard: int, shards: int, ready: object | None
) -> list[int]:
    """Hosts this shard's banks (and the KAR on shard 0) until SIGTERM/SIGINT."""
    infos = make_banks(options.banks, options.seed)
    # Banks answer from their systems at once; the simulator computes a party on first sight,
    # so it keeps many (a benchmark asks about tens of thousands of parties, each several
    # times).
    dataset = SyntheticDataset(options.seed, infos, cache_size=1 << 17)
    tls = options.tls()
    hosted: list[HostedBank] = []
    hosted_rest: list[HostedApp] = []
    ports: list[int] = []
    for index in range(shard, options.banks, shards):
        (provider,) = synthetic_banks(dataset, [infos[index]])
        port = options.base_port + index if options.base_port else 0
        if options.is_rest(index):
            hosted_rest.append(await start_rest_bank(provider, options.host, port, tls))
            ports.append(hosted_rest[-1].port)
        else:
            hosted.append(await start_bank(provider, options.host, port, tls))
            ports.append(hosted[-1].port)
    if options.kar_rest_port is not None and shard == 0:
        hosted_rest.append(
            await start_app(rest_kar_app(dataset, infos), options.host, options.kar_rest_port, tls)
        )
    kar_server = None
    if options.kar_port is not None and shard == 0:
        kar_server = grpc.aio.server()
        kar_pb2_grpc.add_KarServiceServicer_to_server(
            SyntheticKarServicer(dataset, infos), kar_server
        )
        address = f"{options.host}:{options.kar_port}"
        if tls is not None:
            kar_server.add_secure_port(address, tls.credentials())
        else:
            kar_server.add_insecure_port(address)
        await kar_server.start()
    if shards == 1:
        _write_registry(options, ports)
        log.info("%d banks listening; registry at %s", len(ports), options.registry_out)
    if ready is not None:
        ready.set()  # type: ignore[attr-defined]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await stop_banks(hosted, grace=1.0)
    await stop_apps(hosted_rest)
    if kar_server is not None:
        await kar_server.stop(1.0)
    return ports


def _child(options: SimulateOptions, shard: int, ready: object) -> None:
    logging.basicConfig(level=logging.INFO)
    uvloop.run(_host(options, shard, options.processes, ready))


def run(options: SimulateOptions) -> int:
    if not 0 <= options.rest_banks <= options.banks:
        raise ValueError("--rest-banks must be between 0 and --banks")
    if options.processes <= 1:
        uvloop.run(_host(options, 0, 1, None))
        return 0
    if not options.base_port:
        raise ValueError("--processes > 1 needs --base-port (bank i listens on base+i)")
    context = multiprocessing.get_context("spawn")
    readies = [context.Event() for _ in range(options.processes)]
    children = [
        context.Process(target=_child, args=(options, shard, readies[shard]), daemon=True)
        for shard in range(options.processes)
    ]
    for child in children:
        child.start()
    for ready in readies:
        ready.wait(timeout=120)
    _write_registry(options, [options.base_port + i for i in range(options.banks)])
    log.info(
        "%d banks in %d processes; registry at %s",
        options.banks,
        options.processes,
        options.registry_out,
    )

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.pid is not None:
                os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.join()
    return 0
