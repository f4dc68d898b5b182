"""The REST side: the lossless JSON mapping, the synthetic REST bank and KAR (validated against
the OpenAPI documents), the hub's REST bridge, and a hub with a mixed gRPC/REST fleet."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson
import pytest
import yaml
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import hub.registry
import providers.rest
from clients.client import make_query
from clients.services import MANDATES
from dsop.controlinfo.v2 import bank_pb2, model_pb2
from dsop.hub.v1 import hub_pb2
from hub import rest as hub_rest
from hub.config import HubConfig, TlsFiles
from hub.kar import SyntheticKar
from hub.registry import BankEndpoint, Registry, SyntheticDatasetRef
from hub.rest import RestBankClient, RestKar, make_client
from hub.server import Hub
from providers.base import BankProvider
from providers.errors import BankError
from providers.rest import mapping
from providers.rest.bank import rest_app
from providers.rest.kar import rest_kar_app
from providers.rest.server import start_app, start_rest_bank, stop_app
from providers.server import start_bank, stop_banks
from providers.simulate import SimulateOptions, endpoint
from providers.simulator import SyntheticBank, synthetic_banks
from providers.synthetic.dataset import SyntheticDataset
from providers.synthetic.universe import BankInfo
from tests.providers.rest_support import (
    REFERENCE,
    TEST_HOST,
    ValidatingTransport,
    bank_tls,
    hub_context,
    hub_tls,
    openapi,
    parties,
    year,
)
from tests.support import BANKS, SEED

SKATT = MANDATES["skatt-kontroll"]
UTLEGG = MANDATES["fi-utlegg"]
TODAY = dt.date.today()
SPEC = yaml.safe_load((REFERENCE / "bank-api-v2.openapi.yaml").read_text(encoding="utf-8"))


def test_the_package_exports_the_few_names_users_need() -> None:
    assert providers.rest.__all__ == [
        "HostedApp",
        "RestBankApp",
        "RestKarApp",
        "rest_app",
        "rest_kar_app",
        "start_app",
        "start_rest_bank",
        "stop_app",
    ]
    assert providers.rest.rest_app is rest_app


# -- the mapping --------------------------------------------------------------------------------

#: Every message of the bank API's JSON model (test_contract.py maps them to the schemas).
MODEL = [
    bank_pb2.ListAccountsResponse,
    bank_pb2.GetAccountDetailsResponse,
    bank_pb2.ListTransactionsResponse,
    bank_pb2.ListCardsResponse,
    bank_pb2.ListRolesResponse,
    model_pb2.Account,
    model_pb2.AccountDetail,
    model_pb2.AccountRole,
    model_pb2.Balance,
    model_pb2.BankTransactionCode,
    model_pb2.CounterParty,
    model_pb2.CurrencyExchange,
    model_pb2.FinancialInstitution,
    model_pb2.Identifier,
    model_pb2.Link,
    model_pb2.PaymentCard,
    model_pb2.PostalAddress,
    model_pb2.ResponseDetails,
    model_pb2.Transaction,
    model_pb2.TransactionReference,
]
MONEY = st.from_regex(r"(0|[1-9][0-9]{0,20})(\.[0-9]{1,12})?", fullmatch=True)


def _field_values(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        assert field.message_type is not None
        return messages(field.message_type, depth + 1)
    if field.type == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        return st.sampled_from([v.number for v in field.enum_type.values])
    if field.full_name in mapping.MONEY_FIELDS:
        return MONEY
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    return st.text(max_size=12)


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Any message of the type: every field unset or set, repeated fields 0-2 long, nesting
    cut at depth 3."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE and depth >= 3:
            continue
        values = _field_values(field, depth)
        fields[field.name] = (
            st.lists(values, max_size=2) if field.is_repeated else st.none() | values
        )
    cls = GetMessageClass(descriptor)

    def build(values: dict[str, Any]) -> Message:
        return cls(**{k: v for k, v in values.items() if v is not None})

    return st.fixed_dictionaries(fields).map(build)


@pytest.mark.parametrize("message_type", MODEL, ids=lambda m: m.DESCRIPTOR.name)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_proto_to_json_to_proto_is_the_identity(message_type: type[Message], data: Any) -> None:
    message = data.draw(messages(message_type.DESCRIPTOR))
    text = mapping.dumps(message)
    assert mapping.from_json(message_type, mapping.loads(text)) == message


@settings(max_examples=100, deadline=None)
@given(amount=MONEY)
def test_money_crosses_as_the_exact_json_number(amount: str) -> None:
    text = mapping.dumps(model_pb2.Balance(amount=amount))
    assert text == b'{"amount":' + amount.encode() + b"}"
    assert isinstance(json.loads(text)["amount"], int | float)  # a number, not a string
    assert mapping.from_json(model_pb2.Balance, mapping.loads(text)).amount == amount


def test_json_numbers_are_read_without_float_rounding() -> None:
    data = mapping.loads(b'{"amount": 12345678901234567890.10, "exchangeRate": 1E+2}')
    assert data["amount"] == Decimal("12345678901234567890.10")
    balance = mapping.from_json(model_pb2.Balance, data)
    assert balance.amount == "12345678901234567890.10"
    rate = mapping.from_json(model_pb2.CurrencyExchange, {"exchangeRate": Decimal("1E+2")})
    assert rate.exchange_rate == "100"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"amount": "12.50"}, "money must be a JSON number"),
        ({"amount": 12.5}, "parsed as a float"),
        ({"amount": True}, "money must be a JSON number"),
        ({"type": "pocketMoney"}, "unknown enum value"),
        ({"currency": 578}, "wrong JSON type"),
        ({"creditLineIncluded": "yes"}, "wrong JSON type"),
    ],
)
def test_json_that_breaks_the_model_is_refused_naming_the_field(
    data: dict[str, Any], problem: str
) -> None:
    with pytest.raises(mapping.MappingError, match=problem):
        mapping.from_json(model_pb2.Balance, data)


def test_unknown_properties_are_ignored_and_unspecified_enums_left_out() -> None:
    balance = mapping.from_json(model_pb2.Balance, {"amount": 1, "colour": "blue", "type": None})
    assert balance == model_pb2.Balance(amount="1")
    assert mapping.dumps(model_pb2.Balance(type=0, amount="1")) == b'{"amount":1}'
    with pytest.raises(mapping.MappingError, match="unknown enum value"):
        mapping.dumps(model_pb2.Balance(type=99))  # type: ignore[arg-type]
    with pytest.raises(mapping.MappingError, match="decimal number"):
        mapping.dumps(model_pb2.Balance(amount="1,50"))


def _schema(ref_or_schema: dict[str, Any]) -> dict[str, Any]:
    schema = ref_or_schema
    while True:
        if "$ref" in schema:
            schema = SPEC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        elif "allOf" in schema:
            schema = schema["allOf"][0]
        else:
            return schema


def test_money_fields_are_exactly_the_spec_s_number_properties() -> None:
    from tests.test_contract import MESSAGES  # noqa: PLC0415

    numbers = set()
    for name, message in MESSAGES.items():
        for prop, schema in SPEC["components"]["schemas"][name].get("properties", {}).items():
            if _schema(schema).get("type") == "number":
                field = next(f for f in message.DESCRIPTOR.fields if f.json_name == prop)
                numbers.add(field.full_name)
    assert numbers == mapping.MONEY_FIELDS


def test_enum_tables_are_the_spec_s_enums() -> None:
    from tests.test_contract import ENUMS  # noqa: PLC0415

    for name, enum in ENUMS.items():
        values = {str(v).strip() for v in SPEC["components"]["schemas"][name]["enum"]}
        assert {
            mapping.enum_to_json(enum.DESCRIPTOR, v.number)
            for v in enum.DESCRIPTOR.values
            if v.number
        } == values, name


CONTEXTS = st.builds(
    bank_pb2.RequestContext,
    account_info_request_id=st.uuids().map(str),
    correlation_id=st.uuids().map(str),
    legal_mandate=st.sampled_from(sorted(MANDATES.values())),
    requester_id=st.none() | st.text(min_size=1, max_size=10).filter(lambda s: "\r" not in s and "\n" not in s and "\0" not in s),
    additional_reference_id=st.none() | st.from_regex(r"[A-Za-z0-9._-]{1,40}", fullmatch=True),
    additional_reference_id_type=st.sampled_from([0, 1, 2]),
)  # fmt: skip
PERIODS = st.builds(
    bank_pb2.Period,
    from_date=st.none() | st.dates().map(dt.date.isoformat),
    to_date=st.none() | st.dates().map(dt.date.isoformat),
)


@settings(max_examples=100, deadline=None)
@given(
    kind=st.sampled_from(list(mapping.OPERATIONS)),
    context=CONTEXTS,
    period=PERIODS,
    party=st.from_regex(r"[0-9]{9,11}", fullmatch=True),
    owner=st.booleans(),
    reference=st.text(min_size=1, max_size=30),
)
@example(  # references a URL could read as steps up the path
    kind="cards",
    context=bank_pb2.RequestContext(),
    period=bank_pb2.Period(),
    party="",
    owner=False,
    reference="..",
)
@example(
    kind="roles", context=bank_pb2.RequestContext(), period=bank_pb2.Period(), party="",
    owner=False, reference="a/./b?c#d",
)  # fmt: skip
def test_requests_cross_http_and_back_unchanged(  # noqa: PLR0917 (hypothesis draws)
    kind: str,
    context: bank_pb2.RequestContext,
    period: bank_pb2.Period,
    party: str,
    owner: bool,
    reference: str,
) -> None:
    op = mapping.OPERATIONS[kind]
    fields: dict[str, Any] = {"context": context, "period": period}
    if kind == "accounts":
        fields |= {"party_id": party, "only_primary_owner": owner}
    else:
        fields["account_reference"] = reference
    request = op.request(**fields)
    http = mapping.request_to_http(kind, request)
    url = httpx.URL("http://bank/v2" + http.path, params=list(http.query))
    # What a server sees: the raw (still percent-encoded) path, one segment per reference.
    raw = url.raw_path.split(b"?")[0].decode()
    assert raw.startswith("/v2/accounts") and raw.count("/") == http.path.count("/") + 1
    ref = None if kind == "accounts" else raw.split("/")[3]
    from urllib.parse import unquote  # noqa: PLC0415

    back = mapping.request_from_http(
        kind,
        unquote(ref) if ref is not None else None,
        {name.decode().lower(): value for name, value in http.headers},
        url.params.multi_items(),
    )
    assert back == request


# -- the synthetic REST bank, validated against the spec ---------------------------------------


@pytest.fixture
def synthetic(dataset: SyntheticDataset, bank_infos: list[BankInfo]) -> SyntheticBank:
    return synthetic_banks(dataset, bank_infos[:1])[0]


def _asgi_client(app: Any, *, skip: Any = None) -> tuple[httpx.AsyncClient, ValidatingTransport]:
    transport = ValidatingTransport(
        httpx.ASGITransport(app=app), openapi("bank-api-v2.openapi.yaml"),
        **({"skip_request": skip} if skip else {}),
    )  # fmt: skip
    return httpx.AsyncClient(transport=transport, base_url=TEST_HOST), transport


def _bridge(app: Any) -> tuple[RestBankClient, ValidatingTransport]:
    http, transport = _asgi_client(app)
    return RestBankClient("bank", TEST_HOST + "/v2", client=http), transport


async def _ask(
    client: RestBankClient, kind: str, body: Message, timeout_ms: int = 0
) -> list[bank_pb2.BankResponse]:
    """Every answer to one request, the last with has_more false."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    answers: list[bank_pb2.BankResponse] = []

    def on_response(view: Any) -> None:
        # The bridge answers with views (payloads as bytes); read them typed.
        response = bank_pb2.BankResponse.FromString(view.SerializeToString())
        answers.append(response)
        if not response.has_more and not done.done():
            done.set_result(None)

    request = client.request(on_response)
    getattr(request, kind).CopyFrom(body)
    request.timeout_ms = timeout_ms
    await asyncio.wait_for(done, 20)
    return answers


