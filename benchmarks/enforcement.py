"""Scenario "enforcement": the enforcement authority's year of balance queries.

About 500,000 queries a year (DSOP.md §4, FI-Utlegg saldo): service ``fi-utlegg``, accounts
with balances, today only, only accounts the party owns. The run starts a bank simulator
(with its KAR) and a hub as child processes on loopback, sends every query over one
``QueryStream`` and times each from the moment the client takes it to its summary; then runs
a slice of the same queries the way agencies do today, without the hub (:mod:`benchmarks.direct`),
against the same banks, and compares.

With ``--faulty N``, N of the banks misbehave for the whole run (slow tail, errors, one down;
:mod:`benchmarks.faults`), and the run checks that the hub's answers are still right: every
healthy bank's answer intact, every faulty bank reported with the outcome its fault allows,
no query lost. The exit status is then that of the checks.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import resource
import shlex
import shutil
import sys
import tempfile
import time
import uuid
from array import array
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import grpc
import uvloop
from hdrh.histogram import HdrHistogram

from benchmarks import ceiling, direct, faults, processes, report
from benchmarks.processes import Child, ChildFailed, Children, Tls
from clients.client import ClientTls, HubClient
from clients.devtokens import DevTokens
from clients.services import CONSUMERS, MANDATES
from dsop.hub.v1 import hub_pb2
from hub.registry import Registry
from providers.synthetic import SyntheticDataset, make_banks

NAME: Final = "enforcement"
HELP: Final = "the enforcement authority's balance queries (fi-utlegg), hub vs direct"
SERVICE: Final = "fi-utlegg"
MANDATE: Final = MANDATES[SERVICE]
#: The enforcement authority calls through the tax administration's component (DSOP.md §1).
AGENCY: Final = CONSUMERS[SERVICE]
OPERATION: Final = hub_pb2.OPERATION_ACCOUNTS_WITH_BALANCES
FAILED: Final = hub_pb2.BANK_OUTCOME_FAILED
#: Startup can be slow with many banks (each is its own gRPC server) on a busy machine.
READY_TIMEOUT_S: Final = 180.0
PROGRESS_EVERY: Final = 50_000
WARMUP_ROUNDS: Final = 4
#: Longer than the hub's circuit breakers stay open (hub.resilience.CallPolicy, 5 s).
BREAKER_WAIT_S: Final = 6.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queries", type=int, default=500_000, help="queries through the hub")
    parser.add_argument("--banks", type=int, default=100, help="simulated banks")
    parser.add_argument("--seed", type=int, default=1, help="dataset and query seed")
    parser.add_argument(
        "--parties", type=int, default=50_000, help="distinct parties the queries cycle through"
    )
    parser.add_argument("--bank-processes", type=int, default=1, help="simulator processes")
    parser.add_argument(
        "--baseline-queries", type=int, default=20_000, help="queries run directly (0: skip)"
    )
    parser.add_argument(
        "--baseline-concurrency", type=int, default=256, help="direct queries in flight"
    )
    parser.add_argument("--batch-size", type=int, default=1000, help="queries per message")
    parser.add_argument("--window", type=int, default=20_000, help="hub queries in flight")
    parser.add_argument(
        "--warmup", type=int, default=1000, help="untimed hub queries first (connections, caches)"
    )
    parser.add_argument(
        "--kar",
        choices=("embedded", "remote"),
        default="remote",
        help="the hub's KAR: the simulator's over gRPC (as in production, a separate "
        "register), or the hub's embedded synthetic register",
    )
    parser.add_argument(
        "--hub-arg",
        action="append",
        default=[],
        dest="hub_args",
        help="an extra option for `dsop hub serve` (repeat), e.g. --hub-arg=--bank-linger-ms=1",
    )
    parser.add_argument(
        "--no-audit",
        action="store_true",
        help="run the hub without its audit log (to measure what auditing costs)",
    )
    parser.add_argument("--insecure", action="store_true", help="plaintext instead of mutual TLS")
    parser.add_argument(
        "--duration-limit", type=float, default=600.0, help="seconds each timed phase may take"
    )
    parser.add_argument(
        "--ceiling-queries",
        type=int,
        default=100_000,
        help="of the same queries, run through the echo relay (the ceiling; 0: skip)",
    )
    parser.add_argument(
        "--faulty",
        type=int,
        default=0,
        help="make N of the banks faulty for the whole run: slow tail, errors (ACC-100, "
        "ACC-022), one down, in turn (see benchmarks/faults.py)",
    )
    parser.add_argument("--json", type=Path, help="write the report here (and a .md beside it)")
    parser.add_argument("--logs", type=Path, help="copy the hub's and the banks' logs here")


@dataclass(frozen=True, slots=True)
class Options:
    queries: int
    banks: int
    seed: int
    parties: int
    bank_processes: int
    baseline_queries: int
    baseline_concurrency: int
    batch_size: int
    window: int
    warmup: int
    kar: str
    no_audit: bool
    hub_args: list[str]
    insecure: bool
    duration_limit: float
    json: Path | None
    logs: Path | None
    faulty: int = 0
    ceiling_queries: int = 0
    #: The command line, for the report.
    argv: tuple[str, ...] = ()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Options:
        given = {
            f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)
        }
        options = cls(**given)
        for name in ("queries", "banks", "parties", "bank_processes", "batch_size", "window"):
            if getattr(options, name) < 1:
                raise SystemExit(f"--{name.replace('_', '-')}: must be at least 1")
        if not 0 <= options.faulty <= options.banks:
            raise SystemExit("--faulty: must be between 0 and --banks")
        return options


# -- the workload ----------------------------------------------------------------------------


def make_queries(parties: Sequence[str], count: int, rng: random.Random) -> list[hub_pb2.Query]:
    """``count`` balance queries cycling through ``parties``, each with its own ids.

    Ids come from the seeded generator: uuid4() reads the OS's randomness and costs several
    times more, and a run should be reproducible.
    """

    def new_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    return [
        hub_pb2.Query(
            query_id=new_id(),
            service=SERVICE,
            legal_mandate=MANDATE,
            case_id=new_id(),
            correlation_id=new_id(),
            party_id=parties[i % len(parties)],
            only_primary_owner=True,
            operation=OPERATION,
        )
        for i in range(count)
    ]


# -- measuring -------------------------------------------------------------------------------


def _driver_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(slots=True)
class Meter:
    """CPU seconds of the hub, the banks (with their worker processes) and this driver over
    one timed interval."""

    hub: Child | None
    banks: Child
    _start: tuple[float, float, float] = (0.0, 0.0, 0.0)
    hub_s: float = 0.0
    banks_s: float = 0.0
    driver_s: float = 0.0

    def _read(self) -> tuple[float, float, float]:
        hub = processes.cpu_seconds(self.hub.pid) if self.hub is not None else 0.0
        return hub, processes.tree_cpu_seconds(self.banks.pid), _driver_cpu()

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> None:
        end = self._read()
        self.hub_s, self.banks_s, self.driver_s = (
            b - a for a, b in zip(self._start, end, strict=True)
        )


@dataclass(slots=True)
class HubRun:
    queries: int
    answered: int = 0
    refused: int = 0
    bank_failures: int = 0  # sum of summary.banks_failed
    queries_with_failures: int = 0
    #: Failed bank parts by bank id.
    failed_banks: Counter[str] = field(default_factory=Counter)
    #: Failed bank calls by "REASON CODE", and one message for each (the first seen).
    failure_reasons: Counter[str] = field(default_factory=Counter)
    failure_samples: dict[str, str] = field(default_factory=dict)
    bank_results: int = 0
    duplicate_summaries: int = 0
    #: Set when the stream broke: the gRPC status and details.
    stream_error: str | None = None
    unknown_ids: int = 0
    seconds: float = 0.0
    timed_out: bool = False
    histogram: HdrHistogram = field(default_factory=report.new_histogram)
    #: Result events per query, by query index.
    results: array[int] = field(default_factory=lambda: array("I"))


async def drive_hub(
    client: HubClient,
    queries: Sequence[hub_pb2.Query],
    *,
    batch_size: int,
    window: int,
    time_limit: float,
    meter: Meter | None = None,
    progress: bool = False,
    checker: faults.Checker | None = None,
) -> HubRun:
    """Sends ``queries`` over one stream and records each one's latency: from the moment the
    client's request generator takes it (it then rides in the next message) to its summary.
    A ``checker`` sees every result and summary (a run with faulty banks)."""
    count = len(queries)
    run = HubRun(count, results=array("I", bytes(4 * count)))
    index = {query.query_id: i for i, query in enumerate(queries)}
    sent = array("q", bytes(8 * count))
    done = bytearray(count)
    results = run.results
    histogram = run.histogram
    clock = time.perf_counter_ns

    def feed() -> Iterator[hub_pb2.Query]:
        # Stamped here, not before: the client takes a query only when the window has room
        # for it, so the time waiting for the window is not counted as the hub's.
        for i, query in enumerate(queries):
            sent[i] = clock()
            yield query

    last = slice_start = clock()
    if meter is not None:
        meter.start()
    try:
        async with asyncio.timeout(time_limit):
            async for event in client.stream(feed(), batch_size=batch_size, window=window):
                if event.HasField("result"):
                    result = event.result
                    i = index.get(result.query_id, -1)
                    if i < 0:
                        run.unknown_ids += 1
                        continue
                    results[i] += 1
                    run.bank_results += 1
                    if checker is not None:
                        checker.result(i, result)
                    continue
                summary = event.summary
                last = clock()
                i = index.get(summary.query_id, -1)
                if i < 0:
                    run.unknown_ids += 1
                    continue
                if done[i]:
                    run.duplicate_summaries += 1
                    continue
                done[i] = 1
                report.record_us(histogram, last - sent[i])
                run.answered += 1
                if checker is not None:
                    checker.summary(i, summary)
                if summary.HasField("error"):
                    run.refused += 1
                elif summary.banks_failed:
                    run.bank_failures += summary.banks_failed
                    run.queries_with_failures += 1
                    _count_failures(run, summary)
                if progress and run.answered % PROGRESS_EVERY == 0:
                    # The rate per slice shows whether throughput holds up over a long run.
                    rate = PROGRESS_EVERY * 1e9 / max(last - slice_start, 1)
                    slice_start = last
                    print(
                        f"  hub: {run.answered:,}/{count:,} answered, "
                        f"{(last - sent[0]) / 1e9:,.0f} s, {rate:,.0f}/s in this slice",
                        file=sys.stderr,
                    )
    except TimeoutError:
        run.timed_out = True
        last = clock()
    except grpc.aio.AioRpcError as exc:
        # Reported, not raised: what was answered before the break is still worth a report.
        run.stream_error = f"{exc.code().name}: {exc.details()}"
        last = clock()
    if meter is not None:
        meter.stop()
    if count:
        run.seconds = max(last - sent[0], 1) / 1e9
    return run


def _count_failures(run: HubRun, summary: hub_pb2.QuerySummary) -> None:
    for status in summary.banks:
        if status.outcome != FAILED:
            continue
        key = f"{hub_pb2.FailureReason.Name(status.reason)} {status.error.code}"
        run.failure_reasons[key] += 1
        run.failed_banks[status.bank_id] += 1
        run.failure_samples.setdefault(key, status.error.message)


async def warm_up(
    client: HubClient,
    queries: Sequence[hub_pb2.Query],
    options: Options,
    hub: Child,
    faulty: Collection[str] = (),
) -> list[HubRun]:
    """Untimed rounds until one passes with no bank failing but the ``faulty`` ones:
    connections to every bank are open and no circuit breaker is left open by their set-up,
    so the timed run measures the steady state. Between failed rounds, waits out the
    breakers' open time."""
    rounds: list[HubRun] = []
    for _ in range(WARMUP_ROUNDS if queries else 0):
        warm = await drive_hub(
            client,
            queries,
            batch_size=options.batch_size,
            window=options.window,
            time_limit=options.duration_limit,
        )
        rounds.append(warm)
        if warm.answered != len(queries):
            raise hub.failed(
                f"the warm-up got {warm.answered} of {len(queries)} summaries"
                + (f" ({warm.stream_error})" if warm.stream_error else "")
            )
        if not set(warm.failed_banks) - set(faulty):
            break
        await asyncio.sleep(BREAKER_WAIT_S)
    return rounds


