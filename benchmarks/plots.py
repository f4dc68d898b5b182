"""PNG plots of the scenarios' reports (matplotlib, Agg backend: no display needed).

Each function takes a scenario's report and the directory to write to, and returns the files
written: latency CDFs, throughput and latency against offered load and fan-out width, and the
hub's memory over time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

Report = Mapping[str, Any]


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _cdf(ax: Axes, label: str, points: Sequence[Sequence[float]], style: str = "-") -> None:
    if not points:
        return
    ax.plot([ms for _, ms in points], [p for p, _ in points], style, label=label)


def _cdf_axes(ax: Axes, title: str) -> None:
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("percentile")
    ax.set_ylim(0, 100.5)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=8)


#: The ways a scenario answers, and how each is drawn.
_WAYS = (("hub", "o-"), ("direct", "s--"), ("ceiling", "^:"))


def _cdfs(points: Sequence[tuple[str, Mapping[str, Any]]], title: str, path: Path) -> Path:
    """One CDF per (label, step) for the hub (solid), and for direct (dashed, the same
    colour) where measured."""
    figure, ax = plt.subplots(figsize=(8, 5))
    colours = plt.get_cmap("viridis")
    for index, (label, step) in enumerate(points):
        colour = colours(index / max(1, len(points) - 1) * 0.9)
        for who, style in (("hub", "-"), ("direct", "--")):
            curve = step.get(who, {}).get("latency_cdf", [])
            if curve:
                ax.plot(
                    [ms for _, ms in curve],
                    [percentile for percentile, _ in curve],
                    style,
                    color=colour,
                    label=f"{who}, {label}",
                )
    _cdf_axes(ax, title)
    return _save(figure, path)


def _versus(
    xs: Sequence[float],
    steps: Sequence[Mapping[str, Any]],
    *,
    rate_key: str,
    names: tuple[str, str, str],
    path: Path,
    offered: bool = False,
) -> Path:
    """Throughput (``rate_key`` of each way) and latency p50/p99 against ``xs``; ``names``:
    the x axis, the throughput axis, what the plots are about."""
    xlabel, ylabel, about = names
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for who, style in _WAYS:
        if not all(step.get(who) for step in steps):
            continue
        left.plot(xs, [step[who][rate_key] for step in steps], style, label=who)
        for key, shade in (("p50", 1.0), ("p99", 0.5)):
            right.plot(
                xs,
                [step[who]["latency_ms"][key] for step in steps],
                style,
                alpha=shade,
                label=f"{who} {key}",
            )
    if offered:
        left.plot(xs, xs, "k:", alpha=0.4, label="offered")
    left.set_ylabel(ylabel)
    left.set_title(f"throughput vs {about}")
    right.set_yscale("log")
    right.set_ylabel("latency (ms, log scale)")
    right.set_title(f"latency vs {about}")
    for ax in (left, right):
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    return _save(figure, path)


def interactive(report: Report, directory: Path) -> list[Path]:
    steps = report["steps"]
    return [
        _cdfs(
            [(f"{step['rate']:g} q/s", step) for step in steps],
            "interactive: latency from the intended send time (open loop)",
            directory / "interactive-cdf.png",
        ),
        _versus(
            [step["rate"] for step in steps],
            steps,
            rate_key="achieved_qps",
            names=("offered load (queries/s)", "answered (queries/s)", "offered load"),
            path=directory / "interactive-load.png",
            offered=True,
        ),
    ]


def fanout(report: Report, directory: Path) -> list[Path]:
    widths = report["widths"]
    return [
        _cdfs(
            [(f"{width['banks']} banks", width) for width in widths],
            "fanout: latency per query",
            directory / "fanout-cdf.png",
        ),
        _versus(
            [width["banks"] for width in widths],
            widths,
            rate_key="bank_calls_per_s",
            names=("banks asked per query", "bank calls answered per second", "fan-out width"),
            path=directory / "fanout-width.png",
        ),
    ]


def transactions(report: Report, directory: Path) -> list[Path]:
    figure, ax = plt.subplots(figsize=(8, 4.5))
    series = [
        ("hub, agency reading at full speed", report["rss_mb_over_time"], "-"),
        (
            f"hub, agency reading {report['slow_reader']['pages_per_s']:g} pages/s",
            report["slow_reader"]["rss_mb_over_time"],
            "--",
        ),
    ]
    if report.get("ceiling"):
        series.append(
            ("ceiling relay (no flow control)", report["ceiling"]["rss_mb_over_time"], ":")
        )
    for label, samples, style in series:
        ax.plot([t for t, _ in samples], [mb for _, mb in samples], style, label=label)
    ax.set_xlabel("seconds since the query was sent")
    ax.set_ylabel("resident memory (MB)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"transactions: {report['transactions']:,} transactions, process memory over time")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    return [_save(figure, directory / "transactions-memory.png")]


def streams(report: Report, directory: Path) -> list[Path]:
    figure, ax = plt.subplots(figsize=(8, 5))
    _cdf(ax, f"hub, {report['streams']:,} open streams", report["latency_cdf"])
    if report.get("ceiling"):
        _cdf(ax, "ceiling relay", report["ceiling"]["latency_cdf"], ":")
    _cdf_axes(ax, "streams: latency of the trickle of queries")
    cdf_path = _save(figure, directory / "streams-cdf.png")
    figure, ax = plt.subplots(figsize=(8, 4.5))
    samples = report["rss_mb_over_time"]
    ax.plot([t for t, _ in samples], [mb for _, mb in samples], label="hub")
    ax.set_xlabel("seconds since the driver began opening streams (then the trickle)")
    ax.set_ylabel("hub resident memory (MB)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"streams: hub memory with {report['streams']:,} agency streams")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    return [cdf_path, _save(figure, directory / "streams-memory.png")]


#: Scenario name -> its plots.


def workers(report: Report, directory: Path) -> list[Path]:
    rows = report["rows"]
    counts = [row["workers"] for row in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    left.plot(counts, [row["throughput_qps"] for row in rows], "o-", label="hub")
    left.set_ylabel("queries answered per second")
    left.set_title("throughput vs hub processes")
    right.plot(counts, [row["hub_cores_used"] for row in rows], "o-", label="hub cores used")
    right.axhline(report["machine"]["cpus"], color="k", linestyle=":", label="machine's cores")
    right.set_ylabel("CPU cores")
    right.set_title("hub CPU vs hub processes")
    for ax in (left, right):
        ax.set_xlabel("hub processes (--workers)")
        ax.set_xticks(counts)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
        ax.grid(True, alpha=0.3)
    return [_save(figure, directory / "workers.png")]


BY_SCENARIO = {
    "interactive": interactive,
    "fanout": fanout,
    "transactions": transactions,
    "streams": streams,
    "workers": workers,
}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.plots REPORT.json ...``: draws the plots of saved reports
    again, beside each report."""
    import argparse  # noqa: PLC0415
    import json  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m benchmarks.plots", description=main.__doc__)
    parser.add_argument("reports", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for path in args.reports:
        report = json.loads(path.read_text())
        for written in BY_SCENARIO[report["scenario"]](report, path.parent):
            print(written)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
