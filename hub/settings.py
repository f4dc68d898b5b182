"""The hub's configuration file: one TOML file, environment overrides, command-line flags.

Every setting has a key (``audit.backend``), a type and a default; the same key is read from
the file (``[audit]`` table, ``backend = ...``), from the environment (``DSOP_HUB_`` and the
key in capitals with dots as underscores: ``DSOP_HUB_AUDIT_BACKEND``) and from a flag of
``dsop hub serve``. Later sources win: defaults, file, environment, flags. An unknown key, a
value of the wrong type or a rule broken stops the hub with a message naming the key; so does
``dsop hub check-config FILE``, which also opens every file the configuration names.

Example (every key, with its default, is in ``deploy/hub.toml``)::

    listen = "0.0.0.0:50050"
    workers = 2
    registry = "/etc/dsop/banks.json"

    [tls]
    cert = "/etc/dsop/tls/hub.pem"
    key = "/etc/dsop/tls/hub.key"
    ca = "/etc/dsop/tls/agencies-ca.pem"

    [audit]
    backend = "postgresql://dsop@db.internal/dsop"
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from hub.certs import DEV_ISSUER
from hub.config import ConfigError, HubConfig, TlsFiles
from hub.resilience import CallPolicy
from hub.shed import Limits

ENV_PREFIX: Final = "DSOP_HUB_"

Parse = Callable[[Any, str], Any]


def _str(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key}: must be a string, not {_kind(value)}")
    return value


def _path(value: Any, key: str) -> Path | None:
    text = _str(value, key)
    return Path(text).expanduser() if text else None


def _int(value: Any, key: str) -> int:
    if isinstance(value, str):
        try:
            return int(value.replace("_", ""))
        except ValueError:
            raise ConfigError(f"{key}: must be a whole number, not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}: must be a whole number, not {_kind(value)}")
    return value


def _float(value: Any, key: str) -> float:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}: must be a number, not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key}: must be a number, not {_kind(value)}")
    return float(value)


def _bool(value: Any, key: str) -> bool:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise ConfigError(f"{key}: must be true or false, not {value!r}")
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: must be true or false, not {_kind(value)}")
    return value


def _strings(value: Any, key: str) -> frozenset[str]:
    if isinstance(value, str):  # from the environment: comma-separated
        return frozenset(part.strip() for part in value.split(",") if part.strip())
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{key}: must be a list of strings")
    return frozenset(value)


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string"}.get(
        type(value), f"a {type(value).__name__}"
    )


@dataclass(frozen=True, slots=True)
class Key:
    name: str
    parse: Parse
    help: str


#: Every key of the file, in the order ``deploy/hub.toml`` shows them.
KEYS: Final = (
    Key("listen", _str, "host:port of the agency-facing gRPC server (port 0: any)"),
    Key("workers", _int, "processes sharing the port (SO_REUSEPORT)"),
    Key("registry", _path, "the bank registry file (JSON)"),
    Key("kar", _str, "embedded | grpc://HOST:PORT | the KAR REST API's URL"),
    Key("profiles", _path, "service profiles replacing the shipped ones (TOML)"),
    Key("insecure", _bool, "plaintext everywhere (test machines only)"),
    Key("certs", _path, "a `dsop certs init` directory: default TLS files and dev keys"),
    Key("tls.cert", _path, "the hub's server certificate (PEM)"),
    Key("tls.key", _path, "its private key (PEM)"),
    Key("tls.ca", _path, "CA of agencies' client certificates (mutual TLS when set)"),
    Key("bank_tls.cert", _path, "the hub's client certificate towards banks and KAR"),
    Key("bank_tls.key", _path, "its private key"),
    Key("bank_tls.ca", _path, "CA of the banks' and KAR's server certificates"),
    Key("tokens.jwks", _path, "token issuer keys (JWKS); when set, tokens are required"),
    Key("tokens.issuer", _str, "the trusted token issuer (iss)"),
    Key("tokens.audience", _str, "this hub's audience (aud)"),
    Key("police.jwks", _path, "the police's order-signing keys (JWKS)"),
    Key("proxies.trusted", _strings, "organisation numbers of load balancers in front"),
    Key("audit.backend", _str, "sqlite:PATH | postgresql://DSN | none"),
    Key("audit.schema", _str, "PostgreSQL schema of the audit tables"),
    Key("audit.key", _path, "Ed25519 key signing audit checkpoints (created if missing)"),
    Key("audit.writer", _str, "this process's chain id (default hub@HOST:PORT[/wN])"),
    Key("audit.checkpoints", _path, "also append every checkpoint to this file"),
    Key("audit.auditors", _strings, "organisations with the audit role"),
    Key("limits.max_in_flight", _int, "queries in flight in the hub"),
    Key("limits.max_per_consumer", _int, "queries in flight per consumer"),
    Key("limits.retry_after", _float, "retry hint with a refusal for load, seconds"),
    Key("limits.stream_window", _int, "queries in flight per agency stream"),
    Key("timeouts.query", _float, "seconds per query when the agency sets no deadline"),
    Key("timeouts.bank", _float, "seconds per bank call"),
    Key("timeouts.drain_grace", _float, "seconds queries may take to finish on SIGTERM"),
    Key("banks.max_retries", _int, "retries of a read on UNAVAILABLE"),
    Key("banks.retry_ratio", _float, "retries as a share of calls, at most"),
    Key("banks.hedge_factor", _float, "hedge after the bank's p95 times this (0: off)"),
    Key("banks.breaker_failures", _int, "consecutive failures that open a bank's circuit"),
    Key("banks.breaker_open_for", _float, "seconds a circuit stays open before a probe"),
    Key("banks.max_batch", _int, "requests per message to a bank"),
    Key("banks.linger_ms", _float, "how long a batch to a bank waits for company"),
    Key("banks.max_message_bytes", _int, "the largest message accepted from a bank"),
    Key("metrics.listen", _str, 'host:port of /metrics ("": off); worker i: port + i'),
    Key("log.level", _str, "debug | info | warning | error"),
    Key("log.format", _str, "json (one object per line) | text"),
)
BY_NAME: Final = {key.name: key for key in KEYS}


def env_name(key: str) -> str:
    return ENV_PREFIX + key.replace(".", "_").upper()


_BY_ENV: Final = {env_name(key.name): key for key in KEYS}
assert len(_BY_ENV) == len(KEYS), "two keys share an environment variable"

LOG_LEVELS: Final = ("debug", "info", "warning", "error")


def read_file(path: Path) -> dict[str, Any]:
    """The file's settings as {key: raw value}; unknown keys and tables are errors."""
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    flat: dict[str, Any] = {}
    _flatten(raw, "", flat, path)
    return flat