# -- the run ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Workload:
    distinct_parties: int
    queries: list[hub_pb2.Query]
    warmup: list[hub_pb2.Query]
    #: The faulty banks (``--faulty``), None when all are healthy.
    faults: faults.Plan | None = None


def prepare(options: Options) -> Workload:
    infos = make_banks(options.banks, options.seed)
    dataset = SyntheticDataset(options.seed, infos)
    parties = dataset.party_sample(min(options.parties, options.queries))
    rng = random.Random(options.seed)
    rng.shuffle(parties)
    return Workload(
        len(parties),
        make_queries(parties, options.queries, rng),
        make_queries(parties, options.warmup, rng),
        faults.plan(dataset, infos, parties, options.faulty) if options.faulty else None,
    )


def client_tls(certs: Path | None) -> ClientTls | None:
    if certs is None:
        return None
    return ClientTls(
        ca=(certs / "ca.pem").read_bytes(),
        cert=(certs / f"agency-{AGENCY}.pem").read_bytes(),
        key=(certs / f"agency-{AGENCY}.key").read_bytes(),
    )


def _bank_credentials(certs: Path | None) -> grpc.ChannelCredentials | None:
    """What the hub presents to banks, so direct calls pass the same mutual TLS."""
    if certs is None:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca.pem").read_bytes(),
        private_key=(certs / "hub.key").read_bytes(),
        certificate_chain=(certs / "hub.pem").read_bytes(),
    )


