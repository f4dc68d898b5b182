"""``dsop hub serve`` and ``dsop hub check-config``: the hub's command line.

Every flag sets one key of the configuration file (see hub/settings.py); flags win over the
environment (``DSOP_HUB_*``), which wins over the file (``--config``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Final

#: flag -> (configuration key, type, help). The key names the setting in messages.
FLAGS: Final[tuple[tuple[str, str, type, str], ...]] = (
    ("--listen", "listen", str, "host:port (port 0: any; default 127.0.0.1:50050)"),
    ("--workers", "workers", int, "processes sharing the port (SO_REUSEPORT; default 1)"),
    ("--registry", "registry", str, "bank registry (JSON)"),
    ("--kar", "kar", str, "embedded | grpc://HOST:PORT | KAR REST URL (default embedded)"),
    ("--profiles", "profiles", str, "service profiles (default: shipped)"),
    ("--window", "limits.stream_window", int, "queries in flight per stream (20000)"),
    ("--max-in-flight", "limits.max_in_flight", int, "queries in flight in all (200000)"),
    ("--max-per-consumer", "limits.max_per_consumer", int, "per consumer (100000)"),
    ("--query-timeout", "timeouts.query", float, "seconds per query (60)"),
    ("--bank-timeout", "timeouts.bank", float, "seconds per bank call (30)"),
    ("--drain-grace", "timeouts.drain_grace", float, "seconds to drain on SIGTERM (10)"),
    ("--bank-retries", "banks.max_retries", int, "retries on UNAVAILABLE (2)"),
    ("--hedge-factor", "banks.hedge_factor", float, "hedge after p95 x this (0: off)"),
    ("--bank-max-batch", "banks.max_batch", int, "requests per message to a bank (1000)"),
    ("--bank-linger-ms", "banks.linger_ms", float, "batch linger towards banks (0)"),
    ("--bank-ca", "bank_tls.ca", str, "CA of the banks' certificates"),
    ("--bank-cert", "bank_tls.cert", str, "the hub's client certificate to banks"),
    ("--bank-key", "bank_tls.key", str, "its key"),
    ("--token-jwks", "tokens.jwks", str, "token issuer keys: tokens required"),
    ("--token-issuer", "tokens.issuer", str, "the trusted token issuer (iss)"),
    ("--token-audience", "tokens.audience", str, "this hub's audience (default dsop-hub)"),
    ("--police-jwks", "police.jwks", str, "police order-signing keys (JWKS)"),
    ("--audit", "audit.backend", str, "sqlite:PATH (default sqlite:dsop-audit.db) | "
     "postgresql://DSN | none"),
    ("--audit-schema", "audit.schema", str, "PostgreSQL schema (default dsop_audit)"),
    ("--audit-key", "audit.key", str, "Ed25519 signing key (default dsop-audit.key)"),
    ("--audit-writer", "audit.writer", str, "this process's chain id"),
    ("--audit-checkpoints", "audit.checkpoints", str, "also append checkpoints here"),
    ("--metrics-listen", "metrics.listen", str, "host:port of /metrics (default "
     "127.0.0.1:9464; '' off)"),
    ("--log-level", "log.level", str, "debug | info | warning | error (default info)"),
    ("--log-format", "log.format", str, "json | text (default json)"),
    ("--certs", "certs", str, "directory made by `dsop certs init` (hub.pem/.key, ca.pem)"),
    ("--tls-cert", "tls.cert", str, "server certificate (PEM)"),
    ("--tls-key", "tls.key", str, "server private key (PEM)"),
    ("--tls-ca", "tls.ca", str, "CA for client certificates (mutual TLS)"),
)  # fmt: skip


def _dest(key: str) -> str:
    return "cfg_" + key.replace(".", "_")


def add_hub_commands(commands: Any) -> None:
    hub = commands.add_parser("hub", help="run the hub").add_subparsers(
        dest="hub_command", required=True
    )
    serve = hub.add_parser(
        "serve",
        help="serve the hub",
        description="Serve the hub. Settings come from --config FILE, then DSOP_HUB_* "
        "environment variables, then these flags (each names its key in the file).",
    )
    serve.add_argument("--config", type=Path, help="the hub's TOML configuration file")
    for flag, key, kind, text in FLAGS:
        serve.add_argument(flag, type=kind, dest=_dest(key), help=f"{text} [{key}]")
    serve.add_argument(
        "--auditor",
        action="append",
        dest="cfg_audit_auditors",
        help="organisation with the audit role [audit.auditors]",
    )
    serve.add_argument(
        "--proxy",
        action="append",
        dest="cfg_proxies_trusted",
        help="organisation number of a trusted load balancer [proxies.trusted]",
    )
    serve.add_argument(
        "--insecure",
        action="store_const",
        const=True,
        dest="cfg_insecure",
        help="plaintext; logs a warning. Test machines only [insecure]",
    )
    serve.add_argument("--port-file", type=Path, help="write the bound port here when ready")
    serve.set_defaults(run=_serve)

    check = hub.add_parser(
        "check-config",
        help="check a configuration file (and the files it names)",
        description="Loads FILE with the environment's DSOP_HUB_* overrides, opens every file "
        "it names, and prints the effective settings; exits 1 naming the key at fault.",
    )
    check.add_argument("file", type=Path, nargs="?", help="the TOML file (none: defaults)")
    check.add_argument("--keys", action="store_true", help="list every key and its variable")
    check.set_defaults(run=_check_config)


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    keys = [key for _, key, _, _ in FLAGS] + ["audit.auditors", "proxies.trusted", "insecure"]
    return {key: getattr(args, _dest(key)) for key in keys}


def _serve(args: argparse.Namespace) -> int:
    from hub.config import ConfigError  # noqa: PLC0415
    from hub.main import serve  # noqa: PLC0415
    from hub.settings import load  # noqa: PLC0415

    try:
        config = load(args.config, os.environ, _flags(args))
        return serve(config, port_file=args.port_file)
    except ConfigError as exc:
        print(f"dsop hub serve: {exc}", file=sys.stderr)
        return 2


def _check_config(args: argparse.Namespace) -> int:
    from hub.config import ConfigError  # noqa: PLC0415
    from hub.settings import KEYS, describe, env_name, load, verify_files  # noqa: PLC0415

    if args.keys:
        for key in KEYS:
            print(f"{key.name:<28} {env_name(key.name):<36} {key.help}")
        return 0
    try:
        config = load(args.file, os.environ)
        verify_files(config)
    except ConfigError as exc:
        print(f"{args.file or 'configuration'}: {exc}", file=sys.stderr)
        return 1
    for line in describe(config):
        print(line)
    print(f"{args.file or 'configuration'}: ok", file=sys.stderr)
    return 0
