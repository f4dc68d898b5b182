"""The conformance cases: what every bank provider must do (DSOP.md §2-§6), checked from
outside against a running bank, gRPC or REST.

The suite first *collects*: for each party the bank holds accounts for, the accounts list
(owner only, and all roles), then every account's details (for the period and as of a past
date), transactions, cards and roles, through the per-API calls. Each case then judges what
was collected, or makes the calls it needs (unknown party or reference, refused requests,
deadlines, the batched path). A case passes, fails with its reasons, or is skipped when the
bank's test data cannot exercise it (say so, and give a party that can).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import grpc
from google.protobuf.message import Message

from dsop.controlinfo.v2 import bank_pb2, model_pb2
from hub.clock import today as oslo_today
from hub.identifiers import make_national_identity_number
from providers.balances import BalancesAnswer
from providers.conformance import checks
from providers.conformance.target import Answer, CallError, Request, Target

m = model_pb2
#: Transaction pages hold at least this many, but the last (DSOP.md §2).
PAGE_MINIMUM: Final = 1000
#: Statute texts the suite uses: a service with all five APIs (RequesterID required) and the
#: enforcement balance query (accounts and details only, owner only, today only).
FULL_MANDATE: Final = (
    "Skatteforvaltningsloven § 10-2 første ledd, jf. § 10-14, "
    "jf. skatteforvaltningsforskriften § 10-2-1"
)
NARROW_MANDATE: Final = "FI-Utlegg-Test"


@dataclass(frozen=True, slots=True)
class Fixture:
    """What the suite asks with: the bank's test parties and the period."""

    #: Parties the bank holds accounts for (national identity or organisation numbers).
    parties: tuple[str, ...]
    #: A valid party the bank holds nothing for; None: the suite looks for one.
    unknown_party: str | None = None
    from_date: dt.date | None = None
    to_date: dt.date | None = None
    mandate: str = FULL_MANDATE
    narrow_mandate: str = NARROW_MANDATE
    requester_id: str = "conformance-suite"
    #: Accounts examined at most (the largest transaction history is always among them).
    max_accounts: int = 25
    #: The deadline of the deadline case, seconds.
    deadline: float = 0.05

    def period(self) -> tuple[dt.date, dt.date]:
        end = self.to_date or oslo_today()
        return self.from_date or end - dt.timedelta(days=364), end

    def past_period(self) -> tuple[dt.date, dt.date]:
        """A period ending 30 days before the main one's end (balances as of a past day)."""
        start, end = self.period()
        past = end - dt.timedelta(days=30)
        return min(start, past), past


@dataclass(slots=True)
class CaseResult:
    name: str
    title: str
    status: str  # "pass", "fail" or "skip"
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(slots=True)
class Report:
    target: str
    cases: list[CaseResult]

    @property
    def ok(self) -> bool:
        return all(case.status != "fail" for case in self.cases)

    def failed(self) -> set[str]:
        return {case.name for case in self.cases if case.status == "fail"}

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "ok": self.ok,
            "passed": sum(c.status == "pass" for c in self.cases),
            "failed": sum(c.status == "fail" for c in self.cases),
            "skipped": sum(c.status == "skip" for c in self.cases),
            "cases": [
                {
                    "name": c.name,
                    "title": c.title,
                    "status": c.status,
                    "reasons": c.reasons,
                    "seconds": round(c.seconds, 3),
                }
                for c in self.cases
            ],
        }

    def render(self, reasons_per_case: int = 5) -> str:
        lines = [f"Conformance of {self.target}", ""]
        for case in self.cases:
            lines.append(f"{case.status.upper():4}  {case.name:20} {case.title}")
            shown = case.reasons[:reasons_per_case]
            lines.extend(f"        - {reason}" for reason in shown)
            if len(case.reasons) > len(shown):
                lines.append(f"        ... and {len(case.reasons) - len(shown)} more")
        counts = self.to_dict()
        lines += [
            "",
            f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped",
        ]
        return "\n".join(lines)


# -- what the suite collects ------------------------------------------------------------------


@dataclass(slots=True)
class AccountData:
    """One account and what the per-API calls said about it."""

    label: str
    account: model_pb2.Account
    details: bank_pb2.GetAccountDetailsResponse | CallError | None = None
    past_details: bank_pb2.GetAccountDetailsResponse | CallError | None = None
    pages: list[bank_pb2.ListTransactionsResponse] | CallError | None = None
    cards: bank_pb2.ListCardsResponse | CallError | None = None
    roles: bank_pb2.ListRolesResponse | CallError | None = None

    def transaction_count(self) -> int:
        return sum(len(p.transactions) for p in self.pages) if isinstance(self.pages, list) else 0


