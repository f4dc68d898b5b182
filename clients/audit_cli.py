"""``dsop audit``: verify the audit log, look up disclosures, export, checkpoints, prune.

Every command takes ``--db sqlite:PATH`` or ``--db postgresql://DSN`` (``--schema`` for the
PostgreSQL schema). Exit codes: 0 fine, 1 the log does not verify, 2 bad input or the log
could not be read.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, BinaryIO, Final

import orjson
import psycopg

from hub.audit.chain import Checkpoint, VerifyReport, read_checkpoint_lines, verify_export
from hub.audit.database import open_log
from hub.audit.keys import AuditKeyError, load_private_key, load_public_keys, public_key_pem
from hub.audit.log import AuditError
from hub.audit.postgres import DEFAULT_SCHEMA

#: 13 years (DSOP.md §2), rounded up to whole days.
RETENTION_DAYS: Final = 4749

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True, help="sqlite:PATH or postgresql://DSN")
    parser.add_argument(
        "--schema", default=DEFAULT_SCHEMA, help="PostgreSQL schema of the audit tables"
    )


def _runner(name: str, command: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(command(args))
        except (AuditError, AuditKeyError, ValueError, OSError, psycopg.Error) as exc:
            print(f"dsop audit {name}: {exc}", file=sys.stderr)
            return 2

    return run


def _time(text: str, option: str) -> dt.datetime:
    """An ISO date or date-time; without an offset it is UTC."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{option}: not an ISO date or date-time: {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _open_out(path: Path) -> BinaryIO:
    return sys.stdout.buffer if str(path) == "-" else path.open("wb")


# -- dsop audit verify ----------------------------------------------------------------------


def _print_report(report: VerifyReport, keys_from: str = "the log itself") -> int:
    for chain in report.chains:
        span = f"seq {chain.first_seq}..{chain.last_seq}" if chain.records else "no records"
        print(
            f"chain {chain.writer!r}: {span}, {chain.records:,} records, "
            f"{chain.checkpoints_checked} checkpoints matched, {chain.unsigned_tail} after the "
            "last checkpoint"
        )
    if report.keys_from_log:
        print(
            f"note: no --public-key given; signatures were checked against the keys stored in "
            f"{keys_from}, which shows consistency, not that the hub's key signed",
            file=sys.stderr,
        )
    if not report.ok:
        for problem in report.problems:
            print(f"TAMPERED: {problem}")
        return 1
    keys_used = ", ".join(report.key_ids) or "none"
    print(f"OK: {len(report.chains)} chains, {report.records:,} records (keys: {keys_used})")
    return 0


async def _verify(args: argparse.Namespace) -> int:
    external: list[Checkpoint] = []
    for path in args.checkpoints or ():
        with path.open("rb") as handle:
            try:
                external += read_checkpoint_lines(handle)
            except ValueError as exc:
                raise ValueError(f"--checkpoints {path}: {exc}") from None
    keys = None
    if args.public_key:
        keys = [key for path in args.public_key for key in load_public_keys(path)]
    async with open_log(args.db, schema=args.schema) as log:
        report = await log.verify(public_keys=keys, external=external)
    return _print_report(report)


async def _verify_export(args: argparse.Namespace) -> int:
    keys = None
    if args.public_key:
        keys = [key for path in args.public_key for key in load_public_keys(path)]
    with args.file.open("rb") as handle:
        report = verify_export(handle, keys)
    return _print_report(report, "the export's header")


# -- dsop audit disclosures -----------------------------------------------------------------


def _banks(entry: dict[str, Any]) -> str:
    return ", ".join(f"{b['bank_id']}:{b['items']}" for b in entry["banks"]) or "-"


async def _disclosures(args: argparse.Namespace) -> int:
    async with open_log(args.db, schema=args.schema) as log:
        entries = await log.disclosures(args.party)
    out = sys.stdout
    if args.json:
        for entry in entries:
            out.write(orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE).decode())
        return 0
    if not entries:
        print("no disclosures recorded for this party")
        return 0
    header = (
        f"{'released (UTC)':<20} {'consumer':<10} {'service':<22} {'operation':<22} "
        f"{'period':<22} {'items':>7}  banks (items)"
    )
    print(header)
    print("-" * len(header))
    for entry in entries:
        when = entry["first_at"][:19].replace("T", " ")
        period = f"{entry['from_date'] or 'today'}..{entry['to_date'] or 'today'}"
        status = f" REFUSED {entry['refused']}" if entry["refused"] else ""
        print(
            f"{when:<20} {entry['consumer']:<10} {entry['service']:<22} "
            f"{entry['operation']:<22} {period:<22} {entry['items']:>7}  {_banks(entry)}{status}"
        )
        print(f"{'':<20} case {entry['case_id']}  requester {entry['requester_id'] or '-'}")
        print(f"{'':<20} mandate: {entry['legal_mandate']}")
    return 0


# -- dsop audit export / checkpoints ---------------------------------------------------------


