"""Scenario "transactions": one account's 1,000,000 transactions streamed to the agency.

The tax administration (``skatt-kontroll``) asks for ten years of a busy organisation's
account. A page bank (:mod:`benchmarks.pagebank`) serves the account's pages; the hub streams
them through (filter, audit, respond), paced by page credit. Measured: transactions per second
at the agency, and the hub's resident memory every 100 ms (growth over its idle level).

A second phase reads slowly: the agency takes ``--slow-pages-per-s`` pages a second for
``--slow-seconds`` while the bank could send far faster, to show the hub's memory stays flat
(flow control) instead of buffering the account.

Baselines in the same run: the ceiling (the same pages through the echo relay, no pacing)
and direct (the agency calls the bank's ``ListTransactions`` itself).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import Final

import grpc

from benchmarks import fleet, plots, processes, report
from benchmarks.enforcement import READY_TIMEOUT_S, Meter
from benchmarks.fleet import Fleet, RssSampler
from benchmarks.processes import Child, Children
from clients.client import HubClient, make_query
from clients.services import CONSUMERS, MANDATES
from dsop.controlinfo.v2 import bank_pb2, bank_pb2_grpc
from dsop.hub.v1 import hub_pb2
from providers.synthetic import SyntheticDataset, make_banks

NAME: Final = "transactions"
HELP: Final = "one account's transactions streamed to the agency: transactions/s, hub memory"
SERVICE: Final = "skatt-kontroll"
AGENCY: Final = CONSUMERS[SERVICE]
YEARS: Final = 10
#: Targets (issue 6, two cores).
TARGET_TPS: Final = 200_000
TARGET_RSS_GROWTH_MB: Final = 50.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--banks", type=int, default=5, help="banks of the dataset")
    parser.add_argument("--cycle", type=int, default=50, help="real pages the bank replays")
    parser.add_argument("--slow-seconds", type=float, default=10.0, help="slow-reader phase")
    parser.add_argument("--slow-pages-per-s", type=float, default=5.0)
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds per phase")
    fleet.add_common_arguments(parser, json_default="benchmarks/results/transactions.json")


def run(args: argparse.Namespace) -> int:
    result = fleet.run(
        args, lambda tmp, children: _run(args, tmp, children), markdown, plots.transactions
    )
    if result is None:
        return 1
    return 0 if result["transactions"] == result["received"] else 1


# -- the account ---------------------------------------------------------------------------


def busiest_account(seed: int, banks: int) -> tuple[str, str, str, int]:
    """(party, bank, account reference, transactions in the period) of the busiest account
    of the first party with over 100,000 transactions a year."""
    dataset = SyntheticDataset(seed, make_banks(banks, seed))
    party = dataset.find_party("huge_transactions")
    today = dataset.now().date()
    since = _since(today)
    best = ("", "", 0)
    for relation in dataset.relations(party, since, today):
        data = dataset.bank(relation.organization_id)
        for account in data.list_accounts(party, True, since, today).accounts:
            count = data.transaction_count(account.account_reference, since, today)
            if count > best[2]:
                best = (relation.organization_id, account.account_reference, count)
    return party, *best


def _since(today: dt.date) -> dt.date:
    return today.replace(year=today.year - YEARS) + dt.timedelta(days=1)


def _query(bank: str, reference: str) -> hub_pb2.Query:
    today = dt.date.today()
    return make_query(
        service=SERVICE,
        legal_mandate=MANDATES[SERVICE],
        operation=hub_pb2.OPERATION_TRANSACTIONS,
        account_reference=reference,
        banks=[bank],
        requester_id="benchmark",
        from_date=_since(today).isoformat(),
        to_date=today.isoformat(),
    )


# -- measuring -----------------------------------------------------------------------------


async def _stream(
    client: HubClient, query: hub_pb2.Query, time_limit: float, pace: float = 0.0
) -> dict[str, object]:
    """Streams the query's pages; ``pace`` > 0 reads at most that many pages a second and
    stops after ``time_limit`` (the slow reader), else reads everything."""
    received = pages = 0
    failed = ""
    began = time.perf_counter()
    try:
        async with asyncio.timeout(time_limit):
            async for event in client.stream([query], batch_size=1):
                if event.HasField("result"):
                    pages += 1
                    received += len(event.result.transactions.transactions)
                    if event.result.HasField("error"):
                        failed = event.result.error.message
                    if pace:
                        await asyncio.sleep(1 / pace)
    except TimeoutError:
        pass
    except grpc.aio.AioRpcError as exc:
        failed = f"{exc.code().name}: {exc.details()}"
    return {**_rate(received, pages, began), "error": failed or None}


async def _direct(fleet_: Fleet, query: hub_pb2.Query, time_limit: float) -> dict[str, object]:
    """The agency calls the bank's ListTransactions itself (the per-API RPC)."""
    endpoints = fleet_.direct_endpoints()
    target = next(iter(endpoints.banks.values()))
    channel = (
        grpc.aio.secure_channel(target, endpoints.credentials)
        if endpoints.credentials is not None
        else grpc.aio.insecure_channel(target)
    )
    stub = bank_pb2_grpc.BankServiceStub(channel)
    request = bank_pb2.ListTransactionsRequest(
        context=bank_pb2.RequestContext(
            account_info_request_id=query.case_id,
            correlation_id=query.correlation_id,
            legal_mandate=query.legal_mandate,
            requester_id=query.requester_id,
        ),
        account_reference=query.account_reference,
        period=query.period,
    )
    received = pages = 0
    began = time.perf_counter()
    try:
        async with asyncio.timeout(time_limit):
            async for page in stub.ListTransactions(request):
                pages += 1
                received += len(page.transactions)
    finally:
        await channel.close()
    return _rate(received, pages, began)


