"""Scenario "streams": 10,000 agency streams held open, with a trickle of queries.

Agencies keep ``QueryStream`` calls open for the day. The driver opens ``--streams`` of them
over ``--connections`` connections (100 streams each, as HTTP/2 servers commonly allow), waits
until every one is open, then sends a trickle of tax accounts queries (Poisson,
``--trickle-qps``), each on a stream picked at random, timed from its intended send time to
its summary. The hub's resident memory is sampled throughout. The ceiling (echo relay) holds
the same streams, for comparison; there is no direct baseline (agencies hold no streams
today).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Final

from benchmarks import ceiling, fanout, fleet, load, plots, report
from benchmarks.fleet import Fleet, RssSampler
from benchmarks.processes import Child, Children
from clients.client import HubClient
from clients.services import CONSUMERS
from dsop.hub.v1 import hub_pb2
from providers.synthetic import SyntheticDataset, make_banks

NAME: Final = "streams"
HELP: Final = "10,000 agency streams held open with a trickle of queries: hub memory, latency"
SERVICE: Final = "skatt-kontroll"
AGENCY: Final = CONSUMERS[SERVICE]
TARGET_RSS_MB: Final = 1024.0
TARGET_P99_MS: Final = 20.0
OPEN_TIMEOUT_S: Final = 300.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--trickle-qps", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=30.0, help="trickle duration")
    parser.add_argument("--banks", type=int, default=20, help="simulated banks")
    fleet.add_common_arguments(parser, json_default="benchmarks/results/streams.json")
    parser.set_defaults(no_direct=True)


def run(args: argparse.Namespace) -> int:
    result = fleet.run(args, lambda tmp, c: _run(args, tmp, c), markdown, plots.streams)
    if result is None:
        return 1
    return 0 if result["answered"] == result["sent"] else 1


class Held:
    """Many open streams, each fed from its own inbox, and the trickle's latencies."""

    def __init__(self, clients: Sequence[HubClient], streams: int) -> None:
        self.clients = clients
        self.inboxes: list[asyncio.Queue[hub_pb2.Query | None]] = [
            asyncio.Queue() for _ in range(streams)
        ]
        self.opened = 0
        self.all_open = asyncio.Event()
        #: Set when no trickle query is waiting for its answer.
        self.drained = asyncio.Event()
        self.sent_at: dict[str, int] = {}
        self.histogram = report.new_histogram()
        self.answered = 0
        self.tasks: list[asyncio.Task[None]] = []

    def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._hold(index)) for index in range(len(self.inboxes))]

    async def _hold(self, index: int) -> None:
        inbox = self.inboxes[index]

        async def queries() -> AsyncIterator[hub_pb2.Query]:
            self.opened += 1
            if self.opened == len(self.inboxes):
                self.all_open.set()
            while (query := await inbox.get()) is not None:
                yield query

        client = self.clients[index % len(self.clients)]
        async for event in client.stream(queries(), batch_size=1, window=100):
            if event.HasField("summary"):
                sent = self.sent_at.pop(event.summary.query_id, None)
                if sent is not None:
                    report.record_us(self.histogram, time.perf_counter_ns() - sent)
                    self.answered += 1
                    if not self.sent_at:
                        self.drained.set()

    async def trickle(
        self, queries: Sequence[hub_pb2.Query], rate: float, seconds: float, seed: int
    ) -> int:
        """Sends Poisson arrivals at ``rate`` on random streams; returns how many."""
        rng = random.Random(seed)
        sent = 0
        async for intended in load.arrivals(rate, seconds, seed):
            query = queries[sent % len(queries)]
            self.sent_at[query.query_id] = intended
            self.inboxes[rng.randrange(len(self.inboxes))].put_nowait(query)
            sent += 1
        if self.sent_at:
            self.drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drained.wait(), 30)
        return sent

    async def close(self) -> None:
        for inbox in self.inboxes:
            inbox.put_nowait(None)
        await asyncio.wait(self.tasks, timeout=60)
        for task in self.tasks:
            task.cancel()


def make_queries(seed: int, banks: int, count: int) -> list[hub_pb2.Query]:
    parties = SyntheticDataset(seed, make_banks(banks, seed)).party_sample(count)
    return [fanout.accounts_query(party) for party in parties]


