"""`dsop conformance`: run the provider conformance suite against a bank endpoint.

    dsop conformance --target HOST:PORT --tls-ca ca.pem --tls-cert hub.pem --tls-key hub.key \\
        --party 01818012345 [--party ...] [--json report.json]
    dsop conformance --rest-target https://HOST:PORT/v2 --tls-ca ... --party ...

Prints one line per case (PASS, FAIL with the reasons, SKIP with what is missing) and exits
1 when any case fails, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import orjson

from hub.identifiers import party_kind


class _Usage(Exception):
    pass


def add_conformance_command(subparsers: Any) -> None:
    """Adds ``conformance`` to the ``dsop`` command's subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "conformance",
        help="check a bank provider against the standard's contract",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--target", help="a gRPC bank, HOST:PORT")
    where.add_argument("--rest-target", help="a REST bank's API root, https://HOST:PORT/v2")
    tls = parser.add_argument_group("TLS (on by default)")
    tls.add_argument("--tls-ca", type=Path, help="CA of the bank's certificate (PEM)")
    tls.add_argument("--tls-cert", type=Path, help="client certificate to present (PEM)")
    tls.add_argument("--tls-key", type=Path, help="its private key (PEM)")
    tls.add_argument("--insecure", action="store_true", help="plaintext, for test machines")
    parser.add_argument(
        "--party",
        action="append",
        default=[],
        help="a party the bank holds accounts for (repeat; one with a busy account and a "
        "card exercises every case)",
    )
    parser.add_argument("--unknown-party", help="a valid party the bank holds nothing for")
    parser.add_argument("--from", dest="from_date", help="period start, YYYY-MM-DD")
    parser.add_argument("--to", dest="to_date", help="period end, YYYY-MM-DD (default today)")
    parser.add_argument("--max-accounts", type=int, default=25, help="accounts examined")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.set_defaults(run=run_conformance_command)


def _date(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise _Usage(f"{option}: not a date, YYYY-MM-DD") from None


def _read(path: Path | None, option: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _Usage(f"{option}: cannot read {path}: {exc.strerror}") from None


def _prepare(args: argparse.Namespace) -> tuple[Any, Callable[[], Any]]:
    """The fixture and a factory of the target (made inside the event loop); raises _Usage."""
    from providers.conformance import Fixture, GrpcTarget, RestTarget  # noqa: PLC0415

    for party in [*args.party, *([args.unknown_party] if args.unknown_party else [])]:
        if party_kind(party) is None:
            raise _Usage(f"--party: {party!r} is not a valid identity or organisation number")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise _Usage("--tls-cert and --tls-key go together")
    fixture = Fixture(
        parties=tuple(args.party),
        unknown_party=args.unknown_party,
        from_date=_date(args.from_date, "--from"),
        to_date=_date(args.to_date, "--to"),
        max_accounts=args.max_accounts,
    )
    if args.target is not None:
        credentials = None
        if not args.insecure:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(args.tls_ca, "--tls-ca"),
                private_key=_read(args.tls_key, "--tls-key"),
                certificate_chain=_read(args.tls_cert, "--tls-cert"),
            )
        return fixture, lambda: GrpcTarget(args.target, credentials)
    from hub.config import ConfigError, TlsFiles  # noqa: PLC0415
    from hub.rest import RestBankClient, client_ssl_context  # noqa: PLC0415

    url: str = args.rest_target
    if not url.startswith(("https://", "http://")):
        raise _Usage("--rest-target: a URL, https://HOST:PORT/v2")
    if url.startswith("http://") and not args.insecure:
        raise _Usage("--rest-target: http:// is plaintext; say --insecure, or use https://")
    context = None
    if url.startswith("https://"):
        try:
            context = client_ssl_context(
                TlsFiles(args.tls_cert, args.tls_key, args.tls_ca), "--tls"
            )
        except ConfigError as exc:
            raise _Usage(str(exc)) from None
    return fixture, lambda: RestTarget(RestBankClient("conformance", url, ssl_context=context))


async def _run(args: argparse.Namespace, fixture: Any, make_target: Callable[[], Any]) -> int:
    from providers.conformance import run_conformance  # noqa: PLC0415

    target = make_target()
    try:
        report = await run_conformance(target, fixture)
    finally:
        await target.close()
    print(report.render())
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2))
    return 0 if report.ok else 1


def run_conformance_command(args: argparse.Namespace) -> int:
    try:
        fixture, make_target = _prepare(args)
    except _Usage as exc:
        print(f"dsop conformance: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_run(args, fixture, make_target))


def main(argv: list[str] | None = None) -> int:
    """``python -m clients.conformance_cli``: the command on its own."""
    parser = argparse.ArgumentParser(prog="dsop")
    add_conformance_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["conformance", *(sys.argv[1:] if argv is None else argv)])
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