@dataclass(slots=True)
class Collected:
    #: (party label, only_primary_owner) -> accounts list or its error.
    lists: dict[tuple[str, bool], bank_pb2.ListAccountsResponse | CallError]
    accounts: list[AccountData]
    #: Every response envelope received, with where it came from.
    envelopes: list[tuple[str, Message]]

    def errors(self) -> list[str]:
        out = [f"accounts of {p} (onlyPrimaryOwner={o}): {e}" for (p, o), e in self.lists.items()
               if isinstance(e, CallError)]  # fmt: skip
        for data in self.accounts:
            for name in ("details", "past_details", "pages", "cards", "roles"):
                value = getattr(data, name)
                if isinstance(value, CallError):
                    out.append(f"{name} of {data.label}: {value}")
        return out


class Suite:
    """Runs the cases against one target."""

    def __init__(self, target: Target, fixture: Fixture) -> None:
        self.target = target
        self.fixture = fixture
        self.case_id = str(uuid.uuid4())

    # -- requests --------------------------------------------------------------------------

    def context(self, mandate: str | None = None) -> bank_pb2.RequestContext:
        context = bank_pb2.RequestContext(
            account_info_request_id=self.case_id,
            correlation_id=str(uuid.uuid4()),
            legal_mandate=mandate or self.fixture.mandate,
        )
        if self.fixture.requester_id:
            context.requester_id = self.fixture.requester_id
        return context

    @staticmethod
    def _period(period: tuple[dt.date, dt.date]) -> bank_pb2.Period:
        return bank_pb2.Period(from_date=period[0].isoformat(), to_date=period[1].isoformat())

    def accounts_request(
        self, party: str, owner_only: bool, *, mandate: str | None = None,
        period: tuple[dt.date, dt.date] | None = None,
    ) -> Request:  # fmt: skip
        return Request(
            "accounts",
            bank_pb2.ListAccountsRequest(
                context=self.context(mandate),
                party_id=party,
                only_primary_owner=owner_only,
                period=self._period(period or self.fixture.period()),
            ),
        )

    def account_request(
        self, kind: str, reference: str, *, mandate: str | None = None,
        period: tuple[dt.date, dt.date] | None = None,
    ) -> Request:  # fmt: skip
        body_type: Any = {
            "account_details": bank_pb2.GetAccountDetailsRequest,
            "transactions": bank_pb2.ListTransactionsRequest,
            "cards": bank_pb2.ListCardsRequest,
            "roles": bank_pb2.ListRolesRequest,
        }[kind]
        body = body_type(
            context=self.context(mandate),
            account_reference=reference,
            period=self._period(period or self.fixture.period()),
        )
        return Request(kind, body)

    async def answer(self, request: Request) -> Answer:
        try:
            return await self.target.call(request)
        except CallError as exc:
            return exc

    # -- collection ------------------------------------------------------------------------

    async def collect(self) -> Collected:
        fixture = self.fixture
        lists: dict[tuple[str, bool], Any] = {}
        envelopes: list[tuple[str, Message]] = []
        seen: dict[str, AccountData] = {}
        for index, party in enumerate(fixture.parties, 1):
            label = f"party #{index}"
            for owner_only in (False, True):
                answer = await self.answer(self.accounts_request(party, owner_only))
                lists[(label, owner_only)] = answer
                if isinstance(answer, bank_pb2.ListAccountsResponse):
                    envelopes.append((f"accounts of {label}", answer))
                    for account in answer.accounts:
                        reference = account.account_reference
                        if reference and reference != "dataNotDelivered" and reference not in seen:
                            seen[reference] = AccountData(
                                f"account #{len(seen) + 1} of {label}", account
                            )
        accounts = list(seen.values())[: fixture.max_accounts]
        slots = asyncio.Semaphore(8)

        async def fill(data: AccountData) -> None:
            reference = data.account.account_reference
            async with slots:
                data.details = await self.answer(  # type: ignore[assignment]
                    self.account_request("account_details", reference)
                )
                data.past_details = await self.answer(  # type: ignore[assignment]
                    self.account_request("account_details", reference, period=fixture.past_period())
                )
                data.pages = await self.answer(  # type: ignore[assignment]
                    self.account_request("transactions", reference)
                )
                data.cards = await self.answer(  # type: ignore[assignment]
                    self.account_request("cards", reference)
                )
                data.roles = await self.answer(  # type: ignore[assignment]
                    self.account_request("roles", reference)
                )

        await asyncio.gather(*(fill(data) for data in accounts))
        for data in accounts:
            for name in ("details", "past_details", "cards", "roles"):
                value = getattr(data, name)
                if isinstance(value, Message):
                    envelopes.append((f"{name} of {data.label}", value))
            if isinstance(data.pages, list):
                envelopes.extend(
                    (f"transactions page {i} of {data.label}", page)
                    for i, page in enumerate(data.pages, 1)
                )
        return Collected(lists, accounts, envelopes)

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> Report:
        results: list[CaseResult] = []
        started = time.monotonic()
        try:
            collected = await self.collect()
        except Exception as exc:
            collected = Collected({}, [], [])
            results.append(
                CaseResult(
                    "collect",
                    "ask the bank for the test parties' data",
                    "fail",
                    [f"{type(exc).__name__}: {exc}"],
                    time.monotonic() - started,
                )
            )
        for case in CASES:
            started = time.monotonic()
            try:
                status, reasons = await case.check(self, collected)
            except Exception as exc:
                status, reasons = "fail", [f"the case could not run: {type(exc).__name__}: {exc}"]
            results.append(
                CaseResult(case.name, case.title, status, reasons, time.monotonic() - started)
            )
        return Report(self.target.description, results)


