"""Write rates of the audit log: ``python -m hub.audit.bench --db sqlite:/tmp/a.db``.

For each batch size (records per append) and number of concurrent appenders, appends for a
fixed time into a fresh chain and prints records/s, commits/s, appends per commit and the
p50/p99 latency of one append (until durable). Records look like the hub's: one bank result
per record, a body of about 1 KB.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.audit.database import open_log
from hub.audit.log import LogOptions
from hub.audit.record import AuditRecord, Disclosure, Summary, reference_digest

MANDATE = "Skatteforvaltningsloven § 10-2 første ledd, jf. § 10-14"


def sample_records(count: int, start: int = 0) -> list[AuditRecord]:
    now = dt.datetime.now(dt.UTC)
    return [
        AuditRecord(
            at=now,
            consumer="974761076",
            subject="skatt-client",
            requester_id="caseworker-17",
            service="skatt-kontroll",
            legal_mandate=MANDATE,
            case_id=str(uuid.UUID(int=start + i)),
            correlation_id=str(uuid.UUID(int=start + i + 1)),
            query_id=f"q{start + i}",
            party_id=f"{(start + i) % 10**11:011d}",
            from_date="2024-01-01",
            to_date="2024-12-31",
            operation="transactions",
            only_primary_owner=True,
            additional_reference_type="pol1",
            additional_reference_digest=reference_digest("order"),
            banks_asked=("910000001", "910000002", "910000003"),
            disclosures=(
                Disclosure("910000001", "complete", 1000, hashlib.sha256(b"%d" % i).digest()),
                Disclosure(None, "summary", 0, hashlib.sha256(b"s%d" % i).digest()),
            ),
            summary=Summary(3, 3, 0, 123_456),
        )
        for i in range(count)
    ]


async def run_one(db: str, batch: int, appenders: int, seconds: float, schema: str) -> str:
    key = Ed25519PrivateKey.generate()
    writer = f"bench-{uuid.uuid4().hex[:8]}"
    records = sample_records(batch)
    latencies: list[float] = []
    log = open_log(db, key, writer, LogOptions(), schema=schema)
    async with log:
        deadline = time.perf_counter() + seconds

        async def appender() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                await log.append(records)
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(appender() for _ in range(appenders)))
        elapsed = time.perf_counter() - began
        metrics = log.metrics
        total, commits = metrics.records, metrics.transactions
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return (
        f"| {db.split(':', 1)[0]:<10} | {batch:>5} | {appenders:>3} | {total / elapsed:>10,.0f} "
        f"| {commits / elapsed:>8,.0f} | {metrics.appends / max(commits, 1):>6.1f} "
        f"| {p50:>7.2f} | {p99:>7.2f} |"
    )


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub.audit.bench", description=__doc__)
    parser.add_argument("--db", action="append", help="sqlite:PATH or postgresql://DSN")
    parser.add_argument("--batches", default="1,100,1000", help="records per append")
    parser.add_argument("--appenders", default="1,16", help="concurrent appenders")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--schema", default="dsop_audit_bench", help="PostgreSQL schema")
    args = parser.parse_args(argv)
    dbs = args.db or [f"sqlite:{os.path.join(tempfile.mkdtemp(), 'audit.db')}"]
    print("| backend    | batch | app |  records/s | commits/s | app/c |  p50 ms |  p99 ms |")
    print("|------------|------:|----:|-----------:|----------:|------:|--------:|--------:|")
    for db in dbs:
        for batch in (int(b) for b in args.batches.split(",")):
            for appenders in (int(a) for a in args.appenders.split(",")):
                print(await run_one(db, batch, appenders, args.seconds, args.schema), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
