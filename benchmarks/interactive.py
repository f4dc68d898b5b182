"""Scenario "interactive": caseworkers' single queries, open loop, at rising rates.

Single ``Query`` calls of a mix of services and operations (tax and NAV accounts lists, tax
and enforcement accounts with balances, each from its own agency with its certificate and
token) arrive as a Poisson process at each rate in turn, up to saturation; each is timed from
its intended send time (:func:`benchmarks.load.open_loop`). The same arrivals then go
straight to KAR and the banks as agencies do today (direct, per-API calls) and through the
echo relay (the ceiling; the queries name their banks there, since it has no KAR).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Final

from benchmarks import ceiling, fleet, load, plots, report
from benchmarks.enforcement import Meter
from benchmarks.processes import Children
from clients.client import make_query
from clients.services import CONSUMERS, MANDATES
from dsop.hub.v1 import hub_pb2
from providers.synthetic import SyntheticDataset, make_banks

NAME: Final = "interactive"
HELP: Final = "single queries of mixed services, open loop at rising rates, hub vs direct"
Op = hub_pb2.Operation
#: (service, operation, only accounts the party owns, requester id): the mix, equally often.
MIX: Final = (
    ("skatt-kontroll", Op.OPERATION_ACCOUNTS, False, "saksbehandler-1"),
    ("nav-kontroll", Op.OPERATION_ACCOUNTS, False, "saksbehandler-2"),
    ("skatt-kontroll", Op.OPERATION_ACCOUNTS_WITH_BALANCES, True, "saksbehandler-3"),
    ("fi-utlegg", Op.OPERATION_ACCOUNTS_WITH_BALANCES, True, None),
)
#: Targets at 500 queries/s (issue 6): what the hub adds over direct.
TARGET_RATE: Final = 500.0
TARGET_ADDED_P50_MS: Final = 1.0
TARGET_ADDED_P99_MS: Final = 3.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rates",
        default="100,250,500,750,1000,1500",
        help="offered loads in queries/s, comma-separated",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per rate")
    parser.add_argument("--banks", type=int, default=100, help="simulated banks")
    parser.add_argument("--parties", type=int, default=5000, help="distinct parties")
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=3000,
        help="a step stops sending (saturated) with this many queries waiting",
    )
    fleet.add_common_arguments(parser, json_default="benchmarks/results/interactive.json")


def run(args: argparse.Namespace) -> int:
    result = fleet.run(args, lambda tmp, c: _run(args, tmp, c), markdown, plots.interactive)
    if result is None:
        return 1
    # Past saturation the hub sheds load (RESOURCE_EXHAUSTED): expected, not a failure.
    unsaturated = [step["hub"] for step in result["steps"] if not step["hub"]["saturated"]]
    return 0 if all(not part["errors"] for part in unsaturated) else 1


def make_queries(seed: int, banks: int, parties: int) -> list[hub_pb2.Query]:
    """One query per party, cycling through the mix (the relay gets copies naming their
    banks: :func:`benchmarks.ceiling.name_banks`)."""
    dataset = SyntheticDataset(seed, make_banks(banks, seed))
    rng = random.Random(seed)
    sample = dataset.party_sample(parties)
    rng.shuffle(sample)
    out = []
    for index, party in enumerate(sample):
        service, operation, owner, requester = MIX[index % len(MIX)]
        out.append(
            make_query(
                service=service,
                legal_mandate=MANDATES[service],
                operation=operation,
                party_id=party,
                only_primary_owner=owner,
                requester_id=requester,
                query_id=str(index),
            )
        )
    return out


def line(summary: dict[str, object]) -> str:
    """A step's progress line."""
    latency: dict[str, float] = summary["latency_ms"]  # type: ignore[assignment]
    return (
        f"{summary['achieved_qps']} answered/s, p50 {latency['p50']} ms, p99 {latency['p99']} ms"
        + (" (saturated)" if summary["saturated"] else "")
        + f"; cores used {summary['cpu']}"
    )


def _agency(query: hub_pb2.Query) -> str:
    return CONSUMERS[query.service]


