"""The retry budget: at most a tenth of the recent calls are retried, however the failures
bunch together."""

from __future__ import annotations

from hub.resilience import RetryBudget


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _spent(budget: RetryBudget, tries: int) -> int:
    return sum(budget.spend() for _ in range(tries))


def test_failures_arriving_together_are_retried_within_a_tenth_of_recent_calls() -> None:
    clock = Clock()
    budget = RetryBudget(0.1, burst=10.0, clock=clock)
    # One batched answer: 1000 calls, then 50 of them fail at once (5 %).
    for _ in range(1000):
        budget.earn()
    assert _spent(budget, 50) == 50
    # A tenth of the calls and the floor, not more: 1000 calls earned 100, the floor is 10,
    # 50 are spent; of 100 more failures, 60 are retried (59: a thousand tenths add up to
    # a little under 100 in floating point).
    assert 59 <= _spent(budget, 100) <= 60


def test_without_calls_only_the_floor_is_retried() -> None:
    budget = RetryBudget(0.1, burst=10.0, clock=Clock())
    assert _spent(budget, 50) == 10


def test_calls_older_than_the_window_no_longer_count() -> None:
    clock = Clock()
    budget = RetryBudget(0.1, burst=10.0, window=10, clock=clock)
    for _ in range(1000):
        budget.earn()
    clock.now += 11
    assert _spent(budget, 50) == 10, "a quiet bank gets the floor, not old savings"
    for _ in range(200):
        budget.earn()
    clock.now += 5
    assert _spent(budget, 50) == 20, "calls 5 s ago still count"


def test_a_bank_failing_every_call_gets_a_tenth_retried() -> None:
    clock = Clock()
    budget = RetryBudget(0.1, burst=10.0, clock=clock)
    retries = 0
    for call in range(10_000):
        clock.now += 0.001
        budget.earn()
        if budget.spend():
            retries += 1
            budget.earn()  # the retry is a call too
        if call % 1000 == 0:
            clock.now += 1
    assert retries <= 0.1 * (10_000 + retries) + 10 + 1
    assert retries >= 0.1 * 10_000