def _context(mandate: str = SKATT, **fields: Any) -> bank_pb2.RequestContext:
    context = bank_pb2.RequestContext(
        account_info_request_id="0b3c7a4e-6f1d-4a55-9d6b-2d8f7a1f0c11",
        correlation_id="8e0f3b0a-3c2d-4b9e-8f53-1c2b3d4e5f60",
        legal_mandate=mandate,
        **fields,
    )
    if mandate == SKATT and "requester_id" not in fields:
        context.requester_id = "saksbehandler-7"
    return context


def _period(start: dt.date, end: dt.date) -> bank_pb2.Period:
    return bank_pb2.Period(from_date=start.isoformat(), to_date=end.isoformat())


def _accounts(
    party: str, mandate: str = SKATT, owner: bool = False
) -> bank_pb2.ListAccountsRequest:
    return bank_pb2.ListAccountsRequest(
        context=_context(mandate), party_id=party, only_primary_owner=owner, period=_period(*year())
    )


async def test_every_answer_of_the_synthetic_rest_bank_conforms_to_the_spec(
    synthetic: SyntheticBank, dataset: SyntheticDataset
) -> None:
    """Five APIs for a person and a busy organisation (paged), and errors, through the
    bridge: every request it sends and every response validate against the OpenAPI."""
    client, transport = _bridge(rest_app(synthetic))
    who = parties(dataset, synthetic.bank_id)
    grpc_answers = 0
    for party in who.all():
        (listed,) = await _ask(client, "accounts", _accounts(party))
        assert listed.accounts == await synthetic.list_accounts(_accounts(party))
        for account in listed.accounts.accounts:
            ref = account.account_reference
            for kind, body_type in (
                ("account_details", bank_pb2.GetAccountDetailsRequest),
                ("cards", bank_pb2.ListCardsRequest),
                ("roles", bank_pb2.ListRolesRequest),
                ("transactions", bank_pb2.ListTransactionsRequest),
            ):
                body = body_type(context=_context(), account_reference=ref, period=_period(*year()))
                answers = await _ask(client, kind, body)
                assert all(a.WhichOneof("result") == kind for a in answers)
                if kind == "transactions":
                    direct = [p async for p in synthetic.list_transactions(body)]
                    assert [a.transactions for a in answers] == direct
                    assert [a.has_more for a in answers] == [True] * (len(direct) - 1) + [False]
                    grpc_answers += len(direct)
    assert grpc_answers > 2, "the busy organisation's pages were exercised"
    # Refusals and an unknown reference: error bodies conform too.
    (unknown,) = await _ask(
        client, "cards", bank_pb2.ListCardsRequest(context=_context(), account_reference="feed")
    )
    assert (unknown.error.code, unknown.error.status) == (
        "ACC-002",
        grpc.StatusCode.NOT_FOUND.value[0],
    )
    (refused,) = await _ask(client, "accounts", _accounts(who.person, UTLEGG, owner=False))
    assert (refused.error.code, refused.error.status) == ("ACC-001", 3)
    assert transport.requests > 10
    assert set(transport.responses) == {200, 400, 404}
    await client.close()


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 400, "ACC-001"),  # no request context
        ({"Legal-Mandate": SKATT.encode(), "CorrelationID": b"c"}, 400, "ACC-001"),
        ({"AccountInfoRequestID": b"a", "CorrelationID": b"c", "Legal-Mandate": b"\xff"}, 400, "ACC-001"),
        ({"AccountInfoRequestID": b"a", "CorrelationID": b"c", "Legal-Mandate": UTLEGG.encode()}, 400, "ACC-001"),
        ({"AccountInfoRequestID": b"a", "CorrelationID": b"c", "Legal-Mandate": SKATT.encode(),
          "RequesterID": b"r"}, 404, "ACC-002"),
    ],
)  # fmt: skip
async def test_rest_bank_refuses_with_the_standard_s_status_and_code(
    synthetic: SyntheticBank, headers: dict[str, bytes], status: int, code: str
) -> None:
    # Bad requests on purpose: only the answers are validated.
    http, _ = _asgi_client(rest_app(synthetic), skip=lambda _: True)
    async with http:
        response = await http.get("/v2/accounts/c0ffee/transactions", headers=headers)
    assert response.status_code == status
    assert response.json()["code"] == code