def _flatten(table: Mapping[str, Any], prefix: str, out: dict[str, Any], path: Path) -> None:
    for name, value in table.items():
        key = prefix + name
        if isinstance(value, dict):
            if not any(known.startswith(key + ".") for known in BY_NAME):
                raise ConfigError(f"{path}: [{key}]: unknown table ({_tables()})")
            _flatten(value, key + ".", out, path)
        elif key in BY_NAME:
            out[key] = value
        else:
            raise ConfigError(f"{path}: {key}: unknown key{_suggest(key)}")


def _tables() -> str:
    tables = sorted({name.split(".")[0] for name in BY_NAME if "." in name})
    return "known: " + ", ".join(f"[{table}]" for table in tables)


def _suggest(key: str) -> str:
    table = key.rpartition(".")[0]
    near = [name for name in BY_NAME if name.rpartition(".")[0] == table]
    return f" (known here: {', '.join(near)})" if near else ""


def read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings from ``DSOP_HUB_*`` variables; an unknown one is an error (a typo would
    otherwise be silently ignored)."""
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = _BY_ENV.get(name)
        if key is None:
            raise ConfigError(f"{name}: unknown setting (see `dsop hub check-config --keys`)")
        out[key.name] = value
    return out


def load(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> HubConfig:
    """The configuration from defaults, the file, the environment and flags, checked."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw.update(read_file(path))
    raw.update(read_env(environ or {}))
    raw.update({key: value for key, value in (flags or {}).items() if value is not None})
    values = {key: BY_NAME[key].parse(value, key) for key, value in raw.items()}
    config = build(values)
    config.check()
    return config


