from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from dsop.hub.v1 import hub_pb2
from hub.context import QueryContext
from hub.respond import MAX_EVENTS_PER_MESSAGE, SingleSink, StreamSink
from hub.wire import frame


@given(st.text(max_size=40_000), st.text(max_size=300))
def test_frame_matches_protobufs_own_encoding(bank_id: str, query_id: str) -> None:
    event = hub_pb2.QueryEvent()
    event.result.bank_id = bank_id
    event.result.query_id = query_id
    expected = hub_pb2.QueryResponse(event=event).SerializeToString()
    assert frame(1, event.SerializeToString()) == expected


def _ctx(sink: StreamSink, query_id: str) -> QueryContext:
    return QueryContext(hub_pb2.Query(query_id=query_id), sink, 0)


async def test_stream_sink_refuses_a_duplicate_id_and_keeps_the_original() -> None:
    sink = StreamSink(window=10)
    first = _ctx(sink, "a")
    duplicate = _ctx(sink, "a")
    assert sink.admit(first)
    assert not sink.admit(duplicate)
    sink.finished(duplicate)  # the duplicate's refusal must not end the original
    assert "a" in sink.in_flight
    sink.finished(first)
    assert not sink.in_flight


async def test_stream_sink_splits_messages_and_ends_when_closed_and_idle() -> None:
    sink = StreamSink(window=10)
    ctx = _ctx(sink, "a")
    sink.admit(ctx)
    events = []
    for index in range(MAX_EVENTS_PER_MESSAGE + 5):
        event = hub_pb2.QueryEvent()
        event.result.query_id = "a"
        event.result.bank_id = str(index)
        events.append(event)
        sink.send(ctx, event.SerializeToString())
    messages = [*await sink.messages(), *await sink.messages()]  # one message at a time
    assert len(messages) == 2
    assert len(hub_pb2.QueryStreamResponse.FromString(messages[0]).events) == MAX_EVENTS_PER_MESSAGE
    received = [e for m in messages for e in hub_pb2.QueryStreamResponse.FromString(m).events]
    assert received == events
    sink.close()
    waiter = asyncio.ensure_future(sink.messages())
    await asyncio.sleep(0.01)
    assert not waiter.done()  # a query is still in flight
    sink.finished(ctx)
    assert await asyncio.wait_for(waiter, 1) == ()


async def test_stream_sink_window_blocks_the_reader_until_room() -> None:
    sink = StreamSink(window=2)
    a, b = _ctx(sink, "a"), _ctx(sink, "b")
    sink.admit(a)
    sink.admit(b)
    waiter = asyncio.ensure_future(sink.wait_for_room())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    sink.finished(a)
    await asyncio.wait_for(waiter, 1)


async def test_sinks_report_an_event_sent_only_once_the_server_asks_for_more() -> None:
    sink = StreamSink(window=10)
    ctx = _ctx(sink, "a")
    sink.admit(ctx)
    sent: list[str] = []
    sink.send(ctx, b"", lambda: sent.append("page 1"))
    sink.send(ctx, b"")  # no callback: not paced
    assert len(await sink.messages()) == 1
    assert sent == []  # handed out, not yet written
    sink.send(ctx, b"", lambda: sent.append("page 2"))
    await sink.messages()
    assert sent == ["page 1"]
    # A backlog goes out a message at a time, each message's pages reported on their own.
    for index in range(MAX_EVENTS_PER_MESSAGE + 1):
        sink.send(
            ctx,
            b"",
            (lambda i=index: sent.append(f"backlog {i}")) if index in (0, 999, 1000) else None,
        )
    await sink.messages()
    assert sent == ["page 1", "page 2"]
    await sink.messages()
    assert sent == ["page 1", "page 2", "backlog 0", "backlog 999"]
    sink.finished(ctx)
    sink.close()
    assert await sink.messages() == ()
    assert sent[-1] == "backlog 1000"

    single = SingleSink()
    one = QueryContext(hub_pb2.Query(query_id="b"), single, 0)
    sent.clear()
    single.send(one, b"", lambda: sent.append("single 1"))
    single.finished(one)
    assert await single.next() == frame(1, b"")
    assert sent == []
    assert await single.next() is one
    assert sent == ["single 1"]
