"""The ``dsop`` command: query the hub, run batches, serve the hub, simulate banks, demo."""

from __future__ import annotations

import argparse
import asyncio
import csv
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import grpc
import orjson
from google.protobuf import json_format

from clients.audit_cli import add_audit_commands
from clients.client import ClientTls, HubClient, Token, make_query
from clients.conformance_cli import add_conformance_command
from clients.hub_cli import add_hub_commands
from clients.render import event_json, render_event
from clients.services import CONSUMERS, MANDATES
from dsop.hub.v1 import hub_pb2
from hub.profiles import OPERATIONS


class UsageError(Exception):
    """Bad input from the command line or an input file; the message names the field."""


# -- TLS options shared by the commands ---------------------------------------------------


def _add_client_tls(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("TLS (on by default)")
    group.add_argument("--certs", type=Path, help="directory made by `dsop certs init`")
    group.add_argument("--agency", help="organisation number whose certificate to present")
    group.add_argument("--ca", type=Path, help="CA that signed the hub's certificate (PEM)")
    group.add_argument("--cert", type=Path, help="the agency's certificate (PEM)")
    group.add_argument("--key", type=Path, help="the agency's private key (PEM)")
    group.add_argument("--insecure", action="store_true", help="plaintext, for test machines")
    group.add_argument("--token", help="bearer token (default with --certs: a development token)")


def _client_token(args: argparse.Namespace, services: set[str]) -> Token:
    if args.token:
        return str(args.token)
    if args.certs is not None and (args.certs / "issuer.key").exists():
        from clients.devtokens import DevTokens, scopes_for  # noqa: PLC0415

        agency = args.agency or _agency_for(services)
        return DevTokens(args.certs, agency, scopes_for(agency, services))
    return None


def _agency_for(services: set[str]) -> str:
    agencies = {CONSUMERS.get(s, "974761076") for s in services} or {"974761076"}
    if len(agencies) > 1:
        raise UsageError("--agency: the services belong to several agencies; name one")
    return agencies.pop()


def _client_tls(args: argparse.Namespace, service: str | None = None) -> ClientTls | None:
    if args.insecure:
        return None
    ca, cert, key = args.ca, args.cert, args.key
    if args.certs is not None:
        agency = args.agency or _agency_for({service} if service else set())
        ca = ca or args.certs / "ca.pem"
        cert = cert or args.certs / f"agency-{agency}.pem"
        key = key or args.certs / f"agency-{agency}.key"
    return ClientTls(
        ca=ca.read_bytes() if ca else None,
        cert=cert.read_bytes() if cert else None,
        key=key.read_bytes() if key else None,
    )


def _add_server_tls(parser: argparse.ArgumentParser, name: str) -> None:
    group = parser.add_argument_group("TLS (on by default)")
    group.add_argument(
        "--certs",
        type=Path,
        help=f"directory made by `dsop certs init` (uses {name}.pem/.key, ca.pem)",
    )
    group.add_argument("--tls-cert", type=Path, help="server certificate (PEM)")
    group.add_argument("--tls-key", type=Path, help="server private key (PEM)")
    group.add_argument("--tls-ca", type=Path, help="CA for client certificates (mutual TLS)")
    group.add_argument(
        "--insecure", action="store_true", help="plaintext; logs a warning. Test machines only"
    )


def _warn_insecure(what: str) -> None:
    logging.getLogger("dsop").warning(
        "PLAINTEXT: %s runs without TLS (--insecure). Never do this outside a test machine.", what
    )


# -- dsop certs ---------------------------------------------------------------------------


def _certs_init(args: argparse.Namespace) -> int:
    from hub import certs  # noqa: PLC0415

    for path in certs.init(args.directory):
        print(path)
    return 0


# -- dsop bank simulate -------------------------------------------------------------------


def _bank_simulate(args: argparse.Namespace) -> int:
    from providers.simulate import SimulateOptions, run  # noqa: PLC0415

    if args.insecure:
        _warn_insecure("the bank simulator")
    elif args.certs is None and args.tls_cert is None:
        raise UsageError(
            "TLS is on by default: give --certs DIR or --tls-cert/--tls-key, or --insecure"
        )
    options = SimulateOptions(
        banks=args.banks,
        seed=args.seed,
        host=args.host,
        base_port=args.base_port,
        processes=args.processes,
        registry_out=args.registry_out,
        kar_port=args.kar_port,
        rest_banks=args.rest_banks,
        kar_rest_port=args.kar_rest_port,
        cert=args.tls_cert or (args.certs / "bank.pem" if args.certs else None),
        key=args.tls_key or (args.certs / "bank.key" if args.certs else None),
        client_ca=args.tls_ca or (args.certs / "ca.pem" if args.certs else None),
    )
    return run(options)


# -- dsop query ---------------------------------------------------------------------------


def _query_from_args(args: argparse.Namespace) -> hub_pb2.Query:
    mandate = args.mandate or MANDATES.get(args.service)
    if mandate is None:
        raise UsageError(f"--mandate: required for service {args.service!r} (no default known)")
    return make_query(
        service=args.service,
        legal_mandate=mandate,
        operation=OPERATIONS[args.operation],
        party_id=args.party or "",
        case_id=args.case_id,
        requester_id=args.requester_id,
        from_date=args.from_date,
        to_date=args.to_date,
        only_primary_owner=not args.all_roles,
        account_reference=args.account_reference,
        banks=args.bank or (),
        reference_date=args.reference_date,
    )


async def _run_query(args: argparse.Namespace, out: TextIO) -> int:
    query = _query_from_args(args)
    tls = _client_tls(args, args.service)
    token = _client_token(args, {args.service})
    async with HubClient(args.hub, tls=tls, token=token, insecure=args.insecure) as hub:
        try:
            async for event in hub.query(query, timeout=args.timeout):
                if args.json:
                    out.write(event_json(event).decode())
                else:
                    out.write("\n".join(render_event(event)) + "\n")
        except grpc.aio.AioRpcError as exc:
            print(f"dsop query: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 2
    return 0


# -- dsop batch ---------------------------------------------------------------------------

_ALIASES = {
    "from_date": "from_date",
    "fromDate": "from_date",
    "to_date": "to_date",
    "toDate": "to_date",
}


def _query_from_record(record: dict[str, Any], where: str) -> hub_pb2.Query:
    data = {k: v for k, v in record.items() if v not in (None, "")}
    period = data.pop("period", {}) or {}
    for key in list(data):
        if key in _ALIASES:
            period[_ALIASES[key]] = data.pop(key)
    operation = data.get("operation")
    if isinstance(operation, str) and operation in OPERATIONS:
        data["operation"] = hub_pb2.Operation.Name(OPERATIONS[operation])
    banks = data.get("banks")
    if isinstance(banks, str):
        data["banks"] = [b for b in banks.replace(";", " ").split() if b]
    if isinstance(data.get("only_primary_owner", data.get("onlyPrimaryOwner")), str):
        key = "only_primary_owner" if "only_primary_owner" in data else "onlyPrimaryOwner"
        data[key] = data[key].strip().lower() in ("true", "1", "yes")
    service = data.get("service", "")
    if "legal_mandate" not in data and "legalMandate" not in data and service in MANDATES:
        data["legal_mandate"] = MANDATES[service]
    query = hub_pb2.Query()
    try:
        json_format.ParseDict(data, query)
        if period:
            json_format.ParseDict(period, query.period)
    except json_format.ParseError as exc:
        raise UsageError(f"{where}: {exc}") from None
    filled = make_query(
        service=query.service,
        legal_mandate=query.legal_mandate,
        operation=query.operation,
        query_id=query.query_id or None,
        case_id=query.case_id or None,
        correlation_id=query.correlation_id or None,
    )
    query.query_id, query.case_id, query.correlation_id = (
        filled.query_id,
        filled.case_id,
        filled.correlation_id,
    )
    return query


def read_queries(path: Path) -> Iterator[hub_pb2.Query]:
    """Queries from a CSV file (a header row of field names) or JSON lines (``.jsonl``)."""
    with path.open(newline="", encoding="utf-8") as handle:
        if path.suffix in (".jsonl", ".ndjson", ".json"):
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        record = orjson.loads(line)
                    except orjson.JSONDecodeError as exc:
                        raise UsageError(f"{path}:{number}: not JSON: {exc}") from None
                    yield _query_from_record(record, f"{path}:{number}")
        else:
            for number, row in enumerate(csv.DictReader(handle), 2):
                yield _query_from_record(dict(row), f"{path}:{number}")


class Progress:
    """A one-line progress report on stderr: done, rate and time left."""

    def __init__(self, total: int | None, stream: TextIO = sys.stderr) -> None:
        self.total = total
        self.stream = stream
        self.done = 0
        self.started = time.monotonic()
        self._shown = 0.0

    def tick(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._shown >= 0.5:
            self._shown = now
            self.show(now)

    def show(self, now: float | None = None, end: str = "") -> None:
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        rate = self.done / elapsed
        line = f"\r{self.done:,} queries  {rate:,.0f}/s"
        if self.total:
            left = (self.total - self.done) / rate if rate else float("inf")
            eta = f"{left:,.0f}s" if left != float("inf") else "?"
            line = f"\r{self.done:,}/{self.total:,} queries  {rate:,.0f}/s  ETA {eta}"
        self.stream.write(line + end)
        self.stream.flush()


async def _run_batch(args: argparse.Namespace) -> int:
    queries = list(read_queries(args.input))
    services = {q.service for q in queries}
    tls = _client_tls(args, next(iter(services)) if len(services) == 1 else None)
    token = _client_token(args, services)
    progress = Progress(len(queries))
    refused = 0
    out = sys.stdout.buffer if str(args.output) == "-" else args.output.open("wb")
    try:
        async with HubClient(args.hub, tls=tls, token=token, insecure=args.insecure) as hub:
            events = hub.stream(
                queries, batch_size=args.batch_size, window=args.window, retries=args.retries
            )
            async for event in events:
                out.write(event_json(event))
                if event.HasField("summary"):
                    refused += event.summary.HasField("error")
                    progress.tick()
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    progress.show(end="\n")
    if refused:
        print(f"dsop batch: {refused} queries refused (see their summaries)", file=sys.stderr)
    return 0


# -- dsop demo ----------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from clients.demo import run_demo  # noqa: PLC0415

    return run_demo(banks=args.banks, seed=args.seed)


# -- the parser ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsop", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    q = commands.add_parser("query", help="run one query and print the results")
    q.add_argument("--hub", default="127.0.0.1:50050", help="the hub's address")
    q.add_argument("--service", required=True, help="e.g. skatt-kontroll, fi-utlegg")
    q.add_argument("--operation", choices=sorted(OPERATIONS), default="accounts")
    q.add_argument("--party", help="national identity/D-number or organisation number")
    q.add_argument("--mandate", help="legal mandate text (default: the service's)")
    q.add_argument("--case-id", help="the case's uuid (default: a new one)")
    q.add_argument("--requester-id")
    q.add_argument("--from", dest="from_date", help="YYYY-MM-DD (default today)")
    q.add_argument("--to", dest="to_date", help="YYYY-MM-DD (default today)")
    q.add_argument("--reference-date", help="ruling date or date of death, YYYY-MM-DD")
    q.add_argument("--all-roles", action="store_true", help="not only accounts the party owns")
    q.add_argument("--account-reference")
    q.add_argument("--bank", action="append", help="ask this bank (repeat; skips KAR)")
    q.add_argument("--timeout", type=float, default=60.0, help="seconds")
    q.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    _add_client_tls(q)
    q.set_defaults(run=lambda a: asyncio.run(_run_query(a, sys.stdout)))

    b = commands.add_parser("batch", help="run queries from CSV or JSONL, results to JSONL")
    b.add_argument("--hub", default="127.0.0.1:50050")
    b.add_argument("--input", type=Path, required=True, help=".csv or .jsonl of queries")
    b.add_argument("--output", type=Path, default=Path("-"), help="JSONL of events (- stdout)")
    b.add_argument("--batch-size", type=int, default=500, help="queries per message")
    b.add_argument("--window", type=int, default=10_000, help="queries in flight at most")
    b.add_argument(
        "--retries",
        type=int,
        default=3,
        help="new streams after a broken one (a replica went away); unanswered queries are "
        "sent again (default 3)",
    )
    _add_client_tls(b)
    b.set_defaults(run=lambda a: asyncio.run(_run_batch(a)))

    add_hub_commands(commands)

    bank = commands.add_parser("bank", help="bank tools").add_subparsers(
        dest="bank_command", required=True
    )
    sim = bank.add_parser("simulate", help="host synthetic banks (and a KAR)")
    sim.add_argument("--banks", type=int, default=20)
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--base-port", type=int, default=0, help="bank i listens on base+i (0: any)")
    sim.add_argument("--processes", type=int, default=1, help="spread banks over N processes")
    sim.add_argument("--registry-out", type=Path, required=True, help="write the registry here")
    sim.add_argument("--kar-port", type=int, help="also serve dsop.kar.v1 on this port")
    sim.add_argument("--rest-banks", type=int, default=0, help="the last N banks speak REST")
    sim.add_argument("--kar-rest-port", type=int, help="also serve the KAR REST API v1 here")
    _add_server_tls(sim, "bank")
    sim.set_defaults(run=_bank_simulate)

    certs = commands.add_parser("certs", help="development certificates").add_subparsers(
        dest="certs_command", required=True
    )
    init = certs.add_parser("init", help="create a CA and hub, bank and agency certificates")
    init.add_argument("directory", type=Path)
    init.set_defaults(run=_certs_init)

    add_audit_commands(commands)
    add_conformance_command(commands)

    demo = commands.add_parser("demo", help="start banks and a hub, run a few queries, stop")
    demo.add_argument("--banks", type=int, default=20)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.run(args))
    except UsageError as exc:
        print(f"dsop {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
