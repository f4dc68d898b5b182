"""Police extradition orders (`pol1`): a JWS (PS256) signed by the prosecuting authority.

The payload this hub reads (JSON claims)::

    partyId, legalMandate, reason, fromDate, toDate ("YYYY-MM-DD"), onlyPrimaryOwner (bool),
    accountList, accountDetails, transactions, cards, roles (bools: the APIs allowed),
    caseId, approvedBy, iat (approval time, epoch seconds), exp (expiry, epoch seconds)

Verification checks the signature against the configured police keys (a JWKS) and the shape of
the payload; whether the order covers a query is decided by the policy. The order is forwarded
to banks unchanged.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from dsop.hub.v1 import hub_pb2

_API_CLAIMS: Final = {
    "accountList": hub_pb2.OPERATION_ACCOUNTS,
    "accountDetails": hub_pb2.OPERATION_ACCOUNT_DETAILS,
    "transactions": hub_pb2.OPERATION_TRANSACTIONS,
    "cards": hub_pb2.OPERATION_CARDS,
    "roles": hub_pb2.OPERATION_ROLES,
}
CACHE_SIZE: Final = 4096


class OrderError(Exception):
    """The order is not a valid signed order; the message says why (no personal data)."""


@dataclass(frozen=True, slots=True)
class PoliceOrder:
    party_id: str
    legal_mandate: str
    from_date: dt.date
    to_date: dt.date
    only_primary_owner: bool
    operations: frozenset[hub_pb2.Operation.ValueType]
    approved_at: dt.datetime
    expires_at: dt.datetime
    case_id: str
    approved_by: str


def _order(claims: dict[str, Any]) -> PoliceOrder:
    try:
        operations = {op for claim, op in _API_CLAIMS.items() if claims.get(claim) is True}
        if {hub_pb2.OPERATION_ACCOUNTS, hub_pb2.OPERATION_ACCOUNT_DETAILS} <= operations:
            operations.add(hub_pb2.OPERATION_ACCOUNTS_WITH_BALANCES)
        if not isinstance(claims["onlyPrimaryOwner"], bool):
            raise TypeError("onlyPrimaryOwner")
        return PoliceOrder(
            party_id=str(claims["partyId"]),
            legal_mandate=str(claims["legalMandate"]),
            from_date=dt.date.fromisoformat(claims["fromDate"]),
            to_date=dt.date.fromisoformat(claims["toDate"]),
            only_primary_owner=claims["onlyPrimaryOwner"],
            operations=frozenset(operations),
            approved_at=dt.datetime.fromtimestamp(int(claims["iat"]), dt.UTC),
            expires_at=dt.datetime.fromtimestamp(int(claims["exp"]), dt.UTC),
            case_id=str(claims.get("caseId", "")),
            approved_by=str(claims.get("approvedBy", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise OrderError(f"malformed order payload ({type(exc).__name__})") from None


class PoliceOrderVerifier:
    """Verifies orders against the police keys; remembers recent answers (an order is usually
    sent with many queries of one case)."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.keys = jwt.PyJWKSet.from_dict(jwks)
        self._cache: OrderedDict[str, PoliceOrder | OrderError] = OrderedDict()

    def verify(self, token: str) -> PoliceOrder | OrderError:
        cached = self._cache.get(token)
        if cached is not None:
            self._cache.move_to_end(token)
            return cached
        try:
            result: PoliceOrder | OrderError = self._verify(token)
        except OrderError as exc:
            result = exc
        self._cache[token] = result
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return result

    def _verify(self, token: str) -> PoliceOrder:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise OrderError("not a JWS") from None
        if header.get("alg") != "PS256":
            raise OrderError("must be signed with PS256")
        kid = header.get("kid")
        candidates = [k for k in self.keys.keys if kid is None or k.key_id == kid]
        if not candidates:
            raise OrderError("signed with an unknown key")
        for key in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key.key,
                    algorithms=["PS256"],
                    # Expiry is the policy's to judge, so the refusal can say so plainly.
                    options={"verify_exp": False, "verify_aud": False, "require": ["iat", "exp"]},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                raise OrderError(f"invalid order ({type(exc).__name__})") from None
            return _order(claims)
        raise OrderError("bad signature")


def sign_order(claims: dict[str, Any], key: RSAPrivateKey, kid: str = "police-dev") -> str:
    """A signed order, for tests and development (real orders come from the prosecutor)."""
    return jwt.encode(claims, key, algorithm="PS256", headers={"kid": kid})
