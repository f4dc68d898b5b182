"""Stage: resolve which banks to ask, through KAR unless the query names its banks."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from hub.context import QueryContext, Refusal
from hub.kar import Kar, KarError

#: KAR error code -> (status, ACC code) the agency sees.
_KAR_REFUSALS = {
    "ERR-001": (grpc.StatusCode.PERMISSION_DENIED, "ACC-011"),
    "ERR-002": (grpc.StatusCode.INVALID_ARGUMENT, "ACC-001"),
    "ERR-003": (grpc.StatusCode.INVALID_ARGUMENT, "ACC-001"),
    "ERR-004": (grpc.StatusCode.INVALID_ARGUMENT, "ACC-001"),
}


def _refusal(error: KarError) -> Refusal:
    status, code = _KAR_REFUSALS.get(error.code, (grpc.StatusCode.UNAVAILABLE, "ACC-100"))
    return Refusal(status, code, f"customer-relations register: {error.code} {error.message}")


class ResolveStage:
    def __init__(self, kar: Kar) -> None:
        self.kar = kar

    async def __call__(self, batch: Sequence[QueryContext]) -> list[QueryContext]:
        ask = []
        for ctx in batch:
            if ctx.query.banks:
                ctx.banks = list(dict.fromkeys(ctx.query.banks))
            else:
                ask.append(ctx)
        if not ask:
            return list(batch)
        answers = await self.kar.lookup([ctx.query for ctx in ask])
        for ctx, answer in zip(ask, answers, strict=True):
            if isinstance(answer, KarError):
                ctx.refusal = _refusal(answer)
            else:
                ctx.banks = answer
        return [ctx for ctx in batch if ctx.refusal is None]
