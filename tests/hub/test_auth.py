"""Authentication and authorisation at the hub's door, against a real hub."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from clients.client import ClientTls, HubClient, make_query
from clients.services import MANDATES
from dsop.hub.v1 import hub_pb2
from hub.auth import mint_token
from hub.certs import DEV_AUDIENCE, DEV_ISSUER
from tests.support import Env, EnvFactory

AGENCY = "974761076"  # Skatteetaten: consumer of skatt-kontroll and fi-utlegg


def _query(env: Env) -> hub_pb2.Query:
    return make_query(
        service="fi-utlegg",
        legal_mandate=MANDATES["fi-utlegg"],
        operation=hub_pb2.OPERATION_ACCOUNTS,
        party_id=env.dataset.find_party("many_banks"),
    )


def _token(env: Env, **changes: object) -> str:
    options: dict[str, object] = {
        "organisation": AGENCY,
        "scopes": ["dsop:kontroll.utlegg"],
        "issuer": DEV_ISSUER,
        "audience": DEV_AUDIENCE,
    }
    key = changes.pop("key", None) or load_pem_private_key(
        (env.cert_dir / "issuer.key").read_bytes(), None
    )
    options.update(changes)
    return mint_token(key, **options)  # type: ignore[arg-type]


async def _status(env: Env, client: HubClient) -> tuple[grpc.StatusCode, str, str]:
    async with client:
        try:
            async for _ in client.query(_query(env), timeout=20):
                pass
        except grpc.aio.AioRpcError as exc:
            status = rpc_status.from_call(exc)  # type: ignore[arg-type]
            info = error_details_pb2.ErrorInfo()
            assert status is not None and status.details[0].Unpack(info)
            return exc.code(), info.reason, exc.details() or ""
    return grpc.StatusCode.OK, "", ""


async def test_a_valid_token_and_certificate_pass(env: Env) -> None:
    code, _, _ = await _status(env, env.client(AGENCY, token=_token(env)))
    assert code == grpc.StatusCode.OK
    assert any(env.calls.values())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"now": time.time() - 600}, "token expired"),
        ({"audience": "someone-else"}, "audience"),
        ({"issuer": "https://evil.example/"}, "issuer"),
        ({"key": rsa.generate_private_key(public_exponent=65537, key_size=2048)}, "signature"),
        ({"lifetime": 3600}, "more than 120 s ahead"),
        ({"organisation": "889640782"}, "not the client certificate's organisation"),
    ],
)
async def test_bad_tokens_are_unauthenticated(
    env: Env, changes: dict[str, object], message: str
) -> None:
    code, reason, details = await _status(env, env.client(AGENCY, token=_token(env, **changes)))
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "ACC-010")
    assert message in details
    assert not any(env.calls.values()), "no bank may be asked"


async def test_no_token_is_unauthenticated(env: Env) -> None:
    code, reason, details = await _status(env, env.client(AGENCY, token=None))
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "ACC-010")
    assert "bearer token is required" in details


async def test_missing_scope_and_wrong_consumer_are_denied(env: Env) -> None:
    code, reason, details = await _status(
        env, env.client(AGENCY, token=_token(env, scopes=["dsop:kontroll.skatt"]))
    )
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "ACC-011")
    assert "scope" in details
    # NAV (its own certificate and token) is no consumer of fi-utlegg.
    nav = "889640782"
    code, reason, details = await _status(
        env,
        env.client(nav, token=_token(env, organisation=nav, scopes=["dsop:kontroll.utlegg"])),
    )
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "ACC-011")
    assert "not a consumer of fi-utlegg" in details
    assert not any(env.calls.values())


def _certificate_without_organisation(cert_dir: Path) -> ClientTls:
    ca_key = load_pem_private_key((cert_dir / "ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((cert_dir / "ca.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "no organisation")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return ClientTls(
        ca=(cert_dir / "ca.pem").read_bytes(),
        cert=cert.public_bytes(serialization.Encoding.PEM),
        key=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


async def test_certificate_without_organisation_number_is_refused(
    make_env: EnvFactory, cert_dir: Path
) -> None:
    env = await make_env(token_jwks=None)  # mutual TLS alone: the certificate is the identity
    tls = _certificate_without_organisation(cert_dir)
    code, reason, details = await _status(env, HubClient(env.target, tls=tls))
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "ACC-010")
    assert "no organisation number" in details
    # The agency's own certificate suffices without tokens.
    code, _, _ = await _status(env, HubClient(env.target, tls=env.client_tls(AGENCY)))
    assert code == grpc.StatusCode.OK


async def test_a_stream_is_authenticated_once_and_refused_whole(env: Env) -> None:
    async with env.client(AGENCY, token=_token(env, audience="x")) as client:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in client.stream([_query(env)]):
                pass
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
