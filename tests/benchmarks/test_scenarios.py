"""The scenarios after enforcement, each end to end at a tiny size: real banks, hub, relay
and driver processes on loopback; the report's keys and sanity, its Markdown and plots."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from benchmarks import plots
from benchmarks.processes import ROOT

LATENCY_KEYS = {"p50", "p95", "p99", "max"}
COMMON_KEYS = {"scenario", "command", "machine", "code"}
SMALL = {
    "interactive": ["--rates", "20,40", "--seconds", "1", "--banks", "4", "--parties", "50"],
    "fanout": ["--widths", "1,4", "--seconds", "1", "--parties", "50", "--concurrency", "4"],
    "transactions": ["--transactions", "20500", "--cycle", "5", "--slow-seconds", "1"],
    "streams": ["--streams", "60", "--connections", "3", "--seconds", "1", "--banks", "4"],
}
PLOTS = {
    "interactive": ["interactive-cdf.png", "interactive-load.png"],
    "fanout": ["fanout-cdf.png", "fanout-width.png"],
    "transactions": ["transactions-memory.png"],
    "streams": ["streams-cdf.png", "streams-memory.png"],
}


def _run(tmp_path: Path, scenario: str) -> dict[str, Any]:
    out = tmp_path / f"{scenario}.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", scenario, *SMALL[scenario], "--json", str(out)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.with_suffix(".md").read_text().startswith(f"# Benchmark: {scenario}")
    for name in PLOTS[scenario]:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    report: dict[str, Any] = orjson.loads(out.read_bytes())
    assert set(report) >= COMMON_KEYS
    assert report["scenario"] == scenario
    return report


def _sane_latency(part: dict[str, Any]) -> None:
    latency = part["latency_ms"]
    assert set(latency) == LATENCY_KEYS
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    cdf = part["latency_cdf"]
    assert cdf[-1][0] == 100.0 and [ms for _, ms in cdf] == sorted(ms for _, ms in cdf)


def test_interactive_answers_every_arrival_at_each_rate_hub_direct_and_ceiling(
    tmp_path: Path,
) -> None:
    report = _run(tmp_path, "interactive")
    assert [step["rate"] for step in report["steps"]] == [20.0, 40.0]
    for step in report["steps"]:
        for who in ("hub", "direct", "ceiling"):
            part = step[who]
            assert part["sent"] == part["answered"] > 0, who
            assert part["failed"] == 0 and not part["errors"], (who, part["errors"])
            assert part["achieved_qps"] > 0
            _sane_latency(part)


def test_fanout_asks_each_width_of_banks(tmp_path: Path) -> None:
    report = _run(tmp_path, "fanout")
    assert [w["banks"] for w in report["widths"]] == [1, 4]
    for width in report["widths"]:
        for who in ("hub", "direct", "ceiling"):
            part = width[who]
            assert part["answered"] > 0 and part["failed"] == 0, who
            assert part["bank_calls_per_s"] == pytest.approx(
                part["achieved_qps"] * width["banks"], rel=0.01
            )
            _sane_latency(part)
        assert width["hub_fraction_of_ceiling"] > 0


def test_transactions_stream_every_transaction_and_a_slow_reader_stays_bounded(
    tmp_path: Path,
) -> None:
    report = _run(tmp_path, "transactions")
    # 20,500: twenty full pages and a half page, cycling the five real ones.
    assert report["transactions"] == report["received"] == 20_500
    assert report["ceiling"]["received"] == report["baseline"]["received"] == 20_500
    assert report["transactions_per_s"] > 0 and report["fraction_of_ceiling"] > 0
    assert report["error"] is None
    assert report["hub_peak_rss_mb"] >= report["hub_idle_rss_mb"] > 0
    assert report["rss_mb_over_time"] and report["slow_reader"]["pages"] >= 1
    assert report["slow_reader"]["received"] < 20_500  # it stopped reading after a second
    assert set(report["targets_met"]) == {
        "transactions_per_s",
        "hub_rss_growth_mb",
        "slow_reader_rss_growth_mb",
    }
    # The plots can be drawn again from the saved report alone.
    plot = tmp_path / "transactions-memory.png"
    plot.unlink()
    assert plots.main([str(tmp_path / "transactions.json")]) == 0
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_streams_hold_every_stream_and_answer_the_trickle(tmp_path: Path) -> None:
    report = _run(tmp_path, "streams")
    assert report["streams"] == 60
    for part in (report, report["ceiling"]):
        assert part["sent"] == part["answered"] > 0
        assert part["open_rss_mb"] > 0
        _sane_latency(part)
    assert report["hub_peak_rss_mb"] >= report["open_rss_mb"]
    assert set(report["targets_met"]) == {"hub_peak_rss_mb", "p99_ms"}
