"""The faulty-bank plan and the checks of a run with faulty banks: the busiest banks are
chosen, the faults file is what the simulator reads, and each check catches what it is for."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest

from benchmarks import faults
from dsop.hub.v1 import hub_pb2
from hub.clock import today
from providers.faults import load_faults_file
from providers.synthetic import SyntheticDataset, make_banks

Outcome = hub_pb2.BankOutcome
Reason = hub_pb2.FailureReason
INFOS = make_banks(12, 3)
DATASET = SyntheticDataset(3, INFOS)
PARTIES = DATASET.party_sample(300)
FAILED = Outcome.BANK_OUTCOME_FAILED
UNAVAILABLE = (FAILED, Reason.FAILURE_REASON_UNAVAILABLE, "ACC-100")
CIRCUIT_OPEN = (FAILED, Reason.FAILURE_REASON_CIRCUIT_OPEN, "ACC-100")
REFUSED_022 = (FAILED, Reason.FAILURE_REASON_REFUSED, "ACC-022")
DEADLINE = (FAILED, Reason.FAILURE_REASON_DEADLINE, "ACC-100")
COMPLETE = (Outcome.BANK_OUTCOME_COMPLETE, 0, "")


def test_the_banks_kar_names_most_take_the_mix_in_turn() -> None:
    plan = faults.plan(DATASET, INFOS, PARTIES, 5)
    named: Counter[str] = Counter()
    day = today()
    for party in PARTIES:
        named.update(r.organization_id for r in DATASET.relations(party, day, day))
    busiest = [bank_id for bank_id, _ in named.most_common(5)]
    assert sorted(plan.banks) == sorted(busiest)
    assert [b.kind for b in plan.banks.values()] == list(faults.MIX)
    assert [b.kind.name for b in plan.banks.values()].count("slow tail") == 2
    assert len(plan.down()) == 1
    assert plan == faults.plan(DATASET, INFOS, PARTIES, 5), "the same for the same seed"
    with pytest.raises(ValueError, match="--faulty"):
        faults.plan(DATASET, INFOS, PARTIES, 13)


def test_the_faults_file_is_what_the_simulator_reads(tmp_path: Path) -> None:
    plan = faults.plan(DATASET, INFOS, PARTIES, 5)
    path = faults.write_faults_file(tmp_path / "faults.toml", plan.banks.values())
    loaded = load_faults_file(path, [info.bank_id for info in INFOS])
    for bank_id, info in ((i.bank_id, i) for i in INFOS):
        bank = plan.banks.get(bank_id)
        assert loaded[bank_id] == (bank.kind.faults if bank else faults.Faults()), info.name


def _plan() -> faults.Plan:
    return faults.plan(DATASET, INFOS, PARTIES, 5)


def _query(party: str) -> hub_pb2.Query:
    return hub_pb2.Query(query_id=f"q-{party}", party_id=party)


def _summary(
    plan: faults.Plan, party: str, **outcomes: tuple[int, int, str]
) -> hub_pb2.QuerySummary:
    """A summary listing the banks KAR names for ``party``, each complete (a bank that is
    down: circuit open) unless ``outcomes`` (by bank id, with a "b" before it) says
    otherwise."""
    summary = hub_pb2.QuerySummary(query_id=f"q-{party}")
    for bank_id in sorted(plan.kar[party]):
        usual = CIRCUIT_OPEN if bank_id in plan.down() else COMPLETE
        outcome, reason, code = outcomes.get(f"b{bank_id}", usual)
        status = summary.banks.add(bank_id=bank_id, outcome=outcome, reason=reason)  # type: ignore[arg-type]
        if code:
            status.error.code = code
    return summary


def _party_of(plan: faults.Plan, kind: faults.Kind) -> tuple[str, str]:
    """A party KAR names the bank of that kind for, and the bank."""
    bank = next(b for b in plan.banks.values() if b.kind is kind)
    return next(p for p in PARTIES if bank.bank_id in plan.kar[p]), bank.bank_id


def _healthy_party(plan: faults.Plan) -> tuple[str, str]:
    party = next(p for p in PARTIES if plan.kar[p] and not plan.kar[p] & set(plan.banks))
    return party, next(iter(plan.kar[party]))


@pytest.mark.parametrize(
    ("kind", "outcome", "allowed"),
    [
        (faults.DOWN, CIRCUIT_OPEN, True),
        (faults.DOWN, UNAVAILABLE, True),
        (faults.DOWN, COMPLETE, False),  # a bank that is down cannot have answered
        (faults.RETRIED, UNAVAILABLE, True),
        (faults.RETRIED, COMPLETE, True),
        (faults.RETRIED, REFUSED_022, False),
        (faults.REFUSED, REFUSED_022, True),
        (faults.REFUSED, UNAVAILABLE, False),
        (faults.SLOW, DEADLINE, True),
        (faults.SLOW, COMPLETE, True),
        (faults.SLOW, UNAVAILABLE, False),
    ],
)
def test_a_faulty_bank_may_end_only_as_its_kind_allows(
    kind: faults.Kind, outcome: tuple[int, int, str], allowed: bool
) -> None:
    plan = _plan()
    party, bank_id = _party_of(plan, kind)
    checker = faults.Checker(plan, [_query(party)], shared=0)
    checker.summary(0, _summary(plan, party, **{f"b{bank_id}": outcome}))
    assert (not checker.violations) == allowed, checker.examples
    key = faults.outcome_key(*outcome)
    assert checker.per_bank[bank_id].outcomes == Counter({key: 1})
    assert checker.outcomes[key] >= 1


def test_a_healthy_bank_that_fails_is_caught() -> None:
    plan = _plan()
    party, bank_id = _healthy_party(plan)
    checker = faults.Checker(plan, [_query(party)], shared=0)
    checker.summary(0, _summary(plan, party, **{f"b{bank_id}": UNAVAILABLE}))
    assert checker.violations == Counter({"a healthy bank failed": 1})


def test_a_summary_leaving_out_a_bank_kar_names_is_caught() -> None:
    plan = _plan()
    party, bank_id = _party_of(plan, faults.DOWN)
    summary = _summary(plan, party)
    kept = [s for s in summary.banks if s.bank_id != bank_id]
    del summary.banks[:]
    summary.banks.extend(kept)
    checker = faults.Checker(plan, [_query(party)], shared=0)
    checker.summary(0, summary)
    assert checker.violations == Counter({"the summary does not list the banks KAR names": 1})


def test_a_fault_that_never_showed_is_reported() -> None:
    plan = _plan()
    party, bank_id = _party_of(plan, faults.REFUSED)
    checker = faults.Checker(plan, [_query(party)], shared=0)
    checker.summary(0, _summary(plan, party))
    assert any(bank_id in problem for problem in checker.fault_not_seen())


def test_a_retried_fault_shows_as_answers_the_direct_client_lost() -> None:
    plan = _plan()
    party, bank_id = _party_of(plan, faults.RETRIED)
    checker = faults.Checker(plan, [_query(party)], shared=1)
    checker.summary(0, _summary(plan, party))
    result, _ = _answer(bank_id, party)
    checker.result(0, result)
    assert any(bank_id in problem for problem in checker.fault_not_seen())
    assert checker.compare({}) == (0, 0)  # the direct client got nothing from the bank
    assert not any(bank_id in problem for problem in checker.fault_not_seen())
    (figures,) = [b for b in checker.figures()["banks"] if b["bank_id"] == bank_id]
    assert figures["answered_by_hub_not_direct"] == 1


def _answer(bank_id: str, party: str) -> tuple[hub_pb2.BankResult, list[object]]:
    """A bank's answer as the hub sends it (field mask applied), and the details the direct
    client got for it."""
    data = DATASET.bank(bank_id)
    day = dt.date.today()
    details = [
        data.get_account_details(a.account_reference, day, day).account
        for a in data.list_accounts(party, True, day, day).accounts
        if a.account_reference != faults.DATA_NOT_DELIVERED
    ]
    result = hub_pb2.BankResult(bank_id=bank_id, outcome=Outcome.BANK_OUTCOME_COMPLETE)
    result.accounts_with_balances.accounts.extend(details)
    from tests.support import filtered  # noqa: PLC0415

    result.accounts_with_balances.CopyFrom(
        filtered(result.accounts_with_balances, "fi-utlegg", "accounts_with_balances")
    )
    return result, list(details)


def test_answers_are_compared_with_the_direct_baseline_and_a_difference_is_caught() -> None:
    plan = _plan()
    party, bank_id = _healthy_party(plan)
    result, details = _answer(bank_id, party)
    assert details, "the party holds accounts at the bank"
    checker = faults.Checker(plan, [_query(party)], shared=1)
    checker.result(0, result)
    assert checker.compare({(f"q-{party}", bank_id): details}) == (1, 0)  # type: ignore[dict-item]
    assert not checker.violations
    balance = result.accounts_with_balances.accounts[0].balances[0]
    balance.amount += "1"  # one more digit: another amount
    checker.result(0, result)
    assert checker.compare({(f"q-{party}", bank_id): details}) == (1, 1)  # type: ignore[dict-item]
    assert checker.violations == Counter(
        {"a bank's answer differs between the hub and the direct client": 1}
    )
