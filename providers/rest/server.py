"""Hosting ASGI apps (REST banks, the REST KAR) with Hypercorn: HTTP/2 and HTTP/1.1.

With TLS, HTTP/2 is negotiated by ALPN (``h2``, falling back to ``http/1.1``); with a client
CA the client must present a certificate it signed (mutual TLS, as for the gRPC banks).
Without TLS, Hypercorn speaks HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on the same port.
Each app gets its own listening socket, bound here so that port 0 picks a free port that the
caller can read back (``HostedApp.port``).

Hypercorn is pure Python (h11, h2): a REST bank costs more CPU per call than a gRPC one, which
is the point of measuring the bridge (providers/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config, Sockets

from providers.base import BankProvider
from providers.rest.bank import rest_app
from providers.server import ServerTls

log = logging.getLogger(__name__)


def server_ssl_context(tls: ServerTls) -> ssl.SSLContext:
    """A TLS server context offering h2 and http/1.1 by ALPN, requiring a client certificate
    when ``tls.client_ca`` is set."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # load_cert_chain reads files only: the PEM bytes go through a private file for a moment.
    with tempfile.TemporaryDirectory(prefix="dsop-tls-") as directory:
        chain, key = Path(directory, "chain.pem"), Path(directory, "key.pem")
        for path, data in ((chain, tls.certificate), (key, tls.private_key)):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
        context.load_cert_chain(chain, key)
    if tls.client_ca is not None:
        context.load_verify_locations(cadata=tls.client_ca.decode())
        context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


class _Config(Config):
    """Hypercorn's configuration with a ready socket and TLS context instead of paths."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext | None) -> None:
        super().__init__()
        self._socket = sock
        self._context = context

    @property
    def ssl_enabled(self) -> bool:
        return self._context is not None

    def create_ssl_context(self) -> ssl.SSLContext | None:
        return self._context

    def create_sockets(self) -> Sockets:
        if self._context is not None:
            return Sockets([self._socket], [], [])
        return Sockets([], [self._socket], [])


@dataclass(slots=True)
class HostedApp:
    """One ASGI app listening on its own port."""

    app: Any
    port: int
    scheme: str
    task: asyncio.Task[None]
    stop: asyncio.Event

    @property
    def base(self) -> str:
        """``scheme://localhost:PORT`` (localhost: what the development certificates name)."""
        return f"{self.scheme}://localhost:{self.port}"


async def start_app(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: ServerTls | None = None,
    *,
    graceful_timeout: float = 1.0,
) -> HostedApp:
    """Serves ``app`` on host:port (port 0: a free port) until :func:`stop_app`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    config = _Config(sock, server_ssl_context(tls) if tls is not None else None)
    config.graceful_timeout = graceful_timeout
    config.keep_alive_timeout = 75.0
    config.h2_max_concurrent_streams = 256
    # Hypercorn closes a connection after 1000 requests by default (GOAWAY): the hub keeps one
    # HTTP/2 connection per bank for hours, so churn would only cost handshakes.
    config.keep_alive_max_requests = 10_000_000
    config.errorlog = logging.getLogger("hypercorn.error")
    config.accesslog = None
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(
        serve(app, config, shutdown_trigger=stop.wait, mode="asgi")
    )
    # The socket listens already: connections made before Hypercorn's first accept wait in
    # the backlog, so the app is reachable as soon as this returns.
    await asyncio.sleep(0)
    if task.done():
        task.result()  # raises what stopped it
    return HostedApp(app, sock.getsockname()[1], "https" if tls is not None else "http", task, stop)


async def stop_app(hosted: HostedApp) -> None:
    hosted.stop.set()
    with contextlib.suppress(asyncio.CancelledError):
        await hosted.task


async def start_rest_bank(
    provider: BankProvider, host: str = "127.0.0.1", port: int = 0, tls: ServerTls | None = None
) -> HostedApp:
    """One bank's REST API v2 (its base URL is ``hosted.base + "/v2"``)."""
    return await start_app(rest_app(provider), host, port, tls)


async def start_rest_banks(
    providers: Sequence[BankProvider],
    host: str = "127.0.0.1",
    base_port: int = 0,
    tls: ServerTls | None = None,
) -> list[HostedApp]:
    """Many REST banks in this process, on base_port, base_port+1, ... or free ports."""
    return [
        await start_rest_bank(provider, host, base_port + offset if base_port else 0, tls)
        for offset, provider in enumerate(providers)
    ]


async def stop_apps(hosted: Sequence[HostedApp]) -> None:
    await asyncio.gather(*(stop_app(app) for app in hosted))
