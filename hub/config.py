"""The hub's configuration: frozen, checked once at start-up.

A bad setting stops the process with a message naming the setting; nothing is checked per
request at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import orjson

from hub.resilience import CallPolicy
from hub.shed import Limits


class ConfigError(ValueError):
    """A setting is missing or wrong; the message names it."""


def read_json(path: Path, setting: str) -> dict[str, Any]:
    try:
        value = orjson.loads(_read(path, setting))
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{setting}: {path} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{setting}: {path} must hold a JSON object")
    return value


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror}") from exc


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files: this side's certificate and key, and the CA that signs the other side's
    certificates (for a server: clients must present one; for a client: the server's)."""

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None

    def server_credentials(self, setting: str) -> grpc.ServerCredentials:
        if self.cert is None or self.key is None:
            raise ConfigError(f"{setting}: a certificate and its key are required")
        ca = _read(self.ca, f"{setting}.ca") if self.ca is not None else None
        return grpc.ssl_server_credentials(
            [(_read(self.key, f"{setting}.key"), _read(self.cert, f"{setting}.cert"))],
            root_certificates=ca,
            require_client_auth=ca is not None,
        )

    def channel_credentials(self, setting: str) -> grpc.ChannelCredentials:
        if (self.cert is None) != (self.key is None):
            raise ConfigError(f"{setting}: give both a certificate and its key, or neither")
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca, f"{setting}.ca") if self.ca is not None else None,
            private_key=_read(self.key, f"{setting}.key") if self.key is not None else None,
            certificate_chain=_read(self.cert, f"{setting}.cert")
            if self.cert is not None
            else None,
        )


