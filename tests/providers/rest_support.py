"""Helpers shared by the REST bridge and conformance tests: TLS material, test parties, and
OpenAPI validation of HTTP traffic (openapi-core)."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import yaml
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

from hub.clock import today
from hub.config import TlsFiles
from hub.identifiers import PartyKind
from hub.rest import client_ssl_context
from providers.server import ServerTls
from providers.synthetic.dataset import SyntheticDataset

REFERENCE = Path(__file__).resolve().parents[2] / "reference"
#: The host the validators pretend every request went to (the specs name real hosts).
TEST_HOST = "http://testserver"


def bank_tls(cert_dir: Path) -> ServerTls:
    return ServerTls(
        (cert_dir / "bank.pem").read_bytes(),
        (cert_dir / "bank.key").read_bytes(),
        (cert_dir / "ca.pem").read_bytes(),
    )


def hub_tls(cert_dir: Path) -> TlsFiles:
    return TlsFiles(cert_dir / "hub.pem", cert_dir / "hub.key", cert_dir / "ca.pem")


def hub_context(cert_dir: Path) -> Any:
    return client_ssl_context(hub_tls(cert_dir))


@dataclass(frozen=True, slots=True)
class Parties:
    """Test parties of one synthetic bank, for the year to today."""

    #: A person with accounts and a payment card at the bank.
    person: str
    #: An organisation with an account of 1000-4000 transactions in the year (paging).
    busy: str

    def all(self) -> tuple[str, ...]:
        return (self.person, self.busy)


def year() -> tuple[dt.date, dt.date]:
    end = today()
    return end - dt.timedelta(days=364), end


@functools.cache
def _parties(dataset: SyntheticDataset, bank_id: str) -> Parties:
    data = dataset.bank(bank_id)
    start, end = year()
    person = busy = None
    for party in dataset.party_sample(400):
        for account in data.list_accounts(party, False, start, end).accounts:
            if data.list_cards(account.account_reference, start, end).payment_cards:
                person = party
                break
        if person:
            break
    for party in dataset.party_sample(400, kind=PartyKind.ORGANISATION):
        for account in data.list_accounts(party, False, start, end).accounts:
            if 1000 < data.transaction_count(account.account_reference, start, end) < 4000:
                busy = party
                break
        if busy:
            break
    assert person is not None and busy is not None, "the synthetic world has no such parties"
    return Parties(person, busy)


def parties(dataset: SyntheticDataset, bank_id: str) -> Parties:
    return _parties(dataset, bank_id)


# -- OpenAPI validation -------------------------------------------------------------------------


@functools.cache
def openapi(name: str) -> OpenAPI:
    """The spec ``reference/<name>`` with its server at TEST_HOST (keeping the base path) and
    without its bearer-token security: the hub authenticates to banks with mutual TLS."""
    spec = yaml.safe_load((REFERENCE / name).read_text(encoding="utf-8"))
    server = spec["servers"][0]["url"]
    base = "/v2" if "v2" in server else "/kar-ws/api/v1"
    spec["servers"] = [{"url": TEST_HOST + base}]
    spec.pop("security", None)
    for path in spec["paths"].values():
        for operation in path.values():
            operation.pop("security", None)
            # YAML reads `200:` as a number; OpenAPI keys are strings.
            operation["responses"] = {str(k): v for k, v in operation["responses"].items()}
            operation["parameters"] = [
                p for p in operation.get("parameters", []) if p["name"] != "Authorization"
            ]
    return OpenAPI.from_dict(spec)


class OpenAPIRequest:
    """An httpx request as openapi-core reads it."""

    def __init__(self, request: httpx.Request) -> None:
        url = urlsplit(str(request.url))
        self.host_url = TEST_HOST
        self.path = url.path
        self.method = request.method.lower()
        self.body: bytes | None = None
        self.content_type = "application/json"
        headers = Headers()
        for name, value in request.headers.raw:
            headers.add(name.decode(), value.decode(errors="replace"))
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qs(url.query, keep_blank_values=True)),
            header=headers,
            cookie=ImmutableMultiDict(),
        )


class OpenAPIResponse:
    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.content_type = response.headers.get("content-type", "")
        self.headers = Headers(list(response.headers.items()))
        self.data = response.content


class ValidatingTransport(httpx.AsyncBaseTransport):
    """Passes every request and response through the spec's validator, then on; records
    what it checked. ``skip_request`` exempts requests the spec does not describe (a page
    token is an addition of this implementation)."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        spec: OpenAPI,
        skip_request: Callable[[httpx.Request], bool] = lambda _: False,
    ) -> None:
        self.inner = inner
        self.spec = spec
        self.skip_request = skip_request
        self.requests = 0
        self.responses: dict[int, int] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        wrapped = OpenAPIRequest(request)
        if not self.skip_request(request):
            self.spec.validate_request(wrapped)
            self.requests += 1
        response = await self.inner.handle_async_request(request)
        await response.aread()
        self.spec.validate_response(wrapped, OpenAPIResponse(response))
        self.responses[response.status_code] = self.responses.get(response.status_code, 0) + 1
        return response
