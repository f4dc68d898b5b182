"""`dsop demo` / `make demo`: start synthetic banks and a hub, run a few queries, stop.

Everything runs as real processes talking TLS on loopback, with certificates made for the
occasion in a temporary directory; every process is stopped before the demo returns.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc

from clients.client import ClientTls, HubClient, make_query
from clients.devtokens import DevTokens
from clients.render import render_event
from clients.services import CONSUMERS, MANDATES
from dsop.controlinfo.v2 import bank_pb2
from dsop.hub.v1 import hub_pb2


def _wait_for(path: Path, process: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(0.05)


@contextmanager
def _process(args: list[str], what: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-m", "clients", *args])
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _tls(certs: Path, service: str) -> ClientTls:
    agency = CONSUMERS[service]
    return ClientTls(
        ca=(certs / "ca.pem").read_bytes(),
        cert=(certs / f"agency-{agency}.pem").read_bytes(),
        key=(certs / f"agency-{agency}.key").read_bytes(),
    )


async def _ask(
    target: str, certs: Path, title: str, query: hub_pb2.Query
) -> list[hub_pb2.QueryEvent]:
    print(f"\n== {title}")
    print(f"   service {query.service}, operation {hub_pb2.Operation.Name(query.operation)}")
    events = []
    agency = CONSUMERS[query.service]
    token = DevTokens(certs, agency)
    async with HubClient(target, tls=_tls(certs, query.service), token=token) as hub:
        try:
            async for event in hub.query(query, timeout=30):
                events.append(event)
                print("\n".join(render_event(event, max_rows=8)))
        except grpc.aio.AioRpcError as exc:
            print(f"  refused: {exc.code().name}: {exc.details()}")
    return events


async def _queries(target: str, certs: Path, banks: int, seed: int) -> str:
    """Runs the demo's queries; returns the party they were about."""
    from providers.synthetic.dataset import SyntheticDataset  # noqa: PLC0415
    from providers.synthetic.universe import make_banks  # noqa: PLC0415

    dataset = SyntheticDataset(seed, make_banks(banks, seed))
    today = dt.date.today()
    party = dataset.find_party("many_banks")
    await _ask(
        target,
        certs,
        "Enforcement balance query: accounts with balances, today, owner only",
        make_query(
            service="fi-utlegg",
            legal_mandate=MANDATES["fi-utlegg"],
            operation=hub_pb2.OPERATION_ACCOUNTS_WITH_BALANCES,
            party_id=party,
        ),
    )
    tax = {
        "service": "skatt-kontroll",
        "legal_mandate": MANDATES["skatt-kontroll"],
        "requester_id": "saksbehandler-4711",
        "from_date": (today - dt.timedelta(days=90)).isoformat(),
        "to_date": today.isoformat(),
    }
    events = await _ask(
        target,
        certs,
        "Tax audit: the party's accounts, also where the party is not the owner",
        make_query(
            operation=hub_pb2.OPERATION_ACCOUNTS,
            party_id=party,
            only_primary_owner=False,
            **tax,  # type: ignore[arg-type]
        ),
    )
    account = next(
        (
            (e.result.bank_id, a.account_reference)
            for e in events
            if e.HasField("result") and e.result.HasField("accounts")
            for a in e.result.accounts.accounts
        ),
        None,
    )
    if account is None:
        return party
    bank_id, reference = account
    for operation, title in (
        (
            hub_pb2.OPERATION_TRANSACTIONS,
            "Tax audit: the last 90 days of transactions on one account",
        ),
        (hub_pb2.OPERATION_CARDS, "Tax audit: cards on that account"),
        (hub_pb2.OPERATION_ROLES, "Tax audit: who may use or see that account"),
    ):
        await _ask(
            target,
            certs,
            title,
            make_query(
                operation=operation,
                account_reference=reference,
                banks=[bank_id],
                **tax,  # type: ignore[arg-type]
            ),
        )
    await _ask(
        target,
        certs,
        "A malformed query is refused before any bank is asked",
        make_query(
            service="skatt-kontroll",
            legal_mandate=MANDATES["skatt-kontroll"],
            operation=hub_pb2.OPERATION_ACCOUNTS,
            party_id="12345678901",
        ),
    )
    police = {
        "service": "politi-utlevering",
        "legal_mandate": MANDATES["politi-utlevering"],
        "requester_id": "etterforsker-7",
        "party_id": party,
        "only_primary_owner": False,
        "from_date": (today - dt.timedelta(days=365)).isoformat(),
        "to_date": today.isoformat(),
        "additional_reference_id_type": bank_pb2.ADDITIONAL_REFERENCE_ID_TYPE_POL1,
    }
    order = _police_order(certs, party, today, cards=False)
    await _ask(
        target,
        certs,
        "Police: accounts under a signed extradition order (pol1)",
        make_query(operation=hub_pb2.OPERATION_ACCOUNTS, additional_reference_id=order, **police),  # type: ignore[arg-type]
    )
    await _ask(
        target,
        certs,
        "Police: cards are refused when the order does not allow them",
        make_query(
            operation=hub_pb2.OPERATION_CARDS,
            account_reference=reference,
            banks=[bank_id],
            additional_reference_id=order,
            **{**police, "party_id": ""},  # type: ignore[arg-type]
        ),
    )
    return party


