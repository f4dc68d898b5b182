"""The write-ahead audit log: the protocol the hub calls, and what both backends share (group
commit, chain state, checkpoints, verification, lookup, export, pruning).

Group commit: ``append`` queues its records and a future; one writer task takes everything
queued, assigns seqs, hashes, writes it in ONE transaction and resolves every future. While a
transaction is in flight new appends queue up, so under load a transaction carries many
callers' records, and when idle a single append is committed at once (no gathering sleep
unless ``linger`` asks for one). The hub releases an egress batch only after its append
returned; an append that raised means the records are not known durable and the batch must
not be released (fail closed).

A record is durable before its events leave the hub, so the log may hold a record whose
events never reached the agency (the stream died in between): it over-states disclosures,
never under-states them.

Nothing here writes party ids, case ids or requester ids to the ordinary log, nor into
exception messages: counts, writer ids and seqs only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, Self

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hub.audit.chain import (
    GENESIS,
    ChainVerifier,
    Checkpoint,
    StoredRow,
    VerifyReport,
    chain_hash,
    sign_checkpoint,
)
from hub.audit.keys import key_id, raw_public_key
from hub.audit.record import (
    AuditRecord,
    check_records,
    check_writer_id,
    decode_body,
    encode_body,
    format_time,
)

log = logging.getLogger(__name__)

_READ_CHUNK: Final = 2000
EXPORT_FORMAT: Final = "dsop-hub-audit-export/1"


class AuditLog(Protocol):
    async def append(self, records: Sequence[AuditRecord]) -> None:
        """Returns once every record is committed (durable); raises AuditError otherwise,
        and then the caller must not release the events the records describe."""


class AuditError(Exception):
    """The audit log cannot do what was asked. Messages carry no personal data."""


class AuditUnavailable(AuditError):
    """An append failed: its records are not known to be durable."""


class WriterBusy(AuditError):
    """Another live process (or log object) holds this writer id."""


class ChainBroken(AuditError):
    """The writer's stored chain cannot be resumed (its tail was removed or altered)."""


@dataclass(frozen=True, slots=True)
class LogOptions:
    """How a writer groups, checkpoints and waits; checked when the log is built."""

    #: Sign a checkpoint after this many records...
    checkpoint_every: int = 10_000
    #: ...or this many seconds after the last one, if records came since (and on close).
    checkpoint_interval: float = 60.0
    #: At most this many records in one transaction (a caller's records are never split).
    max_group_records: int = 10_000
    #: Seconds to keep gathering appends once one arrived; 0 commits at once. Group commit
    #: works without it: appends arriving during a commit join the next one.
    linger: float = 0.0
    #: Append each checkpoint, as a JSON line, to this file too (ship it off the host).
    checkpoint_file: Path | None = None
    #: Seconds to wait for a writer id another process still holds (e.g. a replaced pod
    #: whose database session has not ended yet).
    lock_wait: float = 0.0

    def __post_init__(self) -> None:
        if self.checkpoint_every < 1:
            raise ValueError("checkpoint_every: at least 1")
        if self.checkpoint_interval <= 0:
            raise ValueError("checkpoint_interval: positive seconds")
        if self.max_group_records < 1:
            raise ValueError("max_group_records: at least 1")
        if not 0 <= self.linger <= 0.05:
            raise ValueError("linger: 0..0.05 seconds")
        if self.lock_wait < 0:
            raise ValueError("lock_wait: seconds, not negative")


@dataclass(slots=True)
class AuditMetrics:
    """The writer's counters (tests assert them; the hub may export them)."""

    #: append() calls that returned with their records durable.
    appends: int = 0
    records: int = 0
    #: Committed transactions, including checkpoint-only ones.
    transactions: int = 0
    checkpoints: int = 0
    #: Transactions that failed (their appends raised AuditUnavailable).
    failures: int = 0
    #: Records in the largest transaction so far.
    largest_group: int = 0


