"""The hash chain, signed checkpoints, and the verifier that names the first bad record.

Each writer keeps one chain: record ``seq`` (1, 2, ...) stores ``prev_hash`` (the hash of
record ``seq - 1``, or 32 zero bytes for seq 1) and ``hash = SHA-256(prev_hash || body)``,
where the body is the record's canonical JSON (hub/audit/record.py) and names its own writer
and seq. Anyone with write access to the database can recompute such a chain, so the writer
signs checkpoints ``{kind, writer, seq, hash, at, key_id}`` with the hub's Ed25519 key; a
rewritten chain no longer matches them. Checkpoints are stored in the log and exported to
files kept elsewhere, because an attacker can delete stored checkpoints along with the tail.

A ``prune`` checkpoint names the last record removed by retention (its seq and hash): the
chain that remains starts at ``seq + 1`` with that hash as its ``prev_hash``.

What the verifier cannot see: records appended (or removed) after the last checkpoint it was
given. Checkpoints every N records or T seconds bound that window.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hub.audit.keys import key_id
from hub.audit.record import decode_body, format_time, parse_time

GENESIS: Final = bytes(32)
#: Signed bytes start with this, so a checkpoint signature can never be mistaken for (or
#: replayed as) a signature over anything else the key might sign.
_SIGNING_CONTEXT: Final = b"dsop-hub audit checkpoint v1\n"
#: Columns stored beside the body, for indexes; verification checks they equal the body.
INDEXED_COLUMNS: Final = ("party_id", "case_id", "consumer", "service")

CheckpointKind = Literal["checkpoint", "prune"]
ProblemKind = Literal["edited", "deleted", "reordered", "inserted", "bad_signature", "truncated"]


def chain_hash(prev_hash: bytes, body: bytes) -> bytes:
    return hashlib.sha256(prev_hash + body).digest()


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One row of the records table, as read back."""

    writer: str
    seq: int
    at: dt.datetime
    party_id: str
    case_id: str
    consumer: str
    service: str
    body: bytes
    prev_hash: bytes
    hash: bytes

    def proof_json(self) -> dict[str, Any]:
        """The row as an export line: the exact body text and the hashes that chain it."""
        return {
            "type": "record",
            "writer": self.writer,
            "seq": self.seq,
            "at": format_time(self.at),
            "prev_hash": self.prev_hash.hex(),
            "hash": self.hash.hex(),
            "body": self.body.decode(),
        }


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement: the chain of ``writer`` through ``seq`` hashes to ``hash``."""

    kind: CheckpointKind
    writer: str
    seq: int
    hash: bytes
    at: dt.datetime
    key_id: str
    signature: bytes

    def payload(self) -> bytes:
        """The signed bytes (without the signing context)."""
        return orjson.dumps(
            {
                "kind": self.kind,
                "writer": self.writer,
                "seq": self.seq,
                "hash": self.hash.hex(),
                "at": format_time(self.at),
                "key_id": self.key_id,
            },
            option=orjson.OPT_SORT_KEYS,
        )

    def signed_by(self, keys: Mapping[str, Ed25519PublicKey]) -> bool:
        key = keys.get(self.key_id)
        if key is None:
            return False
        try:
            key.verify(self.signature, _SIGNING_CONTEXT + self.payload())
        except InvalidSignature:
            return False
        return True

    def to_json(self) -> dict[str, Any]:
        data = orjson.loads(self.payload())
        data["type"] = "checkpoint"
        data["signature"] = self.signature.hex()
        if self.kind == "prune":
            data["first_kept_seq"] = self.seq + 1  # informative; not signed, not read back
        return dict(data)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Checkpoint:
        """Raises ValueError for a malformed checkpoint."""
        try:
            kind = data["kind"]
            if kind not in ("checkpoint", "prune"):
                raise ValueError(f"unknown checkpoint kind {kind!r}")
            return cls(
                kind=kind,
                writer=str(data["writer"]),
                seq=int(data["seq"]),
                hash=bytes.fromhex(data["hash"]),
                at=parse_time(data["at"]),
                key_id=str(data["key_id"]),
                signature=bytes.fromhex(data["signature"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed checkpoint: {exc}") from None


def sign_checkpoint(
    key: Ed25519PrivateKey,
    kind: CheckpointKind,
    writer: str,
    seq: int,
    hash_: bytes,
    *,
    at: dt.datetime | None = None,
) -> Checkpoint:
    at = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    unsigned = Checkpoint(kind, writer, seq, hash_, at, key_id(key), b"")
    signature = key.sign(_SIGNING_CONTEXT + unsigned.payload())
    return Checkpoint(kind, writer, seq, hash_, at, unsigned.key_id, signature)


def read_checkpoint_lines(lines: Iterable[bytes | str]) -> list[Checkpoint]:
    """Checkpoints from JSON lines (a checkpoint file or an export); other lines are skipped.
    Raises ValueError naming the line of a malformed one."""
    found = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise ValueError(f"line {number}: not JSON") from None
        if isinstance(data, dict) and data.get("type") == "checkpoint":
            try:
                found.append(Checkpoint.from_json(data))
            except ValueError as exc:
                raise ValueError(f"line {number}: {exc}") from None
    return found


# -- verification ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """The first bad record of a chain. ``detail`` names seqs and columns, never values."""

    kind: ProblemKind
    writer: str
    seq: int
    detail: str

    def __str__(self) -> str:
        return f"writer {self.writer!r} seq {self.seq}: {self.kind}: {self.detail}"


@dataclass(frozen=True, slots=True)
class ChainReport:
    writer: str
    first_seq: int | None
    last_seq: int | None
    records: int
    #: Checkpoints whose signature and hash were both checked against the chain.
    checkpoints_checked: int
    #: Records after the last checked checkpoint: intact as far as the chain shows, but not
    #: yet covered by a signature.
    unsigned_tail: int
    problem: Problem | None


@dataclass(frozen=True, slots=True)
class VerifyReport:
    chains: tuple[ChainReport, ...]
    #: Key ids the signatures were checked against.
    key_ids: tuple[str, ...]
    #: True when those keys were read from the log itself (no independent public key given):
    #: then the report shows consistency, not that the hub's key signed.
    keys_from_log: bool

    @property
    def ok(self) -> bool:
        return all(chain.problem is None for chain in self.chains)

    @property
    def problems(self) -> list[Problem]:
        return [chain.problem for chain in self.chains if chain.problem is not None]

    @property
    def records(self) -> int:
        return sum(chain.records for chain in self.chains)


@dataclass(slots=True)
class _Pending:
    """A problem whose kind depends on rows not read yet."""

    kind: Literal["misplaced", "link"]
    seq: int
    row: StoredRow
    body_seq: int = 0
    budget: int = 0


@dataclass(slots=True)
class ChainVerifier:
    """Checks one writer's chain, fed rows in seq order; stops at the first problem.

    ``checkpoints`` pairs each checkpoint of this writer with where it came from ("log",
    "file"), for the message. ``start``, when given, is (seq, prev_hash) the rows must begin
    with (an export's first record); otherwise the chain starts at seq 1 or right after a
    prune checkpoint.
    """

    writer: str
    checkpoints: Sequence[tuple[Checkpoint, str]]
    keys: Mapping[str, Ed25519PublicKey]
    start: tuple[int, bytes] | None = None
    lookahead: int = 10_000

    _valid: dict[int, list[tuple[Checkpoint, str]]] = field(default_factory=dict)
    _prunes: dict[int, Checkpoint] = field(default_factory=dict)
    _bad_signature: Problem | None = None
    _expected: int | None = None
    _prev: bytes = GENESIS
    _first: int | None = None
    _last: int | None = None
    _records: int = 0
    _checked: int = 0
    _anchor: int = 0  # the last seq known good from a checkpoint (or the chain's start - 1)
    _problem: Problem | None = None
    _pending: _Pending | None = None

    def __post_init__(self) -> None:
        seen: set[tuple[str, int, bytes, bytes]] = set()
        for checkpoint, source in sorted(self.checkpoints, key=lambda item: item[0].seq):
            identity = (checkpoint.kind, checkpoint.seq, checkpoint.hash, checkpoint.signature)
            if identity in seen:
                continue
            seen.add(identity)
            if not checkpoint.signed_by(self.keys):
                if self._bad_signature is None:
                    known = checkpoint.key_id in self.keys
                    self._bad_signature = Problem(
                        "bad_signature",
                        self.writer,
                        checkpoint.seq,
                        f"the {checkpoint.kind} at seq {checkpoint.seq} ({source}) "
                        + (
                            "has a signature that does not verify"
                            if known
                            else f"is signed by key {checkpoint.key_id}, not a trusted key"
                        ),
                    )
                continue
            self._valid.setdefault(checkpoint.seq, []).append((checkpoint, source))
            if checkpoint.kind == "prune":
                self._prunes[checkpoint.seq] = checkpoint

    # -- feeding ----------------------------------------------------------------------------

    def feed(self, row: StoredRow) -> bool:
        """Checks the next row; False once the verdict is known and no more rows are needed."""
        if self._pending is not None:
            return self._resolve(row)
        if self._problem is not None:
            return False
        if self._expected is None and not self._begin(row):
            return False
        self._check(row)
        return self._problem is None or self._pending is not None

    def _begin(self, row: StoredRow) -> bool:
        if self.start is not None:
            self._expected, self._prev = self.start
        elif row.seq == 1:
            self._expected, self._prev = 1, GENESIS
        elif (prune := self._prunes.get(row.seq - 1)) is not None:
            self._expected, self._prev = row.seq, prune.hash
        else:
            allowed = max(self._prunes) + 1 if self._prunes else 1
            self._fail(
                "deleted",
                allowed,
                f"the chain starts at seq {row.seq}: records {allowed}..{row.seq - 1} are "
                "missing and no prune checkpoint accounts for them",
            )
            return False
        self._first = self._expected
        self._anchor = self._expected - 1
        return True

    def _check(self, row: StoredRow) -> None:
        s = row.seq
        assert self._expected is not None
        if s != self._expected:
            self._fail("deleted", self._expected, f"records {self._expected}..{s - 1} are missing")
            return
        try:
            body = decode_body(row.body)
            body_seq, body_writer = int(body["seq"]), str(body["writer"])
            body_at = parse_time(body["at"])
        except (ValueError, KeyError, TypeError):
            self._fail("edited", s, "the body is not a valid record")
            return
        genuine = chain_hash(row.prev_hash, row.body) == row.hash
        if not genuine:
            self._fail("edited", s, "the stored hash does not match the body (one was changed)")
            return
        if body_writer != self.writer:
            self._fail("inserted", s, "the record was written by another writer's chain")
            return
        if body_seq != s:
            if body_seq < s:
                self._fail(
                    "inserted",
                    body_seq,
                    f"seq {body_seq}..{s - 1} hold records that are not part of the chain "
                    f"(the genuine record {body_seq} is stored at seq {s})",
                )
            else:
                self._pending = _Pending("misplaced", s, row, body_seq, self.lookahead)
            return
        if row.prev_hash != self._prev:
            if s == self._first:
                what = "genesis" if s == 1 and self.start is None else "its starting point"
                self._fail("edited", s, f"the record does not link to {what}")
                return
            self._pending = _Pending("link", s, row)
            return
        for column in INDEXED_COLUMNS:
            if getattr(row, column) != body.get(column):
                self._fail("edited", s, f"column {column} differs from the hashed body")
                return
        if row.at != body_at:
            self._fail("edited", s, "column at differs from the hashed body")
            return
        for checkpoint, source in self._valid.get(s, ()):
            if checkpoint.hash != row.hash:
                self._fail(
                    "edited",
                    self._anchor + 1,
                    f"the chain through seq {s} does not match the {checkpoint.kind} signed at "
                    f"{format_time(checkpoint.at)} ({source}): a record in "
                    f"{self._anchor + 1}..{s} was changed and the hashes after it recomputed",
                )
                return
            self._checked += 1
            self._anchor = s
        self._prev = row.hash
        self._expected = s + 1
        self._last = s
        self._records += 1

    def _resolve(self, row: StoredRow) -> bool:
        pending = self._pending
        assert pending is not None
        if pending.kind == "link":
            self._pending = None
            self._link_verdict(pending, row)
            return False
        pending.budget -= 1
        try:
            found = int(decode_body(row.body).get("seq", -1)) == pending.seq
        except (ValueError, TypeError):
            found = False
        if found:
            self._pending = None
            self._fail(
                "reordered",
                pending.seq,
                f"the record stored at seq {pending.seq} was written as seq {pending.body_seq}; "
                f"record {pending.seq} is stored at seq {row.seq}",
            )
            return False
        if pending.budget <= 0:
            self._finish_pending()
            return False
        return True

    def _link_verdict(self, pending: _Pending, following: StoredRow | None) -> None:
        s = pending.seq
        if following is not None and following.prev_hash == pending.row.hash:
            # The record at s is intact and its successor still points at it, so the one
            # before it was replaced (with a recomputed hash).
            self._fail(
                "edited",
                s - 1,
                f"record {s - 1} was changed and its hash recomputed; record {s} still links "
                "to the original",
            )
        else:
            self._fail("edited", s, f"the record does not link to record {s - 1}")

    def _finish_pending(self) -> None:
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        if pending.kind == "link":
            self._link_verdict(pending, None)
            return
        self._fail(
            "deleted",
            pending.seq,
            f"record {pending.seq} is missing and later records were renumbered (seq "
            f"{pending.seq} holds the record written as seq {pending.body_seq})",
        )

    def _fail(self, kind: ProblemKind, seq: int, detail: str) -> None:
        if self._problem is None:
            self._problem = Problem(kind, self.writer, seq, detail)

    # -- the verdict ------------------------------------------------------------------------

    def finish(self) -> ChainReport:
        self._finish_pending()
        if self._problem is None:
            self._check_truncation()
        problem = self._problem
        if self._bad_signature is not None and (
            problem is None or self._bad_signature.seq <= problem.seq
        ):
            problem = self._bad_signature
        last = self._last
        return ChainReport(
            writer=self.writer,
            first_seq=self._first,
            last_seq=last,
            records=self._records,
            checkpoints_checked=self._checked,
            unsigned_tail=(last - self._anchor) if last is not None else 0,
            problem=problem,
        )

    def _check_truncation(self) -> None:
        if not self._valid:
            return
        highest = max(self._valid)
        checkpoint, source = self._valid[highest][0]
        if self._last is None:
            if self._prunes and max(self._prunes) == highest:
                return  # everything was pruned; the prune checkpoint is the chain's end
            start = max(self._prunes) + 1 if self._prunes else 1
            self._fail(
                "truncated",
                start,
                f"the chain has no records but a {checkpoint.kind} ({source}) covers seq {highest}",
            )
        elif highest > self._last:
            self._fail(
                "truncated",
                self._last + 1,
                f"the chain ends at seq {self._last} but a {checkpoint.kind} ({source}) covers "
                f"seq {highest}",
            )


def verify_export(
    lines: Iterable[bytes | str], public_keys: Sequence[Ed25519PublicKey] | None = None
) -> VerifyReport:
    """Verifies an export (see ``ChainLog.export``) without the database: per writer, the
    run of records must chain from its first record's prev_hash, and every checkpoint in the
    file must be signed and match. Without ``public_keys`` the keys in the export's header
    are used (consistency only). Raises ValueError for a malformed file."""
    header_keys: dict[str, Ed25519PublicKey] = {}
    runs: dict[str, list[StoredRow]] = {}
    checkpoints: dict[str, list[tuple[Checkpoint, str]]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = orjson.loads(line)
            kind = data["type"]
            if kind == "header":
                header_keys = {
                    kid: Ed25519PublicKey.from_public_bytes(bytes.fromhex(raw))
                    for kid, raw in data.get("public_keys", {}).items()
                }
            elif kind == "checkpoint":
                checkpoint = Checkpoint.from_json(data)
                checkpoints.setdefault(checkpoint.writer, []).append((checkpoint, "in the export"))
            elif kind == "record":
                runs.setdefault(data["writer"], []).append(_exported_row(data))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"line {number}: not an export line ({exc})") from None
    keys = header_keys if public_keys is None else {key_id(k): k for k in public_keys}
    chains = []
    for writer in sorted(set(runs) | set(checkpoints)):
        rows = sorted(runs.get(writer, []), key=lambda r: r.seq)
        start = (rows[0].seq, rows[0].prev_hash) if rows else None
        verifier = ChainVerifier(writer, checkpoints.get(writer, []), keys, start=start)
        for row in rows:
            if not verifier.feed(row):
                break
        chains.append(verifier.finish())
    return VerifyReport(tuple(chains), tuple(sorted(keys)), public_keys is None)


def _exported_row(data: Mapping[str, Any]) -> StoredRow:
    body = str(data["body"]).encode()
    fields = decode_body(body)
    return StoredRow(
        writer=str(data["writer"]),
        seq=int(data["seq"]),
        at=parse_time(data["at"]),
        # An export has no separate columns: they are the body's own values.
        **{column: fields.get(column, "") for column in INDEXED_COLUMNS},
        body=body,
        prev_hash=bytes.fromhex(data["prev_hash"]),
        hash=bytes.fromhex(data["hash"]),
    )