async def _export(args: argparse.Namespace) -> int:
    start, end = _time(args.start, "--from"), _time(args.end, "--to")
    if end <= start:
        raise ValueError("--to: must be after --from")
    lines = 0
    out = _open_out(args.out)
    try:
        async with open_log(args.db, schema=args.schema) as log:
            async for line in log.export(start, end):
                out.write(line)
                lines += 1
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    print(f"dsop audit export: {lines:,} lines", file=sys.stderr)
    return 0


async def _checkpoints(args: argparse.Namespace) -> int:
    async with open_log(args.db, schema=args.schema) as log:
        checkpoints = await log.checkpoints()
    out = _open_out(args.out)
    try:
        for checkpoint in checkpoints:
            out.write(orjson.dumps(checkpoint.to_json(), option=orjson.OPT_APPEND_NEWLINE))
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    print(f"dsop audit checkpoints: {len(checkpoints):,} checkpoints", file=sys.stderr)
    return 0


# -- dsop audit prune / public-key -----------------------------------------------------------


async def _prune(args: argparse.Namespace) -> int:
    if not args.yes:
        raise ValueError("prune deletes audit records for good: pass --yes to confirm")
    if args.older_than < RETENTION_DAYS and not args.below_retention:
        raise ValueError(
            f"--older-than: {args.older_than} days is inside the 13-year retention "
            f"({RETENTION_DAYS} days); pass --below-retention only where the law allows it"
        )
    key = load_private_key(args.key)
    older_than = dt.datetime.now(dt.UTC) - dt.timedelta(days=args.older_than)
    async with open_log(args.db, key, schema=args.schema) as log:
        results = await log.prune(older_than)
    for result in results:
        print(
            f"chain {result.writer!r}: {result.deleted:,} records removed; it now starts at "
            f"seq {result.checkpoint.seq + 1} (prune checkpoint signed)"
        )
    if not results:
        print("nothing to prune")
    return 0


async def _public_key(args: argparse.Namespace) -> int:
    sys.stdout.write(public_key_pem(load_private_key(args.key)).decode())
    return 0


def add_audit_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``dsop audit ...`` to the ``dsop`` command's subparsers."""
    audit = subparsers.add_parser(
        "audit", help="verify, search, export and prune the audit log"
    ).add_subparsers(dest="audit_command", required=True)

    verify = audit.add_parser("verify", help="recompute every chain; exit 1 on tampering")
    _add_db(verify)
    verify.add_argument(
        "--checkpoints",
        type=Path,
        action="append",
        help="checkpoints kept outside the log (JSON lines; repeat)",
    )
    verify.add_argument(
        "--public-key",
        type=Path,
        action="append",
        help="the hub's signing public key(s), PEM (repeat, or several in one file)",
    )
    verify.set_defaults(run=_runner("verify", _verify))

    export_check = audit.add_parser(
        "verify-export", help="check an export file's proofs without the database"
    )
    export_check.add_argument("file", type=Path, help="JSON lines from `dsop audit export`")
    export_check.add_argument(
        "--public-key", type=Path, action="append", help="the hub's signing public key(s), PEM"
    )
    export_check.set_defaults(run=_runner("verify-export", _verify_export))

    disclosures = audit.add_parser("disclosures", help="what was disclosed about a party")
    _add_db(disclosures)
    disclosures.add_argument("--party", required=True, help="national identity or org number")
    disclosures.add_argument("--json", action="store_true", help="JSON lines, one per query")
    disclosures.set_defaults(run=_runner("disclosures", _disclosures))

    export = audit.add_parser("export", help="records with chain proofs, as JSON lines")
    _add_db(export)
    export.add_argument("--from", dest="start", required=True, help="ISO date or date-time")
    export.add_argument("--to", dest="end", required=True, help="ISO date or date-time")
    export.add_argument("--out", type=Path, required=True, help="file (- for stdout)")
    export.set_defaults(run=_runner("export", _export))

    checkpoints = audit.add_parser("checkpoints", help="export the signed checkpoints")
    _add_db(checkpoints)
    checkpoints.add_argument("--out", type=Path, required=True, help="file (- for stdout)")
    checkpoints.set_defaults(run=_runner("checkpoints", _checkpoints))

    prune = audit.add_parser("prune", help="delete records older than the retention")
    _add_db(prune)
    prune.add_argument("--older-than", type=int, required=True, help="days")
    prune.add_argument("--key", type=Path, required=True, help="the signing key (PEM)")
    prune.add_argument("--yes", action="store_true", help="confirm the deletion")
    prune.add_argument(
        "--below-retention", action="store_true", help="allow fewer days than 13 years"
    )
    prune.set_defaults(run=_runner("prune", _prune))

    public = audit.add_parser("public-key", help="print the public key verifiers need")
    public.add_argument("--key", type=Path, required=True, help="the signing key (PEM)")
    public.set_defaults(run=_runner("public-key", _public_key))