async def _hold_and_trickle(
    run: Fleet,
    server: Child,
    target: str,
    queries: Sequence[hub_pb2.Query],
    args: argparse.Namespace,
) -> dict[str, object]:
    idle = fleet.rss_mb(server.pid)
    sampler = RssSampler(server.pid)
    sampler.start()
    # Each client its own connection, as separate agencies would have.
    clients = [
        run.client(AGENCY, target, own_connection=True)
        for _ in range(max(1, min(args.connections, args.streams)))
    ]
    held = Held(clients, args.streams)
    began = time.monotonic()
    held.open()
    await asyncio.wait_for(held.all_open.wait(), OPEN_TIMEOUT_S)
    opened_at = time.monotonic() - began
    await asyncio.sleep(1.0)
    open_rss = fleet.rss_mb(server.pid)
    print(
        f"  {args.streams:,} streams open in {opened_at:.1f} s, RSS {open_rss:.0f} MB",
        file=sys.stderr,
    )
    sent = await held.trickle(queries, args.trickle_qps, args.seconds, args.seed)
    samples = await sampler.stop()
    await held.close()
    for client in clients:
        await client.close()
    return {
        "sent": sent,
        "answered": held.answered,
        "opened_in_s": round(opened_at, 2),
        "idle_rss_mb": round(idle, 1),
        "open_rss_mb": round(open_rss, 1),
        "peak_rss_mb": round(max(mb for _, mb in samples), 1),
        "rss_mb_per_stream_kb": round((open_rss - idle) * 1024 / args.streams, 1),
        "rss_mb_over_time": samples,
        **fleet.latency(held.histogram),
    }


async def _run(args: argparse.Namespace, tmp: Path, children: Children) -> report.Report:
    queries = make_queries(args.seed, args.banks, 2000)
    run = await fleet.simulated(
        children, tmp, banks=args.banks, seed=args.seed, insecure=args.insecure
    )
    await run.start_hub(children, 20_000, args.hub_args)
    assert run.hub is not None
    print(f"hub: {args.streams:,} streams", file=sys.stderr)
    hub = await _hold_and_trickle(run, run.hub, run.hub_target, queries, args)
    children.stop(run.hub)
    result = fleet.header(NAME, args.argv)
    result.update(
        {
            "streams": args.streams,
            "connections": args.connections,
            "trickle_qps": args.trickle_qps,
            "seconds": args.seconds,
            "banks": args.banks,
            "tls": run.tls.certs is not None,
            **hub,
        }
    )
    result["hub_peak_rss_mb"] = result.pop("peak_rss_mb")
    if not args.no_ceiling:
        relay, target = await run.start_ceiling(children)
        print("ceiling", file=sys.stderr)
        # The relay has no KAR: the queries name their banks.
        named = ceiling.name_banks(queries, args.seed, args.banks)
        result["ceiling"] = await _hold_and_trickle(run, relay, target, named, args)
        children.stop(relay)
    result["targets_met"] = {
        "hub_peak_rss_mb": result["hub_peak_rss_mb"] <= TARGET_RSS_MB,
        "p99_ms": result["latency_ms"]["p99"] <= TARGET_P99_MS,
    }
    return result


def markdown(result: report.Report) -> str:
    ceiling = result.get("ceiling") or {}
    rows = [
        ("streams held open", result["streams"], ceiling.get("streams", result["streams"])),
        ("all open after (s)", result["opened_in_s"], ceiling.get("opened_in_s")),
        ("RSS idle (MB)", result["idle_rss_mb"], ceiling.get("idle_rss_mb")),
        ("RSS with streams open (MB)", result["open_rss_mb"], ceiling.get("open_rss_mb")),
        ("peak RSS (MB)", result["hub_peak_rss_mb"], ceiling.get("peak_rss_mb")),
        ("per stream (kB)", result["rss_mb_per_stream_kb"], ceiling.get("rss_mb_per_stream_kb")),
        ("trickle queries sent / answered", f"{result['sent']} / {result['answered']}",
         f"{ceiling['sent']} / {ceiling['answered']}" if ceiling else None),
        ("trickle p50 (ms)", result["latency_ms"]["p50"], ceiling.get("latency_ms", {}).get("p50")),
        ("trickle p99 (ms)", result["latency_ms"]["p99"], ceiling.get("latency_ms", {}).get("p99")),
        ("trickle max (ms)", result["latency_ms"]["max"], ceiling.get("latency_ms", {}).get("max")),
    ]  # fmt: skip
    lines = [
        f"# Benchmark: {NAME}",
        "",
        f"{result['streams']:,} `QueryStream` calls over {result['connections']} connections, "
        f"{result['trickle_qps']:g} accounts queries/s for {result['seconds']:g} s on random "
        f"streams, {result['banks']} banks; TLS {'on' if result['tls'] else 'off'}. "
        f"{fleet.machine_line(result)}.",
        "",
        f"`{result['command']}`",
        "",
        *fleet.table(("figure", "hub", "ceiling (echo relay)"), rows),
        "",
        f"Targets: hub RSS ≤ {TARGET_RSS_MB:g} MB, trickle p99 ≤ {TARGET_P99_MS:g} ms; "
        f"met: {result['targets_met']}.",
    ]
    return "\n".join(lines) + "\n"
