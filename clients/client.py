"""The agency client: one query, or a stream of many, against the hub.

:class:`HubClient` is asyncio-native; :class:`SyncHubClient` offers the same calls to
code without an event loop. Both speak TLS unless told ``insecure=True``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import grpc

from dsop.controlinfo.v2 import bank_pb2
from dsop.hub.v1 import hub_pb2, hub_pb2_grpc

MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024
#: Stream failures worth a new stream: the hub (a replica) or the way to it went away. A load
#: balancer whose replica died mid-stream resets the stream, which gRPC reports as INTERNAL
#: ("Stream removed"); the hub itself never ends a stream with INTERNAL.
RETRYABLE: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL})
CHANNEL_OPTIONS: Final = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)

Operation = hub_pb2.Operation
#: A bearer token, or a function returning a fresh one (tokens live 120 s).
Token = str | Callable[[], str] | None


def _metadata(token: Token) -> tuple[tuple[str, str], ...] | None:
    if token is None:
        return None
    value = token() if callable(token) else token
    return (("authorization", f"Bearer {value}"),)


@dataclass(frozen=True, slots=True)
class ClientTls:
    """PEM bytes: the CA that signed the hub's certificate, and the agency's certificate and
    key (the hub requires them when it runs with mutual TLS)."""

    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )


def make_query(
    *,
    service: str,
    legal_mandate: str,
    operation: hub_pb2.Operation.ValueType,
    party_id: str = "",
    query_id: str | None = None,
    case_id: str | None = None,
    correlation_id: str | None = None,
    requester_id: str | None = None,
    from_date: str | None = None,
    to_date: str | None = None,
    only_primary_owner: bool = True,
    account_reference: str | None = None,
    banks: Iterable[str] = (),
    reference_date: str | None = None,
    additional_reference_id: str | None = None,
    additional_reference_id_type: bank_pb2.AdditionalReferenceIdType.ValueType = (
        bank_pb2.ADDITIONAL_REFERENCE_ID_TYPE_UNSPECIFIED
    ),
) -> hub_pb2.Query:
    """A query with fresh uuids for whatever ids are not given."""
    correlation = correlation_id or str(uuid.uuid4())
    query = hub_pb2.Query(
        query_id=query_id or correlation,
        service=service,
        legal_mandate=legal_mandate,
        case_id=case_id or str(uuid.uuid4()),
        correlation_id=correlation,
        party_id=party_id,
        only_primary_owner=only_primary_owner,
        operation=operation,
        banks=list(banks),
        additional_reference_id_type=additional_reference_id_type,
    )
    for name, value in (
        ("requester_id", requester_id),
        ("account_reference", account_reference),
        ("reference_date", reference_date),
        ("additional_reference_id", additional_reference_id),
    ):
        if value is not None:
            setattr(query, name, value)
    if from_date is not None:
        query.period.from_date = from_date
    if to_date is not None:
        query.period.to_date = to_date
    return query


def _channel_async(
    target: str,
    tls: ClientTls | None,
    insecure: bool,
    extra: Sequence[tuple[str, str | int]] = (),
) -> grpc.aio.Channel:
    options = (*CHANNEL_OPTIONS, *extra)
    if insecure:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, (tls or ClientTls()).credentials(), options)


class HubClient:
    """Async client. Use as ``async with HubClient(target, tls=..., token=...) as hub:``.

    The hub authenticates each call once, when it starts: a stream may outlive its token."""

    def __init__(
        self,
        target: str,
        *,
        tls: ClientTls | None = None,
        token: Token = None,
        insecure: bool = False,
        channel_options: Sequence[tuple[str, str | int]] = (),
    ) -> None:
        """``channel_options``: extra gRPC channel arguments, e.g.
        ``(("grpc.use_local_subchannel_pool", 1),)`` for a connection of this client's own
        (clients to one target otherwise share one), so several clients spread over a hub's
        workers."""
        self._token = token
        self._channel = _channel_async(target, tls, insecure, channel_options)
        self._stub = hub_pb2_grpc.HubServiceStub(self._channel)

    async def __aenter__(self) -> HubClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def query(
        self, query: hub_pb2.Query, *, timeout: float | None = None
    ) -> AsyncIterator[hub_pb2.QueryEvent]:
        """Events of one query as banks answer, the summary last. A refused query raises
        ``grpc.aio.AioRpcError`` with the hub's status and rich details."""
        call = self._stub.Query(
            hub_pb2.QueryRequest(query=query), timeout=timeout, metadata=_metadata(self._token)
        )
        async for response in call:
            yield response.event

    async def stream(
        self,
        queries: Iterable[hub_pb2.Query] | AsyncIterator[hub_pb2.Query],
        *,
        batch_size: int = 500,
        window: int = 10_000,
        retries: int = 0,
        backoff: float = 0.2,
    ) -> AsyncIterator[hub_pb2.QueryEvent]:
        """Runs many queries over one ``QueryStream``: sends them ``batch_size`` per message
        while at most ``window`` are unanswered, and yields every event as it arrives
        (correlate by ``query_id``; a query is done at its summary).

        With ``retries``, a stream that breaks (UNAVAILABLE or INTERNAL: a hub replica or
        its balancer went away) is opened again up to that many times, after a jittered
        pause, and every query not yet summarized is sent again, then the rest. A query sent
        again starts over: its events may arrive twice, and only its last summary counts."""
        source = _aiter(queries)
        unanswered: dict[str, hub_pb2.Query] | None = {} if retries else None
        attempt = 0
        while True:
            again = list(unanswered.values()) if unanswered else []
            try:
                async for event in self._stream_once(
                    source, again, unanswered, batch_size=batch_size, window=window
                ):
                    if unanswered is not None and event.HasField("summary"):
                        unanswered.pop(event.summary.query_id, None)
                    yield event
                return
            except grpc.aio.AioRpcError as exc:
                if attempt >= retries or exc.code() not in RETRYABLE:
                    raise
            attempt += 1
            await asyncio.sleep(random.uniform(0.5, 1.0) * backoff * 2 ** (attempt - 1))

    async def _stream_once(
        self,
        source: AsyncIterator[hub_pb2.Query],
        again: list[hub_pb2.Query],
        unanswered: dict[str, hub_pb2.Query] | None,
        *,
        batch_size: int,
        window: int,
    ) -> AsyncIterator[hub_pb2.QueryEvent]:
        room = asyncio.Semaphore(window)

        async def queries() -> AsyncIterator[hub_pb2.Query]:
            for query in again:
                yield query
            async for query in source:
                if unanswered is not None:
                    unanswered[query.query_id] = query
                yield query

        async def requests() -> AsyncIterator[hub_pb2.QueryStreamRequest]:
            message = hub_pb2.QueryStreamRequest()
            async for query in queries():
                if message.queries and room.locked():
                    # About to wait for room: send what is gathered first.
                    yield message
                    message = hub_pb2.QueryStreamRequest()
                await room.acquire()
                message.queries.append(query)
                if len(message.queries) >= batch_size:
                    yield message
                    message = hub_pb2.QueryStreamRequest()
            if message.queries:
                yield message

        call = self._stub.QueryStream(requests(), metadata=_metadata(self._token))
        try:
            async for response in call:
                for event in response.events:
                    if event.HasField("summary"):
                        room.release()
                    yield event
        finally:
            call.cancel()