def _police_order(certs: Path, party: str, today: dt.date, *, cards: bool) -> str:
    """A development extradition order, signed with the police key `dsop certs init` made."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key  # noqa: PLC0415

    from hub.police import sign_order  # noqa: PLC0415

    now = int(time.time())
    claims = {
        "partyId": party,
        "legalMandate": MANDATES["politi-utlevering"],
        "reason": "etterforskning",
        "fromDate": (today - dt.timedelta(days=400)).isoformat(),
        "toDate": today.isoformat(),
        "onlyPrimaryOwner": False,
        "accountList": True,
        "accountDetails": True,
        "transactions": True,
        "cards": cards,
        "roles": False,
        "caseId": "2026-4711",
        "approvedBy": "statsadvokat",
        "iat": now - 86400,
        "exp": now + 30 * 86400,
    }
    key = load_pem_private_key((certs / "police.key").read_bytes(), None)
    return sign_order(claims, key)  # type: ignore[arg-type]


def run_demo(banks: int = 20, seed: int = 7) -> int:
    with tempfile.TemporaryDirectory(prefix="dsop-demo-") as tmp:
        work = Path(tmp)
        certs = work / "certs"
        registry = work / "registry.json"
        port_file = work / "hub.port"
        from hub import certs as certs_module  # noqa: PLC0415

        certs_module.init(certs)
        print(
            f"Starting {banks} synthetic banks ({banks // 4} speaking REST) and a hub "
            f"(mutual TLS, certificates in {certs})"
        )
        bank_args = ["bank", "simulate", "--banks", str(banks), "--seed", str(seed)]
        bank_args += ["--registry-out", str(registry), "--certs", str(certs)]
        # A mixed fleet: the last quarter of the banks speak the standard's REST API.
        bank_args += ["--rest-banks", str(banks // 4)]
        with _process(bank_args, "the bank simulator") as simulator:
            _wait_for(registry, simulator, "the bank simulator")
            hub_args = ["hub", "serve", "--listen", "127.0.0.1:0", "--registry", str(registry)]
            hub_args += ["--metrics-listen", "127.0.0.1:0", "--log-level", "warning"]
            hub_args += ["--certs", str(certs), "--port-file", str(port_file)]
            hub_args += [
                "--audit",
                f"sqlite:{work / 'audit.db'}",
                "--audit-key",
                str(work / "audit.key"),
            ]
            with _process(hub_args, "the hub") as hub:
                _wait_for(port_file, hub, "the hub")
                target = f"localhost:{port_file.read_text().strip()}"
                party = asyncio.run(_queries(target, certs, banks, seed))
        db = f"sqlite:{work / 'audit.db'}"
        print("\n== The audit log: who received what about the enforcement query's party")
        subprocess.run(
            [sys.executable, "-m", "clients", "audit", "disclosures", "--db", db, "--party", party],
            check=False,
        )
        print("\n== The audit log verifies (hash chain and signed checkpoints)")
        subprocess.run(
            [sys.executable, "-m", "clients", "audit", "verify", "--db", db], check=False
        )
        print("\nDemo finished; banks and hub stopped.")
    return 0
