"""The enforcement scenario with faulty banks: which banks, how they fail, and the checks.

``--faulty N`` makes N banks misbehave for the whole run, through the simulator's faults file
(:mod:`providers.faults`). The banks are those KAR names for the most parties of the workload
(ties broken by organisation number), so the faults touch a large share of the queries, and
the same ones for the same seed. They take the kinds of :data:`MIX` in turn; for N = 5:

- two with a slow tail: 1 % of answers take 2 s (well inside the hub's 30 s per bank);
- one failing 5 % of requests with ACC-100 (provider failure: UNAVAILABLE, which the hub
  retries within its budget);
- one refusing 5 % of requests with ACC-022 (too many requests: not retried, passed on);
- one down for the whole run (its port closed: connection refused).

The checks, on every summary: the query lists exactly the banks KAR names for its party; a
healthy bank's part is complete (or partial, as the bank said); a faulty bank's part ends as
its kind allows. On the queries the direct baseline also ran, every bank answer both sides got
is the same after the service's field mask. Nothing may be lost: every query gets one
summary, no query is refused.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Final

from hdrh.histogram import HdrHistogram

from benchmarks import report
from dsop.controlinfo.v2 import bank_pb2, model_pb2
from dsop.hub.v1 import hub_pb2
from hub.clock import today
from hub.filter import FilterStage
from hub.profiles import load_profiles
from providers.faults import Faults
from providers.synthetic import SyntheticDataset
from providers.synthetic.universe import BankInfo

Outcome = hub_pb2.BankOutcome
Reason = hub_pb2.FailureReason
FAILED: Final = Outcome.BANK_OUTCOME_FAILED
ANSWERED: Final = frozenset({Outcome.BANK_OUTCOME_COMPLETE, Outcome.BANK_OUTCOME_PARTIAL})
#: The standard's sentinel: an account the bank holds but did not deliver digitally (the hub
#: reports it without details; the direct client asks no details for it).
DATA_NOT_DELIVERED: Final = "dataNotDelivered"


@dataclass(frozen=True, slots=True)
class Kind:
    """A way of failing, and the outcomes a bank failing that way may have in a summary."""

    name: str
    faults: Faults
    #: Failures allowed, as (reason, ACC code); a part may also be answered unless ``down``.
    failures: frozenset[tuple[int, str]]
    #: Whether the fault must show: as failures in the hub's summaries, or as answers the
    #: hub delivered that the direct client (which does not retry) lost. A run that never
    #: exercised a fault proves nothing about it.
    shows: bool

    def allows(self, outcome: int, reason: int, code: str) -> bool:
        if outcome in ANSWERED:
            return not self.faults.down
        return (reason, code) in self.failures


SLOW: Final = Kind(
    "slow tail",
    Faults(tail_rate=0.01, tail_latency=2.0),
    frozenset({(Reason.FAILURE_REASON_DEADLINE, "ACC-100")}),
    shows=False,
)
RETRIED: Final = Kind(
    "errors ACC-100 (retried)",
    Faults(error_rate=0.05, error_code="ACC-100"),
    # Retries spent, or failures in a row opened the bank's circuit breaker.
    frozenset(
        {
            (Reason.FAILURE_REASON_UNAVAILABLE, "ACC-100"),
            (Reason.FAILURE_REASON_CIRCUIT_OPEN, "ACC-100"),
        }
    ),
    shows=True,
)
REFUSED: Final = Kind(
    "errors ACC-022 (refused)",
    Faults(error_rate=0.05, error_code="ACC-022"),
    frozenset({(Reason.FAILURE_REASON_REFUSED, "ACC-022")}),
    shows=True,
)
DOWN: Final = Kind(
    "down",
    Faults(down=True),
    frozenset(
        {
            (Reason.FAILURE_REASON_UNAVAILABLE, "ACC-100"),
            (Reason.FAILURE_REASON_CIRCUIT_OPEN, "ACC-100"),
        }
    ),
    shows=True,
)
#: The kinds the faulty banks take in turn, busiest bank first.
MIX: Final = (SLOW, RETRIED, DOWN, SLOW, REFUSED)


@dataclass(frozen=True, slots=True)
class Faulty:
    """A bank of the run made faulty, and how."""

    bank_id: str
    name: str
    kind: Kind
    #: Share of the workload's parties KAR names this bank for.
    share: float


@dataclass(frozen=True, slots=True)
class Plan:
    """The faulty banks of a run, and the banks KAR names for each party of the workload."""

    banks: Mapping[str, Faulty]
    kar: Mapping[str, frozenset[str]]

    def down(self) -> set[str]:
        return {b.bank_id for b in self.banks.values() if b.kind.faults.down}


def plan(
    dataset: SyntheticDataset, infos: Sequence[BankInfo], parties: Sequence[str], count: int
) -> Plan:
    """The ``count`` banks KAR names for most of ``parties``, each with its kind of fault."""
    if not 0 <= count <= len(infos):
        raise ValueError(f"--faulty: must be between 0 and the number of banks, {len(infos)}")
    day = today()  # the hub's, which its KAR lookups use
    kar: dict[str, frozenset[str]] = {}
    named: Counter[str] = Counter()
    for party in parties:
        banks = frozenset(r.organization_id for r in dataset.relations(party, day, day))
        kar[party] = banks
        named.update(banks)
    names = {info.bank_id: info.name for info in infos}
    ranked = sorted(names, key=lambda bank_id: (-named[bank_id], bank_id))[:count]
    return Plan(
        {
            bank_id: Faulty(
                bank_id, names[bank_id], MIX[i % len(MIX)], named[bank_id] / len(parties)
            )
            for i, bank_id in enumerate(ranked)
        },
        kar,
    )


def write_faults_file(path: Path, banks: Collection[Faulty]) -> Path:
    """The simulator's faults file (TOML) for ``banks``."""
    defaults = Faults()
    lines = []
    for bank in banks:
        lines += [f"# {bank.name}: {bank.kind.name}", f"[{bank.bank_id}]"]
        for f in fields(Faults):
            value = getattr(bank.kind.faults, f.name)
            if value != getattr(defaults, f.name):
                rendered = f'"{value}"' if isinstance(value, str) else str(value).lower()
                lines.append(f"{f.name} = {rendered}")
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def outcome_key(outcome: int, reason: int, code: str) -> str:
    """``COMPLETE``, ``PARTIAL`` or ``FAILED <REASON> <ACC code>``."""
    name = Outcome.Name(outcome).removeprefix("BANK_OUTCOME_")  # type: ignore[arg-type]
    if outcome != FAILED:
        return name
    return f"{name} {Reason.Name(reason).removeprefix('FAILURE_REASON_')} {code}"  # type: ignore[arg-type]