@dataclass(frozen=True, slots=True)
class HubConfig:
    #: host:port the hub listens on (port 0: any free port).
    listen: str = "127.0.0.1:50050"
    #: Processes serving the port (SO_REUSEPORT); more than one needs a shared audit log.
    workers: int = 1
    #: The bank registry file (see hub.registry).
    registry: Path | None = None
    #: "embedded" (the synthetic register matching the registry's simulated banks),
    #: "grpc://HOST:PORT" for a remote dsop.kar.v1.KarService, or the KAR REST API v1's URL.
    kar: str = "embedded"
    #: The hub's server certificate; with ``tls.ca`` agencies must present certificates.
    tls: TlsFiles | None = None
    #: TLS towards banks and a remote KAR: their CA, and the hub's client certificate.
    bank_tls: TlsFiles | None = None
    #: Plaintext everywhere. Only by explicit choice; the hub logs a warning.
    insecure: bool = False
    #: Service profiles replacing the shipped ones (hub/data/profiles.toml).
    profiles: Path | None = None
    #: Token issuer keys (JWKS file); when set, every stream needs a bearer token.
    token_jwks: Path | None = None
    token_issuer: str = ""
    token_audience: str = "dsop-hub"
    #: The police's order-signing keys (JWKS file), for politi-utlevering's pol1 orders.
    police_jwks: Path | None = None
    #: Organisation numbers of the load balancers in front of the hub: a connection whose
    #: client certificate names one is the balancer's, and the agency is known by the
    #: certificate it forwards (x-client-cert) and its token, not by the connection.
    proxies: frozenset[str] = frozenset()
    #: Queries in flight per agency stream before the hub stops reading from it.
    stream_window: int = 20_000
    #: Longest a query may take when the agency sets no (shorter) deadline.
    query_timeout: float = 60.0
    #: How the hub calls banks: per-bank timeout, retries, hedging, circuit breaker.
    calls: CallPolicy = field(default_factory=CallPolicy)
    #: Queries in flight, in all and per consumer, before the hub sheds load.
    limits: Limits = field(default_factory=Limits)
    #: The audit log: "sqlite:PATH" (embedded, the default) or "postgresql://DSN" (several
    #: processes or replicas writing one log); "none" turns auditing off (tests, benchmarks).
    audit: str = "sqlite:dsop-audit.db"
    #: The PostgreSQL schema holding the log's tables.
    audit_schema: str = "dsop_audit"
    #: The hub's Ed25519 key signing audit checkpoints (created when missing).
    audit_key: Path = Path("dsop-audit.key")
    #: This process's chain in the log; stable across restarts, unique among live writers.
    #: Default: "hub@<host>:<port>".
    audit_writer: str = ""
    #: Organisations allowed to look up disclosures without a token carrying "dsop:audit".
    auditors: frozenset[str] = frozenset()
    #: Append every audit checkpoint to this file too (ship it off the host).
    audit_checkpoints: Path | None = None
    #: On SIGTERM: how long in-flight queries may take to finish.
    drain_grace: float = 10.0
    #: Requests per message to a bank, at most.
    bank_max_batch: int = 1000
    #: The largest message accepted from a bank.
    bank_max_message_bytes: int = 64 * 1024 * 1024
    #: How long a bank batch waits for company (seconds); 0 sends on the next loop turn.
    bank_linger: float = 0.0
    #: host:port of the Prometheus endpoint (/metrics); "" turns it off. With several
    #: workers, worker i serves it on port + i.
    metrics_listen: str = "127.0.0.1:9464"
    #: Log level (debug, info: one line per query, warning, error) and format (json, text).
    log_level: str = "info"
    log_format: str = "json"

    def check(self) -> None:
        """Stops start-up with a message naming the setting's key (as in the TOML file)."""
        if self.registry is None:
            raise ConfigError("registry: required, the bank registry file")
        if not self.insecure and self.tls is None:
            raise ConfigError(
                "tls: TLS is on by default; give the hub's certificate and key "
                "(tls.cert and tls.key, or certs) or choose plaintext explicitly (insecure)"
            )
        if self.token_jwks is not None and not self.token_issuer:
            raise ConfigError("tokens.issuer: required with tokens.jwks (the issuer to trust)")
        if not (self.kar == "embedded" or self.kar.startswith(("grpc://", "https://", "http://"))):
            raise ConfigError(
                "kar: must be 'embedded', 'grpc://HOST:PORT' or the REST API's URL "
                "(https://HOST:PORT/kar-ws/api/v1)"
            )
        if not (
            self.audit == "none"
            or self.audit.startswith(("sqlite:", "postgresql://", "postgres://"))
        ):
            raise ConfigError("audit.backend: must be sqlite:PATH, postgresql://DSN or none")
        if not self.audit_schema.isidentifier():
            raise ConfigError("audit.schema: must be a plain identifier (letters, digits, _)")
        _check_address("listen", self.listen)
        if self.metrics_listen:
            _check_address("metrics.listen", self.metrics_listen)
        if not 1 <= self.workers <= 64:
            raise ConfigError("workers: must be between 1 and 64")
        if self.workers > 1:
            if self.listen.rpartition(":")[2] == "0":
                raise ConfigError("workers: several workers share one port; give listen a port")
            if self.audit.startswith("sqlite:"):
                raise ConfigError(
                    "workers: an SQLite audit log has one writer process; with several "
                    "workers use audit.backend = postgresql://DSN"
                )
        if not 0 < self.query_timeout <= 3600:
            raise ConfigError("timeouts.query: must be between 0 and 3600 seconds")
        if not 0 < self.calls.timeout <= 3600:
            raise ConfigError("timeouts.bank: must be between 0 and 3600 seconds")
        if not 0 <= self.drain_grace <= 3600:
            raise ConfigError("timeouts.drain_grace: must be between 0 and 3600 seconds")
        if not 0 <= self.calls.max_retries <= 10:
            raise ConfigError("banks.max_retries: must be between 0 and 10")
        if not 0 <= self.calls.retry_ratio <= 1:
            raise ConfigError("banks.retry_ratio: must be between 0 and 1")
        if self.calls.hedge_factor < 0:
            raise ConfigError("banks.hedge_factor: must not be negative")
        if self.calls.breaker_failures < 1 or self.calls.breaker_open_for <= 0:
            raise ConfigError(
                "banks.breaker_failures, banks.breaker_open_for: must be at least 1 and above 0"
            )
        if self.limits.max_in_flight < 1:
            raise ConfigError("limits.max_in_flight: must be at least 1")
        if self.limits.max_per_consumer < 1:
            raise ConfigError("limits.max_per_consumer: must be at least 1")
        if self.stream_window < 1:
            raise ConfigError("limits.stream_window: must be at least 1")
        if not 1 <= self.bank_max_batch <= 100_000:
            raise ConfigError("banks.max_batch: must be between 1 and 100000")
        if not 0 <= self.bank_linger <= 0.1:
            raise ConfigError("banks.linger_ms: must be between 0 and 100 ms")
        if not 1024 <= self.bank_max_message_bytes <= 1024**3:
            raise ConfigError("banks.max_message_bytes: must be between 1 KiB and 1 GiB")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError("log.level: must be debug, info, warning or error")
        if self.log_format not in ("json", "text"):
            raise ConfigError("log.format: must be json or text")


def _check_address(key: str, address: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{key}: must be HOST:PORT (port 0: any), not {address!r}")
