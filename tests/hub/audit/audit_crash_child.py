"""A writer that appends until it is killed: ``python -m tests.hub.audit.audit_crash_child
DB SCHEMA KEY WRITER``. Prints ``ready``, then ``ack N`` after append N returned (its records
have query ids qN-0, qN-1, qN-2)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import sys
from pathlib import Path

from hub.audit import LogOptions, load_or_create_key, open_log
from tests.hub.audit.audit_support import record


async def main(db: str, schema: str, key_path: str, writer: str) -> None:
    key = load_or_create_key(Path(key_path))
    log = open_log(db, key, writer, LogOptions(checkpoint_every=50), schema=schema)
    await log.open()
    print("ready", flush=True)
    numbers = itertools.count()

    async def appender() -> None:
        while True:
            n = next(numbers)
            batch = [dataclasses.replace(record(n), query_id=f"q{n}-{i}") for i in range(3)]
            await log.append(batch)
            print(f"ack {n}", flush=True)

    await asyncio.gather(*(appender() for _ in range(4)))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
