"""The plain facts the synthetic banks hold about parties and accounts.

Generated once per party (and per bank and party) by :mod:`providers.synthetic.dataset` and
cached; the response messages are built from them. Plain frozen dataclasses rather than
protobuf messages: cheaper to build, hashable, and immutable, so a cached skeleton can never be
changed by a caller. The few ``wire`` fields hold pre-serialized message fragments so the hot
API calls assemble responses from bytes instead of setting fields one by one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

from dsop.controlinfo.v2 import model_pb2
from hub.identifiers import PartyKind

#: What an account is for; each maps to one AccountType of the standard.
AccountKind = Literal[
    "salary",
    "savings",
    "loan",
    "credit",
    "prepaid",
    "currency",
    "business",
    "tax",
    "client",
    "no_balance",
    "other",
]

ACCOUNT_TYPES: Final[dict[AccountKind, model_pb2.AccountType.ValueType]] = {
    "salary": model_pb2.ACCOUNT_TYPE_SALARY_ACCOUNT,
    "savings": model_pb2.ACCOUNT_TYPE_SAVINGS_ACCOUNT,
    "loan": model_pb2.ACCOUNT_TYPE_LOAN_ACCOUNT,
    "credit": model_pb2.ACCOUNT_TYPE_CREDIT_CARD_ACCOUNT,
    "prepaid": model_pb2.ACCOUNT_TYPE_PREPAID_CARD_ACCOUNT,
    "currency": model_pb2.ACCOUNT_TYPE_CURRENCY_ACCOUNT,
    "business": model_pb2.ACCOUNT_TYPE_BUSINESS_ACCOUNT,
    "tax": model_pb2.ACCOUNT_TYPE_TAX_DEDUCTION_ACCOUNT,
    "client": model_pb2.ACCOUNT_TYPE_CLIENT_ACCOUNT,
    "no_balance": model_pb2.ACCOUNT_TYPE_ACCOUNT_WITHOUT_BALANCE,
    "other": model_pb2.ACCOUNT_TYPE_OTHER_ACCOUNT,
}


@dataclass(frozen=True, slots=True)
class Address:
    street: str
    building: str
    post_code: str
    town: str
    country: str = "NO"


@dataclass(frozen=True, slots=True)
class PartyFacts:
    """One party (person or organisation) as the synthetic world knows it."""

    party_id: str
    kind: PartyKind
    name: str
    #: Birth date, or the organisation's founding date.
    born: dt.date
    #: Indices (into the dataset's bank list) of the banks where it owns accounts, main first.
    banks: tuple[int, ...]
    #: Strictly confidential address: banks answer an empty, complete list.
    shielded: bool
    address: Address
    #: The partner of a couple (a person), who may hold a role on this party's first account
    #: at each bank; None for organisations, singles and shielded persons.
    partner: str | None = None
    couple_since: dt.date | None = None
    #: Organisations: the trade word of the name, whether a few business accounts see hundreds
    #: of transactions a day, and whether the estate is in bankruptcy (accounts disabled).
    trade: str = ""
    huge: bool = False
    bankrupt: bool = False


class RoleFacts(NamedTuple):
    """Someone's right on an account (the owner's included).

    A NamedTuple, like AccountFacts: built for every account of every cold skeleton, and a
    frozen dataclass's per-field ``object.__setattr__`` makes it several times slower to
    construct.
    """

    party_id: str
    id_type: model_pb2.IdentifierType.ValueType
    name: str
    permission: model_pb2.AccountPermissionType.ValueType
    start: dt.date
    end: dt.date | None
    #: The serialized AccountRole.
    wire: bytes

    def overlaps(self, from_date: dt.date, to_date: dt.date) -> bool:
        return self.start <= to_date and (self.end is None or self.end >= from_date)


@dataclass(frozen=True, slots=True)
class CardFacts:
    """A payment card on an account; dates are whole months."""

    masked: str
    holder: str
    #: First day of the start month and last day of the expiry month.
    valid_from: dt.date
    valid_to: dt.date
    status: model_pb2.CardStatus.ValueType
    #: The serialized PaymentCard.
    wire: bytes

    def overlaps(self, from_date: dt.date, to_date: dt.date) -> bool:
        return self.valid_from <= to_date and self.valid_to >= from_date


class AccountFacts(NamedTuple):
    """One account record of a bank.

    A reopened account is two records with the same account number: the first closed
    (deleted, with an end date), the second opened later under a new agreement; each has its
    own accountReference, start and end date, which is how a bank that re-uses the number
    reports it over a period covering both.
    """

    holder: str
    #: Position in the holder's tuple of records at this bank (encoded in the reference).
    position: int
    number: str
    reference: str
    kind: AccountKind
    currency: str
    status: model_pb2.AccountStatus.ValueType
    name: str
    start: dt.date
    end: dt.date | None
    owner: RoleFacts
    #: Everyone with a right on the account, the owner first.
    roles: tuple[RoleFacts, ...]
    reopened: bool
    #: The holder is shielded: the bank discloses nothing about the account.
    hidden: bool
    #: Hundreds of transactions a day.
    huge: bool
    #: 16 hex characters unique to the account in practice; prefixes its transaction ids.
    tx_key: str
    #: tx_key as a number, the seed of per-day values such as balances.
    tx_seed: int
    #: Typical balance in cents (the loan's principal, the card's credit line otherwise 0).
    base_cents: int
    credit_line_cents: int
    #: Accounts list entry: field 2 of ListAccountsResponse (tag and length included).
    list_entry: bytes
    #: The serialized AccountDetail without balances.
    detail_body: bytes

    def overlaps(self, from_date: dt.date, to_date: dt.date) -> bool:
        return self.start <= to_date and (self.end is None or self.end >= from_date)
