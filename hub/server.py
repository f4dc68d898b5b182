"""The agency-facing gRPC server and the running hub that owns it.

The handlers are registered by hand (not through the generated servicer) so that responses,
which the egress has already encoded, are sent as they are: the response serializer is the
identity. The server also offers grpc.health.v1 (overall, the hub service, and one entry per
bank reflecting its circuit breaker: ``dsop.bank.<orgno>``) and server reflection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from dsop.hub.v1 import hub_pb2, hub_pb2_grpc
from hub import metrics
from hub.audit import AuditError, ChainLog, LogOptions, load_or_create_key, open_log
from hub.auth import Authenticator, AuthError, TokenSettings
from hub.banks import BankClient, GrpcBankClient
from hub.config import ConfigError, HubConfig, TlsFiles, read_json
from hub.context import Identity, QueryContext, Refusal
from hub.identifiers import party_kind
from hub.kar import GrpcKar, Kar, SyntheticKar
from hub.pipeline import Pipeline, build_pipeline
from hub.police import PoliceOrderVerifier
from hub.profiles import ProfileError, load_profiles
from hub.registry import Registry, RegistryError
from hub.resilience import Deadlines, ResilientBank
from hub.respond import SingleSink, StreamSink
from hub.rest import make_client, make_kar

log = logging.getLogger(__name__)

SERVICE: Final = "dsop.hub.v1.HubService"
#: Agencies send queries (small); the hub sends results (large: transaction pages).
SERVER_OPTIONS: Final = (
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    # Streams per agency connection (HTTP/2 MAX_CONCURRENT_STREAMS): agencies hold many.
    ("grpc.max_concurrent_streams", 20_000),
    # New calls gRPC core holds until the server takes them; past the hard limit (default
    # 3,000) it refuses them with RST_STREAM, so a burst of agencies opening streams at once
    # failed with "Internal error from Core". Load shedding is the hub's job, not this.
    ("grpc.server.max_pending_requests", 50_000),
    ("grpc.server.max_pending_requests_hard_limit", 50_000),
    # ...and how long a call may wait there before core cancels it (default 30 s): under a
    # burst of 10,000 new streams on a busy machine the Python server takes longer than that
    # to pick them all up, and the last ones ended CANCELLED before the hub saw them.
    ("grpc.server_max_unrequested_time_in_server", 300),
    # Agencies and load balancers may keep idle connections alive with pings.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
)
STREAMS: Final = metrics.gauge("dsop_hub_streams_open", "Agency QueryStream calls open")
SERVING: Final = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING: Final = health_pb2.HealthCheckResponse.NOT_SERVING

#: Batches of one agency stream's queries admitted at once, and the most queries in one.
ADMISSIONS: Final = 4
ADMIT_BATCH: Final = 2000
_NO_TLS: Final = TlsFiles()
_DUPLICATE = Refusal(
    grpc.StatusCode.INVALID_ARGUMENT,
    "ACC-001",
    "query_id: already in flight on this stream",
)


def _identity(data: bytes) -> bytes:
    return data


def hub_handler(query: Any, query_stream: Any) -> grpc.GenericRpcHandler:
    """``dsop.hub.v1.HubService`` served by these two handlers, whose responses are already
    encoded (the response serializer is the identity)."""
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Query": grpc.unary_stream_rpc_method_handler(
                query,
                request_deserializer=hub_pb2.QueryRequest.FromString,
                response_serializer=_identity,
            ),
            "QueryStream": grpc.stream_stream_rpc_method_handler(
                query_stream,
                request_deserializer=hub_pb2.QueryStreamRequest.FromString,
                response_serializer=_identity,
            ),
        },
    )


def bank_health_name(bank_id: str) -> str:
    return f"dsop.bank.{bank_id}"


AUDIT_SERVICE: Final = "dsop.hub.v1.AuditService"
AUDIT_SCOPE: Final = "dsop:audit"


async def refuse(context: grpc.aio.ServicerContext[Any, Any], refusal: Refusal) -> NoReturn:
    """Ends the call with the refusal's rich status: the one place a refusal becomes one."""
    await context.abort_with_status(rpc_status.to_status(refusal.to_rpc_status()))
    raise AssertionError("unreachable: abort raises")