def _direct_endpoints(registry: Registry, kar_port: int, certs: Path | None) -> direct.Endpoints:
    # With TLS the target's host must match the certificates' names: "localhost".
    host = "localhost" if certs is not None else "127.0.0.1"
    return direct.Endpoints(
        kar=f"{host}:{kar_port}",
        banks={
            bank.bank_id: f"{host}:{bank.target.rsplit(':', 1)[1]}"
            for bank in registry.banks.values()
        },
        credentials=_bank_credentials(certs),
    )


async def _run(
    options: Options, workload: Workload, tmp: Path, children: Children
) -> report.Report:
    # Made in plaintext runs too: the token issuer's keys come with the certificates.
    keys = processes.make_certs(tmp / "certs")
    certs = None if options.insecure else keys
    tls = Tls(certs, keys)
    base_port = processes.free_port_block(options.banks + 1)
    kar_port = base_port + options.banks
    registry_path = tmp / "registry.json"
    plan = workload.faults
    faults_file = (
        faults.write_faults_file(tmp / "faults.toml", plan.banks.values()) if plan else None
    )
    banks = children.start(
        processes.bank_simulator(
            banks=options.banks,
            seed=options.seed,
            base_port=base_port,
            processes=options.bank_processes,
            registry=registry_path,
            kar_port=kar_port,
            tls=tls,
            log=tmp / "banks.log",
            faults=faults_file,
        )
    )
    await processes.wait_for_file(registry_path, banks, READY_TIMEOUT_S)
    port_file = tmp / "hub.port"
    hub = children.start(
        processes.hub(
            registry=registry_path,
            port_file=port_file,
            window=options.window,
            kar="embedded" if options.kar == "embedded" else f"grpc://127.0.0.1:{kar_port}",
            tls=tls,
            log=tmp / "hub.log",
            audit=not options.no_audit,
            extra=options.hub_args,
        )
    )
    await processes.wait_for_file(port_file, hub, READY_TIMEOUT_S)
    target = f"127.0.0.1:{int(port_file.read_text())}"

    print(
        f"hub: {len(workload.queries):,} queries over {options.banks} banks "
        f"({'TLS' if certs else 'plaintext'})",
        file=sys.stderr,
    )
    hub_meter = Meter(hub, banks)
    checker = faults.Checker(plan, workload.queries, options.baseline_queries) if plan else None
    # The enforcement authority calls through the tax administration's component.
    token = DevTokens(keys, AGENCY)
    async with HubClient(
        target, tls=client_tls(certs), token=token, insecure=certs is None
    ) as client:
        warm = await warm_up(client, workload.warmup, options, hub, plan.banks if plan else ())
        hub_run = await drive_hub(
            client,
            workload.queries,
            batch_size=options.batch_size,
            window=options.window,
            time_limit=options.duration_limit,
            meter=hub_meter,
            progress=True,
            checker=checker,
        )
    hub_rss = processes.peak_rss_mb(hub.pid)
    banks_rss = processes.tree_peak_rss_mb(banks.pid)
    # The hub is idle from here on; stopped so the baselines have the machine to itself.
    children.stop(hub)
    ceiling_report = None
    if options.ceiling_queries and not plan:
        ceiling_report = await _ceiling(
            options,
            workload,
            tmp=tmp,
            children=children,
            banks=banks,
            registry=registry_path,
            tls=tls,
        )

    baseline: report.Report | None = None
    direct_run: direct.DirectResult | None = None
    direct_queries = workload.queries[: options.baseline_queries]
    if direct_queries:
        print(f"direct: {len(direct_queries):,} queries", file=sys.stderr)
        direct_meter = Meter(None, banks)
        endpoints = _direct_endpoints(Registry.load(registry_path), kar_port, certs)
        async with direct.DirectClient(endpoints) as direct_client:
            try:
                await direct_client.connect(skip=plan.down() if plan else ())
            except TimeoutError:
                raise banks.failed("direct: cannot connect to every bank and KAR") from None
            direct_meter.start()
            direct_run = await direct.run(
                direct_client,
                direct_queries,
                concurrency=options.baseline_concurrency,
                time_limit=options.duration_limit,
                keep=checker is not None,
            )
            direct_meter.stop()
        baseline = {
            "queries": direct_run.queries,
            "answered": direct_run.answered,
            "refused": direct_run.refused,
            "bank_failures": direct_run.bank_failures,
            "queries_with_bank_failures": direct_run.queries_with_failures,
            "bank_results": direct_run.bank_results,
            "accounts": direct_run.accounts,
            "seconds": round(direct_run.seconds, 3),
            "throughput_qps": _rate(direct_run.answered, direct_run.seconds),
            "good_throughput_qps": _rate(
                direct_run.answered - direct_run.refused - direct_run.queries_with_failures,
                direct_run.seconds,
            ),
            "latency_ms": report.latency_ms(direct_run.histogram),
            "concurrency": options.baseline_concurrency,
            "banks_cpu_s": round(direct_meter.banks_s, 2),
            "driver_cpu_s": round(direct_meter.driver_s, 2),
            "timed_out": direct_run.timed_out,
        }
    result = _report(
        options=options,
        workload=workload,
        run=hub_run,
        meter=hub_meter,
        hub_rss=hub_rss,
        banks_rss=banks_rss,
        baseline=baseline,
        direct_run=direct_run,
        certs=certs,
        warm=warm,
    )
    if checker is not None:
        result.update(_fault_report(checker, hub_run, direct_run))
    if ceiling_report is not None:
        result["ceiling"] = ceiling_report
        result["hub_fraction_of_ceiling"] = (
            round(result["throughput_qps"] / ceiling_report["throughput_qps"], 3)
            if ceiling_report["throughput_qps"]
            else 0.0
        )
    return result