async def test_rest_bank_routes_only_the_five_apis(synthetic: SyntheticBank) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=rest_app(synthetic)), base_url=TEST_HOST
    ) as http:
        assert (await http.get("/v1/accounts")).status_code == 404
        assert (await http.get("/v2/accounts/x/balances")).status_code == 404
        assert (await http.post("/v2/accounts")).json()["code"] == "ACC-012"


class _Refusing(BankProvider):
    """Refuses everything with the code it is given."""

    bank_id = "974761076"

    def __init__(self, code: str) -> None:
        self.code = code

    async def list_accounts(self, request: Any) -> Any:
        raise BankError(self.code, "refused")


@pytest.mark.parametrize(
    ("code", "http_status", "grpc_status"),
    [
        ("ACC-001", 400, grpc.StatusCode.INVALID_ARGUMENT),
        ("ACC-011", 403, grpc.StatusCode.PERMISSION_DENIED),
        ("ACC-022", 429, grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("ACC-100", 500, grpc.StatusCode.UNAVAILABLE),
        ("ACC-500", 500, grpc.StatusCode.INTERNAL),
    ],
)
async def test_errors_cross_the_bridge_with_their_code_and_status(
    code: str, http_status: int, grpc_status: grpc.StatusCode
) -> None:
    client, transport = _bridge(rest_app(_Refusing(code)))
    (answer,) = await _ask(client, "accounts", _accounts("01010112345"))
    assert transport.responses == {http_status: 1}
    assert answer.error.code == code
    assert answer.error.status == grpc_status.value[0]
    assert not answer.has_more
    await client.close()


async def test_an_error_without_the_standard_s_body_maps_by_http_status() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b"<html>down</html>"})

    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=TEST_HOST)
    client = RestBankClient("bank", TEST_HOST + "/v2", client=http)
    (answer,) = await _ask(client, "accounts", _accounts("01010112345"))
    assert (answer.error.code, answer.error.status) == (
        "ACC-100",
        grpc.StatusCode.UNAVAILABLE.value[0],
    )
    await client.close()


