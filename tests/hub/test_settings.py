"""The configuration file, its environment overrides and flags, and `dsop hub check-config`."""

from __future__ import annotations

import io
import json
import logging
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import orjson
import pytest

from clients.cli import main
from hub.config import ConfigError
from hub.logs import JsonFormatter, QueryLog, TextFormatter
from hub.settings import KEYS, env_name, load, mask_dsn


def _registry(tmp_path: Path) -> Path:
    path = tmp_path / "banks.json"
    path.write_text(
        json.dumps({"banks": [{"id": "912345602", "name": "B", "target": "127.0.0.1:1"}]})
    )
    return path


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(text)
    return path


def test_a_file_sets_every_table(tmp_path: Path, cert_dir: Path) -> None:
    registry = _registry(tmp_path)
    path = _file(
        tmp_path,
        f"""
listen = "127.0.0.1:6000"
registry = "{registry}"
certs = "{cert_dir}"

[audit]
backend = "postgresql://dsop:secret@db/dsop"
auditors = ["974761076"]

[limits]
max_in_flight = 1000
stream_window = 50

[timeouts]
query = 20
bank = 5.5

[banks]
max_retries = 1
linger_ms = 2

[metrics]
listen = "0.0.0.0:9500"

[log]
level = "warning"
format = "text"
""",
    )
    config = load(path)
    assert config.listen == "127.0.0.1:6000"
    assert config.registry == registry
    assert config.tls is not None and config.tls.cert == cert_dir / "hub.pem"
    assert config.token_jwks == cert_dir / "issuer-jwks.json"  # dev keys from the certs dir
    assert config.audit == "postgresql://dsop:secret@db/dsop"
    assert config.auditors == frozenset({"974761076"})
    assert config.limits.max_in_flight == 1000 and config.stream_window == 50
    assert config.query_timeout == 20 and config.calls.timeout == 5.5
    assert config.calls.max_retries == 1 and config.bank_linger == pytest.approx(0.002)
    assert config.metrics_listen == "0.0.0.0:9500"
    assert (config.log_level, config.log_format) == ("warning", "text")


