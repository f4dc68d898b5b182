"""The conformance suite: the synthetic bank passes over gRPC and over REST (through the
bridge); each deliberately broken bank is caught by the case meant for it, and only by it."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
import yaml

import providers.conformance
from clients.conformance_cli import main as conformance_main
from dsop.controlinfo.v2 import bank_pb2, bank_pb2_grpc, model_pb2
from hub.rest import RestBankClient
from providers.base import BankProvider, BankServicer
from providers.conformance import (
    CASE_NAMES,
    Fixture,
    GrpcTarget,
    RestTarget,
    checks,
    run_conformance,
)
from providers.errors import BankError
from providers.rest.server import start_rest_bank, stop_app
from providers.server import SERVER_OPTIONS, start_bank
from providers.simulator import SyntheticBank
from providers.synthetic.dataset import SyntheticDataset
from providers.synthetic.universe import BankInfo
from tests.providers.rest_support import REFERENCE, bank_tls, hub_context, parties

m = model_pb2


def test_the_package_exports_the_few_names_users_need() -> None:
    assert sorted(providers.conformance.__all__) == [
        "CASE_NAMES",
        "CallError",
        "CaseResult",
        "Fixture",
        "GrpcTarget",
        "Report",
        "RestTarget",
        "Target",
        "run_conformance",
    ]


def test_required_fields_are_the_spec_s_required_lists() -> None:
    from tests.test_contract import MESSAGES  # noqa: PLC0415

    spec = yaml.safe_load((REFERENCE / "bank-api-v2.openapi.yaml").read_text(encoding="utf-8"))
    expected = {}
    for name, message in MESSAGES.items():
        required = spec["components"]["schemas"][name].get("required", [])
        if required and name != "Error":
            fields = {f.json_name: f.name for f in message.DESCRIPTOR.fields}
            expected[message.DESCRIPTOR.name] = {fields[r] for r in required}
    assert {k: set(v) for k, v in checks.REQUIRED.items()} == expected


@pytest.mark.parametrize(
    ("card", "masked"),
    [
        ("489036XXXXXX7037", True),
        ("XXXXXXXXXXXX7037", True),
        ("4890XXXXXXXXXXXX", True),
        ("4890361234567037", False),
        ("4890361XXXXX7037", False),
        ("489036XXXXX67037", False),
        ("", False),
    ],
)
def test_card_masking_allows_at_most_six_and_four_digits(card: str, masked: bool) -> None:
    problems = checks.card_masking(m.PaymentCard(card_identifier=card))
    assert (not problems) == masked


@pytest.mark.parametrize(
    ("number", "reference", "opaque"),
    [
        ("12345678903", "3fb12239fde048eb0ab8", True),
        ("12345678903", "12345678903", False),
        ("12345678903", "acc-12345678903-x", False),
        ("12345678903", "1234.56.78903", False),
        ("12345678903", "dataNotDelivered", True),
    ],
)
def test_a_reference_must_not_reveal_the_account_number(
    number: str, reference: str, opaque: bool
) -> None:
    account = m.Account(account_identifier=number, account_reference=reference)
    assert (not checks.opaque_reference(account)) == opaque


# -- broken banks: each breaks exactly one rule -------------------------------------------------


class UnmaskedCard(SyntheticBank):
    async def list_cards(self, request: Any) -> Any:
        response = await super().list_cards(request)
        for card in response.payment_cards:
            card.card_identifier = card.card_identifier.replace("X", "5")
        return response


class BadCheckDigit(SyntheticBank):
    async def list_accounts(self, request: Any) -> Any:
        response = await super().list_accounts(request)
        for account in response.accounts:
            number = account.account_identifier
            account.account_identifier = number[:-1] + str((int(number[-1]) + 1) % 10)
        return response


class MissingResponseDetails(SyntheticBank):
    async def list_roles(self, request: Any) -> Any:
        response = await super().list_roles(request)
        response.ClearField("response_details")
        return response


def _repaged(pages: list[list[m.Transaction]], sizes: Callable[[int], int]) -> list[list[Any]]:
    flat = [t for page in pages for t in page]
    out, start, number = [], 0, 0
    while start < len(flat) or not out:
        size = sizes(number)
        out.append(flat[start : start + size])
        start, number = start + size, number + 1
    return out


class ShortFirstPage(SyntheticBank):
    """A page of 999, then more."""

    async def list_transactions(self, request: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        pages = [list(p.transactions) async for p in super().list_transactions(request)]
        for chunk in _repaged(pages, lambda n: 999 if n == 0 else 1000):
            page = bank_pb2.ListTransactionsResponse(transactions=chunk)
            page.response_details.status = m.RESPONSE_STATUS_COMPLETE
            yield page


class DuplicateAcrossPages(SyntheticBank):
    """The last transaction of each full page again at the start of the next."""

    async def list_transactions(self, request: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        last = None
        async for page in super().list_transactions(request):
            if last is not None:
                page.transactions.insert(0, last)
            last = page.transactions[-1] if page.transactions else None
            yield page


class ReferenceIsTheNumber(SyntheticBank):
    """accountReference = the account number (and resolves it back)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.numbers: dict[str, str] = {}

    async def list_accounts(self, request: Any) -> Any:
        response = await super().list_accounts(request)
        for account in response.accounts:
            self.numbers[account.account_identifier] = account.account_reference
            account.account_reference = account.account_identifier
        return response

    def _resolve(self, request: Any) -> Any:
        copy = type(request)()
        copy.CopyFrom(request)
        copy.account_reference = self.numbers.get(
            request.account_reference, request.account_reference
        )
        return copy

    async def get_account_details(self, request: Any) -> Any:
        response = await super().get_account_details(self._resolve(request))
        response.account.account_reference = request.account_reference
        return response

    async def list_transactions(self, request: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        async for page in super().list_transactions(self._resolve(request)):
            yield page

    async def list_cards(self, request: Any) -> Any:
        return await super().list_cards(self._resolve(request))

    async def list_roles(self, request: Any) -> Any:
        return await super().list_roles(self._resolve(request))


class UnknownReferenceIsEmpty(SyntheticBank):
    """An unknown accountReference gets an empty answer instead of NOT_FOUND."""

    @staticmethod
    def _empty(message: Any, exc: BankError) -> Any:
        if exc.code != "ACC-002":
            raise exc
        message.response_details.status = m.RESPONSE_STATUS_COMPLETE
        return message

    async def get_account_details(self, request: Any) -> Any:
        try:
            return await super().get_account_details(request)
        except BankError as exc:
            return self._empty(bank_pb2.GetAccountDetailsResponse(), exc)

    async def list_transactions(self, request: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        try:
            async for page in super().list_transactions(request):
                yield page
        except BankError as exc:
            yield self._empty(bank_pb2.ListTransactionsResponse(), exc)

    async def list_cards(self, request: Any) -> Any:
        try:
            return await super().list_cards(request)
        except BankError as exc:
            return self._empty(bank_pb2.ListCardsResponse(), exc)

    async def list_roles(self, request: Any) -> Any:
        try:
            return await super().list_roles(request)
        except BankError as exc:
            return self._empty(bank_pb2.ListRolesResponse(), exc)


class AcceptsAnyMandate(SyntheticBank):
    """Answers requests outside the service of their mandate."""

    def check(self, api: str, context: Any, only_primary_owner: bool | None = None) -> None:
        return None


class BalancesMissAnAccount(SyntheticBank):
    """Accounts with balances in one request leave out the last account."""

    async def list_accounts_with_balances(self, request: Any) -> Any:
        response = await super().list_accounts_with_balances(request)
        if response.accounts:
            del response.accounts[-1]
        return response


class SkewedExchange(BankServicer):
    """The batched path drops the last account of every accounts list."""

    async def Exchange(self, request_iterator, context):  # type: ignore[no-untyped-def]
        async for message in super().Exchange(request_iterator, context):
            for response in message.responses:
                if response.HasField("accounts") and response.accounts.accounts:
                    del response.accounts.accounts[-1]
            yield message


BROKEN = [
    (UnmaskedCard, "card-masking"),
    (BadCheckDigit, "check-digits"),
    (MissingResponseDetails, "response-details"),
    (ShortFirstPage, "paging"),
    (DuplicateAcrossPages, "paging"),
    (ReferenceIsTheNumber, "opaque-reference"),
    (UnknownReferenceIsEmpty, "unknown-reference"),
    (AcceptsAnyMandate, "refusal"),
    (BalancesMissAnAccount, "balances-in-one"),
]


@pytest.fixture
def bank_info(bank_infos: list[BankInfo]) -> BankInfo:
    return bank_infos[0]


def _bank(cls: type[SyntheticBank], dataset: SyntheticDataset, info: BankInfo) -> SyntheticBank:
    return cls(dataset.bank(info.bank_id), info.bank_id)


def _fixture(dataset: SyntheticDataset, info: BankInfo) -> Fixture:
    return Fixture(parties(dataset, info.bank_id).all())


async def _grpc_report(provider: BankProvider | BankServicer, fixture: Fixture) -> Any:
    if isinstance(provider, BankServicer):
        server = grpc.aio.server(options=SERVER_OPTIONS)
        bank_pb2_grpc.add_BankServiceServicer_to_server(provider, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
    else:
        hosted = await start_bank(provider)
        server, port = hosted.server, hosted.port
    target = GrpcTarget(f"127.0.0.1:{port}")
    try:
        return await run_conformance(target, fixture)
    finally:
        await target.close()
        await server.stop(None)


async def _rest_report(provider: BankProvider, fixture: Fixture, cert_dir: Path) -> Any:
    hosted = await start_rest_bank(provider, tls=bank_tls(cert_dir))
    target = RestTarget(
        RestBankClient(provider.bank_id, hosted.base + "/v2", ssl_context=hub_context(cert_dir))
    )
    try:
        return await run_conformance(target, fixture)
    finally:
        await target.close()
        await stop_app(hosted)


async def test_the_synthetic_grpc_bank_passes_every_case(
    dataset: SyntheticDataset, bank_info: BankInfo
) -> None:
    report = await _grpc_report(
        _bank(SyntheticBank, dataset, bank_info), _fixture(dataset, bank_info)
    )
    assert report.ok, report.render()
    assert [c.status for c in report.cases] == ["pass"] * len(CASE_NAMES), report.render()


async def test_the_synthetic_rest_bank_passes_every_case_through_the_bridge(
    dataset: SyntheticDataset, bank_info: BankInfo, cert_dir: Path
) -> None:
    report = await _rest_report(
        _bank(SyntheticBank, dataset, bank_info), _fixture(dataset, bank_info), cert_dir
    )
    # The REST API has no accounts with balances in one request: the bridge declines it.
    statuses = {c.name: c.status for c in report.cases}
    assert statuses == dict.fromkeys(CASE_NAMES, "pass") | {"balances-in-one": "skip"}
    assert report.target.startswith("REST https://localhost:")


@pytest.mark.parametrize(("broken", "case"), BROKEN, ids=[b.__name__ for b, _ in BROKEN])
async def test_each_broken_bank_is_caught_by_its_case(
    dataset: SyntheticDataset, bank_info: BankInfo, broken: type[SyntheticBank], case: str
) -> None:
    report = await _grpc_report(_bank(broken, dataset, bank_info), _fixture(dataset, bank_info))
    assert report.failed() == {case}, report.render()
    failing = next(c for c in report.cases if c.name == case)
    assert failing.reasons, "a failure says why"


async def test_a_batched_path_that_differs_from_the_per_api_calls_is_caught(
    dataset: SyntheticDataset, bank_info: BankInfo
) -> None:
    servicer = SkewedExchange(_bank(SyntheticBank, dataset, bank_info))
    report = await _grpc_report(servicer, _fixture(dataset, bank_info))
    assert report.failed() == {"exchange-agrees"}, report.render()


@pytest.mark.parametrize(
    ("broken", "case"),
    [(ShortFirstPage, "paging"), (UnknownReferenceIsEmpty, "unknown-reference")],
    ids=["ShortFirstPage", "UnknownReferenceIsEmpty"],
)
async def test_breaks_are_caught_through_the_rest_bridge_too(
    dataset: SyntheticDataset,
    bank_info: BankInfo,
    cert_dir: Path,
    broken: type[SyntheticBank],
    case: str,
) -> None:
    report = await _rest_report(
        _bank(broken, dataset, bank_info), _fixture(dataset, bank_info), cert_dir
    )
    assert report.failed() == {case}, report.render()


async def test_without_parties_the_data_cases_are_skipped_not_failed(
    dataset: SyntheticDataset, bank_info: BankInfo
) -> None:
    report = await _grpc_report(_bank(SyntheticBank, dataset, bank_info), Fixture(()))
    assert report.ok, report.render()
    skipped = {c.name for c in report.cases if c.status == "skip"}
    assert {"presence", "paging", "card-masking", "exchange-agrees", "balances-in-one"} <= skipped
    assert {"unknown-party", "unknown-reference", "refusal", "deadline"}.isdisjoint(skipped)


# -- the command ----------------------------------------------------------------------------------


async def test_the_command_reports_and_exits_by_the_verdict(
    dataset: SyntheticDataset, bank_info: BankInfo, cert_dir: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    import asyncio  # noqa: PLC0415

    tls = bank_tls(cert_dir)
    good = await start_bank(_bank(SyntheticBank, dataset, bank_info), "127.0.0.1", 0, tls)
    bad = await start_bank(_bank(UnmaskedCard, dataset, bank_info), "127.0.0.1", 0, tls)
    who = parties(dataset, bank_info.bank_id)
    common = [
        "--tls-ca", str(cert_dir / "ca.pem"), "--tls-cert", str(cert_dir / "hub.pem"),
        "--tls-key", str(cert_dir / "hub.key"), "--party", who.person, "--party", who.busy,
    ]  # fmt: skip
    report = tmp_path / "report.json"
    try:
        # The command runs its own event loop: give it a thread.
        passed = await asyncio.to_thread(
            conformance_main, ["--target", f"localhost:{good.port}", *common, "--json", str(report)]
        )
        failed = await asyncio.to_thread(
            conformance_main, ["--target", f"localhost:{bad.port}", *common]
        )
    finally:
        await good.server.stop(None)
        await bad.server.stop(None)
    out = capsys.readouterr().out
    assert passed == 0 and failed == 1
    assert "FAIL  card-masking" in out and "not PCI-masked" in out
    written = orjson.loads(report.read_bytes())
    assert written["ok"] is True and written["failed"] == 0
    assert [c["name"] for c in written["cases"]] == list(CASE_NAMES)
    assert conformance_main(["--target", "x:1", "--party", "123"]) == 2


def test_the_fixture_s_default_period_is_the_year_to_today() -> None:
    start, end = Fixture(()).period()
    assert end - start == dt.timedelta(days=364)
    past_start, past_end = Fixture(()).past_period()
    assert past_end == end - dt.timedelta(days=30) and past_start == start
