"""The hub's metrics: one registry, served over HTTP for Prometheus to scrape.

Each stage declares the families it feeds in one block at the top of its module, built with
the helpers here: lock-free families, so the hot path pays a fraction of a microsecond per
update. State that already lives in objects (queries in flight, circuit breakers, retry and
hedge counts, audit counters) is read when Prometheus scrapes, by :class:`HubCollector`, so
the hot path pays nothing for it.

No label carries personal data: labels are services, operations, outcomes, ACC codes and
banks' organisation numbers (public registry data), never a party, an account or a name.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from prometheus_client import Metric

#: The hub's registry (not the library's global one, so importing the hub never changes what
#: another program embedding it exports).
REGISTRY: Final = CollectorRegistry(auto_describe=True)
for _standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_standard)

#: Latency buckets from 1 ms to 60 s (bank calls, queries): the deadlines are 30 s and 60 s.
SECONDS_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
#: Sizes of coalesced batches (requests per message, records per commit).
SIZE_BUCKETS: Final = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


def counter(name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
    return Counter(name, documentation, labels)


def gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
    return Gauge(name, documentation, labels)


def histogram(
    name: str, documentation: str, labels: Sequence[str] = (), *, buckets: Sequence[float]
) -> Histogram:
    return Histogram(name, documentation, labels, buckets=buckets)


# -- lock-free families ----------------------------------------------------------------------
#
# prometheus-client's own metrics take a lock on every update (about 1 µs for a histogram
# observation, measured here); the hub updates several per query on one thread. These keep
# plain numbers, updated under the GIL, and are read when Prometheus scrapes (from the
# endpoint's thread: a scrape may see a count one update ahead of its sum, never a count going
# backwards). Same shape as the library's: ``family.labels(...).inc()`` / ``.observe(v)``.


class _CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class _GaugeChild(_CounterChild):
    __slots__ = ()

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = value


class _HistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class _Family(Collector):
    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.label_names = tuple(labels)
        self._children: dict[tuple[str, ...], Any] = {}
        self._default = None if labels else self.labels()
        REGISTRY.register(self)

    def _child(self) -> Any:
        raise NotImplementedError

    def labels(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.label_names):
                raise ValueError(f"{self.name}: labels {self.label_names}, got {values}")
            child = self._children[values] = self._child()
        return child

    def _family(self) -> Metric:
        raise NotImplementedError

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def _items(self) -> list[tuple[tuple[str, ...], Any]]:
        # A copy: the event loop may add a child while the endpoint's thread reads.
        return list(self._children.items())


class _Scalar(_Family):
    """A family whose children each hold one number (counters, gauges)."""

    def _family(self) -> CounterMetricFamily | GaugeMetricFamily:
        raise NotImplementedError

    def inc(self, amount: float = 1.0) -> None:
        assert self._default is not None
        self._default.inc(amount)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for values, child in self._items():
            family.add_metric(values, child.value)
        yield family


class Counter(_Scalar):
    def _child(self) -> _CounterChild:
        return _CounterChild()

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.label_names)


class Gauge(_Scalar):
    def _child(self) -> _GaugeChild:
        return _GaugeChild()

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.documentation, labels=self.label_names)

    def dec(self, amount: float = 1.0) -> None:
        assert self._default is not None
        self._default.dec(amount)


class Histogram(_Family):
    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], *, buckets: Sequence[float]
    ) -> None:
        self.bounds = (*sorted(buckets), float("inf"))
        super().__init__(name, documentation, labels)

    def _child(self) -> _HistogramChild:
        return _HistogramChild(self.bounds)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.label_names)

    def observe(self, value: float) -> None:
        assert self._default is not None
        self._default.observe(value)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for values, child in self._items():
            counts, total = list(child.counts), child.sum
            buckets, running = [], 0
            for bound, count in zip(self.bounds, counts, strict=True):
                running += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
            family.add_metric(values, buckets, total)
        yield family


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Source:
    """What a running hub shows at scrape time. ``Hub`` fills one in at start."""

    in_flight: Callable[[], int]
    shed: Callable[[], int]
    banks: Callable[[], Iterable[BankState]]
    audit: Callable[[], AuditState | None]


@dataclass(frozen=True, slots=True)
class BankState:
    bank_id: str
    breaker: str
    retries: int
    hedges: int
    in_flight: int


@dataclass(frozen=True, slots=True)
class AuditState:
    records: int
    transactions: int
    checkpoints: int
    failures: int


BREAKER_STATES: Final = ("closed", "half-open", "open")


class HubCollector(Collector):
    """Reads the live hubs' state when scraped (tests run several hubs in one process; their
    figures are summed per label set)."""

    def __init__(self) -> None:
        self._sources: list[Source] = []
        self._lock = threading.Lock()

    def add(self, source: Source) -> None:
        with self._lock:
            self._sources.append(source)

    def remove(self, source: Source) -> None:
        with self._lock:
            if source in self._sources:
                self._sources.remove(source)

    def describe(self) -> Iterator[Metric]:
        # Known up front, so the registry can check names without reading any hub.
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            sources = list(self._sources)
        families = self._families()
        in_flight, shed, breaker_state, retries, hedges, bank_in_flight, *audit = families
        in_flight_total = shed_total = 0
        per_bank: dict[str, list[int]] = {}
        breakers: dict[str, str] = {}
        audit_totals = [0, 0, 0, 0]
        for source in sources:
            in_flight_total += source.in_flight()
            shed_total += source.shed()
            for bank in source.banks():
                row = per_bank.setdefault(bank.bank_id, [0, 0, 0])
                row[0] += bank.retries
                row[1] += bank.hedges
                row[2] += bank.in_flight
                # The worst state wins when two hubs (tests) know the same bank.
                known = breakers.get(bank.bank_id, "closed")
                if BREAKER_STATES.index(bank.breaker) >= BREAKER_STATES.index(known):
                    breakers[bank.bank_id] = bank.breaker
            state = source.audit()
            if state is not None:
                for index, value in enumerate(
                    (state.records, state.transactions, state.checkpoints, state.failures)
                ):
                    audit_totals[index] += value
        in_flight.add_metric([], in_flight_total)
        shed.add_metric([], shed_total)
        for bank_id, (bank_retries, bank_hedges, bank_pending) in sorted(per_bank.items()):
            retries.add_metric([bank_id], bank_retries)
            hedges.add_metric([bank_id], bank_hedges)
            bank_in_flight.add_metric([bank_id], bank_pending)
        for bank_id, current in sorted(breakers.items()):
            for name in BREAKER_STATES:
                breaker_state.add_metric([bank_id, name], 1 if name == current else 0)
        for family, value in zip(audit, audit_totals, strict=True):
            family.add_metric([], value)
        return iter(families)

    @staticmethod
    def _families() -> list[GaugeMetricFamily | CounterMetricFamily]:
        return [
            GaugeMetricFamily("dsop_hub_queries_in_flight", "Queries admitted and not finished"),
            CounterMetricFamily(
                "dsop_hub_queries_shed", "Queries refused for want of room (ACC-022)"
            ),
            GaugeMetricFamily(
                "dsop_hub_bank_circuit_state",
                "1 for the bank's current circuit-breaker state, 0 for the others",
                labels=["bank", "state"],
            ),
            CounterMetricFamily("dsop_hub_bank_retries", "Retries of bank calls", labels=["bank"]),
            CounterMetricFamily(
                "dsop_hub_bank_hedges", "Hedged second requests to banks", labels=["bank"]
            ),
            GaugeMetricFamily(
                "dsop_hub_bank_requests_in_flight",
                "Requests to the bank queued or awaiting an answer",
                labels=["bank"],
            ),
            CounterMetricFamily("dsop_hub_audit_records", "Audit records committed"),
            CounterMetricFamily("dsop_hub_audit_transactions", "Audit log transactions committed"),
            CounterMetricFamily("dsop_hub_audit_checkpoints", "Signed audit checkpoints"),
            CounterMetricFamily(
                "dsop_hub_audit_failures", "Audit transactions that failed (data withheld)"
            ),
        ]


COLLECTOR: Final = HubCollector()
REGISTRY.register(COLLECTOR)


class MetricsServer:
    """The HTTP endpoint (``/metrics``) on its own thread, as prometheus-client serves it."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(listen: str) -> MetricsServer:
    """Starts the endpoint on ``host:port`` (port 0: any free port)."""
    host, _, port = listen.rpartition(":")
    server, thread = start_http_server(int(port), addr=host.strip("[]"), registry=REGISTRY)
    return MetricsServer(server, thread)