def _rate(received: int, pages: int, began: float) -> dict[str, object]:
    seconds = time.perf_counter() - began
    return {
        "received": received,
        "pages": pages,
        "seconds": round(seconds, 3),
        "transactions_per_s": round(received / seconds, 1) if seconds else 0.0,
    }


async def _measured(
    hub: Child,
    bank: Child,
    client: HubClient,
    query: hub_pb2.Query,
    *,
    time_limit: float,
    pace: float = 0.0,
) -> dict[str, object]:
    sampler = RssSampler(hub.pid)
    idle = fleet.rss_mb(hub.pid)
    meter = Meter(hub, bank)
    machine = processes.machine_cpu_seconds()
    meter.start()
    sampler.start()
    outcome = await _stream(client, query, time_limit, pace)
    samples = await sampler.stop()
    meter.stop()
    machine = processes.machine_cpu_seconds() - machine
    peak = max(rss for _, rss in samples)
    outcome.update(
        {
            "hub_idle_rss_mb": round(idle, 1),
            "hub_peak_rss_mb": round(peak, 1),
            "hub_rss_growth_mb": round(peak - idle, 1),
            "hub_cpu_s": round(meter.hub_s, 2),
            "bank_cpu_s": round(meter.banks_s, 2),
            "driver_cpu_s": round(meter.driver_s, 2),
            "other_cpu_s": round(
                max(0.0, machine - meter.hub_s - meter.banks_s - meter.driver_s), 2
            ),
            "rss_mb_over_time": samples,
        }
    )
    return outcome


async def _run(args: argparse.Namespace, tmp: Path, children: Children) -> report.Report:
    party, bank, reference, available = busiest_account(args.seed, args.banks)
    tls = fleet.make_tls(tmp, args.insecure)
    registry = tmp / "registry.json"
    argv = [
        "--seed", str(args.seed), "--banks", str(args.banks), "--bank-id", bank,
        "--account", reference, "--since", _since(dt.date.today()).isoformat(),
        "--transactions", str(args.transactions), "--cycle", str(args.cycle),
        "--registry-out", str(registry),
    ]  # fmt: skip
    if tls.certs is not None:
        argv += ["--certs", str(tls.certs)]
    banks = children.start(Child("page bank", argv, tmp / "banks.log", "benchmarks.pagebank"))
    await processes.wait_for_file(registry, banks, READY_TIMEOUT_S)
    run = Fleet(tmp, tls, registry, banks)
    await run.start_hub(children, 1000, args.hub_args)
    assert run.hub is not None
    result = fleet.header(NAME, args.argv)
    result.update(
        {
            "transactions": args.transactions,
            "account_transactions_in_period": available,
            "party": party,
            "bank": bank,
            "years": YEARS,
            "tls": tls.certs is not None,
            "page_bank_cycle_pages": args.cycle,
            "targets": {
                "transactions_per_s": TARGET_TPS,
                "hub_rss_growth_mb": TARGET_RSS_GROWTH_MB,
            },
        }
    )
    async with run.client(AGENCY) as client:
        # Connections, caches and the audit log's first commit, before measuring.
        await _stream(client, _query(bank, reference), 60.0, pace=0.0)
        print(f"hub: {args.transactions:,} transactions", flush=True)
        fast = await _measured(
            run.hub, banks, client, _query(bank, reference), time_limit=args.time_limit
        )
        print(
            f"slow reader: {args.slow_pages_per_s:g} pages/s for {args.slow_seconds:g} s",
            flush=True,
        )
        slow = await _measured(
            run.hub,
            banks,
            client,
            _query(bank, reference),
            time_limit=args.slow_seconds,
            pace=args.slow_pages_per_s,
        )
    result.update({key: fast[key] for key in ("received", "seconds", "transactions_per_s")})
    result.update(
        {
            "hub_idle_rss_mb": fast["hub_idle_rss_mb"],
            "hub_peak_rss_mb": fast["hub_peak_rss_mb"],
            "hub_rss_growth_mb": fast["hub_rss_growth_mb"],
            "hub_cpu_s": fast["hub_cpu_s"],
            "bank_cpu_s": fast["bank_cpu_s"],
            "driver_cpu_s": fast["driver_cpu_s"],
            "other_cpu_s": fast["other_cpu_s"],
            "hub_cpu_us_per_transaction": round(fast["hub_cpu_s"] * 1e6 / fast["received"], 2)  # type: ignore[operator]
            if fast["received"]
            else 0.0,
            "rss_mb_over_time": fast["rss_mb_over_time"],
            "error": fast["error"],
            "slow_reader": {"pages_per_s": args.slow_pages_per_s, **slow},
        }
    )
    children.stop(run.hub)
    if not args.no_ceiling:
        print("ceiling: the echo relay", flush=True)
        relay, target = await run.start_ceiling(children)
        async with run.client(AGENCY, target) as client:
            await _stream(client, _query(bank, reference), 60.0)
            result["ceiling"] = await _measured(
                relay, banks, client, _query(bank, reference), time_limit=args.time_limit
            )
        children.stop(relay)
    if not args.no_direct:
        print("direct: ListTransactions", flush=True)
        result["baseline"] = await _direct(run, _query(bank, reference), args.time_limit)
    _compare(result)
    return result


