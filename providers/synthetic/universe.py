"""The synthetic banks, and the stable hashing every synthetic value derives from.

Determinism rests on :func:`stable_int`: blake2b of the joined parts, never Python's ``hash()``
(salted per process), so the same seed gives the same banks, parties and transactions in every
process and on every machine.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Final

from hub.identifiers import make_organisation_number
from providers.synthetic import names

__all__ = ["MAX_BANKS", "BankInfo", "make_banks", "stable_int", "stable_rng"]


def stable_int(*parts: object) -> int:
    """A 64-bit integer determined only by ``parts`` (their ``str()`` joined by '|')."""
    data = "|".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def stable_rng(*parts: object) -> random.Random:
    """A generator seeded by :func:`stable_int` of ``parts``. Seeding costs a few
    microseconds, so hot paths seed once per entity, not per value."""
    return random.Random(stable_int(*parts))


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
