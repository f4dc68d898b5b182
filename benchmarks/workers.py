"""Scenario "workers": enforcement throughput with 1, 2, 4 hub processes on one port.

The hub runs as ``dsop hub serve --workers N`` (SO_REUSEPORT): the kernel spreads agencies'
connections over the workers, so the load comes from several agency streams, each on its own
connection (as several agencies, or one agency's several batch jobs, would). Every worker
writes its own chain of one PostgreSQL audit log, the production set-up for more than one
process. The same simulator and the same queries serve every N; each N gets a fresh hub and a
fresh audit schema. Throughput grows with workers only while cores are free: on a 2-core
machine the banks and the load driver share the same two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
import psycopg
import uvloop

from benchmarks import enforcement, processes, report
from benchmarks.enforcement import AGENCY, HubRun, Options, drive_hub, prepare
from benchmarks.processes import Child, ChildFailed, Children, Tls
from clients.client import HubClient
from clients.devtokens import DevTokens

NAME: Final = "workers"
HELP: Final = "enforcement throughput with 1, 2, 4 hub processes sharing the port"
#: Each agency stream on its own connection, so SO_REUSEPORT can spread them.
OWN_CONNECTION: Final = (("grpc.use_local_subchannel_pool", 1),)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", default="1,2,4", help="hub process counts to measure")
    parser.add_argument("--queries", type=int, default=100_000, help="queries per hub size")
    parser.add_argument("--banks", type=int, default=100, help="simulated banks")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--parties", type=int, default=50_000)
    parser.add_argument("--streams", type=int, default=8, help="agency streams (connections)")
    parser.add_argument("--batch-size", type=int, default=1000, help="queries per message")
    parser.add_argument("--window", type=int, default=5000, help="queries in flight per stream")
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument(
        "--audit",
        default=os.environ.get(
            "DSOP_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
        ),
        help="the PostgreSQL audit log's DSN (a schema per run is made and dropped), or none",
    )
    parser.add_argument("--duration-limit", type=float, default=600.0)
    parser.add_argument("--json", type=Path, help="write the report here (and a .md beside it)")


def _options(args: argparse.Namespace) -> Options:
    return Options(
        queries=args.queries,
        banks=args.banks,
        seed=args.seed,
        parties=args.parties,
        bank_processes=1,
        baseline_queries=0,
        baseline_concurrency=1,
        batch_size=args.batch_size,
        window=args.window,
        warmup=args.warmup,
        kar="remote",
        no_audit=args.audit == "none",
        hub_args=[],
        insecure=False,
        duration_limit=args.duration_limit,
        json=None,
        logs=None,
    )


def _drop_schema(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                psycopg.sql.Identifier(schema)
            )
        )


async def _drive(
    target: str, tls: Tls, slices: Sequence[Sequence[Any]], options: Options
) -> tuple[list[HubRun], float]:
    token = DevTokens(tls.keys, AGENCY)
    client_tls = enforcement.client_tls(tls.certs)

    async def one(queries: Sequence[Any]) -> HubRun:
        async with HubClient(
            target, tls=client_tls, token=token, channel_options=OWN_CONNECTION
        ) as client:
            return await drive_hub(
                client,
                queries,
                batch_size=options.batch_size,
                window=options.window,
                time_limit=options.duration_limit,
            )

    began = time.perf_counter()
    runs = await asyncio.gather(*(one(part) for part in slices))
    return list(runs), time.perf_counter() - began


@dataclass(frozen=True, slots=True)
class _Bench:
    """What every hub size shares: the options, the queries, the banks and their KAR."""

    args: argparse.Namespace
    options: Options
    workload: enforcement.Workload
    tmp: Path
    children: Children
    banks: Child
    tls: Tls
    kar_port: int
    registry: Path


async def _measure(bench: _Bench, workers: int) -> dict[str, Any]:
    args, options, workload, tmp = bench.args, bench.options, bench.workload, bench.tmp
    children, banks, tls = bench.children, bench.banks, bench.tls
    port = processes.free_port_block(1)
    metrics = processes.free_port_block(workers)
    port_file = tmp / f"hub-{workers}.port"
    schema = f"bench_workers_{uuid.uuid4().hex[:10]}"
    audit = (
        ["--audit", "none"]
        if args.audit == "none"
        else ["--audit", args.audit, "--audit-schema", schema]
    )
    extra = [
        "--workers", str(workers), "--metrics-listen", f"127.0.0.1:{metrics}",
        "--audit-key", str(tmp / "audit.key"), "--log-level", "warning", *audit,
    ]  # fmt: skip
    hub = children.start(
        processes.hub(
            registry=bench.registry,
            port_file=port_file,
            window=options.window,
            kar=f"grpc://127.0.0.1:{bench.kar_port}",
            tls=tls,
            log=tmp / f"hub-{workers}.log",
            audit=True,
            listen=f"127.0.0.1:{port}",
            extra=extra,
        )
    )
    try:
        await processes.wait_for_file(port_file, hub, enforcement.READY_TIMEOUT_S)
        target = f"localhost:{port}"
        streams = args.streams
        await _drive(target, tls, [workload.warmup[i::streams] for i in range(streams)], options)
        slices = [workload.queries[i::streams] for i in range(streams)]
        hub_cpu = processes.tree_cpu_seconds(hub.pid)
        banks_cpu = processes.tree_cpu_seconds(banks.pid)
        runs, seconds = await _drive(target, tls, slices, options)
        hub_cpu = processes.tree_cpu_seconds(hub.pid) - hub_cpu
        banks_cpu = processes.tree_cpu_seconds(banks.pid) - banks_cpu
        rss = processes.tree_peak_rss_mb(hub.pid)
    finally:
        children.stop(hub)
        if args.audit != "none":
            _drop_schema(args.audit, schema)
    histogram = report.new_histogram()
    for run in runs:
        histogram.add(run.histogram)
    answered = sum(run.answered for run in runs)
    failures = sum(run.bank_failures for run in runs)
    errors = [run.stream_error for run in runs if run.stream_error]
    row = {
        "workers": workers,
        "queries": len(workload.queries),
        "answered": answered,
        "bank_failures": failures,
        "seconds": round(seconds, 3),
        "throughput_qps": round(answered / seconds, 1) if seconds else 0.0,
        "hub_cpu_s": round(hub_cpu, 2),
        "hub_cores_used": round(hub_cpu / seconds, 2) if seconds else 0.0,
        "hub_cpu_us_per_query": round(hub_cpu * 1e6 / answered, 1) if answered else 0.0,
        "banks_cpu_s": round(banks_cpu, 2),
        "hub_peak_rss_mb": round(rss, 1),
        "latency_ms": report.latency_ms(histogram),
        "stream_errors": errors,
    }
    print(
        f"workers={workers}: {answered:,} in {seconds:.1f} s = {row['throughput_qps']:,} q/s, "
        f"hub {row['hub_cores_used']} cores, {row['hub_cpu_us_per_query']} µs/query",
        file=sys.stderr,
    )
    return row


async def _run(args: argparse.Namespace, tmp: Path, children: Children) -> dict[str, Any]:
    counts = [int(part) for part in args.workers.split(",")]
    if any(count > 1 for count in counts) and args.audit == "none":
        print("note: without an audit log every worker runs unaudited", file=sys.stderr)
    options = _options(args)
    workload = prepare(options)
    keys = processes.make_certs(tmp / "certs")
    tls = Tls(keys, keys)
    base_port = processes.free_port_block(options.banks + 1)
    kar_port = base_port + options.banks
    registry = tmp / "registry.json"
    banks = children.start(
        processes.bank_simulator(
            banks=options.banks,
            seed=options.seed,
            base_port=base_port,
            processes=1,
            registry=registry,
            kar_port=kar_port,
            tls=tls,
            log=tmp / "banks.log",
        )
    )
    await processes.wait_for_file(registry, banks, enforcement.READY_TIMEOUT_S)
    bench = _Bench(args, options, workload, tmp, children, banks, tls, kar_port, registry)
    rows = [await _measure(bench, count) for count in counts]
    first = rows[0]["throughput_qps"] or 1.0
    for row in rows:
        row["speedup_vs_first"] = round(row["throughput_qps"] / first, 2)
    return {
        "scenario": NAME,
        "command": "python -m benchmarks " + shlex.join(args.argv),
        "banks": options.banks,
        "streams": args.streams,
        "audit": "none" if args.audit == "none" else "postgresql",
        "tls": True,
        "rows": rows,
        "machine": report.machine(),
        "code": report.code_version(processes.ROOT),
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# workers: {result['rows'][0]['queries']:,} enforcement queries per hub size, "
        f"{result['banks']} banks, {result['streams']} agency streams, "
        f"audit {result['audit']}, TLS",
        "",
        f"`{result['command']}`",
        "",
        "| hub processes | q/s | vs 1 | hub cores | hub µs/query | p50 / p99 ms | hub RSS MB |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        latency = row["latency_ms"]
        lines.append(
            f"| {row['workers']} | {row['throughput_qps']:,.0f} | {row['speedup_vs_first']} "
            f"| {row['hub_cores_used']} | {row['hub_cpu_us_per_query']:,.0f} "
            f"| {latency['p50']:,.0f} / {latency['p99']:,.0f} | {row['hub_peak_rss_mb']:,.0f} |"
        )
    machine = result["machine"]
    lines += ["", f"Machine: {machine.get('cpus')} CPUs, {machine.get('python')}.", ""]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="dsop-bench-workers-") as tmp:
        try:
            with Children() as children:
                result = uvloop.run(_run(args, Path(tmp), children))
        except ChildFailed as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 1
    text = markdown(result)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
        args.json.with_suffix(".md").write_text(text)
        from benchmarks import plots  # noqa: PLC0415  (matplotlib: only when writing)

        plots.workers(result, args.json.parent)
    healthy = all(
        row["answered"] == row["queries"] and not row["bank_failures"] and not row["stream_errors"]
        for row in result["rows"]
    )
    return 0 if healthy else 1