async def test_a_malformed_answer_is_internal_acc_500() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b'{"responseDetails": {"status": "finished"}}'
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=TEST_HOST)
    client = RestBankClient("bank", TEST_HOST + "/v2", client=http)
    (answer,) = await _ask(client, "accounts", _accounts("01010112345"))
    assert (answer.error.code, answer.error.status) == (
        "ACC-500",
        grpc.StatusCode.INTERNAL.value[0],
    )
    await client.close()


async def test_an_unreachable_bank_is_unavailable_acc_100() -> None:
    client = RestBankClient("bank", "http://127.0.0.1:9/v2")
    (answer,) = await _ask(client, "accounts", _accounts("01010112345"))
    assert (answer.error.code, answer.error.status) == (
        "ACC-100",
        grpc.StatusCode.UNAVAILABLE.value[0],
    )
    await client.close()


class _Pages(BankProvider):
    """Transactions in pages of the given sizes, slowly if asked; counts calls in flight."""

    bank_id = "974761076"

    def __init__(self, sizes: list[int], delay: float = 0.0) -> None:
        self.sizes = sizes
        self.delay = delay
        self.in_flight = self.most_in_flight = 0
        self.closed = 0

    async def list_accounts(self, request: Any) -> Any:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        response = bank_pb2.ListAccountsResponse()
        response.response_details.status = 1
        return response

    async def list_transactions(self, request: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        try:
            for number, size in enumerate(self.sizes):
                page = bank_pb2.ListTransactionsResponse()
                page.response_details.status = 1
                page.transactions.extend(
                    model_pb2.Transaction(transaction_identifier=f"{number}-{i}")
                    for i in range(size)
                )
                await asyncio.sleep(self.delay)
                yield page
        finally:
            self.closed += 1


def _transactions(reference: str = "r1") -> bank_pb2.ListTransactionsRequest:
    return bank_pb2.ListTransactionsRequest(
        context=_context(), account_reference=reference, period=_period(*year())
    )


async def test_pages_follow_next_links_and_the_link_is_consumed() -> None:
    provider = _Pages([1000, 1000, 3])
    client, transport = _bridge(rest_app(provider))
    answers = await _ask(client, "transactions", _transactions())
    assert [len(a.transactions.transactions) for a in answers] == [1000, 1000, 3]
    assert [a.has_more for a in answers] == [True, True, False]
    assert all(not a.transactions.links for a in answers)
    assert transport.responses == {200: 3}
    assert provider.closed == 1
    await client.close()


async def test_a_page_token_is_single_use_and_bound_to_its_request() -> None:
    app = rest_app(_Pages([1000, 1000, 3]))
    http, _ = _asgi_client(app)
    headers = {name.decode(): value for name, value in mapping.request_to_http(
        "transactions", _transactions()).headers}  # fmt: skip
    async with http:
        first = (await http.get("/v2/accounts/r1/transactions", headers=headers)).json()
        (link,) = first["links"]
        assert link["rel"] == "next" and "page=" in link["href"]
        other = await http.get(link["href"].replace("/r1/", "/r2/"), headers=headers)
        assert other.status_code == 400  # another account's token
        assert (await http.get(link["href"], headers=headers)).status_code == 200
        again = await http.get(link["href"], headers=headers)
        assert (again.status_code, again.json()["code"]) == (400, "ACC-001")


async def test_a_next_link_off_the_bank_is_not_followed() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = orjson.dumps({"responseDetails": {"status": "complete"}, "transactions": [],
                             "links": [{"rel": "next", "href": "https://elsewhere.example/x"}]})  # fmt: skip
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=TEST_HOST)
    client = RestBankClient("bank", TEST_HOST + "/v2", client=http)
    (answer,) = await _ask(client, "transactions", _transactions())
    assert answer.error.code == "ACC-500" and "away from the bank" in answer.error.message
    await client.close()