@dataclass(slots=True)
class NewRow:
    """A row about to be inserted into the records table (never changed once made)."""

    writer: str
    seq: int
    at: dt.datetime
    party_id: str
    case_id: str
    consumer: str
    service: str
    body: str
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True, slots=True)
class PruneResult:
    writer: str
    checkpoint: Checkpoint
    deleted: int


_Waiter = tuple[Sequence[AuditRecord], asyncio.Future[None]]


def describe(exc: BaseException) -> str:
    """An exception as safe to log: its type and SQLSTATE, never its message (a database
    message may quote a row)."""
    state = getattr(exc, "sqlstate", None)
    return f"{type(exc).__name__}" + (f" (SQLSTATE {state})" if state else "")


class ChainLog(ABC):
    """An audit log stored in a database, written as one chain per writer id.

    Without ``key`` and ``writer_id`` the log is open for reading, verifying and exporting
    only; ``prune`` needs ``key``. Use ``async with`` (or ``open``/``close``).
    """

    def __init__(
        self,
        key: Ed25519PrivateKey | None,
        writer_id: str | None,
        options: LogOptions,
    ) -> None:
        if writer_id is not None:
            check_writer_id(writer_id)
            if key is None:
                raise ValueError("key: a writer needs the signing key")
        self.key = key
        self.writer_id = writer_id
        self.options = options
        self.metrics = AuditMetrics()
        self._queue: deque[_Waiter] = deque()
        self._queued_records = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._stale = False
        self._seq = 0
        self._hash = b""
        self._checkpoint_seq = 0
        self._checkpoint_time = 0.0
        self._failed_at = 0.0

    # -- what each backend provides ---------------------------------------------------------

    @abstractmethod
    async def _connect(self) -> None:
        """Opens the reading side, and the writing side (with the schema) if ``writing``."""

    @abstractmethod
    async def _disconnect(self) -> None: ...

    @abstractmethod
    async def _prepare_writes(self) -> None:
        """Opens the writing side and creates the tables if missing."""

    @abstractmethod
    async def _lock_writer(self, writer: str) -> bool:
        """Takes the writer id for this object; False when someone else holds it."""

    @abstractmethod
    async def _unlock_writer(self) -> None: ...

    @abstractmethod
    async def _reopen_writer(self) -> None:
        """After a failed write: make the writing side usable again, lock still held (or
        raise WriterBusy)."""

    @abstractmethod
    async def _write(self, rows: Sequence[NewRow], checkpoints: Sequence[Checkpoint]) -> None:
        """Inserts rows and checkpoints in one transaction; returns once committed."""

    @abstractmethod
    async def _store_key(self, key_id: str, public: bytes) -> None: ...

    @abstractmethod
    async def _stored_keys(self) -> dict[str, bytes]: ...

    @abstractmethod
    async def _writers(self) -> list[str]:
        """Writers with records or checkpoints."""

    @abstractmethod
    async def _checkpoints(self, writer: str | None) -> list[Checkpoint]: ...

    @abstractmethod
    def _rows(
        self, writer: str, first: int, last: int | None
    ) -> AsyncGenerator[list[StoredRow], None]:
        """The writer's rows with first <= seq (<= last), in seq order, in chunks."""

    @abstractmethod
    async def _last_row(self, writer: str) -> StoredRow | None: ...

    @abstractmethod
    async def _party_rows(self, party_id: str) -> list[StoredRow]:
        """The party's rows in (at, writer, seq) order."""

    @abstractmethod
    async def _seq_bounds(
        self, writer: str, start: dt.datetime, end: dt.datetime
    ) -> tuple[int, int] | None:
        """(lowest seq with at >= start, highest seq with at < end), or None."""

    @abstractmethod
    async def _prune_chain(self, checkpoint: Checkpoint) -> int:
        """Stores the prune checkpoint and deletes the writer's rows with seq <= its seq, in
        one transaction; returns the rows deleted."""

    # -- life cycle -------------------------------------------------------------------------

    async def open(self) -> Self:
        """Connects; a writer also takes its writer id and resumes its chain (WriterBusy,
        ChainBroken)."""
        await self._connect()
        if self.writer_id is None:
            return self
        assert self.key is not None
        try:
            await self._prepare_writes()
            deadline = time.monotonic() + self.options.lock_wait
            while not await self._lock_writer(self.writer_id):
                if time.monotonic() >= deadline:
                    raise WriterBusy(
                        f"audit writer id {self.writer_id!r} is held by another live process; "
                        "give each hub process its own writer id"
                    )
                await asyncio.sleep(0.05)
            public = self.key.public_key()
            await self._store_key(key_id(public), raw_public_key(public))
            await self._resume()
        except BaseException:
            await self._unlock_writer()
            await self._disconnect()
            raise
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def close(self) -> None:
        """Commits what is queued, signs a final checkpoint, releases the writer id."""
        if self._task is not None:
            self._closing = True
            self._wake.set()
            await self._task
            self._task = None
            await self._unlock_writer()
        await self._disconnect()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def last_seq(self) -> int:
        """The seq of this writer's last durable record."""
        return self._seq

    async def _resume(self) -> None:
        """Continues the writer's chain from its last stored row (or prune checkpoint),
        after checking the part of the chain no checkpoint covers yet: a writer must never
        sign over a tail someone else altered."""
        writer = self.writer_id
        assert writer is not None and self.key is not None
        last = await self._last_row(writer)
        checkpoints = await self._checkpoints(writer)
        top = max(checkpoints, key=lambda c: (c.seq, c.kind == "prune"), default=None)
        if last is None:
            if top is not None and top.kind != "prune":
                raise ChainBroken(
                    f"writer {writer!r} has no records but a checkpoint covers seq {top.seq}: "
                    "records were removed; run `dsop audit verify`"
                )
            self._seq, self._hash = (top.seq, top.hash) if top is not None else (0, GENESIS)
        else:
            await self._check_tail(writer, last.seq, checkpoints, top)
            self._seq, self._hash = last.seq, last.hash
        self._checkpoint_seq = max((c.seq for c in checkpoints), default=0)
        self._checkpoint_time = time.monotonic()
        self._stale = False
        log.info("audit writer %r resumes its chain after seq %d", writer, self._seq)

    async def _check_tail(
        self,
        writer: str,
        last_seq: int,
        checkpoints: Sequence[Checkpoint],
        top: Checkpoint | None,
    ) -> None:
        assert self.key is not None
        keys = await self.public_keys()
        keys[key_id(self.key)] = self.key.public_key()
        if top is None:
            first, start = 1, None
        elif top.kind == "prune":
            first, start = top.seq + 1, (top.seq + 1, top.hash)
        else:
            first, start = top.seq, None  # the start is taken from the row, then checked
        verifier: ChainVerifier | None = None
        async with contextlib.aclosing(self._rows(writer, first, None)) as chunks:
            async for chunk in chunks:
                if verifier is None:
                    if start is None and first > 1:
                        start = (first, chunk[0].prev_hash)
                    covering = [(c, "in the log") for c in checkpoints if c.seq >= first - 1]
                    verifier = ChainVerifier(writer, covering, keys, start=start)
                if not all(verifier.feed(row) for row in chunk):
                    break
        problem = verifier.finish().problem if verifier is not None else None
        if verifier is None and top is not None and top.kind != "prune":
            problem_text = (
                f"the chain ends at seq {last_seq} but a checkpoint covers seq {top.seq}: "
                "records were removed"
            )
        elif problem is not None:
            problem_text = str(problem)
        else:
            return
        raise ChainBroken(
            f"writer {writer!r} cannot resume: {problem_text}; run `dsop audit verify` and "
            "start a new writer id"
        )

    # -- appending --------------------------------------------------------------------------

    async def append(self, records: Sequence[AuditRecord]) -> None:
        if not records:
            return
        if self._task is None or self._closing:
            raise AuditError("the audit log is not open for writing")
        check_records(records)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((records, future))
        self._queued_records += len(records)
        self._wake.set()
        await future

    async def checkpoint(self) -> None:
        """Signs a checkpoint now (after what is queued), if records came since the last."""
        if self._task is None or self._closing:
            raise AuditError("the audit log is not open for writing")
        # An empty entry in a group forces a checkpoint at the group's end (see _run).
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(((), future))
        self._wake.set()
        await future

    async def _run(self) -> None:
        try:
            while True:
                if not self._queue:
                    if self._closing:
                        break
                    self._wake.clear()
                    due = self._checkpoint_due()
                    if due is not None and due <= 0:
                        await self._commit([], force_checkpoint=True)
                        continue
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(due):
                            await self._wake.wait()
                    continue
                if self.options.linger and self._queued_records < self.options.max_group_records:
                    await asyncio.sleep(self.options.linger)
                group = self._take()
                await self._commit(group, force_checkpoint=any(not r for r, _ in group))
            if self._seq > self._checkpoint_seq and not self._stale:
                await self._commit([], force_checkpoint=True)
        finally:
            self._closing = True
            while self._queue:
                _, future = self._queue.popleft()
                if not future.done():
                    future.set_exception(AuditUnavailable("the audit log writer stopped"))

    def _checkpoint_due(self) -> float | None:
        if self._seq <= self._checkpoint_seq:
            return None
        now = time.monotonic()
        due = self._checkpoint_time + self.options.checkpoint_interval
        if self._stale:  # after a failure, retry the timed checkpoint at most once a second
            due = max(due, self._failed_at + 1.0)
        return max(0.0, due - now)

    def _take(self) -> list[_Waiter]:
        group: list[_Waiter] = []
        size = 0
        limit = self.options.max_group_records
        while self._queue and (not group or size + len(self._queue[0][0]) <= limit):
            waiter = self._queue.popleft()
            group.append(waiter)
            size += len(waiter[0])
        self._queued_records -= size
        return group

    async def _commit(self, group: list[_Waiter], *, force_checkpoint: bool = False) -> None:
        writer, key = self.writer_id, self.key
        assert writer is not None and key is not None
        try:
            if self._stale:
                await self._reopen_writer()
                await self._resume()
            seq, prev = self._seq, self._hash
            rows = []
            for records, _ in group:
                for record in records:
                    seq += 1
                    body = encode_body(record, writer, seq)
                    digest = chain_hash(prev, body)
                    rows.append(
                        NewRow(
                            writer,
                            seq,
                            record.at,
                            record.party_id,
                            record.case_id,
                            record.consumer,
                            record.service,
                            body.decode(),
                            prev,
                            digest,
                        )
                    )
                    prev = digest
            now = time.monotonic()
            checkpoint = None
            if seq > self._checkpoint_seq and (
                force_checkpoint
                or seq - self._checkpoint_seq >= self.options.checkpoint_every
                or now - self._checkpoint_time >= self.options.checkpoint_interval
            ):
                checkpoint = sign_checkpoint(key, "checkpoint", writer, seq, prev)
            if rows or checkpoint is not None:
                await self._write(rows, [checkpoint] if checkpoint is not None else [])
        except BaseException as exc:
            self._stale = True
            self._failed_at = time.monotonic()
            self.metrics.failures += 1
            log.error(
                "audit writer %r: committing %d appends failed: %s; they were refused",
                writer,
                len(group),
                describe(exc),
            )
            for _, future in group:
                if not future.done():
                    future.set_exception(
                        AuditUnavailable(f"audit log write failed ({describe(exc)})")
                    )
            if not isinstance(exc, Exception):
                raise
            return
        self._seq, self._hash = seq, prev
        metrics = self.metrics
        if rows or checkpoint is not None:
            metrics.transactions += 1
        metrics.records += len(rows)
        metrics.largest_group = max(metrics.largest_group, len(rows))
        for done, future in group:
            metrics.appends += bool(done)
            if not future.done():
                future.set_result(None)
        if checkpoint is not None:
            self._checkpoint_seq, self._checkpoint_time = seq, now
            metrics.checkpoints += 1
            if self.options.checkpoint_file is not None:
                await asyncio.to_thread(_append_line, self.options.checkpoint_file, checkpoint)

    # -- reading ----------------------------------------------------------------------------

    async def checkpoints(self, writer: str | None = None) -> list[Checkpoint]:
        """The stored checkpoints (of one writer, or all), by writer and seq."""
        found = await self._checkpoints(writer)
        return sorted(found, key=lambda c: (c.writer, c.seq, c.kind))

    async def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """The public keys writers recorded in the log, by key id."""
        return {
            kid: Ed25519PublicKey.from_public_bytes(raw)
            for kid, raw in (await self._stored_keys()).items()
        }

    async def verify(
        self,
        *,
        public_keys: Sequence[Ed25519PublicKey] | None = None,
        external: Sequence[Checkpoint] = (),
        lookahead: int = 10_000,
    ) -> VerifyReport:
        """Recomputes every chain and checks every checkpoint (stored and ``external``).

        Signatures are checked against ``public_keys``; without them, against the keys stored
        in the log (which shows consistency only: whoever can rewrite the log can rewrite
        those too). Each chain's report names its first bad record.
        """
        if public_keys is None:
            keys = await self.public_keys()
        else:
            keys = {key_id(k): k for k in public_keys}
        stored = await self._checkpoints(None)
        writers = sorted(
            set(await self._writers()) | {c.writer for c in stored} | {c.writer for c in external}
        )
        chains = []
        for writer in writers:
            sources = [(c, "in the log") for c in stored if c.writer == writer]
            sources += [(c, "from the checkpoint file") for c in external if c.writer == writer]
            verifier = ChainVerifier(writer, sources, keys, lookahead=lookahead)
            async with contextlib.aclosing(self._rows(writer, 1, None)) as chunks:
                async for chunk in chunks:
                    if not all(verifier.feed(row) for row in chunk):
                        break
            chains.append(verifier.finish())
        return VerifyReport(tuple(chains), tuple(sorted(keys)), public_keys is None)

    async def disclosures(self, party_id: str) -> list[dict[str, Any]]:
        """What was disclosed about a party: one entry per query, oldest first, with who
        received it (consumer, subject, requester), under which service, mandate and case,
        which operation and period, and per bank the outcome and items released."""
        queries: dict[tuple[str, ...], dict[str, Any]] = {}
        for row in await self._party_rows(party_id):
            body = decode_body(row.body)
            ident = (
                body["writer"],
                body["consumer"],
                body["case_id"],
                body["correlation_id"],
                body["query_id"],
            )
            entry = queries.get(ident)
            if entry is None:
                entry = queries[ident] = {
                    "first_at": body["at"],
                    "last_at": body["at"],
                    **{
                        k: body[k]
                        for k in (
                            "consumer",
                            "subject",
                            "requester_id",
                            "service",
                            "legal_mandate",
                            "case_id",
                            "correlation_id",
                            "query_id",
                            "operation",
                            "from_date",
                            "to_date",
                            "only_primary_owner",
                            "additional_reference_type",
                            "banks_asked",
                        )
                    },
                    "banks": {},
                    "items": 0,
                    "closed": False,
                    "refused": "",
                    "records": [],
                }
            entry["last_at"] = max(entry["last_at"], body["at"])
            entry["records"].append(f"{row.writer}:{row.seq}")
            for disclosure in body["disclosures"]:
                bank = disclosure["bank_id"]
                if bank is None:
                    entry["closed"] = True
                    if disclosure["outcome"] == "refused":
                        entry["refused"] = disclosure["error_code"] or "refused"
                    continue
                state = entry["banks"].setdefault(bank, {"outcome": "", "items": 0})
                state["outcome"] = disclosure["outcome"]
                state["items"] += disclosure["items"]
                entry["items"] += disclosure["items"]
        result = []
        for entry in queries.values():
            entry["banks"] = [{"bank_id": bank, **state} for bank, state in entry["banks"].items()]
            result.append(entry)
        return result

    async def export(self, start: dt.datetime, end: dt.datetime) -> AsyncIterator[bytes]:
        """JSON lines: a header, then per writer its records released in [start, end) as a
        contiguous run of its chain (each with seq, prev_hash, hash and the exact body) and
        the checkpoints in that run.

        Only a LATER signed checkpoint protects a record (a chain can always be extended), so
        the run goes on to the first checkpoint after it: those extra records are marked
        ``"beyond_range": true``. Records after the chain's last checkpoint cannot be anchored
        yet; :func:`~hub.audit.chain.verify_export` reports them as unsigned.
        """
        keys = await self._stored_keys()
        yield _line(
            {
                "type": "header",
                "format": EXPORT_FORMAT,
                "from": format_time(start),
                "to": format_time(end),
                "exported_at": format_time(dt.datetime.now(dt.UTC)),
                "public_keys": {kid: raw.hex() for kid, raw in sorted(keys.items())},
            }
        )
        for writer in sorted(await self._writers()):
            bounds = await self._seq_bounds(writer, start, end)
            if bounds is None or bounds[0] > bounds[1]:
                continue
            low, high = bounds
            checkpoints = sorted(await self._checkpoints(writer), key=lambda c: (c.seq, c.kind))
            last = next((c.seq for c in checkpoints if c.seq >= high), high)
            async for chunk in self._rows(writer, low, last):
                for row in chunk:
                    line = row.proof_json()
                    if row.seq > high:
                        line["beyond_range"] = True
                    yield _line(line)
            for checkpoint in checkpoints:
                if low - 1 <= checkpoint.seq <= last:
                    yield _line(checkpoint.to_json())

    async def prune(self, older_than: dt.datetime) -> list[PruneResult]:
        """Deletes, per chain, the leading records released before ``older_than``, after
        storing a signed prune checkpoint that lets the rest verify. A chain that does not
        verify is not pruned (AuditError): pruning must never launder tampering."""
        if self.key is None:
            raise AuditError("pruning needs the signing key")
        await self._prepare_writes()
        report = await self.verify()
        if not report.ok:
            raise AuditError(
                "refusing to prune a log that does not verify: "
                + "; ".join(str(p) for p in report.problems)
            )
        results = []
        far = dt.datetime.max.replace(tzinfo=dt.UTC)
        for chain in report.chains:
            if chain.first_seq is None or chain.last_seq is None:
                continue
            kept = await self._seq_bounds(chain.writer, older_than, far)
            through = chain.last_seq if kept is None else kept[0] - 1
            if through < chain.first_seq:
                continue
            row = None
            async for chunk in self._rows(chain.writer, through, through):
                row = chunk[0]
            assert row is not None
            checkpoint = sign_checkpoint(self.key, "prune", chain.writer, through, row.hash)
            deleted = await self._prune_chain(checkpoint)
            log.info(
                "audit prune: writer %r: %d records through seq %d removed",
                chain.writer,
                deleted,
                through,
            )
            results.append(PruneResult(chain.writer, checkpoint, deleted))
        return results


def _line(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)


def _append_line(path: Path, checkpoint: Checkpoint) -> None:
    with path.open("ab") as handle:
        handle.write(_line(checkpoint.to_json()))
        handle.flush()
        os.fsync(handle.fileno())
