"""Banks and a KAR that speak today's REST APIs, behind the hub's small interfaces.

:class:`RestBankClient` is a :class:`~hub.banks.BankClient` for a bank that serves the
standard's REST API v2 (reference/bank-api-v2.openapi.yaml): each request becomes one HTTP
call (transactions: one per page, following the ``next`` links), and each HTTP answer one
``BankResponse``. The REST API has no batched call, so the fan-out's coalescing buys nothing
here; instead at most ``max_in_flight`` calls run at once per bank (the rest wait), so a REST
bank is never flooded. HTTP/2 over TLS (ALPN) multiplexes them over few connections.

:class:`RestKar` is a :class:`~hub.kar.Kar` for the register's REST API v1: one HTTP call per
lookup, at most ``max_in_flight`` at once.

Errors map as everywhere else (providers/errors.py): the body's ACC code gives the gRPC
status; a bank that cannot be reached, times out or breaks the connection is UNAVAILABLE /
ACC-100; an answer that is not the standard's JSON is INTERNAL / ACC-500.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import grpc
import httpx

from dsop.controlinfo.v2 import bank_pb2
from dsop.hub.v1 import hub_pb2
from hub.banks import ResponseHandler, failure
from hub.config import ConfigError, TlsFiles
from hub.kar import KarAnswer, KarError
from hub.registry import BankEndpoint
from hub.wire import view_of
from providers.base import PageCredit
from providers.errors import ACC_STATUS
from providers.rest import mapping

log = logging.getLogger(__name__)

#: Calls in flight per bank, at most (the REST API has no batching).
MAX_IN_FLIGHT: Final = 32
#: The known consumer client gives each bank call 30 s (DSOP.md §5).
TIMEOUT: Final = httpx.Timeout(30.0, connect=5.0)
_UNAVAILABLE: Final = grpc.StatusCode.UNAVAILABLE
_BROKEN_CONNECTION: Final = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
# httpx logs every request at INFO with its URL, which holds the accountReference: the hub
# logs one line per bank call of its own instead (STYLE.md 12).
logging.getLogger("httpx").setLevel(logging.WARNING)
_INTERNAL: Final = grpc.StatusCode.INTERNAL


def _grpc_status(code: str) -> int:
    status: int = ACC_STATUS.get(code, grpc.StatusCode.UNKNOWN).value[0]
    return status


def client_ssl_context(tls: TlsFiles | None, setting: str = "bank_tls") -> ssl.SSLContext:
    """Verifies the server against ``tls.ca`` (the system's CAs when unset) and presents
    ``tls.cert``/``tls.key`` as the client certificate when set."""
    tls = tls or TlsFiles()
    if (tls.cert is None) != (tls.key is None):
        raise ConfigError(f"{setting}: give both a certificate and its key, or neither")
    return _ssl_context(tls.ca, tls.cert, tls.key, setting)


@functools.lru_cache(maxsize=16)
def _ssl_context(
    ca: Path | None, cert: Path | None, key: Path | None, setting: str
) -> ssl.SSLContext:
    # One context per distinct file set: a hub with 100 REST banks loads its keys once.
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
        if cert is not None and key is not None:
            context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{setting}: cannot load the TLS files: {exc}") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _http_client(
    base: str, context: ssl.SSLContext | None, max_in_flight: int, timeout: httpx.Timeout
) -> httpx.AsyncClient:
    # Over TLS, HTTP/2 is offered by ALPN; plain http:// stays HTTP/1.1 (keep-alive, pooled).
    return httpx.AsyncClient(
        http2=True,
        verify=context if context is not None else True,
        limits=httpx.Limits(
            max_connections=max_in_flight,
            max_keepalive_connections=max_in_flight,
            keepalive_expiry=60.0,
        ),
        timeout=timeout,
        trust_env=False,
        follow_redirects=False,
    )


class RestBankClient:
    """A bank reached over the standard's REST API v2; see the module docstring."""

    def __init__(
        self,
        bank_id: str,
        base_url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_in_flight: int = MAX_IN_FLIGHT,
        timeout: httpx.Timeout = TIMEOUT,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        """``base_url`` is the API's root, e.g. ``https://bank.example:8443/v2``. ``client``
        replaces the HTTP client (tests: an ASGI or validating transport)."""
        self.bank_id = bank_id
        # The REST API has no such call: the fan-out asks for accounts, then details.
        self.composite_balances = False
        self.base_url = base_url.rstrip("/")
        self._origin = httpx.URL(self.base_url).copy_with(path="/", query=None)
        self._make_http: Callable[[], httpx.AsyncClient] = (
            (lambda: client)
            if client is not None
            else functools.partial(_http_client, self.base_url, ssl_context, max_in_flight, timeout)
        )
        self._http = self._make_http()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._ids = itertools.count(1)
        #: time.monotonic() of the last HTTP answer (see stalled()).
        self._received_at = 0.0
        self._handlers: dict[int, ResponseHandler] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._queued: list[bank_pb2.BankRequest] = []
        #: Page credit of paced transactions requests in progress.
        self._credits: dict[int, PageCredit] = {}
        self._closed = False
        #: HTTP calls made (for metrics and tests).
        self.calls = 0

    def in_flight(self) -> int:
        return len(self._handlers)

    def request(self, on_response: ResponseHandler) -> bank_pb2.BankRequest:
        if self._closed:
            raise RuntimeError("bank client is closed")
        request = bank_pb2.BankRequest(id=next(self._ids))
        self._handlers[request.id] = on_response
        if not self._queued:
            # The caller fills the request in before the loop runs again: send it then.
            asyncio.get_running_loop().call_soon(self._dispatch)
        self._queued.append(request)
        return request

    def cancel(self, request_id: int) -> None:
        if self._handlers.pop(request_id, None) is None:
            return
        task = self._tasks.pop(request_id, None)
        if task is not None:
            task.cancel()  # stops its HTTP call; a queued request is skipped at dispatch

    def credit(self, request_id: int, pages: int) -> None:
        credit = self._credits.get(request_id)
        if credit is not None:
            credit.grant(pages)

    def stalled(self, since: float) -> None:
        if self._received_at >= since or not self._tasks or self._closed:
            return
        # Nothing came back since a request now past its deadline: the connection may be
        # stuck (a half-open TCP connection carries every HTTP/2 stream). Start afresh;
        # calls on the old connections fail and are sent once more on the new one.
        log.warning("bank %s: no answer past a deadline; reconnecting", self.bank_id)
        old, self._http = self._http, self._make_http()
        if old is not self._http:
            asyncio.get_running_loop().create_task(old.aclose())

    def _dispatch(self) -> None:
        queued, self._queued = self._queued, []
        loop = asyncio.get_running_loop()
        for request in queued:
            if request.id not in self._handlers:
                continue  # cancelled before it was sent
            task = loop.create_task(self._run(request))
            self._tasks[request.id] = task
            task.add_done_callback(functools.partial(self._forget, request.id))

    def _forget(self, request_id: int, task: asyncio.Task[None]) -> None:
        if self._tasks.get(request_id) is task:
            del self._tasks[request_id]

    def _deliver(self, response: bank_pb2.BankResponse) -> None:
        handlers = self._handlers
        handler = (
            handlers.get(response.id) if response.has_more else handlers.pop(response.id, None)
        )
        if handler is None:
            return  # cancelled meanwhile
        try:
            handler(response)
        except Exception:
            log.exception("bank response handler failed (bank %s)", self.bank_id)

    def _fail(self, request_id: int, code: str, status: grpc.StatusCode, message: str) -> None:
        self._deliver(failure(request_id, code, status, message))

    async def _run(self, request: bank_pb2.BankRequest) -> None:
        request_id = request.id
        kind = request.WhichOneof("request")
        try:
            if kind is None or kind not in mapping.OPERATIONS:
                self._fail(
                    request_id,
                    "ACC-012",
                    grpc.StatusCode.UNIMPLEMENTED,
                    "the REST API has no such call",
                )
                return
            http = mapping.request_to_http(kind, getattr(request, kind))
        except mapping.RequestError as exc:
            self._fail(request_id, "ACC-001", grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            return
        timeout = request.timeout_ms / 1000 if request.timeout_ms else None
        credit = None
        if kind == "transactions" and request.page_window:
            credit = self._credits[request_id] = PageCredit(request.page_window)
        try:
            async with asyncio.timeout(timeout):
                if kind == "transactions":
                    await self._pages(request_id, http, credit)
                else:
                    async with self._slots:
                        await self._single(request_id, kind, http)
        except TimeoutError:
            self._fail(
                request_id,
                "ACC-100",
                grpc.StatusCode.DEADLINE_EXCEEDED,
                "no answer from the bank in time",
            )
        except httpx.TimeoutException:
            self._fail(request_id, "ACC-100", _UNAVAILABLE, "bank unreachable: timed out")
        except httpx.HTTPError as exc:
            self._fail(
                request_id, "ACC-100", _UNAVAILABLE, f"bank unreachable: {type(exc).__name__}"
            )
        except mapping.MappingError as exc:
            self._fail(request_id, "ACC-500", _INTERNAL, f"malformed answer from the bank: {exc}")
        finally:
            self._credits.pop(request_id, None)

    async def _get(self, url: str, http: mapping.HttpRequest, first: bool) -> httpx.Response:
        params = http.query if first else None
        self.calls += 1
        try:
            response = await self._http.get(url, headers=http.headers, params=params)
        except _BROKEN_CONNECTION as exc:
            # A pooled connection the bank closed under us: an HTTP/2 GOAWAY refusing streams
            # it never processed, a keep-alive timeout racing the request. GETs are safe to
            # send once more, on a new connection.
            log.info(
                "bank %s: connection lost (%s); retrying once", self.bank_id, type(exc).__name__
            )
            self.calls += 1
            response = await self._http.get(url, headers=http.headers, params=params)
        self._received_at = time.monotonic()
        return response

    def _error(self, request_id: int, response: httpx.Response) -> None:
        try:
            data: Any = mapping.loads(response.content)
        except mapping.MappingError:
            data = None
        error = mapping.error_from_json(response.status_code, data, _grpc_status)
        self._deliver(bank_pb2.BankResponse(id=request_id, error=error))

    async def _single(self, request_id: int, kind: str, http: mapping.HttpRequest) -> None:
        response = await self._get(self.base_url + http.path, http, True)
        if response.status_code != 200:
            self._error(request_id, response)
            return
        descriptor = mapping.OPERATIONS[kind].response.DESCRIPTOR
        body = mapping.kwargs_from_json(descriptor, mapping.loads(response.content))
        self._deliver(_response(request_id, kind, body))

    async def _pages(
        self, request_id: int, http: mapping.HttpRequest, credit: PageCredit | None
    ) -> None:
        """Every page as one answer, ``has_more`` on all but the last. The ``next`` link is
        the REST API's paging and is consumed here; other links pass through. A paced
        request's next page is fetched only with credit; waiting for it holds no HTTP slot."""
        descriptor = bank_pb2.ListTransactionsResponse.DESCRIPTOR
        url: str | None = self.base_url + http.path
        first = True
        while url is not None:
            if credit is not None:
                await credit.wait()  # cancel() cancels the whole task
            async with self._slots:
                response = await self._get(url, http, first)
            first = False
            if response.status_code != 200:
                self._error(request_id, response)
                return
            data = mapping.loads(response.content)
            url = self._next(data)
            body = mapping.kwargs_from_json(descriptor, data)
            self._deliver(_response(request_id, "transactions", body, has_more=url is not None))
            if credit is not None and url is not None:
                credit.pages -= 1

    def _next(self, data: Any) -> str | None:
        """Takes the ``next`` link out of a page; its URL, resolved against the bank's."""
        links = data.get("links") if isinstance(data, dict) else None
        if not isinstance(links, list):
            return None
        for index, link in enumerate(links):
            if isinstance(link, dict) and link.get("rel") == "next":
                href = link.get("href")
                if not isinstance(href, str) or not href:
                    raise mapping.MappingError("Link.href: required")
                del links[index]
                url = self._origin.join(href)
                # Never follow a link off the bank: the next call carries the case's headers.
                if (url.scheme, url.host, url.port) != (
                    self._origin.scheme,
                    self._origin.host,
                    self._origin.port,
                ):
                    raise mapping.MappingError("Link.href: leads away from the bank")
                return str(url)
        return None

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        handlers, self._handlers = self._handlers, {}
        self._queued.clear()
        for request_id, handler in handlers.items():
            with contextlib.suppress(Exception):
                handler(failure(request_id, "ACC-100", _UNAVAILABLE, "the hub is shutting down"))
        await self._http.aclose()


def _response(request_id: int, kind: str, body: dict[str, Any], *, has_more: bool = False) -> Any:
    """The answer as the view the fan-out reads (hub.wire.BankResponseView)."""
    make: Any = bank_pb2.BankResponse  # the oneof is named at run time
    try:
        return view_of(make(id=request_id, has_more=has_more, **{kind: body}))
    except (TypeError, ValueError) as exc:
        raise mapping.MappingError(f"{kind}: {type(exc).__name__}") from None


def make_client(
    endpoint: BankEndpoint,
    tls: TlsFiles | None,
    *,
    max_in_flight: int = MAX_IN_FLIGHT,
) -> RestBankClient:
    """The client for a registry entry with ``"protocol": "rest"``; ``tls`` is the hub's
    ``bank_tls`` (None with --insecure: then the target must be http://)."""
    target = endpoint.target
    if not target.startswith(("https://", "http://")):
        raise ConfigError(f"registry: bank {endpoint.bank_id}: a REST target is a URL, https://...")
    context = None
    if target.startswith("https://"):
        context = client_ssl_context(tls)
    return RestBankClient(
        endpoint.bank_id, target, ssl_context=context, max_in_flight=max_in_flight
    )


# -- KAR ----------------------------------------------------------------------------------------


class RestKar:
    """The customer-relations register's REST API v1; see the module docstring."""

    def __init__(
        self,
        base_url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_in_flight: int = 32,
        timeout: httpx.Timeout = httpx.Timeout(10.0, connect=5.0),  # noqa: B008
        client: httpx.AsyncClient | None = None,
    ) -> None:
        """``base_url`` is the API's root, e.g. ``https://kar.example/kar-ws/api/v1``."""
        self.base_url = base_url.rstrip("/")
        self._http = client or _http_client(self.base_url, ssl_context, max_in_flight, timeout)
        self._slots = asyncio.Semaphore(max_in_flight)

    async def lookup(self, queries: Sequence[hub_pb2.Query]) -> list[KarAnswer]:
        return list(await asyncio.gather(*(self._lookup(query) for query in queries)))

    async def _lookup(self, query: hub_pb2.Query) -> KarAnswer:
        headers = {b"CustomerID": query.party_id.encode()}
        if query.correlation_id:
            headers[b"CorrelationID"] = query.correlation_id.encode()
        if query.case_id:
            headers[b"AccountInfoRequestID"] = query.case_id.encode()
        if query.legal_mandate:
            headers[b"Legal-Mandate"] = query.legal_mandate.encode()
        params = {}
        if query.period.HasField("from_date"):
            params["fromDate"] = query.period.from_date
        if query.period.HasField("to_date"):
            params["toDate"] = query.period.to_date
        try:
            async with self._slots:
                response = await self._http.get(
                    f"{self.base_url}/customers/customerRelationships",
                    headers=headers,
                    params=params,
                )
            data = mapping.loads(response.content)
        except httpx.HTTPError as exc:
            return KarError("504", f"the register is unavailable: {type(exc).__name__}")
        except mapping.MappingError:
            return KarError("504", f"the register answered HTTP {response.status_code}, not JSON")
        if response.status_code == 200:
            banks = data.get("banks") if isinstance(data, dict) else None
            if isinstance(banks, list) and all(
                isinstance(b, dict) and isinstance(b.get("organizationID"), str) for b in banks
            ):
                return [bank["organizationID"] for bank in banks]
            return KarError("504", "the register's answer is not a list of banks")
        code = data.get("errorCode") if isinstance(data, dict) else None
        if response.status_code in (400, 401, 403) and isinstance(code, str):
            message = data.get("errorMessage")
            return KarError(code, message if isinstance(message, str) else code)
        if response.status_code in (401, 403):
            return KarError("ERR-001", "not authorised by the register")
        return KarError("504", f"the register answered HTTP {response.status_code}")

    async def close(self) -> None:
        await self._http.aclose()


def make_kar(url: str, tls: TlsFiles | None) -> RestKar:
    """The register at ``url`` (``https://HOST:PORT/kar-ws/api/v1``); ``tls`` as for banks."""
    if not url.startswith(("https://", "http://")):
        raise ConfigError("kar: a REST register is a URL, https://HOST:PORT/kar-ws/api/v1")
    context = client_ssl_context(tls, "bank_tls") if url.startswith("https://") else None
    return RestKar(url, ssl_context=context)
