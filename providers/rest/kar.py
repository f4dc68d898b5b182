"""The synthetic customer-relations register (KAR) served as its REST API v1
(reference/kar-api-v1.openapi.yaml), answering from the synthetic dataset.

Below ``/kar-ws/api/v1``::

    GET /customers/customerRelationships    CustomerID header; fromDate, toDate query
    GET /customers/accountServicingProvider AccountID header (also at /accounts/...)

Errors are the register's ``{errorCode, errorMessage, timestamp}``: 400 ERR-002 (invalid
customer id), ERR-003 (invalid period), ERR-004 (invalid account number); 404 for an unknown
path. Each relation also carries ``ownershipType`` (DSOP.md §1), which the v1.1.2 schema does
not list but allows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson

from dsop.kar.v1 import kar_pb2
from providers.rest.bank import Receive, Scope, Send
from providers.simulator import SyntheticKarServicer
from providers.synthetic.dataset import SyntheticDataset
from providers.synthetic.universe import BankInfo

PREFIX: Final = "/kar-ws/api/v1"
_JSON: Final = (b"content-type", b"application/json")
_OWNERSHIP: Final = {
    kar_pb2.OWNERSHIP_TYPE_PRIMARY_OWNER: "primaryOwner",
    kar_pb2.OWNERSHIP_TYPE_NOT_PRIMARY_OWNER: "notPrimaryOwner",
    kar_pb2.OWNERSHIP_TYPE_UNKNOWN: "unknown",
}


def _error(status: int, code: str, message: str) -> tuple[int, bytes]:
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return status, orjson.dumps({"errorCode": code, "errorMessage": message, "timestamp": stamp})


class RestKarApp:
    """The ASGI application; see the module docstring."""

    def __init__(self, dataset: SyntheticDataset, banks: Sequence[BankInfo]) -> None:
        self.register = SyntheticKarServicer(dataset, banks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].removeprefix("lifespan.")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if scope["type"] != "http":
            return
        headers = {name.decode("latin-1").lower(): value for name, value in scope["headers"]}
        path: str = scope["path"]
        if scope["method"] != "GET":
            status, body = _error(405, "ERR-005", "Metoden er ikke tillatt")
        elif path == f"{PREFIX}/customers/customerRelationships":
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            status, body = self._relationships(headers, query)
        elif path in (
            f"{PREFIX}/customers/accountServicingProvider",
            f"{PREFIX}/accounts/accountServicingProvider",
        ):
            status, body = self._servicing_provider(headers)
        else:
            status, body = _error(404, "ERR-404", "Ukjent ressurs")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [_JSON, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _relationships(self, headers: dict[str, bytes], query: dict[str, str]) -> tuple[int, bytes]:
        request = kar_pb2.GetCustomerRelationshipsRequest(
            customer_id=headers.get("customerid", b"").decode("latin-1")
        )
        if "fromDate" in query:
            request.from_date = query["fromDate"]
        if "toDate" in query:
            request.to_date = query["toDate"]
        result = self.register.lookup(request)
        if result.HasField("error"):
            return _error(400, result.error.error_code, result.error.error_message)
        banks: list[dict[str, Any]] = []
        for relation in result.relationships.banks:
            entry: dict[str, Any] = {
                "organizationID": relation.organization_id,
                "bankName": relation.bank_name,
                "activeAccount": relation.active_account,
            }
            ownership = _OWNERSHIP.get(relation.ownership_type)
            if ownership is not None:
                entry["ownershipType"] = ownership
            banks.append(entry)
        return 200, orjson.dumps({"banks": banks})

    def _servicing_provider(self, headers: dict[str, bytes]) -> tuple[int, bytes]:
        bank = self.register.servicing_bank(headers.get("accountid", b"").decode("latin-1"))
        if bank is None:
            return _error(400, "ERR-004", "Ugyldig kontonummer")
        return 200, orjson.dumps({"organizationId": bank.bank_id, "bankName": bank.name})


def rest_kar_app(dataset: SyntheticDataset, banks: Sequence[BankInfo]) -> RestKarApp:
    return RestKarApp(dataset, banks)