async def _aiter(
    items: Iterable[hub_pb2.Query] | AsyncIterator[hub_pb2.Query],
) -> AsyncIterator[hub_pb2.Query]:
    if isinstance(items, AsyncIterator):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


class SyncHubClient:
    """The same calls for code without an event loop (scripts, notebooks, threads)."""

    def __init__(
        self,
        target: str,
        *,
        tls: ClientTls | None = None,
        token: Token = None,
        insecure: bool = False,
    ) -> None:
        self._token = token
        if insecure:
            self._channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        else:
            self._channel = grpc.secure_channel(
                target, (tls or ClientTls()).credentials(), CHANNEL_OPTIONS
            )
        self._stub = hub_pb2_grpc.HubServiceStub(self._channel)

    def __enter__(self) -> SyncHubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def query(
        self, query: hub_pb2.Query, *, timeout: float | None = None
    ) -> Iterator[hub_pb2.QueryEvent]:
        """Events of one query; a refused query raises ``grpc.RpcError``."""
        request = hub_pb2.QueryRequest(query=query)
        for response in self._stub.Query(request, timeout=timeout, metadata=_metadata(self._token)):
            yield response.event

    def stream(
        self, queries: Iterable[hub_pb2.Query], *, batch_size: int = 500, window: int = 10_000
    ) -> Iterator[hub_pb2.QueryEvent]:
        """Many queries over one stream; events as they arrive (see HubClient.stream)."""
        room = threading.Semaphore(window)
        stop = threading.Event()

        def requests() -> Iterator[hub_pb2.QueryStreamRequest]:
            message = hub_pb2.QueryStreamRequest()
            for query in queries:
                while not room.acquire(timeout=0.05 if message.queries else 1.0):
                    if message.queries:
                        yield message
                        message = hub_pb2.QueryStreamRequest()
                    if stop.is_set():
                        return
                message.queries.append(query)
                if len(message.queries) >= batch_size:
                    yield message
                    message = hub_pb2.QueryStreamRequest()
            if message.queries:
                yield message

        call = self._stub.QueryStream(requests(), metadata=_metadata(self._token))
        try:
            for response in call:
                for event in response.events:
                    if event.HasField("summary"):
                        room.release()
                    yield event
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                call.cancel()
