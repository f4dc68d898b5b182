"""The synthetic banks, the stable hashing every synthetic value derives from, and the small
generators of names, numbers and addresses built on it.

Determinism rests on :func:`stable_int`: blake2b of the joined parts, never Python's ``hash()``
(salted per process), so the same seed gives the same banks, parties and transactions in every
process and on every machine.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from hub.identifiers import (
    make_account_number,
    make_national_identity_number,
    make_organisation_number,
)
from providers.synthetic import names
from providers.synthetic.facts import Address

__all__ = [
    "MAX_BANKS",
    "BankInfo",
    "below",
    "make_banks",
    "mix64",
    "pick",
    "random_account_number",
    "random_address",
    "random_company_name",
    "random_org_id",
    "random_person_id",
    "random_person_name",
    "stable_int",
    "stable_rng",
]

T = TypeVar("T")


def stable_int(*parts: object) -> int:
    """A 64-bit integer determined only by ``parts`` (their ``str()`` joined by '|')."""
    data = "|".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


_MASK64: Final = (1 << 64) - 1


def mix64(seed: int, value: int) -> int:
    """A 64-bit hash of (seed, value): the splitmix64 finalizer. A stable and much cheaper
    stand-in for :func:`stable_int` where ``seed`` already came from it (an account's) and a
    value is needed per day: a day's balance, a day's transactions."""
    z = (seed + value * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def stable_rng(*parts: object) -> random.Random:
    """A generator seeded by :func:`stable_int` of ``parts``. Seeding costs a few
    microseconds, so hot paths seed once per entity, not per value."""
    return random.Random(stable_int(*parts))


def below(rng: random.Random, n: int) -> int:
    """A uniform integer in [0, n): ``rng.randrange(n)`` costs several times more, and the
    generators draw this for nearly every value. (The float has 53 random bits, far more than
    any n used here needs.)"""
    return int(rng.random() * n)


def pick(rng: random.Random, items: Sequence[T]) -> T:
    """A uniform choice from ``items`` (see :func:`below`)."""
    return items[int(rng.random() * len(items))]


def random_address(rng: random.Random) -> Address:
    """A Norwegian street address with a real town and postcode."""
    post_code, town = pick(rng, names.TOWNS)
    return Address(pick(rng, names.STREETS), str(1 + below(rng, 120)), post_code, town)


def random_person_name(rng: random.Random) -> str:
    """A first name and a surname."""
    return f"{pick(rng, names.FIRST_NAMES)} {pick(rng, names.SURNAMES)}"


def random_company_name(rng: random.Random) -> tuple[str, str]:
    """(name, trade word) of a fictional company."""
    trade = pick(rng, names.COMPANY_TRADES)
    return f"{pick(rng, names.COMPANY_WORDS)} {trade} {pick(rng, names.COMPANY_SUFFIXES)}", trade


def random_person_id(rng: random.Random, first_year: int, last_year: int) -> tuple[str, dt.date]:
    """A synthetic test person's national identity number (month + 80) and birth date."""
    while True:
        born = dt.date(first_year, 1, 1) + dt.timedelta(
            days=below(rng, (dt.date(last_year, 12, 31) - dt.date(first_year, 1, 1)).days + 1)
        )
        individual = below(rng, 500) + (0 if born.year < 2000 else 500)
        made = make_national_identity_number(born, individual, synthetic=True)
        if made is not None:
            return made, born


def random_account_number(rng: random.Random, prefix: int) -> str:
    """A valid account number of the bank with registration number ``prefix``."""
    while True:
        made = make_account_number(prefix, below(rng, 1_000_000))
        if made is not None:
            return made


def random_org_id(rng: random.Random) -> str:
    """A synthetic organisation number (3xxxxxxxx: a range no real entity uses)."""
    while True:
        made = make_organisation_number(31_000_000 + below(rng, 9_000_000))
        if made is not None:
            return made


@dataclass(frozen=True, slots=True)
class BankInfo:
    """One synthetic bank."""

    #: The bank's organisation number (9 digits, valid check digit).
    bank_id: str
    name: str
    #: The 4-digit registration number that starts its account numbers; unique per bank.
    prefix: int


_BANK_NAME_CHOICES: Final = len(names.BANK_NAMES) + len(names.BANK_PLACES) * len(names.BANK_FORMS)
#: The most banks make_banks can name uniquely.
MAX_BANKS: Final = _BANK_NAME_CHOICES


def _bank_names(rng: random.Random) -> list[str]:
    made = [form.format(place) for place in names.BANK_PLACES for form in names.BANK_FORMS]
    rng.shuffle(made)
    return [*names.BANK_NAMES, *made]


def make_banks(count: int, seed: int = 1) -> list[BankInfo]:
    """``count`` banks with unique organisation numbers, names and account prefixes, the same
    for the same seed; ``make_banks(n, s)`` is a prefix of ``make_banks(m, s)`` for n < m, so a
    larger universe keeps the smaller one's banks.

    Organisation numbers are drawn from the 3xxxxxxxx range, which real Norwegian entities do
    not use, so no synthetic bank carries a real bank's number. Raises ValueError when
    ``count`` is negative or above MAX_BANKS.
    """
    if not 0 <= count <= MAX_BANKS:
        raise ValueError(f"count must be 0-{MAX_BANKS}")
    rng = stable_rng(seed, "banks")
    bank_names = _bank_names(stable_rng(seed, "bank-names"))
    banks: list[BankInfo] = []
    used_ids: set[str] = set()
    used_prefixes: set[int] = set()
    while len(banks) < count:
        bank_id = make_organisation_number(rng.randrange(30_000_000, 40_000_000))
        prefix = rng.randrange(1000, 10_000)
        if bank_id is None or bank_id in used_ids or prefix in used_prefixes:
            continue
        used_ids.add(bank_id)
        used_prefixes.add(prefix)
        banks.append(BankInfo(bank_id, bank_names[len(banks)], prefix))
    return banks