async def _ceiling(
    options: Options,
    workload: Workload,
    *,
    tmp: Path,
    children: Children,
    banks: Child,
    registry: Path,
    tls: Tls,
) -> report.Report:
    """The first ``ceiling_queries`` queries through the echo relay (the hub's wire, none of
    its logic), over one stream as the hub's run, naming their banks as KAR would."""
    queries = ceiling.name_banks(
        workload.queries[: options.ceiling_queries], options.seed, options.banks
    )
    print(f"ceiling: {len(queries):,} queries through the echo relay", file=sys.stderr)
    relay, target = await ceiling.start(children, tmp, registry, tls, options.window)
    meter = Meter(relay, banks)
    try:
        async with HubClient(
            target, tls=client_tls(tls.certs), insecure=tls.certs is None
        ) as client:
            run = await drive_hub(
                client,
                queries,
                batch_size=options.batch_size,
                window=options.window,
                time_limit=options.duration_limit,
                meter=meter,
            )
    finally:
        children.stop(relay)
    return {
        "queries": run.queries,
        "answered": run.answered,
        "seconds": round(run.seconds, 3),
        "throughput_qps": _rate(run.answered, run.seconds),
        "latency_ms": report.latency_ms(run.histogram),
        "relay_cpu_us_per_query": round(meter.hub_s * 1e6 / run.answered, 1)
        if run.answered
        else 0.0,
        # One event per bank answer (accounts, then each account's details): more than the
        # hub's one result per bank.
        "bank_answers_echoed": run.bank_results,
        "banks_cpu_s": round(meter.banks_s, 2),
    }


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds else 0.0


