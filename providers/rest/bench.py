"""Measures REST banks through the hub's bridge against gRPC banks, the same synthetic data.

    python -m providers.rest.bench [--banks 5] [--queries 2000] [--window 200] [--insecure]

Starts a bank simulator in a child process twice: once with every bank on gRPC, once with
every bank on REST (HTTP/2 over mutual TLS; HTTP/1.1 keep-alive with --insecure). Against
each it runs the enforcement balance query (accounts with balances, fi-utlegg, today, owner
only) for the same parties, through the hub's bank clients exactly as the fan-out drives
them (``GrpcBankClient`` or ``RestBankClient``): per query, every bank's accounts list, then
details for every account. Prints queries/s and bank calls/s for both.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import orjson
import uvloop

from dsop.controlinfo.v2 import bank_pb2
from hub import certs
from hub.banks import BankClient, GrpcBankClient
from hub.config import TlsFiles
from hub.registry import BankEndpoint
from hub.rest import make_client
from providers.synthetic import SyntheticDataset, make_banks

MANDATE = "FI-Utlegg-Test"


def _simulate(options: Any) -> None:
    from providers.simulate import run  # noqa: PLC0415

    run(options)


def _start(directory: Path, banks: int, rest: bool, tls: bool) -> tuple[Any, Path]:
    from providers.simulate import SimulateOptions  # noqa: PLC0415

    registry = directory / f"registry-{'rest' if rest else 'grpc'}.json"
    options = SimulateOptions(
        banks=banks,
        rest_banks=banks if rest else 0,
        registry_out=registry,
        cert=directory / "bank.pem" if tls else None,
        key=directory / "bank.key" if tls else None,
        client_ca=directory / "ca.pem" if tls else None,
    )
    child = multiprocessing.get_context("spawn").Process(target=_simulate, args=(options,))
    child.start()
    for _ in range(600):
        if registry.exists():
            return child, registry
        time.sleep(0.05)
    child.kill()
    raise RuntimeError("the simulator did not start")


def _clients(entries: list[BankEndpoint], directory: Path, tls: bool) -> list[BankClient]:
    files = TlsFiles(directory / "hub.pem", directory / "hub.key", directory / "ca.pem")
    credentials = (
        grpc.ssl_channel_credentials(
            (directory / "ca.pem").read_bytes(),
            (directory / "hub.key").read_bytes(),
            (directory / "hub.pem").read_bytes(),
        )
        if tls
        else None
    )
    out: list[BankClient] = []
    for entry in entries:
        if entry.protocol == "rest":
            out.append(make_client(entry, files if tls else None))
        else:
            target = entry.target.replace("127.0.0.1", "localhost")
            out.append(GrpcBankClient(entry.bank_id, target, credentials=credentials))
    return out


def _count_error(counts: dict[str, int], response: bank_pb2.BankResponse) -> None:
    if response.HasField("error"):
        counts["errors"] += 1
        key = f"error {response.error.code}: {response.error.message}"
        counts[key] = counts.get(key, 0) + 1


async def _query(clients: Sequence[BankClient], party: str, counts: dict[str, int]) -> None:
    """Accounts with balances at every bank, as the fan-out does it."""
    context = bank_pb2.RequestContext(
        account_info_request_id=str(uuid.uuid4()),
        correlation_id=str(uuid.uuid4()),
        legal_mandate=MANDATE,
    )
    loop = asyncio.get_running_loop()
    waiting = 0
    done: asyncio.Future[None] = loop.create_future()

    def finished() -> None:
        nonlocal waiting
        waiting -= 1
        if waiting == 0 and not done.done():
            done.set_result(None)

    def on_details(response: bank_pb2.BankResponse) -> None:
        counts["calls"] += 1
        _count_error(counts, response)
        finished()

    def on_accounts(client: BankClient, response: bank_pb2.BankResponse) -> None:
        nonlocal waiting
        counts["calls"] += 1
        _count_error(counts, response)
        for account in response.accounts.accounts:
            waiting += 1
            request = client.request(on_details)
            body = request.account_details
            body.context.CopyFrom(context)
            body.account_reference = account.account_reference
        finished()

    for client in clients:
        waiting += 1
        request = client.request(lambda r, c=client: on_accounts(c, r))  # type: ignore[misc]
        body = request.accounts
        body.context.CopyFrom(context)
        body.party_id = party
        body.only_primary_owner = True
    await done


async def _drive(
    clients: Sequence[BankClient], parties: Sequence[str], window: int
) -> dict[str, float]:
    counts = {"calls": 0, "errors": 0}
    for party in parties[: min(50, len(parties))]:  # warm-up: connections, caches
        await _query(clients, party, {"calls": 0, "errors": 0})
    feed = iter(parties)
    started = time.perf_counter()

    async def worker() -> None:
        for party in feed:
            await _query(clients, party, counts)

    await asyncio.gather(*(worker() for _ in range(window)))
    elapsed = time.perf_counter() - started
    for client in clients:
        await client.close()
    for key, count in counts.items():
        if key.startswith("error "):
            print(f"      {count} x {key}")
    return {
        "queries_per_s": len(parties) / elapsed,
        "calls_per_s": counts["calls"] / elapsed,
        "errors": counts["errors"],
        "seconds": elapsed,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m providers.rest.bench", description=__doc__)
    parser.add_argument("--banks", type=int, default=5)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--window", type=int, default=200, help="queries in flight")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--insecure", action="store_true", help="plaintext (HTTP/1.1 for REST)")
    args = parser.parse_args(argv)
    tls = not args.insecure
    dataset = SyntheticDataset(args.seed, make_banks(args.banks, args.seed))
    parties = dataset.party_sample(args.queries)
    with tempfile.TemporaryDirectory(prefix="dsop-rest-bench-") as name:
        directory = Path(name)
        certs.init(directory)
        for label, rest in (("gRPC", False), ("REST", True)):
            child, path = _start(directory, args.banks, rest, tls)
            try:
                entries = _entries(path)
                result = uvloop.run(_drive(_clients(entries, directory, tls), parties, args.window))
            finally:
                if child.pid is not None:
                    os.kill(child.pid, signal.SIGTERM)
                child.join(10)
            print(
                f"{label:4}  {args.banks} banks  {len(parties)} queries  "
                f"{result['queries_per_s']:8.0f} queries/s  {result['calls_per_s']:8.0f} calls/s  "
                f"errors {result['errors']:.0f}  ({result['seconds']:.1f} s)"
            )
    return 0


def _entries(path: Path) -> list[BankEndpoint]:
    """The simulator's registry entries (read here: hub/registry.py may not know "rest")."""
    raw: dict[str, Any] = orjson.loads(path.read_bytes())
    return [BankEndpoint(b["id"], b["name"], b["target"], b["protocol"]) for b in raw["banks"]]


if __name__ == "__main__":
    raise SystemExit(main())
