"""What the scenarios after ``enforcement`` share: banks, a hub and the ceiling relay as child
processes, clients for agencies, and the run wrapper that writes the report and its plots.

Every process runs as in the enforcement scenario (:mod:`benchmarks.processes`): mutual TLS
unless ``--insecure``, the hub with its audit log, the bank simulator serving KAR over gRPC.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import uvloop
from hdrh.histogram import HdrHistogram

from benchmarks import ceiling, direct, processes, report
from benchmarks.enforcement import READY_TIMEOUT_S, _direct_endpoints
from benchmarks.processes import Child, ChildFailed, Children, Tls
from clients.client import ClientTls, HubClient
from clients.devtokens import DevTokens
from hub.registry import Registry

#: Percentiles kept in a report for its latency CDF plot.
CDF_PERCENTILES: Final = (
    *range(1, 100),
    99.5, 99.9, 99.95, 99.99, 100.0,
)  # fmt: skip
#: How often the hub's memory is sampled (``RssSampler``).
RSS_EVERY_S: Final = 0.1
#: An agency reuses its token (Maskinporten's last at most 120 s, DSOP.md): a new one this
#: often. Minting costs the driver about 0.6 ms (an RSA signature), too much per query.
TOKEN_REUSE_S: Final = 60.0


def add_common_arguments(parser: argparse.ArgumentParser, *, json_default: str) -> None:
    parser.add_argument("--seed", type=int, default=1, help="dataset and query seed")
    parser.add_argument("--insecure", action="store_true", help="plaintext instead of mutual TLS")
    parser.add_argument(
        "--no-ceiling", action="store_true", help="skip the ceiling baseline (the echo relay)"
    )
    parser.add_argument("--no-direct", action="store_true", help="skip the direct baseline")
    parser.add_argument(
        "--hub-arg",
        action="append",
        default=[],
        dest="hub_args",
        help="an extra option for `dsop hub serve` (repeat)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=Path(json_default),
        help="write the report here, a .md and the plots beside it",
    )
    parser.add_argument("--no-plots", action="store_true", help="write no PNG plots")


@dataclass(slots=True)
class Fleet:
    """The processes of one run and how to reach them."""

    tmp: Path
    tls: Tls
    registry: Path
    banks: Child
    kar_port: int = 0
    hub: Child | None = None
    hub_target: str = ""

    def client(
        self, agency: str, target: str | None = None, *, own_connection: bool = False
    ) -> HubClient:
        """A client for ``agency`` to the hub (or to ``target``, the relay), with its
        certificate and a development token; ``own_connection``: not shared with other
        clients to the same target (gRPC shares one by default)."""
        certs = self.tls.certs
        tls = None
        if certs is not None:
            tls = ClientTls(
                ca=(certs / "ca.pem").read_bytes(),
                cert=(certs / f"agency-{agency}.pem").read_bytes(),
                key=(certs / f"agency-{agency}.key").read_bytes(),
            )
        return HubClient(
            target or self.hub_target,
            tls=tls,
            token=ReusedToken(DevTokens(self.tls.keys, agency)),
            insecure=certs is None,
            channel_options=(("grpc.use_local_subchannel_pool", 1),) if own_connection else (),
        )

    def direct_endpoints(self) -> direct.Endpoints:
        return _direct_endpoints(Registry.load(self.registry), self.kar_port, self.tls.certs)

    async def start_hub(self, children: Children, window: int, extra: Sequence[str]) -> None:
        port_file = self.tmp / "hub.port"
        self.hub = children.start(
            processes.hub(
                registry=self.registry,
                port_file=port_file,
                window=window,
                kar=f"grpc://127.0.0.1:{self.kar_port}" if self.kar_port else "embedded",
                tls=self.tls,
                log=self.tmp / "hub.log",
                extra=extra,
            )
        )
        await processes.wait_for_file(port_file, self.hub, READY_TIMEOUT_S)
        self.hub_target = f"127.0.0.1:{int(port_file.read_text())}"

    async def start_ceiling(self, children: Children) -> tuple[Child, str]:
        return await ceiling.start(children, self.tmp, self.registry, self.tls)


class ReusedToken:
    """A development token, minted again every TOKEN_REUSE_S."""

    __slots__ = ("_mint", "_minted_at", "_token")

    def __init__(self, mint: DevTokens) -> None:
        self._mint = mint
        self._token = ""
        self._minted_at = -TOKEN_REUSE_S

    def __call__(self) -> str:
        now = time.monotonic()
        if now - self._minted_at >= TOKEN_REUSE_S:
            self._token, self._minted_at = self._mint(), now
        return self._token


def make_tls(tmp: Path, insecure: bool) -> Tls:
    # Made in plaintext runs too: the token issuer's keys come with the certificates.
    keys = processes.make_certs(tmp / "certs")
    return Tls(None if insecure else keys, keys)


async def simulated(
    children: Children, tmp: Path, *, banks: int, seed: int, insecure: bool
) -> Fleet:
    """The bank simulator (``banks`` banks and its KAR, one process) and the certificates."""
    tls = make_tls(tmp, insecure)
    base_port = processes.free_port_block(banks + 1)
    registry = tmp / "registry.json"
    child = children.start(
        processes.bank_simulator(
            banks=banks,
            seed=seed,
            base_port=base_port,
            processes=1,
            registry=registry,
            kar_port=base_port + banks,
            tls=tls,
            log=tmp / "banks.log",
        )
    )
    await processes.wait_for_file(registry, child, READY_TIMEOUT_S)
    return Fleet(tmp, tls, registry, child, kar_port=base_port + banks)


# -- measuring ------------------------------------------------------------------------------


def cdf(histogram: HdrHistogram) -> list[tuple[float, float]]:
    """(percentile, latency in ms) pairs for a CDF plot."""
    if histogram.get_total_count() == 0:
        return []
    values = histogram.get_percentile_to_value_dict(list(CDF_PERCENTILES))
    return [(p, round(values[p] / 1000, 3)) for p in CDF_PERCENTILES]


def latency(histogram: HdrHistogram) -> dict[str, object]:
    """The report's latency summary and the CDF points."""
    return {"latency_ms": report.latency_ms(histogram), "latency_cdf": cdf(histogram)}


