"""The outbound side: the egress that batches events through the outbound stages, the
encode and respond stages, and the two kinds of stream.

Events are encoded once (EncodeStage) to the bytes the agency receives; the audit log keeps
those bytes' digest, and the streams frame them into response messages without re-encoding
them (the gRPC handlers are registered with an identity serializer).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from dsop.hub.v1 import hub_pb2
from hub.context import QueryContext
from hub.wire import frame, varint_field

log = logging.getLogger(__name__)


#: What an event discloses, in the audit log's words: a bank's result is complete, partial or
#: failed; a query's last event is its summary, or the refusal of the whole query.
COMPLETE: Final = "complete"
PARTIAL: Final = "partial"
FAILED: Final = "failed"
SUMMARY: Final = "summary"
REFUSED: Final = "refused"
_LAST: Final = frozenset({SUMMARY, REFUSED})


class Outgoing:
    """One event of one query on its way out, made of parts until the encode stage writes
    its bytes (``data``), with what the audit log records of it, set by whoever makes the
    event (so no later stage reads an event back): ``outcome`` (above), the bank's
    organisation number (None for the last event), the ACC code of a failure or refusal, and
    the items the payload holds (accounts, transactions, cards or roles: counted by the
    filter stage, which is the last to change the payload).

    A bank's result: ``kind`` is its BankResult payload field and ``payload`` the encoded
    answer (the bank's bytes, then the filter stage's; an Error for ``error``), with the
    result's ``result_outcome``, ``has_more`` and failure ``reason``. The last event carries
    ``summary``. ``on_sent``, if any, runs once the event has been handed to the agency's
    stream."""

    __slots__ = (
        "bank_id", "ctx", "data", "error_code", "has_more", "items", "kind", "on_sent",
        "outcome", "payload", "reason", "result_outcome", "summary",
    )  # fmt: skip

    def __init__(
        self,
        ctx: QueryContext,
        outcome: str,
        bank_id: str | None = None,
        *,
        kind: str = "",
        payload: bytes = b"",
        result_outcome: int = 0,
        has_more: bool = False,
        reason: int = 0,
        summary: hub_pb2.QuerySummary | None = None,
        error_code: str = "",
        on_sent: Callable[[], None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.outcome = outcome
        self.bank_id = bank_id
        self.kind = kind
        self.payload = payload
        self.result_outcome = result_outcome
        self.has_more = has_more
        self.reason = reason
        self.summary = summary
        self.error_code = error_code
        self.on_sent = on_sent
        self.items = 0
        self.data = b""

    @property
    def last(self) -> bool:
        """Whether this is the query's last event (its summary)."""
        return self.outcome in _LAST

    def encode(self) -> bytes:
        """The ``QueryEvent`` this is, encoded."""
        if self.summary is not None:
            return frame(_SUMMARY_FIELD, self.summary.SerializeToString())
        assert self.bank_id is not None
        result = (
            frame(_QUERY_ID, self.ctx.query.query_id.encode())
            + _bank_field(self.bank_id)
            + _OUTCOMES[self.result_outcome]
            + (_HAS_MORE if self.has_more else b"")
            + frame(_PAYLOAD_FIELDS[self.kind], self.payload)
            + varint_field(_REASON, self.reason)
        )
        return frame(_RESULT_FIELD, result)


@functools.lru_cache(maxsize=4096)
def _bank_field(bank_id: str) -> bytes:
    return frame(hub_pb2.BankResult.BANK_ID_FIELD_NUMBER, bank_id.encode())


