"""The baseline: how an agency's own client works today, without the hub.

Per query: one unary KAR lookup (none when the query names its banks), then at every bank
one unary ``ListAccounts`` and, for accounts with balances, one unary ``GetAccountDetails``
per account. The banks of a query are asked
concurrently, and so are the details within a bank, as a well-written client would; a fixed
set of worker tasks bounds the queries in flight. One channel per bank (and one to KAR),
reused by every query, opened before timing starts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import grpc
from hdrh.histogram import HdrHistogram

from benchmarks.report import new_histogram, record_us
from dsop.controlinfo.v2 import bank_pb2, bank_pb2_grpc, model_pb2
from dsop.hub.v1 import hub_pb2
from dsop.kar.v1 import kar_pb2, kar_pb2_grpc

#: The standard's sentinel: the bank holds the account but did not deliver it digitally, so
#: there is nothing to ask details for.
DATA_NOT_DELIVERED: Final = "dataNotDelivered"
CONNECT_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where KAR and the banks are, and how to reach them (None: plaintext)."""

    kar: str
    banks: Mapping[str, str]
    credentials: grpc.ChannelCredentials | None


@dataclass(slots=True)
class DirectResult:
    queries: int
    answered: int = 0
    refused: int = 0  # KAR refused the lookup
    bank_results: int = 0  # (query, bank) parts finished, failed or not
    bank_failures: int = 0  # (query, bank) parts where a call failed
    queries_with_failures: int = 0
    accounts: int = 0  # account details received
    seconds: float = 0.0
    timed_out: bool = False
    histogram: HdrHistogram = field(default_factory=new_histogram)
    #: When kept (``run(keep=True)``): the account details of every bank part that succeeded,
    #: in the bank's listing order, by (query id, bank id).
    details: dict[tuple[str, str], list[model_pb2.AccountDetail]] | None = None


class DirectClient:
    """Channels and stubs to KAR and every bank."""

    def __init__(self, endpoints: Endpoints) -> None:
        self._channels: list[grpc.aio.Channel] = []
        # The generated stubs type as their async variants when built on an aio channel.
        self.kar: kar_pb2_grpc.KarServiceAsyncStub = kar_pb2_grpc.KarServiceStub(
            self._channel(endpoints.kar, endpoints)
        )
        self._bank_channels = {
            bank_id: self._channel(target, endpoints) for bank_id, target in endpoints.banks.items()
        }
        self.banks: dict[str, bank_pb2_grpc.BankServiceAsyncStub] = {
            bank_id: bank_pb2_grpc.BankServiceStub(channel)
            for bank_id, channel in self._bank_channels.items()
        }

    def _channel(self, target: str, endpoints: Endpoints) -> grpc.aio.Channel:
        channel = (
            grpc.aio.secure_channel(target, endpoints.credentials)
            if endpoints.credentials is not None
            else grpc.aio.insecure_channel(target)
        )
        self._channels.append(channel)
        return channel

    async def connect(self, skip: Collection[str] = ()) -> None:
        """Opens every connection (TCP and TLS handshakes) so timing sees none of it; not
        to the banks in ``skip`` (known to be down)."""
        skipped = {id(self._bank_channels[bank_id]) for bank_id in skip}
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await asyncio.gather(
                *(
                    channel.channel_ready()
                    for channel in self._channels
                    if id(channel) not in skipped
                )
            )

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for channel in self._channels))

    async def __aenter__(self) -> DirectClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _bank_part(
    bank_id: str,
    stub: bank_pb2_grpc.BankServiceAsyncStub,
    query: hub_pb2.Query,
    context: bank_pb2.RequestContext,
    result: DirectResult,
) -> bool:
    """One bank's part of a query; False when a call failed."""
    result.bank_results += 1
    try:
        listed = await stub.ListAccounts(
            bank_pb2.ListAccountsRequest(
                context=context,
                party_id=query.party_id,
                only_primary_owner=query.only_primary_owner,
                period=query.period,
            )
        )
        references = [
            account.account_reference
            for account in listed.accounts
            if account.account_reference != DATA_NOT_DELIVERED
            and query.operation == hub_pb2.OPERATION_ACCOUNTS_WITH_BALANCES
        ]
        details = await asyncio.gather(
            *(
                stub.GetAccountDetails(
                    bank_pb2.GetAccountDetailsRequest(
                        context=context, account_reference=reference, period=query.period
                    )
                )
                for reference in references
            )
        )
        result.accounts += len(details)
        if result.details is not None:
            result.details[(query.query_id, bank_id)] = [d.account for d in details]
    except grpc.aio.AioRpcError:
        result.bank_failures += 1
        return False
    return True


async def one_query(
    client: DirectClient, query: hub_pb2.Query, result: DirectResult, started: int | None = None
) -> None:
    """Runs one query and records its latency from ``started`` (perf_counter_ns; now when
    not given)."""
    if started is None:
        started = time.perf_counter_ns()
    # Today's clients send one correlation id per call; reusing the query's keeps the driver's
    # CPU on gRPC, which is what is measured, and the banks do not check it.
    context = bank_pb2.RequestContext(
        account_info_request_id=query.case_id,
        correlation_id=query.correlation_id,
        legal_mandate=query.legal_mandate,
    )
    if query.HasField("requester_id"):
        context.requester_id = query.requester_id
    try:
        if query.banks:
            relations = kar_pb2.GetCustomerRelationshipsResponse()
            for bank_id in query.banks:
                relations.banks.add(organization_id=bank_id)
        else:
            relations = await client.kar.GetCustomerRelationships(
                kar_pb2.GetCustomerRelationshipsRequest(
                    customer_id=query.party_id,
                    correlation_id=query.correlation_id,
                    legal_mandate=query.legal_mandate,
                    account_info_request_id=query.case_id,
                )
            )
    except grpc.aio.AioRpcError:
        result.refused += 1
    else:
        parts = []
        unknown = False
        for relation in relations.banks:
            stub = client.banks.get(relation.organization_id)
            if stub is None:  # KAR names a bank with no endpoint: a failure, as in the hub
                result.bank_failures += 1
                result.bank_results += 1
                unknown = True
                continue
            parts.append(_bank_part(relation.organization_id, stub, query, context, result))
        if not all(await asyncio.gather(*parts)) or unknown:
            result.queries_with_failures += 1
    record_us(result.histogram, time.perf_counter_ns() - started)
    result.answered += 1


async def run(
    client: DirectClient,
    queries: Sequence[hub_pb2.Query],
    *,
    concurrency: int,
    time_limit: float,
    keep: bool = False,
) -> DirectResult:
    """Runs ``queries`` as today's clients would, at most ``concurrency`` at once, over a
    connected client; stops (``timed_out``) after ``time_limit`` seconds. ``keep``: keep the
    account details each bank sent (``DirectResult.details``)."""
    result = DirectResult(len(queries), details={} if keep else None)
    feed = iter(queries)

    async def worker() -> None:
        for query in feed:  # one shared iterator: each query is taken by exactly one worker
            await one_query(client, query, result)

    started = time.perf_counter()
    try:
        async with asyncio.timeout(time_limit):
            await asyncio.gather(*(worker() for _ in range(concurrency)))
    except TimeoutError:
        result.timed_out = True
    result.seconds = time.perf_counter() - started
    return result
