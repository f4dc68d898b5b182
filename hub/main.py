"""Running the hub as a process, or as several sharing one port: uvloop, signals, a clean stop.

With ``workers = N > 1`` this process becomes a supervisor: it starts N worker processes
(fresh interpreters, so no gRPC state crosses a fork), each binding the same port with
SO_REUSEPORT so the kernel spreads agencies' connections over them. Each worker is a whole
hub: its own banks' connections, its own chain in the shared (PostgreSQL) audit log
(``<writer>/w<i>``), its own metrics endpoint (port + i). The supervisor forwards SIGTERM so
every worker drains, restarts a worker that dies, and gives up if they keep dying.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Final

import uvloop

from hub import logs
from hub.config import ConfigError, HubConfig
from hub.server import Hub

log = logging.getLogger(__name__)

#: A worker that dies this many times within RESTART_WINDOW seconds is not restarted again.
MAX_RESTARTS: Final = 5
RESTART_WINDOW: Final = 60.0


def tune_gc() -> None:
    """Per-query objects die by reference counting; the cyclic collector's frequent young
    collections only cost time on the hot path (measured: ~20% of the hub's CPU at batch
    rates with the default thresholds). Collect less often, and leave start-up objects
    (profiles, caches) out of it. A young collection traverses what survived since the last
    one: every 500,000 allocations, most queries in flight (alive for seconds under load)
    are gone before it, where every 50,000 each was traversed at least once (measured
    during 200,000 enforcement queries: 0.8 s of collections instead of 2.7 s)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(500_000, 20, 100)


def _write_port(port_file: Path, port: int) -> None:
    # Written whole, then renamed: a reader never sees a half-written port.
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(port))
    os.replace(tmp, port_file)


async def _serve(config: HubConfig, port_file: Path | None, ready: Any = None) -> None:
    hub = await Hub.start(config)
    tune_gc()
    if port_file is not None:
        _write_port(port_file, hub.port)
    if ready is not None:
        ready.send(hub.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("draining: finishing queries in flight, refusing new ones")
    await hub.drain()
    logs.QUERY_LOG.flush()
    log.info("hub stopped")


def serve(config: HubConfig, port_file: Path | None = None) -> int:
    """Serves until SIGTERM or SIGINT; returns the process exit code."""
    logs.configure(config.log_level, config.log_format)
    if config.workers > 1:
        return Supervisor(config, port_file).run()
    uvloop.run(_serve(config, port_file))
    return 0


def worker_config(config: HubConfig, index: int) -> HubConfig:
    """Worker ``index``'s view of the configuration: its own audit chain and metrics port."""
    port = config.listen.rpartition(":")[2]
    writer = config.audit_writer or f"hub@{socket.gethostname()}:{port}"
    metrics_listen = config.metrics_listen
    if metrics_listen:
        metrics_host, _, metrics_port = metrics_listen.rpartition(":")
        if int(metrics_port):
            metrics_listen = f"{metrics_host}:{int(metrics_port) + index}"
    return dataclasses.replace(
        config, audit_writer=f"{writer}/w{index}", metrics_listen=metrics_listen
    )


def _worker(config: HubConfig, index: int, ready: Any) -> None:
    # A fresh interpreter: set up logging again, marked with the worker's number.
    logs.configure(config.log_level, config.log_format, static={"worker": index})
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides; it sends SIGTERM
    try:
        uvloop.run(_serve(config, None, ready))
    except ConfigError as exc:
        log.error("worker %d: %s", index, exc)
        raise SystemExit(2) from None


class Supervisor:
    def __init__(self, config: HubConfig, port_file: Path | None) -> None:
        self.config = config
        self.port_file = port_file
        self.context = multiprocessing.get_context("spawn")
        self.workers: dict[int, BaseProcess] = {}
        self.deaths: list[float] = []
        self.stopping = False

    def _start(self, index: int, timeout: float = 60.0) -> bool:
        receive, send = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=_worker,
            args=(worker_config(self.config, index), index, send),
            name=f"dsop-hub-w{index}",
        )
        process.start()
        send.close()
        self.workers[index] = process
        if receive.poll(timeout):
            try:
                receive.recv()
                return True
            except EOFError:
                pass
        log.error("worker %d did not start (exit code %s)", index, process.exitcode)
        return False

    def run(self) -> int:
        stop = False

        def on_signal(_signum: int, _frame: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        for index in range(self.config.workers):
            if not self._start(index):
                self._stop_all()
                return 1
        log.info("%d workers serving %s", len(self.workers), self.config.listen)
        if self.port_file is not None:
            _write_port(self.port_file, int(self.config.listen.rpartition(":")[2]))
        while not stop:
            time.sleep(0.2)
            for index, process in list(self.workers.items()):
                if process.is_alive() or stop:
                    continue
                log.error("worker %d exited (code %s); restarting it", index, process.exitcode)
                now = time.monotonic()
                self.deaths = [t for t in self.deaths if now - t < RESTART_WINDOW] + [now]
                if len(self.deaths) > MAX_RESTARTS or not self._start(index):
                    log.error("workers keep failing; stopping")
                    self._stop_all()
                    return 1
        return self._stop_all()

    def _stop_all(self) -> int:
        """SIGTERM to every worker (each drains); waits for them; 0 if all stopped cleanly."""
        for process in self.workers.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.drain_grace + 10
        code = 0
        for index, process in self.workers.items():
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                log.error("worker %d did not stop in time; killing it", index)
                process.kill()
                process.join()
                code = 1
            elif process.exitcode not in (0, None):
                code = 1
        log.info("all workers stopped")
        return code