def _failures(run: HubRun) -> list[dict[str, object]]:
    return [
        {"reason": key, "count": count, "example": run.failure_samples[key]}
        for key, count in run.failure_reasons.most_common()
    ]


def _report(
    *,
    options: Options,
    workload: Workload,
    run: HubRun,
    meter: Meter,
    hub_rss: float,
    banks_rss: float,
    baseline: report.Report | None,
    direct_run: direct.DirectResult | None,
    certs: Path | None,
    warm: Sequence[HubRun],
) -> report.Report:
    throughput = run.answered / run.seconds if run.seconds else 0.0
    notes: list[str] = []
    missing = run.queries - run.answered
    if missing:
        notes.append(f"{missing:,} queries got no summary")
    if run.timed_out:
        notes.append(f"the hub run hit the {options.duration_limit:g} s duration limit")
    if run.bank_failures:
        top = ", ".join(f"{key} ×{count:,}" for key, count in run.failure_reasons.most_common(3))
        notes.append(
            f"{run.bank_failures:,} bank calls failed in {run.queries_with_failures:,} queries "
            f"({top}): throughput counts those queries as answered"
        )
    if run.stream_error:
        notes.append(f"the hub stream broke: {run.stream_error}")
    if run.duplicate_summaries or run.unknown_ids:
        notes.append(
            f"{run.duplicate_summaries} duplicate summaries, {run.unknown_ids} events with "
            "unknown query ids"
        )
    consistency = None
    if direct_run is not None and not direct_run.timed_out:
        compared = direct_run.answered
        hub_results = sum(run.results[:compared])
        consistency = {
            "queries": compared,
            "hub_bank_results": hub_results,
            "direct_bank_results": direct_run.bank_results,
            "equal": hub_results == direct_run.bank_results,
        }
        if not consistency["equal"]:
            notes.append(
                f"hub and direct disagree on the first {compared:,} queries: {hub_results:,} vs "
                f"{direct_run.bank_results:,} bank results"
            )
    if direct_run is not None and direct_run.timed_out:
        notes.append(f"the direct run hit the {options.duration_limit:g} s duration limit")
    direct_qps = baseline["throughput_qps"] if baseline else 0.0
    good_qps = _rate(run.answered - run.refused - run.queries_with_failures, run.seconds)
    direct_good_qps = baseline["good_throughput_qps"] if baseline else 0.0
    return {
        "scenario": NAME,
        "command": "python -m benchmarks " + shlex.join(options.argv),
        "queries": run.queries,
        "distinct_parties": workload.distinct_parties,
        "banks": options.banks,
        "bank_processes": options.bank_processes,
        "seed": options.seed,
        "batch_size": options.batch_size,
        "window": options.window,
        "warmup_queries": len(workload.warmup),
        "warmup_rounds": [
            {"bank_failures": round_.bank_failures, "reasons": _failures(round_)} for round_ in warm
        ],
        "kar": options.kar,
        "audit": not options.no_audit,
        "hub_args": options.hub_args,
        "service": SERVICE,
        "operation": hub_pb2.Operation.Name(OPERATION),
        "answered": run.answered,
        "missing": missing,
        "refused": run.refused,
        "bank_failures": run.bank_failures,
        "queries_with_bank_failures": run.queries_with_failures,
        "bank_failure_reasons": _failures(run),
        "bank_results": run.bank_results,
        "bank_results_per_query": round(run.bank_results / run.answered, 3)
        if run.answered
        else 0.0,
        "seconds": round(run.seconds, 3),
        "throughput_qps": round(throughput, 1),
        # Queries every bank answered: what an agency can use. Equal to throughput_qps in a
        # healthy run; far below it when banks fail fast (a failed query is still "answered").
        "good_throughput_qps": good_qps,
        "latency_ms": report.latency_ms(run.histogram),
        "hub_cpu_s": round(meter.hub_s, 2),
        "hub_cpu_us_per_query": round(meter.hub_s * 1e6 / run.answered, 1) if run.answered else 0.0,
        "hub_peak_rss_mb": round(hub_rss, 1),
        "banks_cpu_s": round(meter.banks_s, 2),
        "banks_peak_rss_mb": round(banks_rss, 1),
        "driver_cpu_s": round(meter.driver_s, 2),
        "tls": certs is not None,
        "timed_out": run.timed_out,
        "machine": report.machine(),
        "code": report.code_version(processes.ROOT),
        "baseline": baseline,
        "speedup": round(throughput / direct_qps, 2) if direct_qps else 0.0,
        "speedup_good": round(good_qps / direct_good_qps, 2) if direct_good_qps else 0.0,
        "consistency": consistency,
        "notes": notes,
    }


