"""The hub's Ed25519 checkpoint-signing key: created once, kept as PEM (mode 0600); its public
half is what verifiers are given, outside the log."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

log = logging.getLogger(__name__)


class AuditKeyError(ValueError):
    """A key file that cannot be used; the message names the file."""


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """A short, stable name for a key: hex of the first 8 bytes of SHA-256 of the raw public
    key. Checkpoints carry it, so a verifier knows which key signed after a rotation."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return hashlib.sha256(raw_public_key(public)).hexdigest()[:16]


def raw_public_key(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_pem(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    """The public key as PEM (SubjectPublicKeyInfo), to hand to verifiers."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AuditKeyError(f"{path}: {exc.strerror}") from None
    if os.stat(path).st_mode & 0o077:
        # Secrets mounted by orchestrators are often 0644; refusing would only push people to
        # copy the key around, so this warns.
        log.warning("audit signing key %s is readable by other users; use mode 0600", path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise AuditKeyError(f"{path}: not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditKeyError(f"{path}: not an Ed25519 key")
    return key


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The signing key at ``path``, created (PKCS#8 PEM, mode 0600) when missing.

    Creation is atomic: the key is written to a private temporary file and linked into place,
    so two processes starting together end up with the same key and nobody reads half a file.
    """
    if path.exists():
        return load_private_key(path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return load_private_key(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    log.info("created audit signing key %s (key id %s)", path, key_id(key))
    return key


def load_public_keys(path: Path) -> list[Ed25519PublicKey]:
    """Every Ed25519 public key in a PEM file (several may be concatenated, e.g. the keys of
    all replicas or of earlier years). A private key file is accepted too."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise AuditKeyError(f"{path}: {exc.strerror}") from None
    keys: list[Ed25519PublicKey] = []
    for block in text.split(b"-----BEGIN ")[1:]:
        pem = b"-----BEGIN " + block
        try:
            if b"PRIVATE KEY" in pem.split(b"\n", 1)[0]:
                private = serialization.load_pem_private_key(pem, password=None)
                public = private.public_key()
            else:
                public = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError) as exc:
            raise AuditKeyError(f"{path}: a PEM block is not a usable key") from exc
        if not isinstance(public, Ed25519PublicKey):
            raise AuditKeyError(f"{path}: holds a key that is not Ed25519")
        keys.append(public)
    if not keys:
        raise AuditKeyError(f"{path}: no PEM key found")
    return keys
