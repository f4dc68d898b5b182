"""Deterministic synthetic banks and customer-relations register (DSOP.md §3, §6, §8).

``SyntheticDataset(seed, make_banks(count, seed))`` is the whole world: ``relations()`` is
KAR's view, ``bank(bank_id)`` one bank's answers to the five APIs.
"""

from providers.synthetic.dataset import (
    SyntheticBankData,
    SyntheticDataset,
    UnknownAccountError,
)
from providers.synthetic.universe import BankInfo, make_banks

__all__ = [
    "BankInfo",
    "SyntheticBankData",
    "SyntheticDataset",
    "UnknownAccountError",
    "make_banks",
]