def _fault_report(
    checker: faults.Checker, run: HubRun, direct_run: direct.DirectResult | None
) -> report.Report:
    """The report's part for a run with faulty banks: outcomes, per-faulty-bank figures and
    the checks (``checks.passed`` decides the exit status)."""
    compared = mismatched = 0
    if direct_run is not None and direct_run.details is not None:
        compared, mismatched = checker.compare(direct_run.details)
    lost = run.queries - run.answered
    problems = [
        f"{check}: {count:,} (e.g. {checker.examples[check]})"
        for check, count in checker.violations.most_common()
    ]
    if lost:
        problems.append(f"{lost:,} queries got no summary")
    if run.refused:
        problems.append(f"{run.refused:,} queries refused by the hub")
    if run.duplicate_summaries or run.unknown_ids or run.stream_error or run.timed_out:
        problems.append("the stream did not end cleanly (see the notes)")
    if direct_run is not None and compared == 0:
        problems.append("no bank answer compared with the direct baseline")
    problems += checker.fault_not_seen()
    return {
        "faulty": len(checker.plan.banks),
        "bank_outcomes": dict(checker.outcomes.most_common()),
        "faulty_banks": checker.figures()["banks"],
        "checks": {
            "passed": not problems,
            "lost_queries": lost,
            "violations": dict(checker.violations.most_common()),
            "answers_compared_with_direct": compared,
            "answers_differing_from_direct": mismatched,
            "problems": problems,
        },
    }