async def authenticate(
    authenticator: Authenticator, context: grpc.aio.ServicerContext[Any, Any]
) -> Identity:
    """The caller's identity, or the call ends UNAUTHENTICATED (ACC-010)."""
    try:
        return authenticator.authenticate(context)
    except AuthError as exc:
        await refuse(context, Refusal(grpc.StatusCode.UNAUTHENTICATED, "ACC-010", str(exc)))


class AuditServicer(hub_pb2_grpc.AuditServiceServicer):
    """Disclosure lookup, open only to the audit role."""

    def __init__(
        self, audit: ChainLog, authenticator: Authenticator, auditors: frozenset[str]
    ) -> None:
        self.audit = audit
        self.authenticator = authenticator
        self.auditors = auditors

    async def ListDisclosures(
        self,
        request: hub_pb2.ListDisclosuresRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> hub_pb2.ListDisclosuresResponse:
        identity = await authenticate(self.authenticator, context)
        allowed = (identity.scopes is not None and AUDIT_SCOPE in identity.scopes) or (
            identity.organisation in self.auditors
        )
        if not allowed:
            await refuse(
                context,
                Refusal(grpc.StatusCode.PERMISSION_DENIED, "ACC-011", "the audit role is required"),
            )
        if party_kind(request.party_id) is None:
            await refuse(
                context,
                Refusal(
                    grpc.StatusCode.INVALID_ARGUMENT, "ACC-001", "party_id: not a valid party id"
                ),
            )
        response = hub_pb2.ListDisclosuresResponse()
        for entry in await self.audit.disclosures(request.party_id):
            item = response.disclosures.add(
                first_at=entry["first_at"],
                last_at=entry["last_at"],
                items=entry["items"],
                closed=entry["closed"],
                refused=entry["refused"],
                banks_asked=entry["banks_asked"],
                only_primary_owner=entry["only_primary_owner"],
            )
            for key in (
                "consumer", "subject", "requester_id", "service", "legal_mandate", "case_id",
                "correlation_id", "query_id", "operation", "from_date", "to_date",
                "additional_reference_type",
            ):  # fmt: skip
                setattr(item, key, entry[key] or "")
            for bank in entry["banks"]:
                item.banks.add(
                    bank_id=bank["bank_id"], outcome=bank["outcome"], items=bank["items"]
                )
        return response


class HubServicer:
    def __init__(
        self,
        pipeline: Pipeline,
        authenticator: Authenticator,
        *,
        window: int,
        query_timeout: float,
    ) -> None:
        self.pipeline = pipeline
        self.authenticator = authenticator
        self.window = window
        self.query_timeout = query_timeout

    @staticmethod
    def _call_deadline(context: grpc.aio.ServicerContext[Any, Any]) -> float:
        """The agency's deadline for the whole call (time.monotonic()), less a margin for the
        answer to travel back; infinity when the agency set none."""
        remaining = context.time_remaining()
        if remaining is None:
            return float("inf")
        return time.monotonic() + max(0.0, remaining - max(0.05, remaining * 0.05))

    def _deadline(self, call_deadline: float) -> float:
        """A query's deadline: the hub's default per query from now, or the call's, whichever
        is sooner. (A long-lived stream is not a long query: each query gets its own.)"""
        return min(call_deadline, time.monotonic() + self.query_timeout)

    async def query(
        self, request: hub_pb2.QueryRequest, context: grpc.aio.ServicerContext[object, bytes]
    ) -> AsyncIterator[bytes]:
        identity = await authenticate(self.authenticator, context)
        sink = SingleSink()
        deadline = self._deadline(self._call_deadline(context))
        ctx = QueryContext(request.query, sink, time.monotonic_ns(), identity, deadline)
        finished = False
        try:
            await self.pipeline.admit([ctx])
            while True:
                item = await sink.next()
                if isinstance(item, bytes):
                    yield item
                    continue
                finished = True
                if item.refusal is not None:
                    await refuse(context, item.refusal)
                return
        finally:
            if not finished:  # the agency cancelled or went away
                self.pipeline.abandon([ctx])

    async def query_stream(
        self,
        requests: AsyncIterator[hub_pb2.QueryStreamRequest],
        context: grpc.aio.ServicerContext[object, bytes],
    ) -> AsyncIterator[bytes]:
        identity = await authenticate(self.authenticator, context)
        sink = StreamSink(self.window)
        admit = self.pipeline.admit
        stream_deadline = self._call_deadline(context)
        query_timeout = self.query_timeout
        admitting: set[asyncio.Task[None]] = set()
        # Queries read and not yet admitted. Admission takes them in batches, whatever the
        # messages they came in: a few batches at once (their KAR lookups overlap; more
        # would only queue at the register), each of up to ADMIT_BATCH queries, so when the
        # register is slow the next batch is bigger instead of the queue longer.
        pending: list[QueryContext] = []
        idle = asyncio.Event()
        idle.set()

        def pump() -> None:
            while pending and len(admitting) < ADMISSIONS:
                batch = pending[:ADMIT_BATCH]
                del pending[:ADMIT_BATCH]
                task = asyncio.get_running_loop().create_task(admit(batch))
                admitting.add(task)
                task.add_done_callback(admitted)
            if admitting:
                idle.clear()

        def admitted(task: asyncio.Task[None]) -> None:
            admitting.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.error("admitting a batch failed: %s", type(task.exception()).__name__)
            pump()
            if not admitting:
                idle.set()

        failure: list[str] = []

        async def read() -> None:
            try:
                async for message in requests:
                    now = time.monotonic_ns()
                    deadline = min(stream_deadline, time.monotonic() + query_timeout)
                    for query in message.queries:
                        ctx = QueryContext(query, sink, now, identity, deadline)
                        if not sink.admit(ctx):
                            ctx.refusal = _DUPLICATE
                        pending.append(ctx)
                    pump()
                    # The window bounds what is read and not yet answered.
                    await sink.wait_for_room()
                await idle.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failure.append(type(exc).__name__)
            finally:
                sink.close()

        reader = asyncio.get_running_loop().create_task(read())
        STREAMS.inc()
        try:
            while messages := await sink.messages():
                for message in messages:
                    yield message
            if failure:
                # Queries read before the bad message were answered; the stream ends here.
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"a request message could not be read ({failure[0]})",
                )
        finally:
            STREAMS.dec()
            reader.cancel()
            # Whatever is still in flight has lost its agency (cancelled, disconnected).
            self.pipeline.abandon(list(sink.in_flight.values()))

    def handler(self) -> grpc.GenericRpcHandler:
        return hub_handler(self.query, self.query_stream)


