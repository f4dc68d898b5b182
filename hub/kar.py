"""Resolving which banks know a party: the customer-relations register (KAR).

The resolve stage asks a :class:`Kar` for a whole batch of queries at once. Two
implementations: :class:`SyntheticKar`, embedded in the hub and answering from the synthetic
dataset the bank simulator serves (the default for demos, tests and benchmarks), and
:class:`GrpcKar`, a remote ``dsop.kar.v1.KarService`` asked with one batched call per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc

from dsop.hub.v1 import hub_pb2
from dsop.kar.v1 import kar_pb2, kar_pb2_grpc
from hub.clock import period_dates


@dataclass(frozen=True, slots=True)
class KarError:
    """The register refused a lookup (ERR-001..ERR-004) or could not be reached (504)."""

    code: str
    message: str


KarAnswer = list[str] | KarError


class Kar(Protocol):
    async def lookup(self, queries: Sequence[hub_pb2.Query]) -> list[KarAnswer]:
        """Bank organisation numbers per query (for its party and period), in order."""
        ...

    async def close(self) -> None: ...


class SyntheticKar:
    """The register of the synthetic dataset, computed in-process."""

    def __init__(self, seed: int, bank_count: int) -> None:
        # Imported here: only a hub configured with the synthetic register needs the generator.
        from providers.synthetic.dataset import SyntheticDataset  # noqa: PLC0415
        from providers.synthetic.universe import make_banks  # noqa: PLC0415

        # A register answers from an index, at once; the synthetic one computes each party on
        # first sight, so keep many (a benchmark asks for tens of thousands of parties).
        self.dataset = SyntheticDataset(seed, make_banks(bank_count, seed), cache_size=1 << 16)

    async def lookup(self, queries: Sequence[hub_pb2.Query]) -> list[KarAnswer]:
        answers: list[KarAnswer] = []
        relations = self.dataset.relations
        for query in queries:
            try:
                start, end = period_dates(query.period.from_date, query.period.to_date)
            except ValueError:
                answers.append(KarError("ERR-003", "invalid period or date format"))
                continue
            answers.append([r.organization_id for r in relations(query.party_id, start, end)])
        return answers

    async def close(self) -> None:
        return None


class GrpcKar:
    """A remote register speaking ``dsop.kar.v1.KarService``."""

    def __init__(
        self, target: str, credentials: grpc.ChannelCredentials | None = None, timeout: float = 30.0
    ) -> None:
        self._channel = (
            grpc.aio.secure_channel(target, credentials)
            if credentials is not None
            else grpc.aio.insecure_channel(target)
        )
        self._stub = kar_pb2_grpc.KarServiceStub(self._channel)
        self._timeout = timeout

    async def lookup(self, queries: Sequence[hub_pb2.Query]) -> list[KarAnswer]:
        request = kar_pb2.BatchGetCustomerRelationshipsRequest()
        for query in queries:
            item = request.requests.add(
                customer_id=query.party_id,
                correlation_id=query.correlation_id,
                legal_mandate=query.legal_mandate,
                account_info_request_id=query.case_id,
            )
            if query.period.HasField("from_date"):
                item.from_date = query.period.from_date
            if query.period.HasField("to_date"):
                item.to_date = query.period.to_date
        try:
            response = await self._stub.BatchGetCustomerRelationships(
                request, timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            down = KarError("504", f"the register is unavailable: {exc.code().name}")
            return [down] * len(queries)
        if len(response.results) != len(queries):
            bad = KarError("504", "the register answered a different number of lookups")
            return [bad] * len(queries)
        answers: list[KarAnswer] = []
        for result in response.results:
            if result.HasField("error"):
                answers.append(KarError(result.error.error_code, result.error.error_message))
            else:
                answers.append([bank.organization_id for bank in result.relationships.banks])
        return answers

    async def close(self) -> None:
        await self._channel.close()
