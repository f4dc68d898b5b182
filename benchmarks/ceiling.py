"""The ceiling baseline: an echo relay with the hub's wire and none of its logic.

The relay serves the hub's ``QueryStream`` and ``Query`` with the hub's own transport pieces
(the agency-side outboxes of :mod:`hub.respond`, the batched ``Exchange`` client of
:mod:`hub.banks`, TLS both ways) and asks the banks a query names exactly what the hub would
(accounts; one account's details, cards, roles or transaction pages; accounts with balances
in one request), echoing each bank answer back as one event and a summary when the banks are
done. Left out: authentication, validation, policy, KAR, deadlines, retries, breakers, field
filtering, the audit log and flow control. What the hub moves as a fraction of what the relay
moves is the price of that logic on this machine's gRPC.

Run as a child process (``python -m benchmarks.ceiling``) by :func:`start`; the queries must
name their banks (``Query.banks``), since there is no KAR.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import grpc
import uvloop

from benchmarks import processes
from benchmarks.processes import Child, Children, Tls
from dsop.hub.v1 import hub_pb2
from hub import wire
from hub.banks import GrpcBankClient
from hub.context import QueryContext
from hub.fanout import request_body
from hub.registry import Registry
from hub.respond import COMPLETE, Outgoing, SingleSink, StreamSink
from hub.server import SERVER_OPTIONS, hub_handler
from providers.synthetic import SyntheticDataset, make_banks

log = logging.getLogger(__name__)

Op = hub_pb2.Operation
READY_TIMEOUT_S: Final = 60.0
_PER_ACCOUNT: Final = {
    Op.OPERATION_ACCOUNT_DETAILS: "account_details",
    Op.OPERATION_TRANSACTIONS: "transactions",
    Op.OPERATION_CARDS: "cards",
    Op.OPERATION_ROLES: "roles",
}


class _RelayedQuery:
    """One query on its way through the relay: bank requests out, every answer echoed."""

    __slots__ = ("clients", "ctx", "outstanding")

    def __init__(self, ctx: QueryContext, clients: Mapping[str, GrpcBankClient]) -> None:
        self.ctx = ctx
        self.clients = clients
        self.outstanding = 0

    def start(self) -> None:
        query = self.ctx.query
        self.ctx.request_body = request_body(query)
        for bank_id in query.banks:
            client = self.clients.get(bank_id)
            if client is None:
                continue
            if query.operation in _PER_ACCOUNT:
                self._ask(client, _PER_ACCOUNT[query.operation])
            elif query.operation == Op.OPERATION_ACCOUNTS_WITH_BALANCES:
                self._ask(client, "accounts_with_balances")
            else:
                self._ask(client, "accounts")
        if not self.outstanding:
            self._summary()

    def _ask(self, client: GrpcBankClient, kind: str) -> None:
        self.outstanding += 1
        request = client.request(self._on_answer(client))
        getattr(request, kind).MergeFromString(self.ctx.request_body)

    def _on_answer(self, client: GrpcBankClient) -> Callable[[Any], None]:
        def on_answer(response: Any) -> None:
            ctx = self.ctx
            kind, payload = wire.payload(response)
            if kind == "error":
                payload = response.error.SerializeToString()
            # The bank's bytes, echoed unparsed (no filter) in the hub's framing.
            echo = Outgoing(
                ctx,
                COMPLETE,
                client.bank_id,
                kind=kind or "error",
                payload=payload,
                has_more=response.has_more,
            )
            ctx.sink.send(ctx, echo.encode())
            if not response.has_more:
                self.outstanding -= 1
                if not self.outstanding:
                    self._summary()

        return on_answer

    def _summary(self) -> None:
        ctx = self.ctx
        event = hub_pb2.QueryEvent()
        summary = event.summary
        summary.query_id = ctx.query.query_id
        summary.banks_asked = summary.banks_answered = len(ctx.query.banks)
        summary.elapsed_us = (time.monotonic_ns() - ctx.received_ns) // 1000
        ctx.sink.send(ctx, event.SerializeToString())
        ctx.sink.finished(ctx)


class Relay:
    """The relay's ``dsop.hub.v1.HubService`` (Query and QueryStream)."""

    def __init__(self, clients: Mapping[str, GrpcBankClient], window: int) -> None:
        self.clients = clients
        self.window = window

    async def query(
        self, request: hub_pb2.QueryRequest, context: grpc.aio.ServicerContext[object, bytes]
    ) -> AsyncIterator[bytes]:
        sink = SingleSink()
        ctx = QueryContext(request.query, sink, time.monotonic_ns())
        _RelayedQuery(ctx, self.clients).start()
        while isinstance(item := await sink.next(), bytes):
            yield item

    async def query_stream(
        self,
        requests: AsyncIterator[hub_pb2.QueryStreamRequest],
        context: grpc.aio.ServicerContext[object, bytes],
    ) -> AsyncIterator[bytes]:
        sink = StreamSink(self.window)

        async def read() -> None:
            try:
                async for message in requests:
                    now = time.monotonic_ns()
                    for query in message.queries:
                        ctx = QueryContext(query, sink, now)
                        if sink.admit(ctx):
                            _RelayedQuery(ctx, self.clients).start()
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
        return hub_handler(self.query, self.query_stream)


