"""Hub -> bank traffic: one small client interface, and its gRPC implementation.

The fan-out talks to banks only through :class:`BankClient`, so it can be tested against
scripted banks as easily as against real servers. :class:`GrpcBankClient` keeps one long-lived
channel and one ``Exchange`` stream per bank and coalesces requests: every request made during
one turn of the event loop (or within ``linger`` seconds, when set) rides in one message, up to
``max_batch`` per message. Python gRPC pays per message, so this is where throughput comes from;
when idle a request is written on the next loop turn, so latency stays low.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Protocol

import grpc

from dsop.controlinfo.v2 import bank_pb2, model_pb2
from hub import metrics
from hub.wire import BankResponseView, ExchangeResponseView

log = logging.getLogger(__name__)

BATCH_REQUESTS: Final = metrics.histogram(
    "dsop_hub_bank_batch_requests",
    "Requests coalesced into one Exchange message to the bank",
    ("bank",),
    buckets=metrics.SIZE_BUCKETS,
)

#: Called with every answer to a request (a hub.wire.BankResponseView: its payload the bytes
#: the bank sent); more follow while ``has_more`` is set.
ResponseHandler = Callable[[Any], None]
_ExchangeCall = grpc.aio.StreamStreamCall[bank_pb2.ExchangeRequest, Any]
_EXCHANGE: Final = "/dsop.controlinfo.v2.BankService/Exchange"

MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024
CHANNEL_OPTIONS: Final = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    # A restarted bank is back within a second or so: reconnect soon, back off to 2 s.
    # (Not min_reconnect_backoff: it is also the connect timeout, and TLS to 100 banks at
    # once needs more than a few hundred ms.)
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
)


class BankClient(Protocol):
    """A bank as the fan-out sees it."""

    bank_id: str
    #: Whether the bank answers accounts-with-balances in one request
    #: (``BankRequest.accounts_with_balances``); the fan-out clears it when the bank answers
    #: ACC-012, and asks for the accounts and each account's details instead.
    composite_balances: bool

    def request(self, on_response: ResponseHandler) -> bank_pb2.BankRequest:
        """A new request to fill in (its id is set; the caller sets the oneof) before control
        returns to the event loop. ``on_response`` is called with each answer, the last one
        with ``has_more`` false, or once with an error if the bank cannot be reached."""
        ...

    def cancel(self, request_id: int) -> None:
        """The answer to the request is no longer wanted: its handler is dropped and the bank
        is told, so it may stop working on it."""
        ...

    def credit(self, request_id: int, pages: int) -> None:
        """The caller took ``pages`` pages of a paced transactions request (one sent with
        ``page_window``): the bank may send that many more."""
        ...

    def in_flight(self) -> int:
        """Requests queued or awaiting their final answer (shown to operators)."""
        ...

    def stalled(self, since: float) -> None:
        """A request sent at ``since`` (time.monotonic()) got no answer by its deadline. If
        nothing at all came back since then, the connection may be stuck: start afresh."""
        ...

    async def close(self) -> None: ...


def failure(request_id: int, code: str, status: grpc.StatusCode, message: str) -> Any:
    """An answer the hub makes up for a request the bank could not answer."""
    return BankResponseView(
        id=request_id,
        error=model_pb2.Error(status=status.value[0], code=code, message=message),
    )


class _Stream:
    """One Exchange call and the requests written on it: a broken stream fails only these."""

    __slots__ = ("call", "handlers", "received_at")

    def __init__(self, call: _ExchangeCall) -> None:
        self.call = call
        self.handlers: dict[int, ResponseHandler] = {}
        self.received_at = 0.0


class GrpcBankClient:
    """A bank reached over ``BankService.Exchange``."""

    def __init__(
        self,
        bank_id: str,
        target: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        max_batch: int = 1000,
        linger: float = 0.0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.bank_id = bank_id
        self.target = target
        # The bank kit (providers.base) offers it; a bank that does not says so once.
        self.composite_balances = True
        self._credentials = credentials
        self._max_batch = max_batch
        self._linger = linger
        self._ids = itertools.count(1)
        #: Handlers of requests not yet written.
        self._pending: dict[int, ResponseHandler] = {}
        self._batch: bank_pb2.ExchangeRequest | None = None
        self._ready: deque[bank_pb2.ExchangeRequest] = deque()
        self._wake = asyncio.Event()
        self._channel: grpc.aio.Channel | None = None
        self._writer: asyncio.Task[None] | None = None
        self._stream: _Stream | None = None
        self._closed = False
        self._options = (
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            *CHANNEL_OPTIONS[2:],
        )
        #: Messages written to the bank and requests they carried (for metrics and tests).
        self.messages_sent = 0
        self.requests_sent = 0
        self._batch_sizes = BATCH_REQUESTS.labels(bank_id)

    def in_flight(self) -> int:
        """Requests waiting to be written or answered."""
        stream = self._stream
        return len(self._pending) + (len(stream.handlers) if stream is not None else 0)

    def request(self, on_response: ResponseHandler) -> bank_pb2.BankRequest:
        if self._closed:
            raise RuntimeError("bank client is closed")
        batch = self._batch
        if batch is None:
            batch = self._batch = bank_pb2.ExchangeRequest()
            loop = asyncio.get_running_loop()
            if self._linger > 0:
                loop.call_later(self._linger, self._seal, batch)
            else:
                loop.call_soon(self._seal, batch)
        request = batch.requests.add(id=next(self._ids))
        self._pending[request.id] = on_response
        if len(batch.requests) >= self._max_batch:
            self._seal(batch)
        return request

    def cancel(self, request_id: int) -> None:
        stream = self._stream
        known = self._pending.pop(request_id, None) is not None or (
            stream is not None and stream.handlers.pop(request_id, None) is not None
        )
        if not known or self._closed:
            return
        self._notice().cancel.request_id = request_id

    def credit(self, request_id: int, pages: int) -> None:
        stream = self._stream
        if self._closed or stream is None or request_id not in stream.handlers:
            return  # ended, or on a stream that broke: no bank is waiting for this
        notice = self._notice()
        notice.credit.request_id = request_id
        notice.credit.pages = pages

    def _notice(self) -> bank_pb2.BankRequest:
        """A request that asks for no answer, in the message being gathered."""
        message = self._batch
        if message is None:
            message = self._batch = bank_pb2.ExchangeRequest()
            asyncio.get_running_loop().call_soon(self._seal, message)
        return message.requests.add(id=next(self._ids))

    def stalled(self, since: float) -> None:
        stream = self._stream
        if stream is not None and not stream.call.done() and stream.received_at < since:
            log.warning("bank %s: stream silent past a deadline; reconnecting", self.bank_id)
            stream.call.cancel()

    def _seal(self, batch: bank_pb2.ExchangeRequest) -> None:
        if self._batch is not batch:
            return  # sealed already, because it filled up
        self._batch = None
        self._ready.append(batch)
        self._wake.set()
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def _write_loop(self) -> None:
        stream: _Stream | None = None
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            while self._ready:
                batch = self._ready.popleft()
                if stream is None or stream.call.done():
                    stream = self._stream = _Stream(self._open())
                    asyncio.get_running_loop().create_task(self._read(stream))
                # From here the requests belong to this stream: its break fails them.
                pending, handlers = self._pending, stream.handlers
                for request in batch.requests:
                    handler = pending.pop(request.id, None)
                    if handler is not None:
                        handlers[request.id] = handler
                try:
                    await stream.call.write(batch)
                except Exception as exc:
                    self._fail(stream, _describe(exc), batch)
                    stream = None
                    continue
                self.messages_sent += 1
                self.requests_sent += len(batch.requests)
                self._batch_sizes.observe(len(batch.requests))

    def _open(self) -> _ExchangeCall:
        if self._channel is None:
            self._channel = (
                grpc.aio.secure_channel(self.target, self._credentials, options=self._options)
                if self._credentials is not None
                else grpc.aio.insecure_channel(self.target, options=self._options)
            )
        # Answers are read as views: their payloads stay the bank's bytes (hub.wire).
        exchange = self._channel.stream_stream(
            _EXCHANGE,
            request_serializer=bank_pb2.ExchangeRequest.SerializeToString,
            response_deserializer=ExchangeResponseView.FromString,
        )
        return exchange()  # type: ignore[return-value]

    async def _read(self, stream: _Stream) -> None:
        handlers = stream.handlers
        reason = "the bank closed the stream"
        try:
            async for message in stream.call:
                stream.received_at = time.monotonic()
                for response in message.responses:
                    handler = (
                        handlers.get(response.id)
                        if response.has_more
                        else handlers.pop(response.id, None)
                    )
                    if handler is None:
                        continue  # an id we never sent or already ended: the bank's bug
                    try:
                        handler(response)
                    except Exception:
                        log.exception("bank response handler failed (bank %s)", self.bank_id)
        except grpc.aio.AioRpcError as exc:
            reason = _describe(exc)
        except asyncio.CancelledError:
            reason = "the hub closed the stream"
            raise
        finally:
            self._fail(stream, reason)

    def _fail(
        self, stream: _Stream, reason: str, batch: bank_pb2.ExchangeRequest | None = None
    ) -> None:
        """Fails what the stream carried (or, given a batch, that batch's requests)."""
        handlers = stream.handlers
        ids = [r.id for r in batch.requests] if batch is not None else list(handlers)
        for request_id in ids:
            handler = handlers.pop(request_id, None)
            if handler is not None:
                with contextlib.suppress(Exception):
                    handler(failure(request_id, "ACC-100", grpc.StatusCode.UNAVAILABLE, reason))

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        if self._stream is not None:
            self._stream.call.cancel()
        if self._channel is not None:
            await self._channel.close()
        pending, self._pending = self._pending, {}
        for request_id, handler in pending.items():
            with contextlib.suppress(Exception):
                handler(failure(request_id, "ACC-100", grpc.StatusCode.UNAVAILABLE, "hub closing"))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return "bank stream broke: an answer was larger than the hub accepts"
        return f"bank unreachable: {exc.code().name}"
    return f"bank stream failed: {type(exc).__name__}"
