"""Authenticate: who is calling, established once per stream, never per query.

Two mechanisms, as in DSOP's production setup:

- mutual TLS: the agency's certificate carries its organisation number (the subject's
  organizationIdentifier "NTRNO-<orgno>", as Norwegian enterprise certificates do);
- bearer tokens shaped like Maskinporten's: a JWT from the configured issuer (keys from a JWKS
  file), audience = the hub, expiring at most 120 s ahead, with the `consumer` claim
  ``{"authority": "iso6523-actorid-upis", "ID": "0192:<orgno>"}`` and scopes that map to
  services.

When tokens are configured every stream needs one, and a client certificate, when present, must
name the same organisation. Without tokens the certificate is the identity. Verified
certificates and tokens are remembered (a token until it expires), so a reconnecting agency
does not pay for the signature again.

Behind a load balancer that terminates TLS (nginx's ``grpc_pass``), the connection is the
balancer's: its certificate names one of the configured ``proxies``. The agency is then known
by the certificate the balancer verified and forwards in ``x-client-cert`` (URL-escaped PEM,
nginx's ``$ssl_client_escaped_cert``), which the hub verifies again against its own CA, and by
its token. The header is believed only on a connection from a trusted balancer.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Final

import grpc
import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from hub.certs import organisation_number
from hub.context import Identity

CACHE_SIZE: Final = 4096
FORWARDED_CERT: Final = "x-client-cert"
CONSUMER_AUTHORITY: Final = "iso6523-actorid-upis"
_CONSUMER_ID: Final = re.compile(r"^0192:([0-9]{9})$")


class AuthError(Exception):
    """Authentication failed; the message says why (safe to send to the caller)."""


@dataclass(frozen=True, slots=True)
class TokenSettings:
    jwks: dict[str, Any]
    issuer: str
    audience: str
    #: Tokens may not expire further ahead than this (Maskinporten: 120 s).
    max_lifetime: int = 120
    #: Clock skew tolerated, seconds.
    leeway: int = 10
    algorithms: tuple[str, ...] = ("RS256", "PS256", "ES256")


@dataclass(slots=True)
class _Lru:
    size: int
    items: OrderedDict[Any, Any] = field(default_factory=OrderedDict)

    def get(self, key: Any) -> Any:
        value = self.items.get(key)
        if value is not None:
            self.items.move_to_end(key)
        return value

    def put(self, key: Any, value: Any) -> None:
        self.items[key] = value
        if len(self.items) > self.size:
            self.items.popitem(last=False)


class Authenticator:
    def __init__(
        self,
        tokens: TokenSettings | None,
        *,
        proxies: frozenset[str] = frozenset(),
        client_ca: bytes | None = None,
    ) -> None:
        """``proxies``: organisation numbers of trusted load balancers; ``client_ca``: the CA
        (PEM) that signs agencies' certificates, to check those a balancer forwards."""
        self.tokens = tokens
        self.proxies = proxies
        self._cas = x509.load_pem_x509_certificates(client_ca) if client_ca is not None else []
        self._keys = jwt.PyJWKSet.from_dict(tokens.jwks) if tokens is not None else None
        self._certificates = _Lru(CACHE_SIZE)
        self._forwarded = _Lru(CACHE_SIZE)
        self._verified = _Lru(CACHE_SIZE)

    def authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> Identity:
        """The caller's identity; raises AuthError when it cannot be established."""
        certificate = self._certificate_identity(context)
        if certificate is not None and certificate.organisation in self.proxies:
            certificate = self._forwarded_identity(context)
        token = _bearer(context)
        if self.tokens is None:
            if certificate is None:
                raise AuthError("a client certificate with an organisation number is required")
            return certificate
        if token is None:
            raise AuthError("a bearer token is required (authorization: Bearer <JWT>)")
        identity = self.verify_token(token)
        if certificate is not None and certificate.organisation != identity.organisation:
            raise AuthError("the token's consumer is not the client certificate's organisation")
        return identity

    def _certificate_identity(self, context: grpc.aio.ServicerContext[Any, Any]) -> Identity | None:
        pem = next(iter(context.auth_context().get("x509_pem_cert", ())), None)
        if pem is None:
            return None
        cached = self._certificates.get(pem)
        if cached is None:
            cert = x509.load_pem_x509_certificate(pem)
            org = organisation_number(cert)
            if org is None:
                cached = AuthError("the client certificate carries no organisation number")
            else:
                cached = Identity(organisation=org, subject=cert.subject.rfc4514_string())
            self._certificates.put(pem, cached)
        if isinstance(cached, AuthError):
            raise cached
        return cached  # type: ignore[no-any-return]

    def _forwarded_identity(self, context: grpc.aio.ServicerContext[Any, Any]) -> Identity | None:
        """The agency's certificate as the balancer forwarded it (None: it forwarded none)."""
        escaped = _metadata(context, FORWARDED_CERT)
        if not escaped:
            return None
        cached = self._forwarded.get(escaped)
        if cached is None:
            cached = self._check_forwarded(urllib.parse.unquote(escaped).encode())
            self._forwarded.put(escaped, cached)
        if isinstance(cached, AuthError):
            raise cached
        return cached  # type: ignore[no-any-return]

    def _check_forwarded(self, pem: bytes) -> Identity | AuthError:
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError:
            return AuthError("the forwarded client certificate cannot be read")
        # The balancer verified the whole chain; this is the second lock: issued by one of the
        # agencies' CAs the hub trusts, and valid now.
        if not any(_issued_by(cert, ca) for ca in self._cas):
            return AuthError("the forwarded client certificate is not signed by a trusted CA")
        now = time.time()
        valid = cert.not_valid_before_utc.timestamp() <= now <= cert.not_valid_after_utc.timestamp()
        if not valid:
            return AuthError("the forwarded client certificate is not valid now")
        org = organisation_number(cert)
        if org is None:
            return AuthError("the client certificate carries no organisation number")
        return Identity(organisation=org, subject=cert.subject.rfc4514_string())

    def verify_token(self, token: str) -> Identity:
        now = time.time()
        cached = self._verified.get(token)
        if cached is not None and cached[1] > now - (self.tokens.leeway if self.tokens else 0):
            return cached[0]  # type: ignore[no-any-return]
        identity, expires = self._verify(token, now)
        self._verified.put(token, (identity, expires))
        return identity

    def _verify(self, token: str, now: float) -> tuple[Identity, float]:
        settings = self.tokens
        assert settings is not None and self._keys is not None
        try:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid")
            keys = [k for k in self._keys.keys if kid is None or k.key_id == kid]
            if not keys:
                raise AuthError("token signed with an unknown key")
            claims = jwt.decode(
                token,
                keys[0].key,
                algorithms=list(settings.algorithms),
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError("token audience is not this hub") from None
        except jwt.InvalidIssuerError:
            raise AuthError("token issuer is not trusted") from None
        except jwt.InvalidSignatureError:
            raise AuthError("token signature is invalid") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token ({type(exc).__name__})") from None
        expires = float(claims["exp"])
        if expires > now + settings.max_lifetime + settings.leeway:
            raise AuthError(f"token expires more than {settings.max_lifetime} s ahead")
        consumer = claims.get("consumer")
        match = (
            _CONSUMER_ID.match(str(consumer.get("ID", "")))
            if isinstance(consumer, dict) and consumer.get("authority") == CONSUMER_AUTHORITY
            else None
        )
        if match is None:
            raise AuthError(
                "token has no consumer organisation (iso6523-actorid-upis 0192:<orgno>)"
            )
        scopes = frozenset(str(claims.get("scope", "")).split())
        subject = str(claims.get("client_id") or claims.get("sub") or "")
        return Identity(organisation=match.group(1), subject=subject, scopes=scopes), expires


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _metadata(context: grpc.aio.ServicerContext[Any, Any], name: str) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == name:
            return value.decode() if isinstance(value, bytes) else value
    return None


def _bearer(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    text = _metadata(context, "authorization")
    if text is not None and text.startswith("Bearer "):
        return text.removeprefix("Bearer ").strip()
    return None


def mint_token(
    key: Any,
    *,
    organisation: str,
    scopes: list[str],
    issuer: str,
    audience: str,
    lifetime: int = 120,
    kid: str = "issuer-dev",
    now: float | None = None,
) -> str:
    """A Maskinporten-shaped token, for tests and development."""
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": issuer,
        "aud": audience,
        "iat": issued,
        "exp": issued + lifetime,
        "scope": " ".join(scopes),
        "client_id": f"dev-{organisation}",
        "consumer": {"authority": CONSUMER_AUTHORITY, "ID": f"0192:{organisation}"},
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})