async def serve(registry: Path, port_file: Path, certs: Path | None, window: int) -> None:
    """Serves the relay on a free loopback port (written to ``port_file``) until SIGTERM."""
    bank_credentials = server_credentials = None
    if certs is not None:
        ca, key, cert = (certs / name for name in ("ca.pem", "hub.key", "hub.pem"))
        bank_credentials = grpc.ssl_channel_credentials(
            ca.read_bytes(), key.read_bytes(), cert.read_bytes()
        )
        server_credentials = grpc.ssl_server_credentials(
            [(key.read_bytes(), cert.read_bytes())], ca.read_bytes(), True
        )
    clients = {
        bank.bank_id: GrpcBankClient(bank.bank_id, bank.target, credentials=bank_credentials)
        for bank in Registry.load(registry).banks.values()
    }
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers((Relay(clients, window).handler(),))
    address = "127.0.0.1:0"
    port = (
        server.add_secure_port(address, server_credentials)
        if server_credentials is not None
        else server.add_insecure_port(address)
    )
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    port_file.write_text(str(port))  # noqa: ASYNC240 - once, at start-up
    log.info("ceiling relay on port %d over %d banks", port, len(clients))
    await stop.wait()
    await server.stop(1.0)
    for client in clients.values():
        await client.close()


def name_banks(queries: Sequence[hub_pb2.Query], seed: int, banks: int) -> list[hub_pb2.Query]:
    """Copies of ``queries`` naming the banks the simulator's KAR names for each party today
    (the relay has no KAR). For any scenario over ``dsop bank simulate --seed S --banks B``,
    e.g. enforcement: drive the relay with ``name_banks(workload.queries, seed, banks)``."""
    dataset = SyntheticDataset(seed, make_banks(banks, seed))
    today = dt.date.today()
    out = []
    for query in queries:
        copy = hub_pb2.Query()
        copy.CopyFrom(query)
        copy.banks.extend(
            r.organization_id for r in dataset.relations(query.party_id, today, today)
        )
        out.append(copy)
    return out


async def start(
    children: Children, tmp: Path, registry: Path, tls: Tls, window: int = 20_000
) -> tuple[Child, str]:
    """Starts the relay as a child process over the banks of ``registry``; returns it and
    its target. Agencies reach it as they reach the hub (the same TLS, no token needed)."""
    port_file = tmp / "ceiling.port"
    argv = ["--registry", str(registry), "--port-file", str(port_file), "--window", str(window)]
    if tls.certs is not None:
        argv += ["--certs", str(tls.certs)]
    relay = children.start(Child("ceiling relay", argv, tmp / "ceiling.log", "benchmarks.ceiling"))
    await processes.wait_for_file(port_file, relay, READY_TIMEOUT_S)
    return relay, f"127.0.0.1:{int(port_file.read_text())}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ceiling", description=__doc__)
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--certs", type=Path, help="development certificates (else plaintext)")
    parser.add_argument("--window", type=int, default=20_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    uvloop.run(serve(args.registry, args.port_file, args.certs, args.window))


if __name__ == "__main__":
    main()