async def test_calls_in_flight_per_bank_are_bounded() -> None:
    provider = _Pages([], delay=0.02)
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=rest_app(provider)), base_url=TEST_HOST
    )
    client = RestBankClient("bank", TEST_HOST + "/v2", client=http, max_in_flight=4)
    answers = await asyncio.gather(
        *(_ask(client, "accounts", _accounts("01010112345")) for _ in range(20))
    )
    assert all(a[-1].HasField("accounts") for a in answers)
    assert provider.most_in_flight == 4
    await client.close()


async def test_cancel_drops_the_answer_and_a_timeout_is_deadline_exceeded() -> None:
    provider = _Pages([1000, 1000], delay=0.3)
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=rest_app(provider)), base_url=TEST_HOST
    )
    client = RestBankClient("bank", TEST_HOST + "/v2", client=http)
    got: list[bank_pb2.BankResponse] = []
    request = client.request(got.append)
    request.transactions.CopyFrom(_transactions())
    await asyncio.sleep(0.05)
    client.cancel(request.id)
    await asyncio.sleep(0.4)
    assert got == []
    (late,) = await _ask(client, "transactions", _transactions(), timeout_ms=100)
    assert late.error.status == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    await client.close()


# -- real servers: HTTP/2 over mutual TLS, the REST KAR, the simulator's registry ----------------


