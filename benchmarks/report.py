"""Benchmark reports: latency summaries from HdrHistograms, the JSON file, the Markdown
summary beside it, and the table printed at the end of a run."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import grpc
import orjson
from hdrh.histogram import HdrHistogram

#: Latencies are recorded in microseconds, from 1 µs to an hour, to 3 significant digits.
LOWEST_US: Final = 1
HIGHEST_US: Final = 3_600_000_000
SIGNIFICANT_DIGITS: Final = 3
PERCENTILES: Final = (50.0, 95.0, 99.0)

Report = dict[str, Any]


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def record_us(histogram: HdrHistogram, elapsed_ns: int) -> None:
    """Records one latency; values outside the histogram's range are clamped, not lost."""
    histogram.record_value(min(max(elapsed_ns // 1000, LOWEST_US), HIGHEST_US))


def latency_ms(histogram: HdrHistogram) -> dict[str, float]:
    """p50, p95, p99 and max in milliseconds (zeros for an empty histogram)."""
    if histogram.get_total_count() == 0:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    values = histogram.get_percentile_to_value_dict(list(PERCENTILES))
    out = {f"p{percentile:g}": round(values[percentile] / 1000, 3) for percentile in PERCENTILES}
    out["max"] = round(histogram.get_max_value() / 1000, 3)
    return out


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "platform": platform.platform(),
        "implementation": sys.implementation.name,
    }


def code_version(root: Path) -> dict[str, Any]:
    """The commit measured, and whether the work tree differed from it (results of a dirty
    tree are not reproducible from the commit alone)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "--short", "HEAD"), "dirty": bool(status)}


def write(path: Path, report: Report, summary_text: str | None = None) -> Path:
    """Writes the JSON report and, beside it, the Markdown summary (the enforcement
    scenario's unless given); returns the latter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    summary = path.with_suffix(".md")
    summary.write_text(summary_text or markdown(report), encoding="utf-8")
    return summary


def _number(value: object, digits: int = 1) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _rows(report: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, hub, direct baseline) rows shared by the table and the Markdown."""
    base: Mapping[str, Any] = report.get("baseline") or {}
    hub_lat: Mapping[str, float] = report["latency_ms"]
    base_lat: Mapping[str, float] = base.get("latency_ms", {})
    rows = [
        ("queries", _number(report["queries"]), _number(base.get("queries", "-"))),
        ("answered", _number(report["answered"]), _number(base.get("answered", "-"))),
        ("seconds", _number(report["seconds"], 2), _number(base.get("seconds", "-"), 2)),
        (
            "throughput (queries/s)",
            _number(report["throughput_qps"]),
            _number(base.get("throughput_qps", "-")),
        ),
    ]
    rows.append(
        (
            "fully answered (queries/s)",
            _number(report["good_throughput_qps"]),
            _number(base.get("good_throughput_qps", "-")),
        )
    )
    rows += [
        (f"latency {key} (ms)", _number(hub_lat[key], 2), _number(base_lat.get(key, "-"), 2))
        for key in ("p50", "p95", "p99", "max")
    ]
    rows += [
        ("bank results", _number(report["bank_results"]), _number(base.get("bank_results", "-"))),
        ("refused", _number(report["refused"]), _number(base.get("refused", "-"))),
        (
            "bank failures",
            _number(report["bank_failures"]),
            _number(base.get("bank_failures", "-")),
        ),
        ("hub CPU (s)", _number(report["hub_cpu_s"], 2), "-"),
        ("hub CPU per query (µs)", _number(report["hub_cpu_us_per_query"]), "-"),
        ("hub peak RSS (MB)", _number(report["hub_peak_rss_mb"]), "-"),
        (
            "banks CPU (s)",
            _number(report["banks_cpu_s"], 2),
            _number(base.get("banks_cpu_s", "-"), 2),
        ),
        (
            "driver CPU (s)",
            _number(report["driver_cpu_s"], 2),
            _number(base.get("driver_cpu_s", "-"), 2),
        ),
    ]
    return rows


def _setup_line(report: Mapping[str, Any]) -> str:
    m = report["machine"]
    return (
        f"{report['banks']} banks in {report['bank_processes']} process(es), "
        f"{report['distinct_parties']:,} distinct parties, batch {report['batch_size']}, "
        f"window {report['window']:,}, KAR {report['kar']}, "
        f"TLS {'on' if report['tls'] else 'off'}; "
        f"{m['cpus']} CPUs, Python {m['python']}, grpcio {m['grpcio']}"
    )


def _fault_lines(report: Mapping[str, Any]) -> list[str]:
    """A run with faulty banks: each one's fault and outcomes, all outcomes, the checks."""
    if "faulty_banks" not in report:
        return []
    lines = ["", f"Faulty banks ({report['faulty']}):", ""]
    for bank in report["faulty_banks"]:
        outcomes = ", ".join(f"{key} {count:,}" for key, count in bank["outcomes"].items())
        elapsed = bank["hub_elapsed_ms"]
        lines.append(
            f"- {bank['bank_id']} ({bank['name']}, named by KAR for "
            f"{bank['kar_share']:.1%} of parties), {bank['fault']}: {bank['queries']:,} "
            f"queries; {outcomes}; hub p50/p99 {elapsed['p50']:,.0f}/{elapsed['p99']:,.0f} ms"
        )
    outcomes = ", ".join(f"{key} {count:,}" for key, count in report["bank_outcomes"].items())
    checks = report["checks"]
    lines += [
        "",
        f"Bank outcomes, all banks: {outcomes}.",
        "",
        f"Checks {'passed' if checks['passed'] else 'FAILED'}: "
        f"{checks['lost_queries']:,} queries lost, "
        f"{checks['answers_compared_with_direct']:,} bank answers compared with the direct "
        f"baseline, {checks['answers_differing_from_direct']:,} differing.",
    ]
    lines += [f"- {problem}" for problem in checks["problems"]]
    return lines


def markdown(report: Mapping[str, Any]) -> str:
    lines = [
        f"# Benchmark: {report['scenario']}",
        "",
        _setup_line(report) + ".",
        "",
        f"`{report['command']}`",
        "",
        "| figure | hub (one stream) | direct (today's clients) |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {hub} | {base} |" for name, hub, base in _rows(report)]
    if report.get("baseline"):
        lines += [
            "",
            f"Speedup (hub throughput / direct throughput): **{report['speedup']:.1f}×** "
            f"(counting only fully answered queries: {report['speedup_good']:.1f}×).",
        ]
    notes: Sequence[str] = report.get("notes", ())
    if notes:
        lines += ["", *[f"- {note}" for note in notes]]
    lines += _fault_lines(report)
    lines += _ceiling_lines(report)
    return "\n".join(lines) + "\n"


def _ceiling_lines(report: Mapping[str, Any]) -> list[str]:
    """The echo relay's run of the same queries, and the hub as a fraction of it."""
    relay = report.get("ceiling")
    if not relay:
        return []
    latency = relay["latency_ms"]
    return [
        "",
        f"Ceiling (echo relay: the hub's wire, none of its logic), {relay['answered']:,} of "
        f"the same queries over one stream: {relay['throughput_qps']:,.1f} queries/s, relay "
        f"CPU {relay['relay_cpu_us_per_query']:,.1f} µs per query, p50/p99 "
        f"{latency['p50']:,.0f}/{latency['p99']:,.0f} ms. The hub moves "
        f"**{report['hub_fraction_of_ceiling']:.0%}** of the ceiling's throughput.",
    ]


def table(report: Mapping[str, Any]) -> str:
    """The same figures as a plain-text table for the terminal."""
    rows = [("", "hub", "direct"), *_rows(report)]
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    out = [_setup_line(report)]
    for name, hub, base in rows:
        out.append(f"{name:<{width[0]}}  {hub:>{width[1]}}  {base:>{width[2]}}")
    if report.get("baseline"):
        out.append(
            f"speedup: {report['speedup']:.1f}x (fully answered: {report['speedup_good']:.1f}x)"
        )
    out += [f"note: {note}" for note in report.get("notes", ())]
    out += [line for line in _fault_lines(report) + _ceiling_lines(report) if line]
    return "\n".join(out)