async def _open_audit(config: HubConfig, port: int) -> ChainLog | None:
    if config.audit == "none":
        log.warning("AUDIT OFF: disclosures are not logged (audit = none). Tests only.")
        return None
    writer = config.audit_writer or f"hub@{socket.gethostname()}:{port}"
    try:
        audit = open_log(
            config.audit,
            load_or_create_key(config.audit_key),
            writer,
            LogOptions(checkpoint_file=config.audit_checkpoints),
            schema=config.audit_schema,
        )
        await audit.open()
    except (OSError, ValueError, AuditError) as exc:
        raise ConfigError(f"audit: cannot open the audit log: {exc}") from exc
    log.info("audit log open (writer %s)", writer)
    return audit


def _read_ca(tls: TlsFiles | None) -> bytes:
    if tls is None or tls.ca is None:
        raise ConfigError("proxies.trusted: needs tls.ca, the CA of agencies' certificates")
    try:
        return tls.ca.read_bytes()
    except OSError as exc:
        raise ConfigError(f"tls.ca: cannot read {tls.ca}: {exc.strerror}") from exc


def _kar(config: HubConfig, registry: Registry) -> Kar:
    if config.kar == "embedded":
        if registry.synthetic is None:
            raise ConfigError(
                "kar: 'embedded' needs a registry written by the bank simulator "
                "(with a 'synthetic' entry); otherwise use grpc://HOST:PORT"
            )
        return SyntheticKar(registry.synthetic.seed, registry.synthetic.banks)
    if config.kar.startswith(("https://", "http://")):
        return make_kar(config.kar, None if config.insecure else config.bank_tls)
    credentials = None
    if not config.insecure:
        credentials = (config.bank_tls or _NO_TLS).channel_credentials("bank_tls")
    return GrpcKar(config.kar.removeprefix("grpc://"), credentials)


