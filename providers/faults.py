"""Fault injection for the synthetic bank: a provider that misbehaves on purpose.

:class:`FaultyBank` wraps any provider and, per its :class:`Faults` (changeable at run time,
from code or, in `dsop bank simulate`, by editing the faults file and sending SIGHUP), adds
latency (fixed, or a slow tail), errors with a chosen ACC code, hangs, breaks the stream,
answers with the wrong kind of message, pads answers beyond any sane size, or answers about
the wrong party, account or bank. A bank that is *down* (its port closed) is the host's to
bring about: :func:`load_faults_file` reads it like the rest, `dsop bank simulate` acts on it.

The faults file (TOML) has one table per faulty bank, named by its organisation number, and
optionally a ``[default]`` table for every bank not named; the keys are :class:`Faults`'
field names::

    [default]
    latency = 0.002

    [974761076]
    tail_rate = 0.02
    tail_latency = 3.0

    [912345674]
    down = true
"""

from __future__ import annotations

import asyncio
import math
import random
import tomllib
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Final

from dsop.controlinfo.v2 import bank_pb2
from providers.base import BankProvider, StreamBroken
from providers.errors import ACC_STATUS, BankError


@dataclass(frozen=True, slots=True)
class Faults:
    #: Seconds added to every answer.
    latency: float = 0.0
    #: Share of answers (0..1) that take ``tail_latency`` seconds instead.
    tail_rate: float = 0.0
    tail_latency: float = 0.0
    #: Share of requests refused with ``error_code`` (an ACC code).
    error_rate: float = 0.0
    error_code: str = "ACC-100"
    #: Never answer.
    hang: bool = False
    #: Break the whole stream (as a crash or a dropped connection would) after this many
    #: transaction pages of a request; -1: never. 0 breaks it on any request at once.
    crash_after_pages: int = -1
    #: Answer with the wrong kind of message (cards for an accounts request, ...).
    garbage: bool = False
    #: Pad every answer to at least this many bytes (0: off).
    oversized_bytes: int = 0
    #: Answer about another party, another account, or as another bank.
    wrong_party: bool = False
    wrong_account: bool = False
    wrong_bank: bool = False
    #: The bank's port is closed: callers get "connection refused", as from a bank that is
    #: down (unlike ``hang``, where it accepts and never answers). Acted on by the host
    #: (`dsop bank simulate`), which stops and restarts the bank's server; a
    #: :class:`FaultyBank` itself ignores it.
    down: bool = False

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str = "faults") -> Faults:
        """Faults from a mapping of field names (a TOML table); ValueError naming
        ``where.key`` for an unknown key, a value of the wrong type or out of range."""
        known = {f.name: f for f in fields(cls)}
        for key, value in raw.items():
            if key not in known:
                raise ValueError(f"{where}.{key}: unknown fault (known: {', '.join(known)})")
            problem = _check_value(key, value, getattr(_DEFAULT, key))
            if problem is not None:
                raise ValueError(f"{where}.{key}: {problem}")
        faults = cls(**raw)
        if faults.error_code not in ACC_STATUS:
            raise ValueError(f"{where}.error_code: unknown ACC code {faults.error_code!r}")
        return faults

    @property
    def waits(self) -> bool:
        """Whether answers wait (latency, a slow tail, a hang): they are then answered each
        on its own, as a bank waiting on I/O would, not one after another."""
        return self.hang or self.latency > 0 or (self.tail_rate > 0 and self.tail_latency > 0)


_DEFAULT: Final = Faults()
_RATES: Final = frozenset({"tail_rate", "error_rate"})


def _check_value(key: str, value: object, default: object) -> str | None:
    """What is wrong with ``value`` for the field ``key`` (whose default is ``default``)."""
    if isinstance(default, bool):
        return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected a whole number, got {value!r}"
        least = -1 if key == "crash_after_pages" else 0  # -1: never
        return None if value >= least else f"must be {least} or more, got {value}"
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected a number, got {value!r}"
        if not math.isfinite(value) or value < 0:
            return f"must be a finite number >= 0, got {value!r}"
        if key in _RATES and value > 1:
            return f"is a share of requests, 0 to 1, got {value!r}"
        return None
    return None if isinstance(value, str) else f"expected a string, got {value!r}"


#: The table of the faults file that applies to every bank not named.
DEFAULT_TABLE: Final = "default"