_RESULT_FIELD: Final = hub_pb2.QueryEvent.RESULT_FIELD_NUMBER
_SUMMARY_FIELD: Final = hub_pb2.QueryEvent.SUMMARY_FIELD_NUMBER
_QUERY_ID: Final = hub_pb2.BankResult.QUERY_ID_FIELD_NUMBER
_REASON: Final = hub_pb2.BankResult.REASON_FIELD_NUMBER
_HAS_MORE: Final = varint_field(hub_pb2.BankResult.HAS_MORE_FIELD_NUMBER, 1)
#: BankResult.outcome, encoded, by value.
_OUTCOMES: Final[dict[int, bytes]] = {
    value: varint_field(hub_pb2.BankResult.OUTCOME_FIELD_NUMBER, value)
    for value in hub_pb2.BankOutcome.values()
}
#: BankResult payload field name -> number (the bank's answer kinds, and ``error``).
_PAYLOAD_FIELDS: Final = {
    field.name: field.number
    for field in hub_pb2.BankResult.DESCRIPTOR.oneofs_by_name["payload"].fields
}


#: An outbound stage: takes a batch of events, returns those that go on.
EgressStage = Callable[[list[Outgoing]], Awaitable[list[Outgoing]]]

MAX_EVENTS_PER_MESSAGE: Final = 1000
MAX_BYTES_PER_MESSAGE: Final = 4 * 1024 * 1024


