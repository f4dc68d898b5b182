"""The enforcement scenario end to end, tiny: real banks, hub and driver processes on loopback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from benchmarks.processes import ROOT

REPORT_KEYS = {
    "scenario", "queries", "distinct_parties", "banks", "answered", "refused", "bank_failures",
    "seconds", "throughput_qps", "latency_ms", "hub_cpu_s", "hub_cpu_us_per_query",
    "hub_peak_rss_mb", "banks_cpu_s", "driver_cpu_s", "tls", "machine", "baseline", "speedup",
    "bank_results",
}  # fmt: skip
BASELINE_KEYS = {"queries", "seconds", "throughput_qps", "latency_ms", "concurrency"}
LATENCY_KEYS = {"p50", "p95", "p99", "max"}
FAULT_KEYS = {"faulty", "bank_outcomes", "faulty_banks", "checks"}


SMALL = ("--queries", "300", "--banks", "5", "--baseline-queries", "100")


def _run(tmp_path: Path, *extra: str, size: tuple[str, ...] = SMALL) -> tuple[dict[str, Any], str]:
    """The report, and the directory the scenario worked in."""
    out = tmp_path / "enforcement.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "benchmarks", "enforcement", *size,
            "--warmup", "20", "--duration-limit", "60", "--json", str(out), *extra,
        ],
        # From an empty directory, to see that the run leaves nothing behind but its report.
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "speedup" in done.stdout
    assert out.with_suffix(".md").read_text().startswith("# Benchmark: enforcement")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enforcement.json", "enforcement.md"]
    report: dict[str, Any] = orjson.loads(out.read_bytes())
    workdir = re.search(r"working in (\S+)", done.stderr)
    assert workdir is not None, done.stderr
    return report, workdir[1]


def _no_children_left(workdir: str) -> None:
    # Every process the scenario started names its working directory on its command line
    # (certificates, registry): none may outlive the run, and neither may the directory.
    leftover = subprocess.run(
        ["pgrep", "-af", workdir], capture_output=True, text=True, check=False
    )
    assert leftover.stdout == "", leftover.stdout
    assert not Path(workdir).exists()


def test_every_query_is_answered_and_every_figure_is_positive(tmp_path: Path) -> None:
    report, workdir = _run(tmp_path)
    assert set(report) >= REPORT_KEYS
    assert report["scenario"] == "enforcement"
    assert report["tls"] is True
    assert report["queries"] == report["answered"] == 300
    assert report["distinct_parties"] == 300
    assert report["refused"] == report["bank_failures"] == 0
    assert not set(report) & FAULT_KEYS, "a healthy run's report is as before"
    for key in ("seconds", "throughput_qps", "hub_cpu_s", "hub_cpu_us_per_query",
                "hub_peak_rss_mb", "banks_cpu_s", "bank_results", "speedup"):  # fmt: skip
        assert isinstance(report[key], int | float) and report[key] > 0, key
    latency = report["latency_ms"]
    assert isinstance(latency, dict) and set(latency) == LATENCY_KEYS
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    # The ceiling ran the same queries through the echo relay, which echoes every bank answer
    # (accounts, then each account's details) where the hub sends one result per bank.
    relay = report["ceiling"]
    assert relay["answered"] == relay["queries"] == 300
    assert relay["bank_answers_echoed"] >= report["bank_results"]
    assert relay["throughput_qps"] > 0 and report["hub_fraction_of_ceiling"] > 0
    baseline = report["baseline"]
    assert isinstance(baseline, dict) and set(baseline) >= BASELINE_KEYS
    assert baseline["queries"] == baseline["answered"] == 100
    assert baseline["throughput_qps"] > 0 and baseline["latency_ms"]["p50"] > 0
    # The hub and today's clients see the same banks for the same queries.
    assert report["consistency"] == {
        "queries": 100,
        "hub_bank_results": baseline["bank_results"],
        "direct_bank_results": baseline["bank_results"],
        "equal": True,
    }
    _no_children_left(workdir)


def test_plaintext_run_with_two_bank_processes_and_remote_kar(tmp_path: Path) -> None:
    report, workdir = _run(tmp_path, "--insecure", "--bank-processes", "2", "--kar", "remote")
    assert report["tls"] is False
    assert report["bank_processes"] == 2
    assert report["answered"] == 300
    assert report["banks_cpu_s"] > 0  # read across the simulator's worker processes too
    _no_children_left(workdir)


def test_a_run_with_faulty_banks_keeps_every_answer_right(tmp_path: Path) -> None:
    # Enough direct queries that the direct client, which does not retry, meets the errors
    # the hub's retries hide.
    size = ("--queries", "2000", "--banks", "12", "--baseline-queries", "400")
    report, workdir = _run(tmp_path, "--faulty", "5", size=size)
    assert set(report) >= REPORT_KEYS | FAULT_KEYS
    checks = report["checks"]
    assert checks["passed"] is True, checks["problems"]
    assert checks["lost_queries"] == 0 and checks["violations"] == {}
    assert checks["answers_compared_with_direct"] > 100
    assert checks["answers_differing_from_direct"] == 0
    assert report["answered"] == 2000 and report["refused"] == 0
    banks = {bank["fault"]: bank for bank in report["faulty_banks"]}
    assert len(report["faulty_banks"]) == 5 and len(banks) == 4  # two slow, as the mix says
    # The bank that is down never answers; those that err fail with their own code.
    assert set(banks["down"]["outcomes"]) <= {
        "FAILED UNAVAILABLE ACC-100",
        "FAILED CIRCUIT_OPEN ACC-100",
    }
    assert banks["errors ACC-022 (refused)"]["outcomes"]["FAILED REFUSED ACC-022"] > 0
    retried = banks["errors ACC-100 (retried)"]
    assert retried["outcomes"]["COMPLETE"] > 0
    assert retried["answered_by_hub_not_direct"] > 0, "the hub's retries answer what direct lost"
    for bank in report["faulty_banks"]:
        assert bank["queries"] == sum(bank["outcomes"].values()) > 0
        assert 0 < bank["kar_share"] < 1
    outcomes = report["bank_outcomes"]
    assert sum(outcomes.values()) == report["bank_results"]
    assert (
        sum(n for key, n in outcomes.items() if key.startswith("FAILED")) == report["bank_failures"]
    )
    assert "Faulty banks (5)" in (tmp_path / "enforcement.md").read_text()
    _no_children_left(workdir)