async def _run(args: argparse.Namespace, tmp: Path, children: Children) -> report.Report:
    rates = [float(rate) for rate in args.rates.split(",")]
    queries = make_queries(args.seed, args.banks, args.parties)
    # The relay has no KAR: its copies name their banks.
    named = ceiling.name_banks(queries, args.seed, args.banks)
    run = await fleet.simulated(
        children, tmp, banks=args.banks, seed=args.seed, insecure=args.insecure
    )
    await run.start_hub(children, 20_000, args.hub_args)

    async def measure(name: str, send: load.Send, meter: Meter) -> list[dict[str, object]]:
        ask = named if name == "ceiling" else queries
        print(f"{name}: {len(rates)} rates × {args.seconds:g} s", file=sys.stderr)
        # Untimed: connections, caches and the first audit commits.
        await load.closed_loop(send, ask[:200], concurrency=20, seconds=2.0)
        out = []
        for rate in rates:
            summary = await load.metered(
                meter,
                load.open_loop(
                    send,
                    ask,
                    rate=rate,
                    seconds=args.seconds,
                    seed=args.seed + int(rate),
                    max_in_flight=args.max_in_flight,
                ),
            )
            print(f"  {name} {rate:g} q/s: {line(summary)}", file=sys.stderr)
            out.append(summary)
        return out

    measured = await load.hub_direct_ceiling(
        run,
        children,
        agencies=sorted({_agency(q) for q in queries}),
        agency_of=_agency,
        measure=measure,
        direct_too=not args.no_direct,
        ceiling_too=not args.no_ceiling,
    )
    steps = [
        {"rate": rate, **{who: parts[index] for who, parts in measured.items()}}
        for index, rate in enumerate(rates)
    ]
    result = fleet.header(NAME, args.argv)
    result.update(
        {
            "banks": args.banks,
            "distinct_parties": len(queries),
            "mix": [
                {"service": s, "operation": Op.Name(o), "only_primary_owner": p}
                for s, o, p, _ in MIX
            ],
            "seconds_per_rate": args.seconds,
            "tls": run.tls.certs is not None,
            "steps": steps,
        }
    )
    _targets(result)
    return result


def _targets(result: report.Report) -> None:
    """The hub's added latency over direct at the target rate, when that rate was run."""
    at = [s for s in result["steps"] if s["rate"] == TARGET_RATE and s.get("direct")]
    if not at:
        return
    hub, base = at[0]["hub"]["latency_ms"], at[0]["direct"]["latency_ms"]
    added = {key: round(hub[key] - base[key], 3) for key in ("p50", "p95", "p99")}
    result["added_latency_ms_at_500"] = added
    result["targets_met"] = {
        "added_p50_ms": added["p50"] <= TARGET_ADDED_P50_MS,
        "added_p99_ms": added["p99"] <= TARGET_ADDED_P99_MS,
    }


def markdown(result: report.Report) -> str:
    rows = []
    for step in result["steps"]:
        row: list[object] = [f"{step['rate']:g}"]
        for who in ("hub", "direct", "ceiling"):
            part = step.get(who)
            if not part:
                row += ["-", "-", "-"]
                continue
            latency = part["latency_ms"]
            row += [
                part["achieved_qps"] if not part["saturated"] else f"{part['achieved_qps']} (sat.)",
                latency["p50"],
                latency["p99"],
            ]
        rows.append(row)
    lines = [
        f"# Benchmark: {NAME}",
        "",
        f"{result['banks']} banks, {result['distinct_parties']:,} parties, "
        f"{result['seconds_per_rate']:g} s per rate, single `Query` calls, open loop "
        f"(Poisson), latency from the intended send time; TLS "
        f"{'on' if result['tls'] else 'off'}. {fleet.machine_line(result)}.",
        "",
        f"`{result['command']}`",
        "",
        *fleet.table(
            fleet.way_columns("offered q/s"),
            rows,
        ),
    ]
    lines += fleet.cores_table(
        "offered q/s", [(f"{step['rate']:g}", step) for step in result["steps"]]
    )
    if "added_latency_ms_at_500" in result:
        added = result["added_latency_ms_at_500"]
        lines += [
            "",
            f"Hub-added latency over direct at {TARGET_RATE:g} q/s: p50 {added['p50']} ms "
            f"(target ≤ {TARGET_ADDED_P50_MS:g}), p99 {added['p99']} ms "
            f"(target ≤ {TARGET_ADDED_P99_MS:g}); met: {result['targets_met']}.",
        ]
    return "\n".join(lines) + "\n"