@dataclass(slots=True)
class BankFigures:
    queries: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    #: The hub's own elapsed time (summary.elapsed_us) of the queries that asked this bank.
    histogram: HdrHistogram = field(default_factory=report.new_histogram)


@dataclass(slots=True)
class Checker:
    """Checks each summary of the timed run as it arrives, and keeps the bank answers of the
    first ``shared`` queries (those the direct baseline also runs) to compare later."""

    plan: Plan
    queries: Sequence[hub_pb2.Query]
    shared: int
    outcomes: Counter[str] = field(default_factory=Counter)
    per_bank: dict[str, BankFigures] = field(default_factory=dict)
    #: What went wrong, by check, and one example of each.
    violations: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    answers: dict[tuple[int, str], hub_pb2.BankResult] = field(default_factory=dict)
    #: Per faulty bank: answers the hub delivered that the direct client did not get.
    rescued: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.per_bank = {bank_id: BankFigures() for bank_id in self.plan.banks}

    def _violation(self, check: str, example: str) -> None:
        self.violations[check] += 1
        self.examples.setdefault(check, example)

    def result(self, index: int, result: hub_pb2.BankResult) -> None:
        if index < self.shared and result.outcome in ANSWERED:
            self.answers[(index, result.bank_id)] = result

    def summary(self, index: int, summary: hub_pb2.QuerySummary) -> None:
        if summary.HasField("error"):
            return  # counted as refused by the run
        faulty = self.plan.banks
        seen = set()
        for status in summary.banks:
            bank_id = status.bank_id
            seen.add(bank_id)
            code = status.error.code if status.outcome == FAILED else ""
            key = outcome_key(status.outcome, status.reason, code)
            self.outcomes[key] += 1
            bank = faulty.get(bank_id)
            if bank is None:
                if status.outcome not in ANSWERED:
                    self._violation("a healthy bank failed", f"bank {bank_id}: {key}")
                continue
            figures = self.per_bank[bank_id]
            figures.queries += 1
            figures.outcomes[key] += 1
            report.record_us(figures.histogram, summary.elapsed_us * 1000)
            if not bank.kind.allows(status.outcome, status.reason, code):
                self._violation(
                    f"a faulty bank ({bank.kind.name}) ended otherwise than its kind allows",
                    f"bank {bank_id}: {key}",
                )
        expected = self.plan.kar.get(self.queries[index].party_id)
        if expected is not None and seen != expected:
            self._violation(
                "the summary does not list the banks KAR names",
                f"query {index}: {len(seen)} banks listed, {len(expected)} named",
            )

    def compare(
        self, direct: Mapping[tuple[str, str], Sequence[model_pb2.AccountDetail]]
    ) -> tuple[int, int]:
        """Compares the kept hub answers with the direct baseline's (by query index and bank),
        where both sides got one; records mismatches. Returns (compared, mismatched)."""
        plan_ = FilterStage(load_profiles()).plans["fi-utlegg"]["accounts_with_balances"]
        compared = mismatched = 0
        for (index, bank_id), result in self.answers.items():
            details = direct.get((self.queries[index].query_id, bank_id))
            if details is None:
                if bank_id in self.plan.banks:
                    self.rescued[bank_id] += 1
                else:
                    self._violation(
                        "a healthy bank answered the hub but not the direct client",
                        f"query {index}, bank {bank_id}",
                    )
                continue
            unfiltered = bank_pb2.ListAccountsWithBalancesResponse()
            unfiltered.accounts.extend(details)
            expected = bank_pb2.ListAccountsWithBalancesResponse.FromString(
                plan_.apply(unfiltered.SerializeToString())[0]
            )
            got = bank_pb2.ListAccountsWithBalancesResponse()
            got.accounts.extend(
                a
                for a in result.accounts_with_balances.accounts
                if a.account_reference != DATA_NOT_DELIVERED
            )
            compared += 1
            if _normalized(got) != _normalized(expected):
                mismatched += 1
                self._violation(
                    "a bank's answer differs between the hub and the direct client",
                    f"query {index}, bank {bank_id}",
                )
        return compared, mismatched

    def figures(self) -> dict[str, object]:
        """The per-faulty-bank figures of the report."""
        return {
            "banks": [
                {
                    "bank_id": bank.bank_id,
                    "name": bank.name,
                    "fault": bank.kind.name,
                    "faults": {
                        f.name: getattr(bank.kind.faults, f.name)
                        for f in fields(Faults)
                        if getattr(bank.kind.faults, f.name) != getattr(Faults(), f.name)
                    },
                    "kar_share": round(bank.share, 4),
                    "queries": self.per_bank[bank.bank_id].queries,
                    "outcomes": dict(self.per_bank[bank.bank_id].outcomes.most_common()),
                    "hub_elapsed_ms": report.latency_ms(self.per_bank[bank.bank_id].histogram),
                    # Of the queries the direct baseline also ran.
                    "answered_by_hub_not_direct": self.rescued[bank.bank_id],
                }
                for bank in self.plan.banks.values()
            ],
        }

    def fault_not_seen(self) -> list[str]:
        """Faulty banks whose fault should show (``Kind.shows``) but did not; call after
        :meth:`compare`."""
        return [
            f"bank {bank.bank_id} ({bank.kind.name}): the fault never showed"
            for bank in self.plan.banks.values()
            if bank.kind.shows
            and not self.rescued[bank.bank_id]
            and not any(k.startswith("FAILED") for k in self.per_bank[bank.bank_id].outcomes)
        ]


def _normalized(message: bank_pb2.ListAccountsWithBalancesResponse) -> bytes:
    copy = bank_pb2.ListAccountsWithBalancesResponse()
    copy.CopyFrom(message)
    for account in copy.accounts:
        for balance in account.balances:
            # "Now" balances are stamped when computed: the two runs compute them apart.
            balance.ClearField("registered")
    return copy.SerializeToString(deterministic=True)
