"""Any :class:`~providers.base.BankProvider` served as the standard's REST API v2.

``rest_app(provider)`` is a bare ASGI application (no framework: five routes, and the
per-request cost matters) serving, below ``/v2``::

    GET /accounts                                   listAccounts
    GET /accounts/{accountReference}                showAccountById
    GET /accounts/{accountReference}/transactions   listTransactions (paged)
    GET /accounts/{accountReference}/cards          listCards
    GET /accounts/{accountReference}/roles          listRoles

The request context comes from the standard's headers, the owner rule and period from the
query string (providers/rest/mapping.py, shared with the bridge). Errors are the standard's
``{code, message}`` with the HTTP status of the ACC code (400 ACC-001, 403 ACC-011, 404
ACC-002, 429 ACC-022, 500 ACC-100/ACC-500, ...).

Transactions are paged as the provider pages them (at least 1000 per page, the last may hold
fewer). The provider's page stream stays open between HTTP requests in a *cursor*: every page
but the last carries ``links: [{rel: "next", href}]``, an href relative to the server's root
with an unguessable page token in the query string. A cursor lives ``cursor_ttl`` seconds
after its last page was taken, belongs to the request that opened it (same accountReference,
case and mandate), and at most ``max_cursors`` are open at once (the oldest is dropped).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlencode

import orjson

from dsop.controlinfo.v2 import bank_pb2, model_pb2
from providers.base import BankProvider
from providers.errors import BankError
from providers.rest import mapping

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The query parameter carrying a transactions page token.
PAGE_PARAMETER: Final = "page"
_JSON: Final = (b"content-type", b"application/json")


@dataclass(slots=True)
class _Cursor:
    """An open transactions page stream between two HTTP requests."""

    pages: AsyncIterator[bank_pb2.ListTransactionsResponse]
    #: The page the next request gets, or the error it gets.
    ahead: bank_pb2.ListTransactionsResponse | BankError
    #: (accountReference, AccountInfoRequestID, Legal-Mandate) of the opening request.
    owner: tuple[str, str, str]
    query: tuple[tuple[str, str], ...]
    expires: float


class _HttpError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _bank_error(exc: BankError) -> tuple[int, bytes]:
    return mapping.error_to_json(exc.to_proto())


class RestBankApp:
    """The ASGI application; see the module docstring."""

    def __init__(
        self,
        provider: BankProvider,
        *,
        prefix: str = "/v2",
        cursor_ttl: float = 60.0,
        max_cursors: int = 10_000,
    ) -> None:
        self.provider = provider
        self.prefix = prefix.rstrip("/")
        self.cursor_ttl = cursor_ttl
        self.max_cursors = max_cursors
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        #: Requests answered, by HTTP status (for tests and logs).
        self.answered: dict[int, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        correlation = b""
        try:
            if scope["method"] not in ("GET", "HEAD"):
                raise _HttpError(405, "ACC-012", "only GET is offered")
            headers = {name.decode("latin-1").lower(): value for name, value in scope["headers"]}
            correlation = headers.get("correlationid", b"")
            status, body = await self._route(scope, headers)
        except _HttpError as exc:
            status = exc.status
            body = orjson.dumps({"code": exc.code, "message": exc.message})
        except BankError as exc:
            status, body = _bank_error(exc)
        except NotImplementedError:
            status, body = (
                405,
                orjson.dumps({"code": "ACC-012", "message": "this API is not offered by the bank"}),
            )
        except mapping.MappingError as exc:
            log.error("bank answer cannot be written as REST JSON: %s", exc)
            status, body = (
                500,
                orjson.dumps({"code": "ACC-500", "message": "internal error in the bank provider"}),
            )
        except Exception as exc:
            # The exception text may hold request data; operators get only its type.
            log.exception("bank provider failed: %s", type(exc).__name__)
            status, body = (
                500,
                orjson.dumps({"code": "ACC-500", "message": "internal error in the bank provider"}),
            )
        self.answered[status] = self.answered.get(status, 0) + 1
        response_headers = [_JSON, (b"content-length", str(len(body)).encode())]
        if correlation:
            response_headers.append((b"correlationid", correlation))
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def close(self) -> None:
        """Closes every open cursor (their providers' page streams)."""
        cursors, self._cursors = self._cursors, OrderedDict()
        for cursor in cursors.values():
            await _close(cursor)

    # -- routing ---------------------------------------------------------------------------

    async def _route(self, scope: Scope, headers: Mapping[str, bytes]) -> tuple[int, bytes]:
        raw = scope.get("raw_path") or scope["path"].encode()
        path = raw.decode("latin-1")
        if not path.startswith(self.prefix + "/"):
            raise _HttpError(404, "ACC-001", "no such resource")
        parts = path[len(self.prefix) + 1 :].split("/")
        query = tuple(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if parts[0] != "accounts" or len(parts) > 3:
            raise _HttpError(404, "ACC-001", "no such resource")
        if len(parts) == 1:
            return await self._call("accounts", None, headers, query)
        try:
            reference = unquote(parts[1], errors="strict")
        except UnicodeDecodeError:
            raise _HttpError(400, "ACC-001", "accountReference: must be UTF-8") from None
        op = mapping.BY_SUFFIX.get("/" + parts[2] if len(parts) == 3 else "")
        if op is None or not reference:
            raise _HttpError(404, "ACC-001", "no such resource")
        if op.kind == "transactions":
            return await self._transactions(reference, headers, query)
        return await self._call(op.kind, reference, headers, query)

    def _request(
        self,
        kind: str,
        reference: str | None,
        headers: Mapping[str, bytes],
        query: tuple[tuple[str, str], ...],
    ) -> Any:
        try:
            return mapping.request_from_http(kind, reference, headers, query)
        except mapping.RequestError as exc:
            raise _HttpError(400, "ACC-001", str(exc)) from None

    async def _call(
        self,
        kind: str,
        reference: str | None,
        headers: Mapping[str, bytes],
        query: tuple[tuple[str, str], ...],
    ) -> tuple[int, bytes]:
        request = self._request(kind, reference, headers, query)
        provider = self.provider
        if kind == "accounts":
            response: Any = await provider.list_accounts(request)
        elif kind == "account_details":
            response = await provider.get_account_details(request)
        elif kind == "cards":
            response = await provider.list_cards(request)
        else:
            response = await provider.list_roles(request)
        return 200, mapping.dumps(response)

    # -- transactions paging ---------------------------------------------------------------

    async def _transactions(
        self, reference: str, headers: Mapping[str, bytes], query: tuple[tuple[str, str], ...]
    ) -> tuple[int, bytes]:
        token = next((value for name, value in query if name == PAGE_PARAMETER), None)
        rest = tuple((name, value) for name, value in query if name != PAGE_PARAMETER)
        request = self._request("transactions", reference, headers, rest)
        owner = (
            reference,
            request.context.account_info_request_id,
            request.context.legal_mandate,
        )
        if token is None:
            pages = self.provider.list_transactions(request)
            first = await _next(pages)
            if first is None:  # no page at all: an empty, complete list
                empty = bank_pb2.ListTransactionsResponse()
                empty.response_details.status = model_pb2.RESPONSE_STATUS_COMPLETE
                return 200, mapping.dumps(empty)
            if isinstance(first, BankError):
                raise first
            cursor = _Cursor(pages, first, owner, rest, 0.0)
        else:
            found = self._cursors.pop(token, None)
            if found is None or found.expires < time.monotonic():
                if found is not None:
                    await _close(found)
                raise _HttpError(400, "ACC-001", f"{PAGE_PARAMETER}: unknown or expired token")
            if found.owner != owner:
                self._cursors[token] = found  # not this caller's to spend
                raise _HttpError(400, "ACC-001", f"{PAGE_PARAMETER}: belongs to another request")
            cursor = found
        page = cursor.ahead
        if isinstance(page, BankError):
            await _close(cursor)
            raise page
        # Look one page ahead: only a page with a successor gets a next link.
        ahead = await _next(cursor.pages)
        if ahead is None:
            return 200, mapping.dumps(page)
        cursor.ahead = ahead
        new_token = secrets.token_urlsafe(18)
        await self._keep(new_token, cursor)
        href = (
            f"{self.prefix}/accounts/{mapping.path_segment(reference)}/transactions?"
            f"{urlencode((*cursor.query, (PAGE_PARAMETER, new_token)))}"
        )
        linked = bank_pb2.ListTransactionsResponse()
        linked.CopyFrom(page)
        linked.links.add(rel="next", href=href)
        return 200, mapping.dumps(linked)

    async def _keep(self, token: str, cursor: _Cursor) -> None:
        now = time.monotonic()
        cursor.expires = now + self.cursor_ttl
        cursors = self._cursors
        # Oldest first (insertion order): drop the expired, then the oldest beyond the cap.
        while cursors:
            oldest_token, oldest = next(iter(cursors.items()))
            if oldest.expires >= now and len(cursors) < self.max_cursors:
                break
            del cursors[oldest_token]
            await _close(oldest)
        cursors[token] = cursor


async def _next(
    pages: AsyncIterator[bank_pb2.ListTransactionsResponse],
) -> bank_pb2.ListTransactionsResponse | BankError | None:
    """The next page, the BankError the provider raised instead, or None at the end."""
    try:
        return await anext(pages)
    except StopAsyncIteration:
        return None
    except BankError as exc:
        return exc
    except Exception as exc:
        log.exception("bank provider failed: %s", type(exc).__name__)
        return BankError("ACC-500", "internal error in the bank provider")


async def _close(cursor: _Cursor) -> None:
    aclose = getattr(cursor.pages, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


def rest_app(provider: BankProvider, **options: Any) -> RestBankApp:
    """The REST API v2 of ``provider`` as an ASGI application (options: see RestBankApp)."""
    return RestBankApp(provider, **options)
