"""`dsop bank simulate`: host synthetic banks (and optionally a KAR) until stopped.

Banks can be spread over several processes (``processes``); bank ``i`` of the dataset
listens on ``base_port + i``, so the registry is known before the processes start. The
registry file is written once every bank is listening, so its appearance means "ready".

The last ``rest_banks`` banks speak the standard's REST API v2 instead of gRPC (HTTP/2 over
TLS, providers/rest/), registered as ``"protocol": "rest"`` with their base URL; the KAR can
also be served as its REST API v1 (``kar_rest_port``).

With a faults file (``faults``, see :mod:`providers.faults`) every bank is a
:class:`~providers.faults.FaultyBank` misbehaving as the file says, and a bank marked
``down`` has its port closed. SIGHUP re-reads the file in every process and applies it at
once: a bank brought up again listens on its old port, as a restarted bank would. A file that
does not load stops the simulator at start, and on SIGHUP is logged and ignored (the faults in
force stay).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import grpc
import uvloop

from dsop.kar.v1 import kar_pb2_grpc
from hub.registry import BankEndpoint, Registry, SyntheticDatasetRef
from providers.base import BankProvider
from providers.faults import Faults, FaultyBank, load_faults_file
from providers.rest.kar import rest_kar_app
from providers.rest.server import HostedApp, start_app, start_rest_bank, stop_app, stop_apps
from providers.server import HostedBank, ServerTls, start_bank
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
    #: The faults file (TOML, :mod:`providers.faults`); re-read on SIGHUP.
    faults: Path | None = None

    def bank_ids(self) -> list[str]:
        return [info.bank_id for info in make_banks(self.banks, self.seed)]

    def load_faults(self) -> dict[str, Faults] | None:
        """Each bank's faults from the faults file, None without one; ValueError naming the
        file, table and key when it does not load."""
        if self.faults is None:
            return None
        return load_faults_file(self.faults, self.bank_ids())

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


_DEFAULT_FAULTS = Faults()


def describe(faults: Faults) -> str:
    """The faults that differ from none, as ``key=value`` (for the log: no personal data)."""
    changed = [
        f"{f.name}={getattr(faults, f.name)!r}"
        for f in fields(Faults)
        if getattr(faults, f.name) != getattr(_DEFAULT_FAULTS, f.name)
    ]
    return ", ".join(changed) or "none"


class _Bank:
    """One hosted bank: its provider and its server, which ``down`` stops and bringing the
    bank up again restarts on the same port."""

    def __init__(
        self, provider: BankProvider, rest: bool, host: str, tls: ServerTls | None
    ) -> None:
        self.provider = provider
        self.rest = rest
        self.host = host
        self.tls = tls
        self.port = 0
        self.server: HostedBank | HostedApp | None = None

    async def start(self) -> None:
        """Listens on ``port`` (0 the first time: a free port, kept from then on)."""
        if self.rest:
            self.server = await start_rest_bank(self.provider, self.host, self.port, self.tls)
        else:
            self.server = await start_bank(self.provider, self.host, self.port, self.tls)
        self.port = self.server.port

    async def stop(self, grace: float | None = None) -> None:
        """Closes the port; calls in flight end at once (as when a bank goes down) or
        within ``grace`` seconds."""
        server, self.server = self.server, None
        if isinstance(server, HostedApp):
            await stop_app(server)
        elif server is not None:
            await server.server.stop(grace)

    async def apply(self, faults: Faults) -> None:
        if isinstance(self.provider, FaultyBank) and self.provider.faults != faults:
            self.provider.faults = faults
            log.info("bank %s: faults now %s", self.provider.bank_id, describe(faults))
        if faults.down and self.server is not None:
            await self.stop()
            log.info("bank %s: down (port %d closed)", self.provider.bank_id, self.port)
        elif not faults.down and self.server is None:
            try:
                await self.start()
            except (OSError, RuntimeError) as exc:  # grpc reports a failed bind as RuntimeError
                log.error(
                    "bank %s: cannot listen on port %d again, stays down: %s",
                    self.provider.bank_id,
                    self.port,
                    exc,
                )
                return
            log.info("bank %s: up again on port %d", self.provider.bank_id, self.port)


async def _apply(banks: list[_Bank], faults: Mapping[str, Faults]) -> None:
    for bank in banks:
        await bank.apply(faults[bank.provider.bank_id])


async def _host(
    options: SimulateOptions, shard: int, shards: int, ready: object | None
) -> list[int]:
    """Hosts this shard's banks (and the KAR on shard 0) until SIGTERM/SIGINT; re-reads the
    faults file on SIGHUP."""
    infos = make_banks(options.banks, options.seed)
    faults = options.load_faults()
    # Banks answer from their systems at once; the simulator computes a party on first sight,
    # so it keeps many (a benchmark asks about tens of thousands of parties, each several
    # times).
    dataset = SyntheticDataset(options.seed, infos, cache_size=1 << 17)
    tls = options.tls()
    banks: list[_Bank] = []
    hosted_rest: list[HostedApp] = []
    for index in range(shard, options.banks, shards):
        provider: BankProvider
        (provider,) = synthetic_banks(dataset, [infos[index]])
        if faults is not None:
            # Seeded per bank, so a run's faults fall on the same requests every time.
            provider = FaultyBank(provider, faults[provider.bank_id], seed=options.seed + index)
        bank = _Bank(provider, options.is_rest(index), options.host, tls)
        bank.port = options.base_port + index if options.base_port else 0
        banks.append(bank)
        # A bank down from the start needs a port all the same (the registry names it):
        # with no base port, it listens once to be given one.
        if bank.port == 0 or faults is None or not faults[provider.bank_id].down:
            await bank.start()
    if faults is not None:
        for bank in banks:
            if (bank_faults := faults[bank.provider.bank_id]) != _DEFAULT_FAULTS:
                log.info("bank %s: faults %s", bank.provider.bank_id, describe(bank_faults))
        await _apply(banks, faults)
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
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloading = asyncio.Lock()
    reloads: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        async with reloading:  # one at a time: a second SIGHUP waits for the first
            if options.faults is None:
                log.warning("SIGHUP: no faults file (--faults) to re-read")
                return
            try:
                new = options.load_faults()
            except ValueError as exc:
                log.error("faults not reloaded, those in force stay: %s", exc)
                return
            assert new is not None
            log.info("faults reloaded from %s", options.faults)
            await _apply(banks, new)

    def on_hangup() -> None:
        task = loop.create_task(reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    # Before the registry or the ready event: once either is seen, SIGHUP is safe to send.
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    ports = [bank.port for bank in banks]
    if shards == 1:
        _write_registry(options, ports)
        log.info("%d banks listening; registry at %s", len(ports), options.registry_out)
    if ready is not None:
        ready.set()  # type: ignore[attr-defined]
    await stop.wait()
    async with reloading:
        await asyncio.gather(*(bank.stop(grace=1.0) for bank in banks))
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
    try:
        # Checked here, before any bank starts: a bad file stops the simulator at once.
        options.load_faults()
    except ValueError as exc:
        print(f"dsop bank simulate: --faults: {exc}", file=sys.stderr)
        return 2
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

    started: list[bool] = []

    def hangup(signum: int, _frame: object) -> None:
        # Each process re-reads the file for its own banks. Only once all are ready (they
        # read the file as they start; one would die of a SIGHUP before its handler is set):
        # the registry file appears after that, so once it is there SIGHUP is safe to send.
        if not started:
            log.warning("SIGHUP before every bank process is ready: ignored")
            return
        for child in children:
            if child.pid is not None:
                os.kill(child.pid, signal.SIGHUP)

    signal.signal(signal.SIGHUP, hangup)
    for child in children:
        child.start()
    for ready in readies:
        ready.wait(timeout=120)
    started.append(True)
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