# -- the cases ----------------------------------------------------------------------------------

Outcome = tuple[str, list[str]]
CaseCheck = Callable[[Suite, Collected], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    title: str
    check: CaseCheck


def _verdict(problems: list[str], *, skip: str | None = None) -> Outcome:
    if problems:
        return "fail", problems
    if skip is not None:
        return "skip", [skip]
    return "pass", []


def _needs_data(collected: Collected) -> str | None:
    if not collected.accounts:
        return "no accounts to examine: give --party, a party the bank holds accounts for"
    return None


def _messages(collected: Collected) -> Iterator[tuple[str, Message]]:
    yield from collected.envelopes


async def _response_details(suite: Suite, collected: Collected) -> Outcome:
    problems = [f"{where}: {p}" for where, env in _messages(collected)
                for p in checks.response_details(env)]  # fmt: skip
    return _verdict(collected.errors() + problems, skip=_needs_data(collected))


async def _presence(suite: Suite, collected: Collected) -> Outcome:
    problems = [f"{where}: {p}" for where, env in _messages(collected)
                for p in checks.presence(env) + checks.text_limits(env)]  # fmt: skip
    return _verdict(problems, skip=_needs_data(collected))


async def _enums(suite: Suite, collected: Collected) -> Outcome:
    problems = [f"{where}: {p}" for where, env in _messages(collected)
                for p in checks.known_enums(env)]  # fmt: skip
    return _verdict(problems, skip=_needs_data(collected))


async def _check_digits(suite: Suite, collected: Collected) -> Outcome:
    problems = [f"{where}: {p}" for where, env in _messages(collected)
                for p in checks.check_digits(env)]  # fmt: skip
    return _verdict(problems, skip=_needs_data(collected))


async def _card_masking(suite: Suite, collected: Collected) -> Outcome:
    problems = [f"{where}: {p}" for where, env in _messages(collected)
                for p in checks.card_masking(env)]  # fmt: skip
    cards = sum(
        len(d.cards.payment_cards) for d in collected.accounts
        if isinstance(d.cards, bank_pb2.ListCardsResponse)
    )  # fmt: skip
    skip = _needs_data(collected) or (
        None if cards else "no payment cards in the test data: give a party with a card"
    )
    return _verdict(problems, skip=skip)


async def _opaque_reference(suite: Suite, collected: Collected) -> Outcome:
    problems = [f"{d.label}: {p}" for d in collected.accounts
                for p in checks.opaque_reference(d.account)]  # fmt: skip
    return _verdict(problems, skip=_needs_data(collected))


def _candidate_parties(count: int) -> Iterator[str]:
    """Synthetic test persons (month + 80): valid numbers no real person carries."""
    day = dt.date(1961, 3, 7)
    found = 0
    individual = 17
    while found < count:
        # Born 1961-1990: individual numbers 000-499 belong to the 1900s.
        made = make_national_identity_number(day, individual, synthetic=True)
        if made is not None:
            found += 1
            yield made
        individual = (individual + 37) % 500
        day += dt.timedelta(days=389)


async def _unknown_party(suite: Suite, collected: Collected) -> Outcome:
    """A valid party the bank holds nothing for gets an empty, complete list (not an error)."""
    fixture = suite.fixture
    candidates = [fixture.unknown_party] if fixture.unknown_party else list(_candidate_parties(20))
    for party in candidates:
        if party in fixture.parties:
            continue
        problems: list[str] = []
        known = False
        for owner_only in (True, False):
            answer = await suite.answer(suite.accounts_request(party, owner_only))
            if isinstance(answer, CallError):
                return "fail", [
                    f"an unknown party (onlyPrimaryOwner={owner_only}) got an error, not an "
                    f"empty list: {answer}"
                ]
            assert isinstance(answer, bank_pb2.ListAccountsResponse)
            if answer.accounts:
                known = True  # the bank knows this one; try the next candidate
                break
            problems += checks.response_details(answer)
            if answer.response_details.status != m.RESPONSE_STATUS_COMPLETE:
                problems.append("the empty list for an unknown party is not complete")
        if not known:
            return _verdict(problems)
    if fixture.unknown_party:
        return "fail", ["the party given with --unknown-party has accounts at the bank"]
    return "fail", [
        f"every one of {len(candidates)} unrelated synthetic test persons has accounts: does "
        "the bank ignore PartyID? (give --unknown-party if its test data is that dense)"
    ]


async def _period(suite: Suite, collected: Collected) -> Outcome:
    """Transactions lie inside fromDate..toDate; listed accounts overlap the period."""
    start, end = suite.fixture.period()
    problems = []
    for data in collected.accounts:
        if isinstance(data.details, bank_pb2.GetAccountDetailsResponse) and (
            checks.overlaps(data.details.account, start, end) is False
        ):
            problems.append(f"{data.label}: listed, but its life does not overlap the period")
        if not isinstance(data.pages, list):
            continue
        for number, page in enumerate(data.pages, 1):
            for index, transaction in enumerate(page.transactions):
                stamp = transaction.booking_date or transaction.value_date
                day = checks.date_part(stamp) if stamp else None
                if day is None:
                    problems.append(
                        f"{data.label}, page {number}, transaction {index}: no booking date"
                    )
                elif not start <= day <= end:
                    problems.append(
                        f"{data.label}, page {number}, transaction {index}: booked {day}, "
                        f"outside {start}..{end}"
                    )
    return _verdict(problems, skip=_needs_data(collected))


async def _balances(suite: Suite, collected: Collected) -> Outcome:
    """A past period's details give the booked balance as of toDate: registered no later
    than the end of toDate, and no available (current) balance."""
    _, past = suite.fixture.past_period()
    problems = []
    balances = 0
    for data in collected.accounts:
        details = data.past_details
        if not isinstance(details, bank_pb2.GetAccountDetailsResponse):
            continue
        for index, balance in enumerate(details.account.balances):
            balances += 1
            where = f"{data.label}, balance {index} as of {past}"
            if balance.type == m.BALANCE_TYPE_AVAILABLE_BALANCE:
                problems.append(f"{where}: an available balance for a past date")
            if not balance.HasField("registered"):
                problems.append(f"{where}: registered missing")
                continue
            registered = checks.date_time(balance.registered)
            if registered is None:
                problems.append(f"{where}: registered is not a date-time with offset")
            elif registered.date() > past:
                problems.append(f"{where}: registered after toDate")
    skip = _needs_data(collected) or (
        None if balances else "no balances as of a past date in the test data"
    )
    return _verdict(problems, skip=skip)


def _page_sizes(label: str, pages: Sequence[Message]) -> list[str]:
    problems = []
    for number, page in enumerate(pages[:-1], 1):
        size = len(page.transactions)  # type: ignore[attr-defined]
        if size < PAGE_MINIMUM:
            problems.append(
                f"{label}: page {number} of {len(pages)} holds {size} (< {PAGE_MINIMUM})"
            )
    return problems


def _ids(pages: Sequence[Message]) -> list[str]:
    return [t.transaction_identifier for page in pages for t in page.transactions]  # type: ignore[attr-defined]


async def _paging(suite: Suite, collected: Collected) -> Outcome:
    """Pages of at least 1000 but the last; nothing duplicated across pages; nothing lost
    (the period split in two halves lists the same transactions as the whole)."""
    problems = []
    biggest: AccountData | None = None
    for data in collected.accounts:
        if not isinstance(data.pages, list):
            continue
        if not data.pages:
            problems.append(f"{data.label}: no page at all (an empty list is one empty page)")
            continue
        problems += _page_sizes(data.label, data.pages)
        ids = _ids(data.pages)
        if len(set(ids)) != len(ids):
            problems.append(f"{data.label}: {len(ids) - len(set(ids))} transactions repeated")
        if biggest is None or data.transaction_count() > biggest.transaction_count():
            biggest = data
    if biggest is None or biggest.transaction_count() <= PAGE_MINIMUM:
        skip = _needs_data(collected) or (
            f"no account with more than {PAGE_MINIMUM} transactions in the period: give a "
            "party with a busy account"
        )
        return _verdict(problems, skip=skip)
    assert isinstance(biggest.pages, list)
    start, end = suite.fixture.period()
    middle = start + (end - start) / 2
    reference = biggest.account.account_reference
    halves = []
    for period in ((start, middle), (middle + dt.timedelta(days=1), end)):
        answer = await suite.answer(suite.account_request("transactions", reference, period=period))
        if isinstance(answer, CallError):
            problems.append(f"{biggest.label}, half period {period[0]}..{period[1]}: {answer}")
            return _verdict(problems)
        assert isinstance(answer, list)
        problems += _page_sizes(f"{biggest.label} ({period[0]}..{period[1]})", answer)
        halves += _ids(answer)
    whole = _ids(biggest.pages)
    if sorted(halves) != sorted(whole):
        lost = len(set(halves) - set(whole))
        extra = len(set(whole) - set(halves))
        problems.append(
            f"{biggest.label}: the whole period lists {len(whole)} transactions, its halves "
            f"{len(halves)} ({lost} missing from the whole, {extra} not in the halves)"
        )
    return _verdict(problems)


def _unknown_reference() -> str:
    return secrets.token_hex(16)


async def _unknown_reference_case(suite: Suite, collected: Collected) -> Outcome:
    """An accountReference the bank never issued is NOT_FOUND with ACC-002 or ACC-003, on
    every per-account API and on the batched path."""
    reference = _unknown_reference()
    requests = [
        suite.account_request(kind, reference)
        for kind in ("account_details", "transactions", "cards", "roles")
    ]
    per_api = [await suite.answer(request) for request in requests]
    batched = await suite.target.batch(requests)
    problems = []
    for path, answers in (("per-API", per_api), ("batched", batched)):
        for request, answer in zip(requests, answers, strict=True):
            if not isinstance(answer, CallError):
                problems.append(
                    f"{path} {request.kind}: answered (not NOT_FOUND) for an unknown reference"
                )
            elif answer.status != grpc.StatusCode.NOT_FOUND or answer.code not in (
                "ACC-002",
                "ACC-003",
            ):
                problems.append(
                    f"{path} {request.kind}: {answer.status.name} {answer.code or '(no code)'}, "
                    "expected NOT_FOUND ACC-002/ACC-003"
                )
    return _verdict(problems)


def _expect_refusal(
    what: str, answer: Answer, statuses: Mapping[grpc.StatusCode, tuple[str, ...]]
) -> list[str]:
    if not isinstance(answer, CallError):
        return [f"{what}: answered; it must be refused"]
    codes = statuses.get(answer.status)
    if codes is None or answer.code not in codes:
        wanted = " or ".join(f"{s.name} {'/'.join(c)}" for s, c in statuses.items())
        return [f"{what}: {answer.status.name} {answer.code or '(no code)'}, expected {wanted}"]
    return []


async def _refusal(suite: Suite, collected: Collected) -> Outcome:
    """Requests outside the service of their mandate are refused (DSOP.md §4)."""
    fixture = suite.fixture
    invalid = {grpc.StatusCode.INVALID_ARGUMENT: ("ACC-001",)}
    party = fixture.parties[0] if fixture.parties else next(_candidate_parties(1))
    today = oslo_today()
    problems = _expect_refusal(
        "accounts under an unknown legal mandate",
        await suite.answer(
            suite.accounts_request(party, True, mandate="Ingen lov § 0 (conformance suite)")
        ),
        {**invalid, grpc.StatusCode.PERMISSION_DENIED: ("ACC-011",)},
    )
    problems += _expect_refusal(
        f"accounts under {fixture.narrow_mandate!r} with onlyPrimaryOwner=false",
        await suite.answer(
            suite.accounts_request(
                party, False, mandate=fixture.narrow_mandate, period=(today, today)
            )
        ),
        invalid,
    )
    reference = (
        collected.accounts[0].account.account_reference
        if collected.accounts
        else _unknown_reference()
    )
    for kind in ("transactions", "cards", "roles"):
        problems += _expect_refusal(
            f"{kind} under {fixture.narrow_mandate!r}",
            await suite.answer(
                suite.account_request(
                    kind, reference, mandate=fixture.narrow_mandate, period=(today, today)
                )
            ),
            invalid,
        )
    return _verdict(problems)


async def _deadline(suite: Suite, collected: Collected) -> Outcome:
    """A call with a short deadline ends, DEADLINE_EXCEEDED or complete, never hangs."""
    fixture = suite.fixture
    busiest = max(collected.accounts, key=AccountData.transaction_count, default=None)
    request = (
        suite.account_request("transactions", busiest.account.account_reference)
        if busiest is not None
        else suite.accounts_request(
            fixture.parties[0] if fixture.parties else next(_candidate_parties(1)), False
        )
    )
    grace = 5.0
    started = time.monotonic()
    try:
        answer = await asyncio.wait_for(
            suite.target.call_with_deadline(request, fixture.deadline), fixture.deadline + grace
        )
    except TimeoutError:
        return "fail", [
            f"a {request.kind} call with a {fixture.deadline:.3f} s deadline still ran after "
            f"{grace:.0f} s more"
        ]
    took = time.monotonic() - started
    if isinstance(answer, CallError) and answer.status not in (
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
    ):
        return "fail", [f"a {request.kind} call with a short deadline ended with {answer}"]
    if took > fixture.deadline + 1.0:
        return "fail", [f"a call with a {fixture.deadline:.3f} s deadline took {took:.2f} s"]
    return "pass", []


def _comparable(message: Message) -> Message:
    """A copy without what legitimately differs between two calls: the registration time of
    current (available) balances, stamped when computed."""
    copy = type(message)()
    copy.CopyFrom(message)
    for _, item in checks.walk(copy):
        if item.DESCRIPTOR.name == "Balance" and (
            item.type == m.BALANCE_TYPE_AVAILABLE_BALANCE  # type: ignore[attr-defined]
        ):
            item.ClearField("registered")
    return copy


def _same(kind: str, first: Message | list[Message], second: Message | list[Message]) -> bool:
    if kind == "transactions":
        assert isinstance(first, list) and isinstance(second, list)
        return _ids(first) == _ids(second) and all(
            _comparable(a) == _comparable(b) for a, b in zip(first, second, strict=False)
        ) and len(first) == len(second)  # fmt: skip
    assert isinstance(first, Message) and isinstance(second, Message)
    return _comparable(first) == _comparable(second)


async def _batch_agrees(suite: Suite, collected: Collected) -> Outcome:
    """The batched path (Exchange) answers exactly as the per-API calls did."""
    requests: list[Request] = []
    expected: list[Answer] = []
    for index, party in enumerate(suite.fixture.parties, 1):
        for owner_only in (False, True):
            answer = collected.lists.get((f"party #{index}", owner_only))
            if answer is not None:
                requests.append(suite.accounts_request(party, owner_only))
                expected.append(answer)
    names = {"account_details": "details", "transactions": "pages", "cards": "cards",
             "roles": "roles"}  # fmt: skip
    for data in collected.accounts:
        for kind, attribute in names.items():
            answer = getattr(data, attribute)
            if answer is not None:
                requests.append(suite.account_request(kind, data.account.account_reference))
                expected.append(answer)
    if not requests:
        return "skip", ["nothing collected to compare: give --party"]
    batched = await suite.target.batch(requests)
    problems = []
    for request, want, got in zip(requests, expected, batched, strict=True):
        what = request.kind
        if isinstance(want, CallError) or isinstance(got, CallError):
            if not (
                isinstance(want, CallError)
                and isinstance(got, CallError)
                and (want.status, want.code) == (got.status, got.code)
            ):
                problems.append(f"{what}: per-API {_brief(want)}, batched {_brief(got)}")
        elif not _same(request.kind, want, got):
            problems.append(f"{what}: the batched answer differs from the per-API answer")
    return _verdict(problems)


async def _composed(
    suite: Suite, listing: bank_pb2.ListAccountsResponse
) -> bank_pb2.ListAccountsWithBalancesResponse | CallError:
    """The accounts with balances the per-API calls give for a listing (each account's
    details asked one call at a time), composed as providers.balances says."""
    composed = BalancesAnswer(listing)
    for index, reference in composed.wanted:
        answer = await suite.answer(suite.account_request("account_details", reference))
        if isinstance(answer, CallError):
            return answer
        assert isinstance(answer, bank_pb2.GetAccountDetailsResponse)
        composed.add(index, answer)
    return composed.answer()


async def _balances_in_one(suite: Suite, collected: Collected) -> Outcome:
    """Accounts with balances in one request (Exchange) answer as the accounts list and each
    account's details do. Optional: a bank that declines it with ACC-012 is asked step by
    step by the hub."""
    requests: list[Request] = []
    expected: list[Answer] = []
    for index, party in enumerate(suite.fixture.parties, 1):
        for owner_only in (False, True):
            listing = collected.lists.get((f"party #{index}", owner_only))
            if not isinstance(listing, bank_pb2.ListAccountsResponse):
                continue
            if len(listing.accounts) > suite.fixture.max_accounts:
                continue
            body = suite.accounts_request(party, owner_only).body
            requests.append(Request("accounts_with_balances", body))
            expected.append(await _composed(suite, listing))
    if not requests:
        return "skip", ["nothing collected to compare: give --party"]
    batched = await suite.target.batch(requests)
    if all(isinstance(got, CallError) and got.code == "ACC-012" for got in batched):
        return "skip", [
            "not offered (ACC-012): the hub asks for the accounts and each account's details"
        ]
    problems = []
    for number, (want, got) in enumerate(zip(expected, batched, strict=True), 1):
        what = f"accounts with balances #{number}"
        if isinstance(want, CallError) or isinstance(got, CallError):
            if not (
                isinstance(want, CallError)
                and isinstance(got, CallError)
                and (want.status, want.code) == (got.status, got.code)
            ):
                problems.append(f"{what}: step by step {_brief(want)}, in one {_brief(got)}")
        elif not _same("accounts_with_balances", want, got):
            problems.append(f"{what}: differs from the accounts list and each account's details")
    return _verdict(problems)


def _brief(answer: Answer) -> str:
    if isinstance(answer, CallError):
        return f"{answer.status.name} {answer.code}"
    if isinstance(answer, list):
        return f"{len(answer)} pages"
    return "an answer"


CASES: Final = (
    Case("response-details", "every envelope has responseDetails (complete or partial)",
         _response_details),
    Case("presence", "M fields always, MC fields whenever their parent is present", _presence),
    Case("enums", "every enum value is one the standard defines", _enums),
    Case("check-digits", "identifiers and account numbers carry valid check digits",
         _check_digits),
    Case("card-masking", "card numbers show at most the first 6 and last 4 digits",
         _card_masking),
    Case("opaque-reference", "accountReference does not reveal the account number",
         _opaque_reference),
    Case("unknown-party", "a valid party the bank does not know gets an empty, complete list",
         _unknown_party),
    Case("period", "transactions inside fromDate..toDate, accounts overlapping the period",
         _period),
    Case("balances", "balances as of a past toDate: booked, registered no later than toDate",
         _balances),
    Case("paging", "pages of >= 1000 but the last; nothing lost or duplicated", _paging),
    Case("unknown-reference", "an unknown accountReference is NOT_FOUND (ACC-002/ACC-003)",
         _unknown_reference_case),
    Case("refusal", "requests outside the mandate's service are refused (ACC-001)", _refusal),
    Case("deadline", "a short deadline ends the call (DEADLINE_EXCEEDED or done), no hang",
         _deadline),
    Case("exchange-agrees", "the batched path answers as the per-API calls do", _batch_agrees),
    Case("balances-in-one", "accounts with balances in one request agree with the steps "
         "(optional: ACC-012 declines)", _balances_in_one),
)  # fmt: skip
CASE_NAMES: Final = tuple(case.name for case in CASES)


async def run_conformance(target: Target, fixture: Fixture) -> Report:
    """Runs every case against ``target``; the target is not closed."""
    return await Suite(target, fixture).run()
