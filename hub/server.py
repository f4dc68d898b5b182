"""The agency-facing gRPC server and the running hub that owns it.

The handlers are registered by hand (not through the generated servicer) so that responses,
which the egress has already encoded, are sent as they are: the response serializer is the
identity.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import grpc
from grpc_status import rpc_status

from dsop.hub.v1 import hub_pb2
from hub.auth import Authenticator, AuthError, TokenSettings
from hub.banks import BankClient, GrpcBankClient
from hub.config import ConfigError, HubConfig, TlsFiles, read_json
from hub.context import Identity, QueryContext, Refusal
from hub.kar import GrpcKar, Kar, SyntheticKar
from hub.pipeline import Pipeline, build_pipeline
from hub.police import PoliceOrderVerifier
from hub.profiles import ProfileError, load_profiles
from hub.registry import Registry
from hub.respond import SingleSink, StreamSink

log = logging.getLogger(__name__)

SERVICE: Final = "dsop.hub.v1.HubService"
MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024
SERVER_OPTIONS: Final = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)

_NO_TLS: Final = TlsFiles()
_DUPLICATE = Refusal(
    grpc.StatusCode.INVALID_ARGUMENT,
    "ACC-001",
    "query_id: already in flight on this stream",
)


def _identity(data: bytes) -> bytes:
    return data


class HubServicer:
    def __init__(self, pipeline: Pipeline, authenticator: Authenticator, window: int) -> None:
        self.pipeline = pipeline
        self.authenticator = authenticator
        self.window = window

    async def _identity(self, context: grpc.aio.ServicerContext[Any, Any]) -> Identity:
        try:
            return self.authenticator.authenticate(context)
        except AuthError as exc:
            refusal = Refusal(grpc.StatusCode.UNAUTHENTICATED, "ACC-010", str(exc))
            await context.abort_with_status(rpc_status.to_status(refusal.to_rpc_status()))
            raise AssertionError("unreachable: abort raises") from None

    async def query(
        self, request: hub_pb2.QueryRequest, context: grpc.aio.ServicerContext[object, bytes]
    ) -> AsyncIterator[bytes]:
        identity = await self._identity(context)
        sink = SingleSink()
        ctx = QueryContext(request.query, sink, time.monotonic_ns(), identity)
        await self.pipeline.admit([ctx])
        while True:
            item = await sink.next()
            if isinstance(item, bytes):
                yield item
                continue
            if item.refusal is not None:
                await context.abort_with_status(rpc_status.to_status(item.refusal.to_rpc_status()))
            return

    async def query_stream(
        self,
        requests: AsyncIterator[hub_pb2.QueryStreamRequest],
        context: grpc.aio.ServicerContext[object, bytes],
    ) -> AsyncIterator[bytes]:
        identity = await self._identity(context)
        sink = StreamSink(self.window)
        admit = self.pipeline.admit

        async def read() -> None:
            try:
                async for message in requests:
                    now = time.monotonic_ns()
                    batch = []
                    for query in message.queries:
                        ctx = QueryContext(query, sink, now, identity)
                        if not sink.admit(ctx):
                            ctx.refusal = _DUPLICATE
                        batch.append(ctx)
                    await admit(batch)
                    await sink.wait_for_room()
            finally:
                sink.close()

        reader = asyncio.get_running_loop().create_task(read())
        try:
            while messages := await sink.messages():
                for message in messages:
                    yield message
        finally:
            reader.cancel()

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Query": grpc.unary_stream_rpc_method_handler(
                    self.query,
                    request_deserializer=hub_pb2.QueryRequest.FromString,
                    response_serializer=_identity,
                ),
                "QueryStream": grpc.stream_stream_rpc_method_handler(
                    self.query_stream,
                    request_deserializer=hub_pb2.QueryStreamRequest.FromString,
                    response_serializer=_identity,
                ),
            },
        )


def _kar(config: HubConfig, registry: Registry) -> Kar:
    if config.kar == "embedded":
        if registry.synthetic is None:
            raise ConfigError(
                "kar: 'embedded' needs a registry written by the bank simulator "
                "(with a 'synthetic' entry); otherwise use grpc://HOST:PORT"
            )
        return SyntheticKar(registry.synthetic.seed, registry.synthetic.banks)
    credentials = None
    if not config.insecure:
        credentials = (config.bank_tls or _NO_TLS).channel_credentials("bank_tls")
    return GrpcKar(config.kar.removeprefix("grpc://"), credentials)


class Hub:
    """A running hub: server, pipeline, bank clients and KAR."""

    def __init__(
        self,
        *,
        config: HubConfig,
        server: grpc.aio.Server,
        port: int,
        pipeline: Pipeline,
        banks: Mapping[str, BankClient],
        kar: Kar,
    ) -> None:
        self.config = config
        self.server = server
        self.port = port
        self.pipeline = pipeline
        self.banks = banks
        self.kar = kar

    @classmethod
    async def start(cls, config: HubConfig) -> Hub:
        config.check()
        assert config.registry is not None
        registry = Registry.load(config.registry)
        if config.insecure:
            log.warning(
                "PLAINTEXT: the hub runs without TLS (--insecure); queries and personal data "
                "cross the network unencrypted. Never do this outside a test machine."
            )
            bank_credentials = None
            server_credentials = None
        else:
            bank_credentials = (config.bank_tls or _NO_TLS).channel_credentials("bank_tls")
            assert config.tls is not None
            server_credentials = config.tls.server_credentials("tls")
        banks: dict[str, BankClient] = {
            bank.bank_id: GrpcBankClient(
                bank.bank_id,
                bank.target,
                credentials=bank_credentials,
                max_batch=config.bank_max_batch,
                linger=config.bank_linger,
            )
            for bank in registry.banks.values()
        }
        try:
            profiles = load_profiles(config.profiles)
        except ProfileError as exc:
            raise ConfigError(f"profiles: {exc}") from exc
        tokens = (
            TokenSettings(
                read_json(config.token_jwks, "token_jwks"),
                config.token_issuer,
                config.token_audience,
            )
            if config.token_jwks is not None
            else None
        )
        orders = (
            PoliceOrderVerifier(read_json(config.police_jwks, "police_jwks"))
            if config.police_jwks is not None
            else None
        )
        kar = _kar(config, registry)
        pipeline = build_pipeline(kar, banks, profiles, orders)
        servicer = HubServicer(pipeline, Authenticator(tokens), config.stream_window)
        server = grpc.aio.server(options=SERVER_OPTIONS)
        server.add_generic_rpc_handlers((servicer.handler(),))
        port = (
            server.add_secure_port(config.listen, server_credentials)
            if server_credentials is not None
            else server.add_insecure_port(config.listen)
        )
        await server.start()
        log.info("hub listening on port %d with %d banks", port, len(banks))
        return cls(config=config, server=server, port=port, pipeline=pipeline, banks=banks, kar=kar)

    async def stop(self, grace: float | None = 1.0) -> None:
        await self.server.stop(grace)
        await self.pipeline.close()
        for client in self.banks.values():
            await client.close()
        await self.kar.close()

    async def wait(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self.server.wait_for_termination()