class Egress:
    """Collects the events emitted during one turn of the event loop into one batch and runs
    the outbound stages over it, batch after batch, in order (a query's summary never
    overtakes its results)."""

    def __init__(
        self,
        stages: Sequence[EgressStage],
        on_failure: Callable[[list[Outgoing]], None] | None = None,
    ) -> None:
        self._stages = tuple(stages)
        self._on_failure = on_failure
        self._buffer: list[Outgoing] = []
        self._queue: asyncio.Queue[list[Outgoing]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0

    def emit(self, item: Outgoing) -> None:
        if not self._buffer:
            asyncio.get_running_loop().call_soon(self._flush)
        self._buffer.append(item)

    def _flush(self) -> None:
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        self._queue.put_nowait(batch)
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        queue = self._queue
        while True:
            batch = await queue.get()
            # While a slow stage (a commit) ran, more batches queued: take them all at once,
            # so the next commit covers them together (group commit) instead of queueing.
            while not queue.empty():
                batch += queue.get_nowait()
            self.batches += 1
            try:
                for stage in self._stages:
                    batch = await stage(batch)
            except Exception:
                log.exception("outbound stage failed; %d events withheld", len(batch))
                if self._on_failure is not None:
                    self._on_failure(batch)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()


class EncodeStage:
    """Encodes each event, once, to the bytes its agency will receive. Events of a query
    whose agency went away are dropped here: they are neither audited nor sent."""

    async def __call__(self, batch: list[Outgoing]) -> list[Outgoing]:
        kept = []
        for item in batch:
            if not item.ctx.cancelled:
                item.data = item.encode()
                kept.append(item)
        return kept


class RespondStage:
    """Hands each encoded event to its query's stream; after a summary, tells the stream (and
    ``on_finished``) the query is finished."""

    def __init__(self, on_finished: Callable[[QueryContext], None] | None = None) -> None:
        self.on_finished = on_finished

    async def __call__(self, batch: list[Outgoing]) -> list[Outgoing]:
        for item in batch:
            ctx = item.ctx
            ctx.sink.send(ctx, item.data, item.on_sent)
            if item.outcome in _LAST:
                ctx.finished = True
                ctx.sink.finished(ctx)
                if self.on_finished is not None:
                    self.on_finished(ctx)
        return batch


class StreamSink:
    """The outbox of one agency ``QueryStream``: events framed as ``QueryStreamResponse``
    messages of up to MAX_EVENTS_PER_MESSAGE events.

    ``window`` bounds the queries in flight on the stream: the reader of the agency's requests
    waits for room, so an agency that sends faster than banks answer slows its own stream.
    Events sent with an ``on_sent`` callback (transaction pages) get it called once the
    server has written the messages holding them and asks for more: that is what paces a
    bank's pages to the agency's reading (see hub.fanout.PAGE_WINDOW), so what waits here
    for a slow reader stays bounded.
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self.in_flight: dict[str, QueryContext] = {}
        self._events: list[bytes] = []
        #: Callbacks of events in ``_events`` (by index); then of those handed out, not yet
        #: written.
        self._on_sent: list[tuple[int, Callable[[], None]]] = []
        self._handed_out: list[Callable[[], None]] = []
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closing = False

    def admit(self, ctx: QueryContext) -> bool:
        """Registers a query; False when its id is already in flight on this stream."""
        query_id = ctx.query.query_id
        if query_id in self.in_flight:
            return False
        self.in_flight[query_id] = ctx
        if len(self.in_flight) >= self.window:
            self._room.clear()
        return True

    async def wait_for_room(self) -> None:
        await self._room.wait()

    def send(
        self, ctx: QueryContext, event: bytes, on_sent: Callable[[], None] | None = None
    ) -> None:
        events = self._events
        events.append(frame(1, event))
        if on_sent is not None:
            self._on_sent.append((len(events) - 1, on_sent))
        self._wake.set()

    @property
    def buffered(self) -> int:
        """Events waiting to be handed to the server."""
        return len(self._events)

    def finished(self, ctx: QueryContext) -> None:
        if self.in_flight.get(ctx.query.query_id) is ctx:
            del self.in_flight[ctx.query.query_id]
        if len(self.in_flight) < self.window:
            self._room.set()
        if self._closing and not self.in_flight:
            self._wake.set()

    def close(self) -> None:
        """No more queries will come; the stream ends once those in flight are answered."""
        self._closing = True
        self._wake.set()

    async def messages(self) -> Sequence[bytes]:
        """The next encoded ``QueryStreamResponse`` message (up to MAX_EVENTS_PER_MESSAGE
        events or MAX_BYTES_PER_MESSAGE), as a sequence of one; empty when the stream is done.
        Called again, it takes the message it returned before as written. One message at a
        time, so pages are reported sent (and their bank credited) as each message goes out,
        not after a whole backlog did."""
        written, self._handed_out = self._handed_out, []
        for on_sent in written:
            on_sent()
        while not self._events:
            if self._closing and not self.in_flight:
                return ()
            self._wake.clear()
            await self._wake.wait()
        events = self._events
        count = size = 0
        for item in events:
            count += 1
            size += len(item)
            if count >= MAX_EVENTS_PER_MESSAGE or size >= MAX_BYTES_PER_MESSAGE:
                break
        if count == len(events):
            self._events = []
            self._handed_out = [on_sent for _, on_sent in self._on_sent]
            self._on_sent = []
            return (b"".join(events),)
        self._events = events[count:]
        self._handed_out = [on_sent for index, on_sent in self._on_sent if index < count]
        self._on_sent = [
            (index - count, on_sent) for index, on_sent in self._on_sent if index >= count
        ]
        return (b"".join(events[:count]),)


class SingleSink:
    """The outbox of one ``Query`` call: each event is one ``QueryResponse``; paced like
    :class:`StreamSink` (an event's ``on_sent`` runs when the next one is asked for)."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[tuple[bytes, Callable[[], None] | None] | QueryContext] = (
            asyncio.Queue()
        )
        self._handed_out: Callable[[], None] | None = None

    def send(
        self, ctx: QueryContext, event: bytes, on_sent: Callable[[], None] | None = None
    ) -> None:
        if ctx.refusal is None:  # a refused single query ends in an error status instead
            self._queue.put_nowait((frame(1, event), on_sent))

    def finished(self, ctx: QueryContext) -> None:
        self._queue.put_nowait(ctx)

    @property
    def buffered(self) -> int:
        """Events waiting to be handed to the server."""
        return self._queue.qsize()

    async def next(self) -> bytes | QueryContext:
        """The next encoded ``QueryResponse``, or the finished query's context. Called
        again, it takes the response it returned before as written."""
        written, self._handed_out = self._handed_out, None
        if written is not None:
            written()
        item = await self._queue.get()
        if isinstance(item, QueryContext):
            return item
        data, self._handed_out = item
        return data
