"""The workers scenario, tiny: one hub process, then two sharing the port, one PostgreSQL
audit log, several agency streams."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from benchmarks.processes import ROOT
from tests.hub.audit.audit_support import postgres_dsn


def test_one_and_two_workers_answer_every_query(tmp_path: Path) -> None:
    dsn = postgres_dsn()
    out = tmp_path / "workers.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "benchmarks", "workers", "--workers", "1,2",
            "--queries", "400", "--banks", "5", "--parties", "200", "--streams", "4",
            "--warmup", "40", "--duration-limit", "60", "--audit", dsn, "--json", str(out),
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = orjson.loads(out.read_bytes())
    assert [row["workers"] for row in result["rows"]] == [1, 2]
    for row in result["rows"]:
        assert row["answered"] == row["queries"] == 400
        assert row["throughput_qps"] > 0 and row["hub_cpu_us_per_query"] > 0
        assert set(row["latency_ms"]) >= {"p50", "p99"}
        assert not row["stream_errors"]
    assert "| 2 |" in out.with_suffix(".md").read_text()