def test_environment_overrides_the_file_and_flags_override_both(tmp_path: Path) -> None:
    path = _file(tmp_path, f'insecure = true\nregistry = "{_registry(tmp_path)}"\nworkers = 1\n')
    env = {"DSOP_HUB_TIMEOUTS_BANK": "7", "DSOP_HUB_LIMITS_STREAM_WINDOW": "99"}
    config = load(path, env, {"limits.stream_window": 5, "listen": None})
    assert config.calls.timeout == 7.0
    assert config.stream_window == 5  # the flag wins
    assert config.listen == "127.0.0.1:50050"  # a flag not given changes nothing


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[limits]\nmax_inflight = 3\n", {}, r"limits\.max_inflight: unknown key \(known here"),
        ("[limitz]\nx = 1\n", {}, r"\[limitz\]: unknown table"),
        ("[limits]\nmax_in_flight = 'many'\n", {}, r"limits\.max_in_flight: must be a whole"),
        ("", {"DSOP_HUB_INSECURE": "maybe"}, r"insecure: must be true or false"),
        ("[tokens]\naudience = 3\n", {}, r"tokens\.audience: must be a string, not a number"),
        ("[timeouts]\nbank = 0\n", {}, r"timeouts\.bank: must be between"),
        ("[log]\nlevel = 'loud'\n", {}, r"log\.level: must be"),
        ("workers = 2\n", {}, r"workers: an SQLite audit log has one writer"),
        ("listen = 'nowhere'\n", {}, r"listen: must be HOST:PORT"),
        ("", {"DSOP_HUB_TIMEOUT_BANK": "3"}, r"DSOP_HUB_TIMEOUT_BANK: unknown setting"),
        ("", {"DSOP_HUB_WORKERS": "two"}, r"workers: must be a whole number"),
        ("listen = [", {}, r"not valid TOML"),
    ],
)
def test_a_bad_setting_is_named(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    path = _file(tmp_path, f'insecure = true\nregistry = "{_registry(tmp_path)}"\n' + text)
    with pytest.raises(ConfigError, match=message):
        load(path, env)


def test_tls_is_required_unless_plaintext_is_chosen(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tls: TLS is on by default"):
        load(_file(tmp_path, f'registry = "{_registry(tmp_path)}"\n'))


def test_every_key_has_its_own_variable() -> None:
    names = [env_name(key.name) for key in KEYS]
    assert len(set(names)) == len(names)
    assert env_name("audit.backend") == "DSOP_HUB_AUDIT_BACKEND"


def test_passwords_are_masked() -> None:
    assert mask_dsn("postgresql://dsop:s3cret@db:5432/x") == "postgresql://dsop:***@db:5432/x"
    assert mask_dsn("postgresql://dsop@db/x") == "postgresql://dsop@db/x"
    assert mask_dsn("sqlite:/var/a.db") == "sqlite:/var/a.db"


def test_check_config_prints_the_effective_settings(tmp_path: Path, cert_dir: Path) -> None:
    path = _file(
        tmp_path,
        f'registry = "{_registry(tmp_path)}"\ncerts = "{cert_dir}"\n'
        '[audit]\nbackend = "postgresql://u:pw@h/d"\n',
    )
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["hub", "check-config", str(path)])
    assert code == 0, err.getvalue()
    assert "audit.backend = postgresql://u:***@h/d" in out.getvalue()
    assert "pw" not in out.getvalue()
    assert err.getvalue().strip().endswith("ok")


def test_check_config_opens_the_files_it_names(tmp_path: Path) -> None:
    path = _file(tmp_path, 'insecure = true\nregistry = "missing.json"\n')
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["hub", "check-config", str(path)])
    assert code == 1
    assert "registry:" in err.getvalue() and "missing.json" in err.getvalue()

    broken = _file(tmp_path, f'registry = "{_registry(tmp_path)}"\n[tls]\ncert = "no.pem"\n')
    err = io.StringIO()
    with redirect_stderr(err):
        assert main(["hub", "check-config", str(broken)]) == 1
    assert "tls" in err.getvalue()


def test_check_config_lists_the_keys() -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["hub", "check-config", "--keys"]) == 0
    assert "DSOP_HUB_METRICS_LISTEN" in out.getvalue()
    assert len(out.getvalue().splitlines()) == len(KEYS)


def test_a_log_line_is_one_json_object_with_its_fields() -> None:
    record = logging.LogRecord("dsop.query", logging.INFO, __file__, 1, "query", None, None)
    record.fields = {"case_id": "c", "banks_asked": 3}
    line = JsonFormatter({"worker": 1}).format(record)
    entry = orjson.loads(line)
    assert entry["msg"] == "query" and entry["level"] == "info" and entry["worker"] == 1
    assert entry["case_id"] == "c" and entry["banks_asked"] == 3
    assert entry["ts"].endswith("Z")
    assert "case_id=c" in TextFormatter().format(record)


def test_the_shipped_example_names_every_key_and_parses() -> None:
    from hub.settings import read_file  # noqa: PLC0415

    example = Path(__file__).resolve().parents[2] / "deploy" / "hub.toml"
    assert set(read_file(example)) == {key.name for key in KEYS}
    config = load(example, {"DSOP_HUB_CERTS": ""})
    assert config.workers == 2 and config.audit.startswith("postgresql://")


def test_query_lines_are_written_together_in_the_logs_format() -> None:
    out = io.StringIO()
    query_log = QueryLog()
    query_log.configure(enabled=True, fmt="json", stream=out, static={"worker": 0})
    query_log.add({"case_id": "a", "banks_asked": 2})
    query_log.add({"case_id": "b", "banks_asked": 1})  # no loop: each is written at once
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [line["case_id"] for line in lines] == ["a", "b"]
    assert lines[0]["msg"] == "query" and lines[0]["worker"] == 0
    text = io.StringIO()
    query_log.configure(enabled=True, fmt="text", stream=text)
    query_log.add({"case_id": "c"})
    assert text.getvalue().rstrip().endswith("dsop.query: query case_id=c")