@dataclass(slots=True)
class RssSampler:
    """Samples a process's resident set size in the background (for memory over time)."""

    pid: int
    samples: list[tuple[float, float]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _began: float = 0.0

    def start(self) -> None:
        self._began = time.monotonic()
        self.samples.append((0.0, round(rss_mb(self.pid), 1)))
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.samples.append(
                (round(time.monotonic() - self._began, 2), round(rss_mb(self.pid), 1))
            )
            await asyncio.sleep(RSS_EVERY_S)

    async def stop(self) -> list[tuple[float, float]]:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.samples.append((round(time.monotonic() - self._began, 2), round(rss_mb(self.pid), 1)))
        return self.samples


def rss_mb(pid: int) -> float:
    """Resident set size (VmRSS) of one process in MiB; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# -- running ----------------------------------------------------------------------------------


def header(name: str, argv: Sequence[str]) -> report.Report:
    """The keys every report starts with."""
    return {
        "scenario": name,
        "command": "python -m benchmarks " + shlex.join(argv),
        "machine": report.machine(),
        "code": report.code_version(processes.ROOT),
    }


def run(
    args: argparse.Namespace,
    body: Callable[[Path, Children], Coroutine[Any, Any, report.Report]],
    markdown: Callable[[report.Report], str],
    plot: Callable[[report.Report, Path], list[Path]],
) -> report.Report | None:
    """Runs ``body`` with a temporary directory and the children it starts (stopped whatever
    happens), then writes the JSON report, its Markdown and the plots; None when a child
    failed."""
    with tempfile.TemporaryDirectory(prefix="dsop-bench-") as tmp:
        print(f"working in {tmp}", file=sys.stderr)
        try:
            with Children() as children:
                result: report.Report = uvloop.run(body(Path(tmp), children))
        except ChildFailed as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return None
    text = markdown(result)
    print(text)
    path: Path = args.json
    report.write(path, result, text)
    written = [path, path.with_suffix(".md")]
    if not args.no_plots:
        written += plot(result, path.parent)
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return result


def table(header_row: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A Markdown table; numbers formatted with thousands separators."""

    def cell(value: object) -> str:
        if isinstance(value, bool) or value is None:
            return "-" if value is None else str(value)
        if isinstance(value, int):
            return f"{value:,}"
        if isinstance(value, float):
            return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
        return str(value)

    lines = ["| " + " | ".join(header_row) + " |", "|" + "---|" + "---:|" * (len(header_row) - 1)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def way_columns(first: str) -> tuple[str, ...]:
    """Column names of a table with throughput and latency of the hub, direct and the
    ceiling, after ``first``."""
    return (
        first,
        *(
            f"{who} {what}"
            for who in ("hub", "direct", "ceiling")
            for what in ("q/s", "p50 ms", "p99 ms")
        ),
    )


def cores_table(first: str, rows: Sequence[tuple[object, dict[str, Any]]]) -> list[str]:
    """CPU cores each process used per step (``rows``: the step's label and its parts by
    way), as Markdown lines."""
    body = []
    for label, parts in rows:
        cells: list[object] = [label]
        for who in ("hub", "direct", "ceiling"):
            cpu = (parts.get(who) or {}).get("cpu")
            names = ("server", "banks", "driver", "other")
            cores = (cpu[f"{part}_cores"] for part in names) if cpu else ()
            cells.append(" / ".join(f"{value:.2f}" for value in cores) or "-")
        body.append(cells)
    return [
        "",
        "CPU cores used (server / banks / driver / everything else on the machine; the server "
        "is the hub or the relay):",
        "",
        *table((first, "hub run", "direct run", "ceiling run"), body),
    ]


def machine_line(result: report.Report) -> str:
    m = result["machine"]
    return (
        f"{m['cpus']} CPUs, Python {m['python']}, grpcio {m['grpcio']}; "
        f"commit {result['code']['commit']}{' (dirty)' if result['code']['dirty'] else ''}"
    )