def build(values: Mapping[str, Any]) -> HubConfig:
    """A HubConfig from parsed values by key; missing keys keep their defaults."""
    base = HubConfig()
    get = values.get

    certs: Path | None = get("certs")
    insecure = bool(get("insecure", False))

    def in_certs(name: str) -> Path | None:
        return certs / name if certs is not None else None

    def tls(prefix: str, own: str) -> TlsFiles | None:
        files = TlsFiles(
            cert=get(f"{prefix}.cert") or in_certs(f"{own}.pem"),
            key=get(f"{prefix}.key") or in_certs(f"{own}.key"),
            ca=get(f"{prefix}.ca") or in_certs("ca.pem"),
        )
        return None if files == TlsFiles() else files

    jwks: Path | None = get("tokens.jwks")
    issuer: str = get("tokens.issuer", "")
    dev_jwks = in_certs("issuer-jwks.json")
    if jwks is None and dev_jwks is not None and dev_jwks.exists():
        jwks, issuer = dev_jwks, issuer or DEV_ISSUER
    police: Path | None = get("police.jwks")
    dev_police = in_certs("police-jwks.json")
    if police is None and dev_police is not None and dev_police.exists():
        police = dev_police
    calls = base.calls
    limits = base.limits
    return replace(
        base,
        listen=get("listen", base.listen),
        workers=get("workers", base.workers),
        registry=get("registry", base.registry),
        kar=get("kar", base.kar),
        profiles=get("profiles", base.profiles),
        insecure=insecure,
        tls=None if insecure else tls("tls", "hub"),
        bank_tls=None if insecure else tls("bank_tls", "hub"),
        token_jwks=jwks,
        token_issuer=issuer,
        token_audience=get("tokens.audience", base.token_audience),
        police_jwks=police,
        proxies=get("proxies.trusted", base.proxies),
        audit=get("audit.backend", base.audit),
        audit_schema=get("audit.schema", base.audit_schema),
        audit_key=get("audit.key") or base.audit_key,
        audit_writer=get("audit.writer", base.audit_writer),
        audit_checkpoints=get("audit.checkpoints", base.audit_checkpoints),
        auditors=get("audit.auditors", base.auditors),
        limits=Limits(
            max_in_flight=get("limits.max_in_flight", limits.max_in_flight),
            max_per_consumer=get("limits.max_per_consumer", limits.max_per_consumer),
            retry_after=get("limits.retry_after", limits.retry_after),
        ),
        stream_window=get("limits.stream_window", base.stream_window),
        query_timeout=get("timeouts.query", base.query_timeout),
        drain_grace=get("timeouts.drain_grace", base.drain_grace),
        calls=CallPolicy(
            timeout=get("timeouts.bank", calls.timeout),
            max_retries=get("banks.max_retries", calls.max_retries),
            retry_ratio=get("banks.retry_ratio", calls.retry_ratio),
            hedge_factor=get("banks.hedge_factor", calls.hedge_factor),
            breaker_failures=get("banks.breaker_failures", calls.breaker_failures),
            breaker_open_for=get("banks.breaker_open_for", calls.breaker_open_for),
        ),
        bank_max_batch=get("banks.max_batch", base.bank_max_batch),
        bank_linger=get("banks.linger_ms", base.bank_linger * 1000) / 1000,
        bank_max_message_bytes=get("banks.max_message_bytes", base.bank_max_message_bytes),
        metrics_listen=get("metrics.listen", base.metrics_listen),
        log_level=get("log.level", base.log_level),
        log_format=get("log.format", base.log_format),
    )


