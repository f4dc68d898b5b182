"""Behind a trusted load balancer: the agency is known by the certificate the balancer
forwards (checked again against the agencies' CA) and its token, never by the header alone."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import orjson
import pytest

from clients.devtokens import DevTokens
from hub import certs
from hub.auth import FORWARDED_CERT, Authenticator, AuthError, TokenSettings
from hub.certs import DEV_AUDIENCE, DEV_ISSUER, DEV_PROXY


class _Context:
    """What the authenticator reads of a call: the peer's certificate and the metadata."""

    def __init__(self, peer_pem: bytes | None, metadata: dict[str, str]) -> None:
        self.peer_pem = peer_pem
        self.metadata = metadata

    def auth_context(self) -> dict[str, list[bytes]]:
        return {"x509_pem_cert": [self.peer_pem]} if self.peer_pem else {}

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return tuple(self.metadata.items())


def _call(cert_dir: Path, peer: str | None, forwarded: str | None, token: str | None) -> Any:
    metadata = {}
    if forwarded is not None:
        metadata[FORWARDED_CERT] = urllib.parse.quote((cert_dir / forwarded).read_text())
    if token is not None:
        metadata["authorization"] = f"Bearer {token}"
    return _Context((cert_dir / peer).read_bytes() if peer else None, metadata)


def _authenticator(cert_dir: Path, tokens: bool) -> Authenticator:
    settings = (
        TokenSettings(
            orjson.loads((cert_dir / "issuer-jwks.json").read_bytes()), DEV_ISSUER, DEV_AUDIENCE
        )
        if tokens
        else None
    )
    return Authenticator(
        settings, proxies=frozenset({DEV_PROXY}), client_ca=(cert_dir / "ca.pem").read_bytes()
    )


def test_the_forwarded_certificate_and_the_token_name_the_agency(cert_dir: Path) -> None:
    auth = _authenticator(cert_dir, tokens=True)
    token = DevTokens(cert_dir, "974761076")()
    context = _call(cert_dir, "proxy.pem", "agency-974761076.pem", token)
    assert auth.authenticate(context).organisation == "974761076"
    # Another agency's token with this agency's certificate is refused, as without a balancer.
    other = DevTokens(cert_dir, "889640782")()
    with pytest.raises(AuthError, match="not the client certificate's organisation"):
        auth.authenticate(_call(cert_dir, "proxy.pem", "agency-974761076.pem", other))


def test_without_tokens_the_forwarded_certificate_is_the_identity(cert_dir: Path) -> None:
    auth = _authenticator(cert_dir, tokens=False)
    context = _call(cert_dir, "proxy.pem", "agency-915429785.pem", None)
    assert auth.authenticate(context).organisation == "915429785"
    with pytest.raises(AuthError, match="client certificate"):
        auth.authenticate(_call(cert_dir, "proxy.pem", None, None))


def test_a_forwarded_certificate_from_another_ca_is_refused(cert_dir: Path, tmp_path: Path) -> None:
    certs.init(tmp_path, {"974761076": "Skatteetaten"})  # same names, another CA
    auth = _authenticator(cert_dir, tokens=False)
    context = _call(cert_dir, "proxy.pem", None, None)
    context.metadata[FORWARDED_CERT] = urllib.parse.quote(
        (tmp_path / "agency-974761076.pem").read_text()
    )
    with pytest.raises(AuthError, match="not signed by a trusted CA"):
        auth.authenticate(context)


def test_the_header_means_nothing_on_an_agency_connection(cert_dir: Path) -> None:
    auth = _authenticator(cert_dir, tokens=False)
    # An agency claiming to be another by sending the header itself stays itself.
    context = _call(cert_dir, "agency-974761076.pem", "agency-915429785.pem", None)
    assert auth.authenticate(context).organisation == "974761076"
