"""A development certificate authority: `dsop certs init DIR`.

Creates a CA and certificates for the hub (server and client towards banks), the simulated
banks, and agencies. An agency certificate carries its organisation number the way Norwegian
enterprise certificates do, as the subject's organizationIdentifier "NTRNO-<orgno>". For
tests and demos only: production certificates come from a real CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The consumers of DSOP.md §1 with their organisation numbers.
AGENCIES: Final = {
    "974761076": "Skatteetaten",
    "915429785": "Politiet",
    "889640782": "NAV",
    "974760673": "Bronnoysundregistrene",
    "986186999": "Statens sivilrettsforvaltning",
    "991825827": "Digitaliseringsdirektoratet",
}
ORG_PREFIX: Final = "NTRNO-"
#: The development load balancer's organisation number (`proxy.pem`, for nginx in front).
DEV_PROXY: Final = "912345602"
#: The development token issuer and audience (`dsop certs init` makes the issuer's keys).
DEV_ISSUER: Final = "https://issuer.dev.dsop-hub.invalid/"
DEV_AUDIENCE: Final = "dsop-hub"
VALIDITY: Final = dt.timedelta(days=365)
_SANS: Final = x509.SubjectAlternativeName(
    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(
    directory: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = directory / f"{name}.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)


def _issue(
    subject: x509.Name,
    *,
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    usages: Iterable[x509.ObjectIdentifier],
    sans: bool,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        # Key identifiers, as real CAs issue them (path validation requires the authority's).
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(_SANS, critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _signing_key(directory: Path, name: str, kid: str) -> None:
    """An RSA key (PEM) and its public JWKS: the token issuer's or the police's."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = directory / f"{name}.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "use": "sig"})
    (directory / f"{name}-jwks.json").write_text(json.dumps({"keys": [jwk]}, indent=2))


def organisation_number(cert: x509.Certificate) -> str | None:
    """The organisation number a certificate carries, if any."""
    for attribute in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER):
        value = str(attribute.value)
        if value.startswith(ORG_PREFIX):
            return value.removeprefix(ORG_PREFIX)
    return None


def init(directory: Path, agencies: dict[str, str] | None = None) -> list[Path]:
    """Writes ca, hub, bank, proxy (a load balancer's, organisation DEV_PROXY) and
    agency-<orgno> certificates and keys (PEM) to ``directory``,
    and the keys and JWKS of a development token issuer (issuer.key, issuer-jwks.json) and of
    the police's order signing (police.key, police-jwks.json)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dsop-hub development CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(directory, "ca", ca_cert, ca_key)
    server, client = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
    for name, usages in (("hub", (server, client)), ("bank", (server,))):
        key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"dsop {name}")])
        _write(
            directory,
            name,
            _issue(subject, key=key, ca_cert=ca_cert, ca_key=ca_key, usages=usages, sans=True),
            key,
        )
    for orgno, org_name in (
        *(agencies if agencies is not None else AGENCIES).items(),
        (DEV_PROXY, "dsop load balancer"),
    ):
        key = _key()
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, org_name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, org_name),
                x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, f"{ORG_PREFIX}{orgno}"),
            ]
        )
        proxy = orgno == DEV_PROXY
        cert = _issue(
            subject,
            key=key,
            ca_cert=ca_cert,
            ca_key=ca_key,
            usages=(server, client) if proxy else (client,),
            sans=proxy,
        )
        _write(directory, "proxy" if proxy else f"agency-{orgno}", cert, key)
    _signing_key(directory, "issuer", "issuer-dev")
    _signing_key(directory, "police", "police-dev")
    return sorted(directory.iterdir())