def describe(config: HubConfig) -> list[str]:
    """The effective settings, one ``key = value`` line each, with secrets masked."""
    calls, limits = config.calls, config.limits
    values: dict[str, Any] = {
        "listen": config.listen,
        "workers": config.workers,
        "registry": config.registry,
        "kar": config.kar,
        "profiles": config.profiles or "(shipped)",
        "insecure": config.insecure,
        "tls.cert": config.tls.cert if config.tls else None,
        "tls.key": config.tls.key if config.tls else None,
        "tls.ca": config.tls.ca if config.tls else None,
        "bank_tls.cert": config.bank_tls.cert if config.bank_tls else None,
        "bank_tls.key": config.bank_tls.key if config.bank_tls else None,
        "bank_tls.ca": config.bank_tls.ca if config.bank_tls else None,
        "tokens.jwks": config.token_jwks,
        "tokens.issuer": config.token_issuer,
        "tokens.audience": config.token_audience,
        "police.jwks": config.police_jwks,
        "proxies.trusted": sorted(config.proxies),
        "audit.backend": mask_dsn(config.audit),
        "audit.schema": config.audit_schema,
        "audit.key": config.audit_key,
        "audit.writer": config.audit_writer or "(hub@HOST:PORT)",
        "audit.checkpoints": config.audit_checkpoints,
        "audit.auditors": sorted(config.auditors),
        "limits.max_in_flight": limits.max_in_flight,
        "limits.max_per_consumer": limits.max_per_consumer,
        "limits.retry_after": limits.retry_after,
        "limits.stream_window": config.stream_window,
        "timeouts.query": config.query_timeout,
        "timeouts.bank": calls.timeout,
        "timeouts.drain_grace": config.drain_grace,
        "banks.max_retries": calls.max_retries,
        "banks.retry_ratio": calls.retry_ratio,
        "banks.hedge_factor": calls.hedge_factor,
        "banks.breaker_failures": calls.breaker_failures,
        "banks.breaker_open_for": calls.breaker_open_for,
        "banks.max_batch": config.bank_max_batch,
        "banks.linger_ms": config.bank_linger * 1000,
        "banks.max_message_bytes": config.bank_max_message_bytes,
        "metrics.listen": config.metrics_listen or "(off)",
        "log.level": config.log_level,
        "log.format": config.log_format,
    }
    return [f"{key} = {'' if value is None else value}" for key, value in values.items()]


def mask_dsn(dsn: str) -> str:
    """A database URL without its password."""
    scheme, sep, rest = dsn.partition("://")
    if not sep or "@" not in rest:
        return dsn
    credentials, _, host = rest.rpartition("@")
    user = credentials.partition(":")[0]
    return f"{scheme}://{user}{':***' if ':' in credentials else ''}@{host}"


def verify_files(config: HubConfig) -> None:
    """Opens every file the configuration names, as start-up would; the first problem is
    raised naming its key. (The audit log and ports are left to start-up: checking them here
    would need the database and the network.)"""
    from hub.config import read_json  # noqa: PLC0415
    from hub.profiles import ProfileError, load_profiles  # noqa: PLC0415
    from hub.registry import Registry, RegistryError  # noqa: PLC0415

    assert config.registry is not None  # check() requires it
    try:
        Registry.load(config.registry)
    except RegistryError as exc:
        raise ConfigError(f"registry: {exc}") from exc
    if config.tls is not None:
        config.tls.server_credentials("tls")
    if config.bank_tls is not None:
        config.bank_tls.channel_credentials("bank_tls")
    try:
        load_profiles(config.profiles)
    except ProfileError as exc:
        raise ConfigError(f"profiles: {exc}") from exc
    if config.token_jwks is not None:
        read_json(config.token_jwks, "tokens.jwks")
    if config.police_jwks is not None:
        read_json(config.police_jwks, "police.jwks")
