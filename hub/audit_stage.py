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
import time
from typing import Final

from hub import metrics
from hub.audit import AuditLog, records_for_batch
from hub.respond import Outgoing

log = logging.getLogger(__name__)

COMMIT_SECONDS: Final = metrics.histogram(
    "dsop_hub_audit_commit_duration_seconds",
    "How long a batch of events waited for its audit records to be durable",
    buckets=metrics.SECONDS_BUCKETS,
)
BATCH_RECORDS: Final = metrics.histogram(
    "dsop_hub_audit_batch_records",
    "Audit records appended per batch of outgoing events",
    buckets=metrics.SIZE_BUCKETS,
)
PENDING: Final = metrics.gauge(
    "dsop_hub_audit_pending_records", "Audit records appended and not yet durable"
)


class AuditStage:
    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit

    async def __call__(self, batch: list[Outgoing]) -> list[Outgoing]:
        if not batch:
            return batch
        records = records_for_batch(batch)
        started = time.monotonic()
        PENDING.inc(len(records))
        try:
            await self.audit.append(records)
        finally:
            PENDING.dec(len(records))
        COMMIT_SECONDS.observe(time.monotonic() - started)
        BATCH_RECORDS.observe(len(records))
        return batch