def _compare(result: report.Report) -> None:
    notes = []
    ceiling = result.get("ceiling")
    if ceiling and ceiling["transactions_per_s"]:
        result["fraction_of_ceiling"] = round(
            result["transactions_per_s"] / ceiling["transactions_per_s"], 3
        )
    baseline = result.get("baseline")
    if baseline and baseline["transactions_per_s"]:
        result["speedup"] = round(result["transactions_per_s"] / baseline["transactions_per_s"], 2)
    if result["received"] != result["transactions"]:
        notes.append(f"received {result['received']:,} of {result['transactions']:,}")
    result["targets_met"] = {
        "transactions_per_s": result["transactions_per_s"] >= TARGET_TPS,
        "hub_rss_growth_mb": result["hub_rss_growth_mb"] <= TARGET_RSS_GROWTH_MB,
        "slow_reader_rss_growth_mb": result["slow_reader"]["hub_rss_growth_mb"]
        <= TARGET_RSS_GROWTH_MB,
    }
    result["notes"] = notes


def markdown(result: report.Report) -> str:
    ceiling = result.get("ceiling") or {}
    base = result.get("baseline") or {}
    slow = result["slow_reader"]
    rows = [
        (name, result[key], ceiling.get(key), base.get(key) if direct else None)
        for name, key, direct in (
            ("transactions received", "received", True),
            ("seconds", "seconds", True),
            ("transactions/s", "transactions_per_s", True),
            ("hub (relay) RSS growth (MB)", "hub_rss_growth_mb", False),
            ("hub (relay) peak RSS (MB)", "hub_peak_rss_mb", False),
            ("hub (relay) CPU (s)", "hub_cpu_s", False),
            ("bank CPU (s)", "bank_cpu_s", False),
            ("agency (driver) CPU (s)", "driver_cpu_s", False),
            ("other processes' CPU (s)", "other_cpu_s", False),
        )
    ]
    lines = [
        f"# Benchmark: {NAME}",
        "",
        f"One account, {result['transactions']:,} transactions over {result['years']} years "
        f"(service {SERVICE}), TLS {'on' if result['tls'] else 'off'}; the bank replays "
        f"{result['page_bank_cycle_pages']} real pages. {fleet.machine_line(result)}.",
        "",
        f"`{result['command']}`",
        "",
        *fleet.table(("figure", "hub", "ceiling (echo relay)", "direct (ListTransactions)"), rows),
        "",
        f"Target: ≥ {TARGET_TPS:,} transactions/s with hub RSS growth ≤ "
        f"{TARGET_RSS_GROWTH_MB:g} MB; met: {result['targets_met']}.",
    ]
    if "fraction_of_ceiling" in result:
        lines.append(f"Hub / ceiling: **{result['fraction_of_ceiling']:.0%}**.")
    lines += [
        "",
        f"Slow reader ({slow['pages_per_s']:g} pages/s for {slow['seconds']:g} s): "
        f"{slow['pages']} pages read, hub RSS growth {slow['hub_rss_growth_mb']} MB "
        f"(peak {slow['hub_peak_rss_mb']} MB).",
    ]
    lines += [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"