async def test_rest_bank_speaks_http2_over_mutual_tls(
    synthetic: SyntheticBank, cert_dir: Path
) -> None:
    hosted = await start_rest_bank(synthetic, tls=bank_tls(cert_dir))
    try:
        async with httpx.AsyncClient(http2=True, verify=hub_context(cert_dir)) as http:
            headers = dict(mapping.request_to_http("accounts", _accounts("01010112345")).headers)
            response = await http.get(hosted.base + "/v2/accounts", headers=headers, params={"OnlyPrimaryOwner": "true"})  # fmt: skip
        assert response.http_version == "HTTP/2"
        assert response.status_code == 200
        # Without the hub's client certificate the handshake fails.
        anonymous_tls = ssl.create_default_context(cafile=str(cert_dir / "ca.pem"))
        async with httpx.AsyncClient(verify=anonymous_tls) as anonymous:
            with pytest.raises(httpx.HTTPError):
                await anonymous.get(hosted.base + "/v2/accounts")
    finally:
        await stop_app(hosted)


async def test_rest_kar_answers_as_the_embedded_register(
    dataset: SyntheticDataset, bank_infos: list[BankInfo], cert_dir: Path
) -> None:
    transport = ValidatingTransport(
        httpx.ASGITransport(app=rest_kar_app(dataset, bank_infos)),
        openapi("kar-api-v1.openapi.yaml"),
    )
    kar = RestKar(TEST_HOST + "/kar-ws/api/v1", client=httpx.AsyncClient(transport=transport))
    embedded = SyntheticKar(SEED, BANKS)
    queries = [
        make_query(service="skatt-kontroll", legal_mandate=SKATT, operation=hub_pb2.OPERATION_ACCOUNTS,
                   party_id=party, from_date="2025-01-01", to_date=TODAY.isoformat())
        for party in dataset.party_sample(20)
    ]  # fmt: skip
    queries.append(make_query(service="s", legal_mandate=SKATT, operation=1, party_id="123"))
    queries.append(
        make_query(service="s", legal_mandate=SKATT, operation=1, party_id=queries[0].party_id,
                   from_date="2026-02-30")
    )  # fmt: skip
    got = await kar.lookup(queries)
    assert got[:20] == (await embedded.lookup(queries))[:20]
    assert [g.code for g in got[20:]] == ["ERR-002", "ERR-003"]  # type: ignore[union-attr]
    assert transport.responses == {200: 20, 400: 2}
    async with httpx.AsyncClient(transport=transport, base_url=TEST_HOST) as http:
        number = dataset.bank(bank_infos[3].bank_id).list_accounts(
            queries[0].party_id, False, dt.date(2000, 1, 1), TODAY
        )
        account = next((a.account_identifier for a in number.accounts), None)
        if account is not None:
            found = await http.get("/kar-ws/api/v1/customers/accountServicingProvider",
                                   headers={"AccountID": account, "CorrelationID": "6f1d4a55-0b3c-4a4e-9d6b-2d8f7a1f0c11"})  # fmt: skip
            assert found.json()["organizationId"] == bank_infos[3].bank_id
    await kar.close()