class Hub:
    """A running hub: server, pipeline, bank clients, KAR and health."""

    def __init__(
        self,
        *,
        config: HubConfig,
        server: grpc.aio.Server,
        port: int,
        pipeline: Pipeline,
        banks: Mapping[str, ResilientBank],
        kar: Kar,
        health: health.aio.HealthServicer,
        deadlines: Deadlines,
        audit: ChainLog | None,
        metrics_server: metrics.MetricsServer | None = None,
    ) -> None:
        self.config = config
        self.server = server
        self.port = port
        self.pipeline = pipeline
        self.banks = banks
        self.kar = kar
        self.health = health
        self.deadlines = deadlines
        self.audit = audit
        self.metrics_server = metrics_server
        self.metrics_source = metrics.Source(
            in_flight=lambda: pipeline.shed.in_flight,
            shed=lambda: pipeline.shed.shed,
            banks=self._bank_states,
            audit=self._audit_state,
        )
        metrics.COLLECTOR.add(self.metrics_source)

    def _bank_states(self) -> list[metrics.BankState]:
        return [
            metrics.BankState(
                bank_id, bank.breaker.state, bank.retries, bank.hedges, bank.client.in_flight()
            )
            for bank_id, bank in self.banks.items()
        ]

    def _audit_state(self) -> metrics.AuditState | None:
        if self.audit is None:
            return None
        counts = self.audit.metrics
        return metrics.AuditState(
            counts.records, counts.transactions, counts.checkpoints, counts.failures
        )

    @property
    def metrics_port(self) -> int | None:
        return self.metrics_server.port if self.metrics_server is not None else None

    @classmethod
    async def start(cls, config: HubConfig) -> Hub:
        config.check()
        assert config.registry is not None
        try:
            registry = Registry.load(config.registry)
        except RegistryError as exc:
            raise ConfigError(f"registry: {exc}") from exc
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
        try:
            profiles = load_profiles(config.profiles)
        except ProfileError as exc:
            raise ConfigError(f"profiles: {exc}") from exc
        tokens = (
            TokenSettings(
                read_json(config.token_jwks, "tokens.jwks"),
                config.token_issuer,
                config.token_audience,
            )
            if config.token_jwks is not None
            else None
        )
        orders = (
            PoliceOrderVerifier(read_json(config.police_jwks, "police.jwks"))
            if config.police_jwks is not None
            else None
        )
        health_servicer = health.aio.HealthServicer()

        def breaker_changed(bank_id: str, state: str) -> None:
            log.warning("bank %s: circuit breaker %s", bank_id, state)
            status = NOT_SERVING if state == "open" else SERVING
            asyncio.get_running_loop().create_task(
                health_servicer.set(bank_health_name(bank_id), status)
            )

        deadlines = Deadlines()
        banks: dict[str, ResilientBank] = {}
        for bank in registry.banks.values():
            policy = config.calls
            if bank.hedge_factor is not None:
                policy = dataclasses.replace(policy, hedge_factor=bank.hedge_factor)
            client: BankClient
            if bank.protocol == "rest":
                client = make_client(bank, None if config.insecure else config.bank_tls)
            else:
                client = GrpcBankClient(
                    bank.bank_id,
                    bank.target,
                    credentials=bank_credentials,
                    max_batch=config.bank_max_batch,
                    linger=config.bank_linger,
                    max_message_bytes=config.bank_max_message_bytes,
                )
            banks[bank.bank_id] = ResilientBank(client, policy, deadlines, breaker_changed)
        kar = _kar(config, registry)
        # Workers share the port on purpose; a lone hub must not share it by accident (a
        # second hub started on a busy port fails instead of silently taking half the calls).
        server = grpc.aio.server(
            options=(*SERVER_OPTIONS, ("grpc.so_reuseport", int(config.workers > 1)))
        )
        port = (
            server.add_secure_port(config.listen, server_credentials)
            if server_credentials is not None
            else server.add_insecure_port(config.listen)
        )
        audit = await _open_audit(config, port)
        pipeline = build_pipeline(
            kar, banks, profiles=profiles, orders=orders, limits=config.limits, audit=audit
        )
        authenticator = Authenticator(
            tokens,
            proxies=config.proxies,
            client_ca=_read_ca(config.tls) if config.proxies else None,
        )
        servicer = HubServicer(
            pipeline,
            authenticator,
            window=config.stream_window,
            query_timeout=config.query_timeout,
        )
        server.add_generic_rpc_handlers((servicer.handler(),))
        services = [SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME]
        if audit is not None:
            hub_pb2_grpc.add_AuditServiceServicer_to_server(
                AuditServicer(audit, authenticator, config.auditors), server
            )
            services.append(AUDIT_SERVICE)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(services, server)
        await health_servicer.set("", SERVING)
        await health_servicer.set(SERVICE, SERVING)
        for bank_id in banks:
            await health_servicer.set(bank_health_name(bank_id), SERVING)
        metrics_server = None
        if config.metrics_listen:
            try:
                metrics_server = metrics.serve(config.metrics_listen)
            except OSError as exc:
                raise ConfigError(
                    f"metrics_listen: cannot listen on {config.metrics_listen}: {exc.strerror}"
                ) from exc
        await server.start()
        log.info("hub listening on port %d with %d banks", port, len(banks))
        return cls(
            config=config,
            server=server,
            port=port,
            pipeline=pipeline,
            banks=banks,
            kar=kar,
            health=health_servicer,
            deadlines=deadlines,
            audit=audit,
            metrics_server=metrics_server,
        )

    async def drain(self, grace: float | None = None) -> None:
        """Graceful stop: report NOT_SERVING, refuse new queries (UNAVAILABLE), let queries in
        flight finish within the grace period, then stop."""
        grace = self.config.drain_grace if grace is None else grace
        await self.health.enter_graceful_shutdown()
        shed = self.pipeline.shed
        shed.draining = True
        deadline = time.monotonic() + grace
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(shed.idle.wait(), grace)
        if shed.in_flight:
            log.warning("drain: %d queries still in flight after %.1f s", shed.in_flight, grace)
        await self.stop(grace=max(0.0, deadline - time.monotonic()))

    async def stop(self, grace: float | None = 1.0) -> None:
        await self.server.stop(grace)
        metrics.COLLECTOR.remove(self.metrics_source)
        if self.metrics_server is not None:
            self.metrics_server.close()
        await self.pipeline.close()
        self.deadlines.close()
        for bank in self.banks.values():
            await bank.close()
        await self.kar.close()
        if self.audit is not None:
            await self.audit.close()  # flushes and signs a last checkpoint

    async def wait(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self.server.wait_for_termination()