def run(args: argparse.Namespace) -> int:
    """Runs the scenario; 0 when every query got its summary from every bank (with
    ``--faulty``: when the checks passed), 1 otherwise."""
    options = Options.from_args(args)
    print("preparing queries", file=sys.stderr)
    workload = prepare(options)
    with tempfile.TemporaryDirectory(prefix="dsop-bench-") as tmp:
        print(f"working in {tmp}", file=sys.stderr)
        try:
            with Children() as children:
                result = uvloop.run(_run(options, workload, Path(tmp), children))
        except ChildFailed as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 1
        finally:
            # After the children stopped, so the logs are complete.
            if options.logs is not None:
                options.logs.mkdir(parents=True, exist_ok=True)
                for log in Path(tmp).glob("*.log"):
                    shutil.copy(log, options.logs / log.name)
    print(report.table(result))
    if options.json is not None:
        summary = report.write(options.json, result)
        print(f"wrote {options.json} and {summary}", file=sys.stderr)
    if "checks" in result:
        passed = bool(result["checks"]["passed"])
        for problem in result["checks"]["problems"]:
            print(f"check failed: {problem}", file=sys.stderr)
        return 0 if passed else 1
    # The simulated banks never fail nor refuse: any failure or refusal is the hub's doing.
    healthy = result["answered"] == result["queries"] and not (
        result["refused"] or result["bank_failures"]
    )
    if not healthy:
        print("benchmark run unhealthy: see the notes", file=sys.stderr)
    return 0 if healthy else 1