def test_the_simulator_registers_the_last_banks_as_rest(bank_infos: list[BankInfo]) -> None:
    tls = SimulateOptions(banks=5, rest_banks=2, cert=Path("b.pem"), key=Path("b.key"))
    plain = SimulateOptions(banks=5, rest_banks=2)
    made = [endpoint(tls, i, info, 7000 + i) for i, info in enumerate(bank_infos[:5])]
    assert [e.protocol for e in made] == ["grpc", "grpc", "grpc", "rest", "rest"]
    assert made[0].target == "127.0.0.1:7000"
    assert made[4].target == "https://localhost:7004/v2"
    assert endpoint(plain, 4, bank_infos[4], 7004).target == "http://localhost:7004/v2"


def test_make_client_builds_a_rest_client_from_a_registry_entry(cert_dir: Path) -> None:
    entry = BankEndpoint("974761076", "Bank", "https://localhost:8443/v2", "rest")
    client = make_client(entry, hub_tls(cert_dir))
    assert (client.bank_id, client.base_url) == ("974761076", "https://localhost:8443/v2")
    with pytest.raises(hub_rest.ConfigError, match="URL"):
        make_client(BankEndpoint("974761076", "Bank", "localhost:8443", "rest"), None)


# -- a hub with a mixed fleet -------------------------------------------------------------------


async def _start_hub(
    tmp_path: Path, cert_dir: Path, bank_infos: list[BankInfo], targets: dict[str, BankEndpoint]
) -> Hub:
    """A hub over the registry; REST entries get RestBankClients. Until hub/registry.py and
    hub/server.py know "rest" (providers/README.md, "Registering"), REST banks are registered
    as gRPC and their clients replaced after start."""
    native = "rest" in hub.registry.PROTOCOLS
    registry = Registry(
        {
            bank_id: entry if native or entry.protocol == "grpc"
            else BankEndpoint(bank_id, entry.name, "localhost:9", "grpc")
            for bank_id, entry in targets.items()
        },
        SyntheticDatasetRef(SEED, BANKS),
    )  # fmt: skip
    path = tmp_path / f"registry-{id(registry)}.json"
    registry.save(path)
    hub_instance = await Hub.start(
        HubConfig(
            listen="127.0.0.1:0",
            registry=path,
            tls=TlsFiles(cert_dir / "hub.pem", cert_dir / "hub.key", cert_dir / "ca.pem"),
            bank_tls=hub_tls(cert_dir),
            metrics_listen="",
        )
    )
    if not native:
        for bank_id, entry in targets.items():
            if entry.protocol == "rest":
                bank: Any = hub_instance.banks[bank_id]
                await bank.client.close()
                bank.client = make_client(entry, hub_tls(cert_dir))
    return hub_instance


