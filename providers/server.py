"""Hosting bank providers: each bank on its own port, many banks in one process."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import grpc

from dsop.controlinfo.v2 import bank_pb2_grpc
from providers.base import BankProvider, BankServicer

log = logging.getLogger(__name__)

#: Transaction pages and large batches exceed gRPC's 4 MiB default.
MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024

SERVER_OPTIONS: Final = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
    # The hub keeps its channels alive with pings every 30 s; accept them.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
)


@dataclass(frozen=True, slots=True)
class ServerTls:
    """PEM bytes for a TLS server; with ``client_ca`` set, clients must present a
    certificate signed by it (mutual TLS)."""

    certificate: bytes
    private_key: bytes
    client_ca: bytes | None = None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key, self.certificate)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


@dataclass(slots=True)
class HostedBank:
    provider: BankProvider
    server: grpc.aio.Server
    port: int


async def start_bank(
    provider: BankProvider, host: str = "127.0.0.1", port: int = 0, tls: ServerTls | None = None
) -> HostedBank:
    """Starts one bank's gRPC server; port 0 picks a free port (see ``HostedBank.port``)."""
    server = grpc.aio.server(options=SERVER_OPTIONS)
    bank_pb2_grpc.add_BankServiceServicer_to_server(BankServicer(provider), server)
    address = f"{host}:{port}"
    bound = (
        server.add_secure_port(address, tls.credentials())
        if tls is not None
        else server.add_insecure_port(address)
    )
    await server.start()
    return HostedBank(provider, server, bound)


async def start_banks(
    providers: Sequence[BankProvider],
    host: str = "127.0.0.1",
    base_port: int = 0,
    tls: ServerTls | None = None,
) -> list[HostedBank]:
    """Starts many banks in this process: on ports base_port, base_port+1, ... or on free
    ports when base_port is 0."""
    hosted = []
    for offset, provider in enumerate(providers):
        port = base_port + offset if base_port else 0
        hosted.append(await start_bank(provider, host, port, tls))
    return hosted


async def stop_banks(hosted: Sequence[HostedBank], grace: float | None = None) -> None:
    for bank in hosted:
        await bank.server.stop(grace)
