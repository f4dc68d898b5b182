"""Police extradition orders: verified, matched against the query, forwarded unchanged."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from clients.services import MANDATES
from dsop.controlinfo.v2 import bank_pb2
from dsop.hub.v1 import hub_pb2
from hub.clock import today
from hub.config import read_json
from hub.police import OrderError, PoliceOrder, PoliceOrderVerifier, sign_order
from providers.base import BankProvider
from tests.support import EnvFactory

POLICE = "915429785"
MANDATE = MANDATES["politi-utlevering"]


def _claims(party: str, **changes: Any) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    claims: dict[str, Any] = {
        "partyId": party,
        "legalMandate": MANDATE,
        "reason": "etterforskning",
        "fromDate": (today() - dt.timedelta(days=400)).isoformat(),
        "toDate": today().isoformat(),
        "onlyPrimaryOwner": False,
        "accountList": True,
        "accountDetails": True,
        "transactions": True,
        "cards": False,
        "roles": False,
        "caseId": "2026-4711",
        "approvedBy": "statsadvokat",
        "iat": int((now - dt.timedelta(days=1)).timestamp()),
        "exp": int((now + dt.timedelta(days=30)).timestamp()),
    }
    claims.update(changes)
    return claims


def _key(cert_dir: Path) -> rsa.RSAPrivateKey:
    key = load_pem_private_key((cert_dir / "police.key").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def test_verifier_reads_a_signed_order(cert_dir: Path) -> None:
    verifier = PoliceOrderVerifier(read_json(cert_dir / "police-jwks.json", "police_jwks"))
    order = verifier.verify(sign_order(_claims("01017012345"), _key(cert_dir)))
    assert isinstance(order, PoliceOrder)
    assert order.party_id == "01017012345"
    assert hub_pb2.OPERATION_ACCOUNTS_WITH_BALANCES in order.operations
    assert hub_pb2.OPERATION_CARDS not in order.operations


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda key: sign_order(_claims("1"), rsa.generate_private_key(public_exponent=65537, key_size=2048)), "bad signature"),
        (lambda key: jwt.encode(_claims("1"), key, algorithm="RS256", headers={"kid": "police-dev"}), "PS256"),
        (lambda key: sign_order(_claims("1"), key, kid="other"), "unknown key"),
        (lambda key: "not.a.jws", "not a JWS"),
        (lambda key: sign_order({k: v for k, v in _claims("1").items() if k != "fromDate"}, key), "malformed"),
    ],
)  # fmt: skip
def test_verifier_refuses_what_is_not_a_valid_order(cert_dir: Path, make: Any, reason: str) -> None:
    verifier = PoliceOrderVerifier(read_json(cert_dir / "police-jwks.json", "police_jwks"))
    result = verifier.verify(make(_key(cert_dir)))
    assert isinstance(result, OrderError)
    assert reason in str(result)


class Capture(BankProvider):
    """Records the accounts requests it receives."""

    def __init__(self, inner: BankProvider, seen: list[bank_pb2.ListAccountsRequest]) -> None:
        self.inner, self.bank_id, self.seen = inner, inner.bank_id, seen

    async def list_accounts(
        self, request: bank_pb2.ListAccountsRequest
    ) -> bank_pb2.ListAccountsResponse:
        self.seen.append(request)
        return await self.inner.list_accounts(request)


def _query(party: str, order: str, **changes: Any) -> hub_pb2.Query:
    query = hub_pb2.Query(
        query_id=str(uuid.uuid4()),
        service="politi-utlevering",
        legal_mandate=MANDATE,
        case_id=str(uuid.uuid4()),
        correlation_id=str(uuid.uuid4()),
        requester_id="etterforsker-7",
        party_id=party,
        operation=hub_pb2.OPERATION_ACCOUNTS,
        only_primary_owner=False,
        additional_reference_id_type=bank_pb2.ADDITIONAL_REFERENCE_ID_TYPE_POL1,
        additional_reference_id=order,
    )
    query.period.from_date = (today() - dt.timedelta(days=90)).isoformat()
    for name, value in changes.items():
        setattr(query, name, value)
    return query


async def test_an_order_covering_the_query_passes_and_reaches_banks_unchanged(
    make_env: EnvFactory, cert_dir: Path
) -> None:
    seen: list[bank_pb2.ListAccountsRequest] = []
    env = await make_env(lambda p: Capture(p, seen))
    party = env.dataset.find_party("many_banks")
    order = sign_order(_claims(party), _key(cert_dir))
    async with env.client(POLICE) as hub:
        events = [e async for e in hub.query(_query(party, order), timeout=20)]
    assert events[-1].summary.banks_answered >= 1
    assert seen and all(r.context.additional_reference_id == order for r in seen)
    assert all(
        r.context.additional_reference_id_type == bank_pb2.ADDITIONAL_REFERENCE_ID_TYPE_POL1
        for r in seen
    )


@pytest.mark.parametrize(
    ("claims", "query", "reason"),
    [
        ({"partyId": "00000000000"}, {}, "another party"),
        ({"legalMandate": MANDATES["politi-utlevering"].replace("første", "andre")}, {}, "another legal mandate"),
        ({"fromDate": (today() - dt.timedelta(days=30)).isoformat()}, {}, "outside the order's period"),
        ({"onlyPrimaryOwner": True}, {}, "owner rule"),
        ({"accountList": False}, {}, "does not allow accounts"),
        ({}, {"operation": hub_pb2.OPERATION_CARDS, "account_reference": "r", "party_id": ""}, "does not allow cards"),
        ({"exp": int(dt.datetime.now(dt.UTC).timestamp()) - 60}, {}, "expired"),
        ({"iat": int((dt.datetime.now(dt.UTC) - dt.timedelta(days=95)).timestamp())}, {}, "more than 90 days"),
    ],
)  # fmt: skip
async def test_each_mismatch_with_the_order_is_denied(
    make_env: EnvFactory, cert_dir: Path, claims: dict[str, Any], query: dict[str, Any], reason: str
) -> None:
    env = await make_env()
    party = env.dataset.find_party("many_banks")
    order = sign_order(_claims(party, **claims), _key(cert_dir))
    if "account_reference" in query:
        query["banks"] = [env.infos[0].bank_id]
    request = _query(party, order)
    for name, value in query.items():
        if name == "banks":
            request.banks[:] = value
        else:
            setattr(request, name, value)
    async with env.client(POLICE) as hub:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in hub.query(request, timeout=20):
                pass
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason in (caught.value.details() or "")
    assert party not in (caught.value.details() or "")
    assert not any(env.calls.values())