async def test_a_mixed_fleet_answers_as_an_all_grpc_fleet(
    tmp_path: Path, cert_dir: Path, dataset: SyntheticDataset, bank_infos: list[BankInfo]
) -> None:
    from clients.client import ClientTls, HubClient  # noqa: PLC0415

    tls = bank_tls(cert_dir)
    providers = synthetic_banks(dataset, bank_infos)
    grpc_banks = await start_bank_list(providers, tls)
    rest_banks = [await start_rest_bank(p, tls=tls) for p in providers[-4:]]
    all_grpc = {
        info.bank_id: BankEndpoint(info.bank_id, info.name, f"localhost:{hosted.port}")
        for info, hosted in zip(bank_infos, grpc_banks, strict=True)
    }
    mixed = dict(all_grpc)
    for info, hosted in zip(bank_infos[-4:], rest_banks, strict=True):
        mixed[info.bank_id] = BankEndpoint(info.bank_id, info.name, hosted.base + "/v2", "rest")
    hubs = [
        await _start_hub(tmp_path, cert_dir, bank_infos, all_grpc),
        await _start_hub(tmp_path, cert_dir, bank_infos, mixed),
    ]
    client_tls = ClientTls(
        ca=(cert_dir / "ca.pem").read_bytes(),
        cert=(cert_dir / "agency-974761076.pem").read_bytes(),
        key=(cert_dir / "agency-974761076.key").read_bytes(),
    )
    try:
        rest_ids = {info.bank_id for info in bank_infos[-4:]}
        answers: list[dict[tuple[str, str], hub_pb2.BankResult]] = []
        for hub_instance in hubs:
            got: dict[tuple[str, str], hub_pb2.BankResult] = {}
            async with HubClient(f"localhost:{hub_instance.port}", tls=client_tls) as agency:
                queries = [
                    make_query(
                        service="fi-utlegg", legal_mandate=UTLEGG, query_id=party,
                        operation=hub_pb2.OPERATION_ACCOUNTS_WITH_BALANCES, party_id=party,
                        banks=[info.bank_id for info in bank_infos],
                    )
                    for party in dataset.party_sample(15)
                ]  # fmt: skip
                async for event in agency.stream(queries):
                    if event.HasField("result"):
                        got[(event.result.query_id, event.result.bank_id)] = event.result
            answers.append(got)
        grpc_fleet, mixed_fleet = answers
        assert set(grpc_fleet) == set(mixed_fleet)
        assert {bank for _, bank in mixed_fleet} >= rest_ids
        with_accounts = 0
        for key, expected in grpc_fleet.items():
            result = mixed_fleet[key]
            assert result.outcome == expected.outcome == hub_pb2.BANK_OUTCOME_COMPLETE, key
            for message in (result, expected):  # "now" balances are stamped when computed
                for account in message.accounts_with_balances.accounts:
                    for balance in account.balances:
                        balance.ClearField("registered")
            assert result == expected, key
            with_accounts += bool(result.accounts_with_balances.accounts) and key[1] in rest_ids
        assert with_accounts > 0, "some REST bank answered with accounts and balances"
    finally:
        for hub_instance in hubs:
            await hub_instance.stop(grace=None)
        await stop_banks(grpc_banks)
        for hosted in rest_banks:
            await stop_app(hosted)


async def start_bank_list(providers: list[SyntheticBank], tls: Any) -> list[Any]:
    return [await start_bank(p, "127.0.0.1", 0, tls) for p in providers]


async def test_start_app_serves_plain_http_on_a_free_port(synthetic: SyntheticBank) -> None:
    hosted = await start_app(rest_app(synthetic))
    try:
        async with httpx.AsyncClient() as http:
            response = await http.get(f"http://127.0.0.1:{hosted.port}/v2/accounts")
        assert (response.status_code, response.json()["code"]) == (400, "ACC-001")
    finally:
        await stop_app(hosted)


async def test_a_stalled_bank_gets_a_fresh_connection_and_the_call_goes_on() -> None:
    import time  # noqa: PLC0415

    hosted = await start_app(rest_app(_Pages([], delay=0.3)))
    client = RestBankClient("bank", f"http://127.0.0.1:{hosted.port}/v2")
    try:
        first_connection = client._http
        pending = asyncio.ensure_future(_ask(client, "accounts", _accounts("01010112345")))
        await asyncio.sleep(0.1)
        client.stalled(time.monotonic())  # nothing came back since: reconnect
        (answer,) = await pending
        assert answer.HasField("accounts")
        assert client._http is not first_connection
        client.stalled(0.0)  # answers came since: nothing to do
        assert client.calls == 2  # the call was sent once more
    finally:
        await client.close()
        await stop_app(hosted)


async def test_paced_pages_are_fetched_only_with_credit() -> None:
    provider = _Pages([1000, 1000, 1000, 3])
    client, transport = _bridge(rest_app(provider))
    answers: list[bank_pb2.BankResponse] = []
    request = client.request(answers.append)
    request.transactions.CopyFrom(_transactions())
    request.page_window = 1
    await asyncio.sleep(0.3)
    assert [a.has_more for a in answers] == [True]  # the window, then no HTTP call
    assert transport.responses == {200: 1}
    client.credit(request.id, 2)
    await asyncio.sleep(0.3)
    assert [a.has_more for a in answers] == [True, True, True]
    client.credit(request.id, 1)
    await asyncio.sleep(0.3)
    assert [a.has_more for a in answers] == [True, True, True, False]
    assert transport.responses == {200: 4}
    await client.close()
