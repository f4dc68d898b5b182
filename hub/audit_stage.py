"""Stage: write-ahead audit. No event leaves the hub before the record covering it is durable.

The stage turns a batch of encoded events into records (one per query in the batch, with the
SHA-256 of every released event's exact bytes) and waits for the audit log to commit them;
only then does the batch go on to the agency. The log coalesces concurrent appends into one
transaction, and the egress merges batches that queued during a commit, so a slow commit
makes the next one bigger instead of making a queue. If the log fails, the batch is not
released (fail closed): its queries' agencies get nothing rather than unaudited data.
"""

from __future__ import annotations

import logging

from hub.audit import AuditLog, records_for_batch
from hub.respond import Outgoing

log = logging.getLogger(__name__)


class AuditStage:
    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit

    async def __call__(self, batch: list[Outgoing]) -> list[Outgoing]:
        if not batch:
            return batch
        records = records_for_batch([(item.ctx, item.event, item.data) for item in batch])
        await self.audit.append(records)
        return batch
