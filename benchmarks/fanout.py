"""Scenario "fanout": latency and throughput against the number of banks asked.

Tax accounts queries (``skatt-kontroll``, accounts list) that name their banks — 1, 10, 50
or 100 of the simulated banks — so each query is one call to each of that many banks (no
KAR). A fixed number of single ``Query`` calls stay in flight for a while at each width;
measured per width: queries and bank calls answered per second, and latency. The same queries
go through the echo relay (the ceiling) and as direct per-API calls (an agency calling each
bank's ``ListAccounts`` itself, concurrently).
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from benchmarks import fleet, interactive, load, plots, report
from benchmarks.enforcement import Meter
from benchmarks.processes import Children
from clients.client import make_query
from clients.services import CONSUMERS, MANDATES
from dsop.hub.v1 import hub_pb2
from hub.registry import Registry
from providers.synthetic import SyntheticDataset, make_banks

NAME: Final = "fanout"
HELP: Final = "latency and throughput against the number of banks asked (1 to 100)"
SERVICE: Final = "skatt-kontroll"
AGENCY: Final = CONSUMERS[SERVICE]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--widths", default="1,10,50,100", help="banks per query, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per width")
    parser.add_argument("--concurrency", type=int, default=16, help="queries in flight")
    parser.add_argument("--parties", type=int, default=2000, help="distinct parties")
    fleet.add_common_arguments(parser, json_default="benchmarks/results/fanout.json")


def run(args: argparse.Namespace) -> int:
    result = fleet.run(args, lambda tmp, c: _run(args, tmp, c), markdown, plots.fanout)
    if result is None:
        return 1
    return (
        0 if all(not w["hub"]["errors"] and not w["hub"]["failed"] for w in result["widths"]) else 1
    )


def accounts_query(
    party: str, banks: Sequence[str] = (), query_id: str | None = None
) -> hub_pb2.Query:
    """A tax accounts query (every account the party has a role on), naming ``banks``."""
    return make_query(
        service=SERVICE,
        legal_mandate=MANDATES[SERVICE],
        operation=hub_pb2.OPERATION_ACCOUNTS,
        party_id=party,
        only_primary_owner=False,
        requester_id="saksbehandler-1",
        banks=banks,
        query_id=query_id,
    )


def make_queries(
    parties: Sequence[str], banks: Sequence[str], width: int, rng: random.Random
) -> list[hub_pb2.Query]:
    """One query per party, each naming ``width`` banks drawn at random."""
    return [
        accounts_query(party, rng.sample(list(banks), width), str(index))
        for index, party in enumerate(parties)
    ]


async def _run(args: argparse.Namespace, tmp: Path, children: Children) -> report.Report:
    widths = [int(w) for w in args.widths.split(",")]
    banks = max(widths)
    parties = SyntheticDataset(args.seed, make_banks(banks, args.seed)).party_sample(args.parties)
    run = await fleet.simulated(children, tmp, banks=banks, seed=args.seed, insecure=args.insecure)
    bank_ids = sorted(Registry.load(run.registry).banks)
    rng = random.Random(args.seed)
    workloads = {width: make_queries(parties, bank_ids, width, rng) for width in widths}

    async def measure(name: str, send: load.Send, meter: Meter) -> list[dict[str, object]]:
        print(name, file=sys.stderr)
        await load.closed_loop(send, workloads[widths[-1]][:100], concurrency=8, seconds=2.0)
        out = []
        for width in widths:
            summary = await load.metered(
                meter,
                load.closed_loop(
                    send, workloads[width], concurrency=args.concurrency, seconds=args.seconds
                ),
                bank_calls_per_query=width,
            )
            print(f"  {name} {width} banks: {interactive.line(summary)}", file=sys.stderr)
            out.append(summary)
        return out

    await run.start_hub(children, 20_000, args.hub_args)
    measured = await load.hub_direct_ceiling(
        run,
        children,
        agencies=[AGENCY],
        agency_of=lambda _: AGENCY,
        measure=measure,
        direct_too=not args.no_direct,
        ceiling_too=not args.no_ceiling,
    )
    result = fleet.header(NAME, args.argv)
    result.update(
        {
            "banks": banks,
            "concurrency": args.concurrency,
            "seconds_per_width": args.seconds,
            "tls": run.tls.certs is not None,
            "widths": [
                {"banks": width, **{who: parts[index] for who, parts in measured.items()}}
                for index, width in enumerate(widths)
            ],
        }
    )
    for width in result["widths"]:
        if width.get("ceiling") and width["ceiling"]["achieved_qps"]:
            width["hub_fraction_of_ceiling"] = round(
                width["hub"]["achieved_qps"] / width["ceiling"]["achieved_qps"], 3
            )
    return result


def markdown(result: report.Report) -> str:
    rows = []
    for width in result["widths"]:
        row: list[object] = [width["banks"]]
        for who in ("hub", "direct", "ceiling"):
            part = width.get(who)
            row += (
                [part["achieved_qps"], part["latency_ms"]["p50"], part["latency_ms"]["p99"]]
                if part
                else ["-", "-", "-"]
            )
        row.append(
            f"{width['hub_fraction_of_ceiling']:.0%}" if "hub_fraction_of_ceiling" in width else "-"
        )
        rows.append(row)
    lines = [
        f"# Benchmark: {NAME}",
        "",
        f"{result['banks']} simulated banks; accounts queries naming their banks; "
        f"{result['concurrency']} single `Query` calls in flight, "
        f"{result['seconds_per_width']:g} s per width; TLS {'on' if result['tls'] else 'off'}. "
        f"{fleet.machine_line(result)}.",
        "",
        f"`{result['command']}`",
        "",
        *fleet.table(
            (
                *fleet.way_columns("banks per query"),
                "hub / ceiling",
            ),
            rows,
        ),
        "",
        "Bank calls per second = queries per second × banks per query.",
        *fleet.cores_table("banks per query", [(w["banks"], w) for w in result["widths"]]),
    ]
    return "\n".join(lines) + "\n"
