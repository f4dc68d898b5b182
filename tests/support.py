"""Test support: the running environment the fixtures build, and provider wrappers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from google.protobuf.message import Message

from clients.client import ClientTls, HubClient, Token, make_query
from clients.devtokens import DevTokens
from clients.services import MANDATES
from dsop.hub.v1 import hub_pb2
from hub.filter import FilterStage
from hub.profiles import load_profiles
from hub.server import Hub
from providers.base import BankProvider
from providers.server import HostedBank
from providers.synthetic.dataset import SyntheticDataset
from providers.synthetic.universe import BankInfo

SEED = 11
BANKS = 12
_DEV = "<development token>"
M = TypeVar("M", bound=Message)


@dataclass
class Env:
    """A hub with synthetic banks behind it, all on loopback with mutual TLS."""

    dataset: SyntheticDataset
    infos: list[BankInfo]
    hub: Hub
    banks: list[HostedBank]
    cert_dir: Path
    calls: dict[str, list[str]] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return f"localhost:{self.hub.port}"

    def client_tls(self, agency: str = "974761076") -> ClientTls:
        return agency_tls(self.cert_dir, agency)

    def client(self, agency: str = "974761076", token: Token = _DEV) -> HubClient:
        """A client with the agency's certificate and, by default, a development token
        granting the scopes of every service the agency consumes."""
        if token is _DEV:
            token = DevTokens(self.cert_dir, agency)
        return HubClient(self.target, tls=self.client_tls(agency), token=token)


class Recording(BankProvider):
    """Wraps a provider and records which API each request reached (by bank id)."""

    def __init__(self, inner: BankProvider, calls: dict[str, list[str]]) -> None:
        self.inner = inner
        self.bank_id = inner.bank_id
        self.concurrent = inner.concurrent
        self.log = calls.setdefault(inner.bank_id, [])

    async def list_accounts(self, request):  # type: ignore[no-untyped-def]
        self.log.append("accounts")
        return await self.inner.list_accounts(request)

    async def get_account_details(self, request):  # type: ignore[no-untyped-def]
        self.log.append("account_details")
        return await self.inner.get_account_details(request)

    async def list_transactions(self, request):  # type: ignore[no-untyped-def,override]
        self.log.append("transactions")
        async for page in self.inner.list_transactions(request):
            yield page

    async def list_cards(self, request):  # type: ignore[no-untyped-def]
        self.log.append("cards")
        return await self.inner.list_cards(request)

    async def list_roles(self, request):  # type: ignore[no-untyped-def]
        self.log.append("roles")
        return await self.inner.list_roles(request)

    async def list_accounts_with_balances(self, request):  # type: ignore[no-untyped-def]
        self.log.append("accounts_with_balances")
        return await self.inner.list_accounts_with_balances(request)


EnvFactory = Callable[..., Awaitable[Env]]


_PROFILES = load_profiles()
_FILTER = FilterStage(_PROFILES)


def filtered(message: M, service: str, kind: str) -> M:
    """What the hub lets through of a bank's answer for the service (its field mask)."""
    data, _ = _FILTER.plans[service][kind].apply(message.SerializeToString())
    return type(message).FromString(data)


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """``dsop ARGS`` as a child process in its own session, its output in ``log``."""
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "clients", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for_file(path: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Waits for ``process`` to write ``path`` (a port file, a registry), failing if it exits."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"exited with {process.returncode}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def stop(*processes: subprocess.Popen[bytes] | None) -> None:
    """Kills whatever is still running (a test's cleanup)."""
    for process in processes:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()


def free_port() -> int:
    """A port free right now (a child binds it soon after; the race is accepted in tests)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def agency_tls(cert_dir: Path, agency: str = "974761076") -> ClientTls:
    """The agency's client certificate from a `dsop certs init` directory."""
    return ClientTls(
        ca=(cert_dir / "ca.pem").read_bytes(),
        cert=(cert_dir / f"agency-{agency}.pem").read_bytes(),
        key=(cert_dir / f"agency-{agency}.key").read_bytes(),
    )


def balance_query(
    party: str, operation: hub_pb2.Operation.ValueType = hub_pb2.OPERATION_ACCOUNTS_WITH_BALANCES
) -> hub_pb2.Query:
    """The enforcement authority's query (fi-utlegg, its mandate) about ``party``."""
    return make_query(
        service="fi-utlegg",
        legal_mandate=MANDATES["fi-utlegg"],
        operation=operation,
        party_id=party,
    )