def load_faults_file(path: Path, bank_ids: Collection[str]) -> dict[str, Faults]:
    """Each bank's faults (``bank_ids`` all present) from a faults file (see the module).

    Raises ValueError naming the file, the table and the key for a file that is not TOML,
    a table that is neither ``default`` nor a known bank, or a bad value.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not TOML: {exc}") from None
    known = set(bank_ids)
    tables: dict[str, Mapping[str, Any]] = {}
    for name, table in raw.items():
        if not isinstance(table, dict):
            raise ValueError(
                f"{path}: {name}: expected a table [{name}] of faults, got a value"
                if name in known or name == DEFAULT_TABLE
                else f"{path}: {name}: not a table; faults go in [default] or [<bank orgno>]"
            )
        if name != DEFAULT_TABLE and name not in known:
            raise ValueError(f"{path}: [{name}]: no such bank (a table per bank orgno)")
        tables[name] = table
    default = Faults.from_dict(tables.get(DEFAULT_TABLE, {}), f"{path}: [{DEFAULT_TABLE}]")
    faults = {}
    for bank_id in bank_ids:
        table = tables.get(bank_id)
        if table is None:
            faults[bank_id] = default
            continue
        # A bank's table overrides the default key by key.
        named = Faults.from_dict(table, f"{path}: [{bank_id}]")
        faults[bank_id] = replace(default, **{key: getattr(named, key) for key in table})
    return faults


class FaultyBank(BankProvider):
    """A provider that misbehaves as its ``faults`` say; otherwise it is ``inner``."""

    def __init__(self, inner: BankProvider, faults: Faults, seed: int = 0) -> None:
        self.inner = inner
        self.bank_id = inner.bank_id
        self.faults = faults
        self.random = random.Random(seed)

    @property
    def concurrent(self) -> bool:  # type: ignore[override]
        # Latency is simulated per request, as a real bank's I/O would be; without it the
        # bank answers as its inner provider does, so a fault-free wrapper costs little.
        return self.faults.waits or self.inner.concurrent

    async def _before(self) -> None:
        faults = self.faults
        if faults.hang:
            await asyncio.Event().wait()
        delay = faults.latency
        if faults.tail_rate and self.random.random() < faults.tail_rate:
            delay = faults.tail_latency
        if delay > 0:
            await asyncio.sleep(delay)
        if faults.crash_after_pages == 0:
            raise StreamBroken("fault injection: the bank crashed")
        if faults.error_rate and self.random.random() < faults.error_rate:
            raise BankError(faults.error_code, "fault injection: refused")

    def _pad(self, details: Any) -> None:
        if self.faults.oversized_bytes:
            details.message = "x" * self.faults.oversized_bytes

    async def list_accounts(
        self, request: bank_pb2.ListAccountsRequest
    ) -> bank_pb2.ListAccountsResponse:
        await self._before()
        if self.faults.garbage:
            return bank_pb2.ListCardsResponse()  # type: ignore[return-value]
        if self.faults.wrong_party:
            request = _copy(request)
            request.party_id = _other_party(request.party_id)
        response = await self.inner.list_accounts(request)
        if self.faults.wrong_bank:
            for account in response.accounts:
                account.servicer.identifier.value = "974761076"
        if self.faults.wrong_party and not response.accounts:
            # The other party holds nothing here; invent one of theirs so the fault shows.
            account = response.accounts.add(account_identifier="12345678903", account_reference="r")
            account.primary_owner.identifier.value = request.party_id
        self._pad(response.response_details)
        return response

    async def get_account_details(
        self, request: bank_pb2.GetAccountDetailsRequest
    ) -> bank_pb2.GetAccountDetailsResponse:
        await self._before()
        if self.faults.garbage:
            return bank_pb2.ListRolesResponse()  # type: ignore[return-value]
        response = await self.inner.get_account_details(request)
        if self.faults.wrong_account:
            response.account.account_reference = request.account_reference + "-other"
        self._pad(response.response_details)
        return response

    async def list_accounts_with_balances(
        self, request: bank_pb2.ListAccountsRequest
    ) -> bank_pb2.ListAccountsWithBalancesResponse:
        """The one-request form misbehaves as a whole (one delay, one roll of the dice),
        with the faults a caller can see in it: the wrong kind, another party's accounts
        (``wrong_party``; ``wrong_account``: one account swapped for another party's), or
        another bank's."""
        await self._before()
        if self.faults.garbage:
            return bank_pb2.ListCardsResponse()  # type: ignore[return-value]
        if self.faults.wrong_party:
            request = _copy(request)
            request.party_id = _other_party(request.party_id)
        response = await self.inner.list_accounts_with_balances(request)
        if self.faults.wrong_party or self.faults.wrong_account:
            if not response.accounts:
                # Nothing to swap; invent an account so the fault shows.
                response.accounts.add(account_identifier="12345678903", account_reference="r")
            owner = _other_party(request.party_id) if self.faults.wrong_account else None
            response.accounts[0].primary_owner.identifier.value = owner or request.party_id
        if self.faults.wrong_bank:
            for account in response.accounts:
                account.servicer.identifier.value = "974761076"
        self._pad(response.response_details)
        return response

    async def list_transactions(
        self, request: bank_pb2.ListTransactionsRequest
    ) -> AsyncIterator[bank_pb2.ListTransactionsResponse]:
        await self._before()
        pages = 0
        async for page in self.inner.list_transactions(request):
            if pages == self.faults.crash_after_pages:
                raise StreamBroken("fault injection: the bank crashed mid-stream")
            self._pad(page.response_details)
            pages += 1
            yield page

    async def list_cards(self, request: bank_pb2.ListCardsRequest) -> bank_pb2.ListCardsResponse:
        await self._before()
        response = await self.inner.list_cards(request)
        self._pad(response.response_details)
        return response

    async def list_roles(self, request: bank_pb2.ListRolesRequest) -> bank_pb2.ListRolesResponse:
        await self._before()
        response = await self.inner.list_roles(request)
        self._pad(response.response_details)
        return response

    def set(self, **changes: Any) -> None:
        """Changes the faults at run time."""
        self.faults = replace(self.faults, **changes)


def _copy(request: bank_pb2.ListAccountsRequest) -> bank_pb2.ListAccountsRequest:
    copy = bank_pb2.ListAccountsRequest()
    copy.CopyFrom(request)
    return copy


def _other_party(party_id: str) -> str:
    """A different, valid party id (the same kind)."""
    from hub.identifiers import make_organisation_number  # noqa: PLC0415

    if len(party_id) == 9:
        return next(
            o
            for b in range(97_000_000, 97_100_000)
            if (o := make_organisation_number(b)) and o != party_id
        )
    import datetime as dt  # noqa: PLC0415

    from hub.identifiers import make_national_identity_number  # noqa: PLC0415

    return next(
        n
        for i in range(100, 500)
        if (n := make_national_identity_number(dt.date(1970, 1, 1), i)) and n != party_id
    )
