"""The synthetic DSOP world: parties, their banks (the KAR view) and what each bank holds.

Everything derives from the seed and the ids involved through :func:`stable_int` (blake2b), so
the same seed gives byte-identical answers in every process; nothing is stored. The only input
besides the seed and ids is the clock, which decides what "today" is (balances, pending
transactions, the last day with transactions); tests pass a fixed one.

The world, in short (DSOP.md §3, §6, §8):

- Any valid national identity number (also D-, H- and synthetic numbers) or organisation
  number is a party. A person owns accounts at 1-5 banks (mostly 1-2, about 5 % at 5), 1-4
  accounts per bank (mean about 1.8); an organisation has a business account at each of its
  banks and, at its main bank, tax-deduction, savings, loan, card, currency and (for law,
  estate-agency and accounting firms) client accounts.
- About 1 % of persons are shielded (strictly confidential address): KAR still names their
  banks, and those banks answer an empty, complete list (DSOP.md §5).
- Couples: some adults are paired with a partner (an involution on the number: year and
  individual number each with the lowest bit flipped, check digits recomputed). An owner may
  give the partner a role (rightToUseWithOther or rightToSeeOnly) on their first account at a
  bank; the partner then sees that account with ``only_primary_owner=False``, and KAR names
  that bank for the partner too (notPrimaryOwner when they own nothing there).
- Organisation accounts list signatories (generated persons) and sometimes an accountant
  with rightToSeeOnly; those roles are not mirrored in the signatories' own account lists.
- Reopened accounts: an account closed and later reopened under the same account number is
  two records, the first deleted with an end date, the second opened after it (see
  :class:`~providers.synthetic.facts.AccountFacts`).
- A few organisations (about 2 %) have a business account with hundreds of transactions a
  day: more than 100,000 in any 12 months.
- Account histories are generated up to ``world_date``; later, open accounts simply stay open
  and keep transacting.
- Account numbers start with the bank's registration prefix and carry a valid check digit.
  Each bank has a single prefix (a million numbers), so two parties of a big bank can draw the
  same number; the accountReference, never the number, identifies an account.

Consistency with KAR: :meth:`SyntheticDataset.relations` names exactly the banks that hold an
account overlapping the period on which the party is owner or has a role.

Performance: per-party facts and the per-(bank, party) account skeleton are cached with
``functools.lru_cache``; list and details responses are assembled from pre-serialized fragments
(concatenated protobuf encodings merge, which is defined behaviour) and parsed once, which is
several times cheaper than setting fields. Not thread-safe: each bank reuses one AES context;
use a dataset from one thread (an asyncio loop).
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import hashlib
import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal, get_args

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from dsop.controlinfo.v2 import bank_pb2, model_pb2
from dsop.kar.v1 import kar_pb2
from hub.identifiers import (
    PartyKind,
    birth_date,
    complete_national_identity_number,
    is_valid_national_identity_number,
    party_kind,
)
from providers.synthetic import names
from providers.synthetic.facts import (
    ACCOUNT_TYPES,
    AccountFacts,
    AccountKind,
    CardFacts,
    PartyFacts,
    RoleFacts,
)
from providers.synthetic.transactions import OSLO, Pools, TransactionFactory, booking_offsets
from providers.synthetic.universe import (
    BankInfo,
    below,
    mix64,
    pick,
    random_account_number,
    random_address,
    random_company_name,
    random_org_id,
    random_person_id,
    random_person_name,
    stable_int,
    stable_rng,
)
from providers.synthetic.wire import field

__all__ = [
    "TRAITS",
    "WORLD_DATE",
    "SyntheticBankData",
    "SyntheticDataset",
    "Trait",
    "UnknownAccountError",
]

m = model_pb2

#: The synthetic world's histories (openings, closings, reopenings) end here.
WORLD_DATE: Final = dt.date(2026, 11, 1)

Trait = Literal[
    "many_banks", "shielded", "operator_only", "reopened", "huge_transactions", "closed_in_period"
]
TRAITS: Final[tuple[Trait, ...]] = get_args(Trait)


class UnknownAccountError(LookupError):
    """The accountReference is not one this bank issued (garbled, another bank's, or an
    account it does not disclose). Maps to ACC-002 / NOT_FOUND."""


# Cumulative probabilities of 1..5 banks per party and 1..4 accounts per (bank, person).
_BANK_COUNT_CUM: Final = (0.45, 0.78, 0.90, 0.95, 1.0)
_ACCOUNT_COUNT_CUM: Final = (0.40, 0.78, 0.91, 1.0)
# Account kinds of a person's first account at a bank other than the main one, and of the
# further accounts at any bank: (kind, weight).
_FIRST_ELSEWHERE: Final[tuple[tuple[AccountKind, int], ...]] = (
    ("salary", 30), ("credit", 25), ("savings", 20), ("loan", 15), ("prepaid", 4),
    ("currency", 3), ("other", 2), ("no_balance", 1),
)  # fmt: skip
_FURTHER: Final[tuple[tuple[AccountKind, int], ...]] = (
    ("savings", 35), ("credit", 20), ("loan", 20), ("salary", 8), ("currency", 5),
    ("prepaid", 5), ("no_balance", 3), ("other", 4),
)  # fmt: skip
# Typical balance (NOK, or units of the account's currency) per kind; loans: the principal,
# cards: the credit line.
_BASE_AMOUNT: Final[dict[AccountKind, float]] = {
    "salary": 25_000, "savings": 120_000, "loan": 1_800_000, "credit": 50_000, "prepaid": 1_500,
    "currency": 8_000, "business": 400_000, "tax": 150_000, "client": 2_000_000,
    "no_balance": 0, "other": 30_000,
}  # fmt: skip
_CARD_KINDS: Final = frozenset({"salary", "credit", "prepaid", "business"})
_EARLIEST_OPENING: Final = dt.date(1985, 1, 1)
_LOAN_TERM_DAYS: Final = 25 * 365
_SHIELDED_PERCENT: Final = 1
_COUPLE_PERCENT: Final = 45

_IDS = m.IdentifierType
_NIN: Final = _IDS.IDENTIFIER_TYPE_NATIONAL_IDENTITY_NUMBER
_ORGNO: Final = _IDS.IDENTIFIER_TYPE_COUNTRY_IDENTIFICATION_CODE
_USE_ALONE: Final = m.ACCOUNT_PERMISSION_TYPE_RIGHT_TO_USE_ALONE
_USE_WITH_OTHER: Final = m.ACCOUNT_PERMISSION_TYPE_RIGHT_TO_USE_WITH_OTHER
_SEE_ONLY: Final = m.ACCOUNT_PERMISSION_TYPE_RIGHT_TO_SEE_ONLY


_COMPLETE: Final = field(
    bank_pb2.ListAccountsResponse.RESPONSE_DETAILS_FIELD_NUMBER,
    m.ResponseDetails(status=m.RESPONSE_STATUS_COMPLETE).SerializeToString(),
)
# Every envelope has responseDetails as field 1; the code relies on it, so check once.
if any(
    msg.RESPONSE_DETAILS_FIELD_NUMBER != 1
    for msg in (
        bank_pb2.ListAccountsResponse,
        bank_pb2.GetAccountDetailsResponse,
        bank_pb2.ListCardsResponse,
        bank_pb2.ListRolesResponse,
    )
):
    raise ImportError("responseDetails is no longer field 1 of every envelope")
_ACCOUNTS_FIELD: Final = bank_pb2.ListAccountsResponse.ACCOUNTS_FIELD_NUMBER
_ACCOUNT_OWNER_FIELD: Final = m.Account.PRIMARY_OWNER_FIELD_NUMBER
_ACCOUNT_NAME_FIELD: Final = m.Account.NAME_FIELD_NUMBER
_DETAIL_NAME_FIELD: Final = m.AccountDetail.NAME_FIELD_NUMBER
_DETAIL_OWNER_FIELD: Final = m.AccountDetail.PRIMARY_OWNER_FIELD_NUMBER
_DETAIL_START_FIELD: Final = m.AccountDetail.START_DATE_FIELD_NUMBER
_DETAIL_END_FIELD: Final = m.AccountDetail.END_DATE_FIELD_NUMBER
_DETAIL_BALANCES_FIELD: Final = m.AccountDetail.BALANCES_FIELD_NUMBER
_BALANCE_AMOUNT_FIELD: Final = m.Balance.AMOUNT_FIELD_NUMBER
_BALANCE_REGISTERED_FIELD: Final = m.Balance.REGISTERED_FIELD_NUMBER
# The account skeleton encodes Account fields once for both messages; that needs the shared
# fields to have the same numbers and types in both.
if not all(
    m.Account.DESCRIPTOR.fields_by_name[name].number
    == m.AccountDetail.DESCRIPTOR.fields_by_name[name].number
    and m.Account.DESCRIPTOR.fields_by_name[name].type
    == m.AccountDetail.DESCRIPTOR.fields_by_name[name].type
    for name in (
        "status",
        "servicer",
        "account_identifier",
        "account_reference",
        "type",
        "currency",
    )
):
    raise ImportError("Account and AccountDetail no longer share fields 1-6")
#: credit_debit_indicator of a Balance (a varint field) per direction, encoded.
_BALANCE_DIRECTION: Final = {
    direction: m.Balance(credit_debit_indicator=direction).SerializeToString()
    for direction in (m.CREDIT_OR_DEBIT_CREDIT, m.CREDIT_OR_DEBIT_DEBIT)
}
_DETAIL_FIELD: Final = bank_pb2.GetAccountDetailsResponse.ACCOUNT_FIELD_NUMBER
#: Accounts whose balances of a day one bank keeps (about 400 bytes each); then it starts over.
_BALANCE_CACHE_SIZE: Final = 1 << 17
_BALANCES_ACCOUNTS_FIELD: Final = bank_pb2.ListAccountsWithBalancesResponse.ACCOUNTS_FIELD_NUMBER
_CARDS_FIELD: Final = bank_pb2.ListCardsResponse.PAYMENT_CARDS_FIELD_NUMBER
_ROLES_FIELD: Final = bank_pb2.ListRolesResponse.ROLES_FIELD_NUMBER


def _weighted(rng: random.Random, weighted: Sequence[tuple[AccountKind, int]]) -> AccountKind:
    total = sum(w for _, w in weighted)
    u = rng.random() * total
    for item, weight in weighted:
        u -= weight
        if u < 0:
            return item
    return weighted[-1][0]


def _add_years(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February in a year that has none
        return day.replace(year=day.year + years, day=28)


def _random_day(rng: random.Random, first: dt.date, last: dt.date) -> dt.date:
    if last <= first:
        return first
    return first + dt.timedelta(days=below(rng, (last - first).days + 1))


def _month_end(year: int, month: int) -> dt.date:
    if month == 12:
        return dt.date(year, 12, 31)
    return dt.date(year, month + 1, 1) - dt.timedelta(days=1)


def _partner_of(party_id: str) -> str | None:
    """The person paired with ``party_id`` (year and individual number with the lowest bit
    flipped): an involution that keeps the century, day, month and their offsets. None when
    the partner's number would be invalid (check digit 10, or 29 February of a common year)."""
    partner = complete_national_identity_number(
        f"{party_id[:4]}{int(party_id[4:6]) ^ 1:02d}{int(party_id[6:9]) ^ 1:03d}"
    )
    return partner if partner and is_valid_national_identity_number(partner) else None


#: (party id, name, identifier type, permission) of someone who may operate an account.
_Signatory = tuple[str, str, m.IdentifierType.ValueType, m.AccountPermissionType.ValueType]


@dataclass(frozen=True, slots=True)
class _Profile:
    """A party with the banks that know it."""

    party: PartyFacts
    own: frozenset[int]
    #: Banks where the partner's first account gives this party a role.
    role_banks: frozenset[int]
    #: The own banks (main first), then the banks where it only has a role.
    order: tuple[int, ...]


class SyntheticDataset:
    """The synthetic world of ``seed`` over ``banks``: KAR relations and the banks' data.

    ``clock`` returns the current time (aware; converted to Europe/Oslo); it defaults to the
    system clock. ``world_date`` is where generated histories end (see the module docstring).
    ``cache_size`` bounds the per-(bank, party) skeleton cache; party facts keep four times as
    many entries.
    """

    def __init__(
        self,
        seed: int,
        banks: Sequence[BankInfo],
        *,
        clock: Callable[[], dt.datetime] | None = None,
        world_date: dt.date = WORLD_DATE,
        cache_size: int = 16384,
    ) -> None:
        self.seed = seed
        self.banks: tuple[BankInfo, ...] = tuple(banks)
        if len({b.bank_id for b in self.banks}) != len(self.banks):
            raise ValueError("bank ids must be unique")
        if len({b.prefix for b in self.banks}) != len(self.banks):
            raise ValueError("bank prefixes must be unique")
        self.world_date = world_date
        self._clock = clock or (lambda: dt.datetime.now(OSLO))
        # Big banks have most customers: weights fall off like a Zipf law over the list.
        self._bank_weights = list(
            itertools.accumulate(1.0 / (i + 1) ** 0.8 for i in range(len(self.banks)))
        )
        self._party = functools.lru_cache(maxsize=4 * cache_size)(self._make_party)
        self._profile = functools.lru_cache(maxsize=4 * cache_size)(self._make_profile)
        self._owned = functools.lru_cache(maxsize=cache_size)(self._make_owned)
        self._signatories = functools.lru_cache(maxsize=1024)(self._make_signatories)
        self._pools: Pools | None = None
        self._bank_data = [SyntheticBankData(self, info, i) for i, info in enumerate(self.banks)]
        self._by_id = {b.info.bank_id: b for b in self._bank_data}

    # -- public API -------------------------------------------------------------------------

    def bank(self, bank_id: str) -> SyntheticBankData:
        """The data of one bank (the same object on every call). KeyError for an unknown id."""
        return self._by_id[bank_id]

    def now(self) -> dt.datetime:
        """The current time in Europe/Oslo according to the dataset's clock."""
        return self._clock().astimezone(OSLO)

    def relations(
        self, party_id: str, from_date: dt.date, to_date: dt.date
    ) -> list[kar_pb2.CustomerRelation]:
        """KAR's answer for a party and period: the banks holding an account overlapping the
        period on which the party is owner (primaryOwner) or has another role
        (notPrimaryOwner); activeAccount when one of them is still open at the period's end.
        An invalid party or an inverted period gives an empty list.

        Consistent with the banks: a bank not named holds nothing for the party in the
        period; a bank named returns at least one account with ``only_primary_owner=False``,
        except for shielded persons, whose banks answer an empty, complete list.
        """
        prof = self._profile(party_id)
        if prof is None or from_date > to_date:
            return []
        out: list[kar_pb2.CustomerRelation] = []
        partner = prof.party.partner
        for idx in prof.order:
            owns = has = active = False
            if idx in prof.own:
                for a in self._owned(idx, party_id):
                    if a.overlaps(from_date, to_date):
                        owns = has = True
                        active = active or a.end is None or a.end > to_date
            if partner is not None and idx in prof.role_banks:
                for a, role in _roles_of(self._owned(idx, partner), party_id):
                    if a.overlaps(from_date, to_date) and role.overlaps(from_date, to_date):
                        has = True
                        active = active or (
                            (a.end is None or a.end > to_date)
                            and (role.end is None or role.end > to_date)
                        )
            if has:
                info = self.banks[idx]
                out.append(
                    kar_pb2.CustomerRelation(
                        organization_id=info.bank_id,
                        bank_name=info.name,
                        active_account=active,
                        ownership_type=(
                            kar_pb2.OWNERSHIP_TYPE_PRIMARY_OWNER
                            if owns
                            else kar_pb2.OWNERSHIP_TYPE_NOT_PRIMARY_OWNER
                        ),
                    )
                )
        return out

    def party_sample(self, count: int, *, kind: PartyKind | None = PartyKind.PERSON) -> list[str]:
        """``count`` distinct valid parties, the same for the same seed: synthetic persons
        (month + 80, born 1940-2008), organisation numbers (3xxxxxxxx), or both mixed (about
        one in eight an organisation) when ``kind`` is None. Shielded persons are included in
        their natural share (about 1 %)."""
        return list(itertools.islice(self._candidates(kind), count))

    def find_party(self, trait: Trait) -> str:
        """The first party of the sample stream with ``trait``:

        - ``many_banks``: a person with accounts at 5 banks;
        - ``shielded``: a shielded person;
        - ``operator_only``: a person with a role (not ownership) at a bank where they own
          nothing;
        - ``reopened``: a person with a reopened account;
        - ``huge_transactions``: an organisation with an account holding over 100,000
          transactions in any 12 months;
        - ``closed_in_period``: a person with an account closed in the 12 months before
          ``world_date``.

        Raises LookupError when none is found among the first 200,000 candidates.
        """
        if trait not in TRAITS:
            raise ValueError(f"unknown trait {trait!r}")
        kind = PartyKind.ORGANISATION if trait == "huge_transactions" else PartyKind.PERSON
        for party_id in itertools.islice(self._candidates(kind), 200_000):
            if self.has_trait(party_id, trait):
                return party_id
        raise LookupError(f"no party with trait {trait!r}")

    # -- parties ----------------------------------------------------------------------------

    def _candidates(self, kind: PartyKind | None) -> Iterator[str]:
        rng = stable_rng(self.seed, "sample", kind.value if kind else "mixed")
        seen: set[str] = set()
        while True:
            this = kind
            if this is None:
                this = PartyKind.PERSON if rng.random() < 0.88 else PartyKind.ORGANISATION
            if this is PartyKind.PERSON:
                party_id = random_person_id(rng, 1940, 2008)[0]
            else:
                party_id = random_org_id(rng)
            if party_id not in seen:
                seen.add(party_id)
                yield party_id

    def has_trait(self, party_id: str, trait: Trait) -> bool:
        """Whether the party has ``trait`` (see :meth:`find_party`); False for an invalid
        party."""
        if trait not in TRAITS:
            raise ValueError(f"unknown trait {trait!r}")
        prof = self._profile(party_id)
        if prof is None:
            return False
        p = prof.party
        if trait == "shielded":
            return p.shielded
        if p.shielded:
            return False
        if trait == "many_banks":
            return len(p.banks) == 5
        if trait == "operator_only":
            return bool(prof.role_banks - prof.own)
        if trait == "huge_transactions":
            return p.huge
        accounts = [a for idx in p.banks for a in self._owned(idx, party_id)]
        if trait == "reopened":
            return any(a.reopened for a in accounts)
        year_before = self.world_date - dt.timedelta(days=365)
        return any(a.end is not None and year_before < a.end <= self.world_date for a in accounts)

    def _draw_banks(self, rng: random.Random) -> tuple[int, ...]:
        n = min(bisect.bisect_right(_BANK_COUNT_CUM, rng.random()) + 1, len(self.banks))
        weights = self._bank_weights
        total = weights[-1] if weights else 0.0
        chosen: list[int] = []
        while len(chosen) < n:
            idx = min(bisect.bisect_right(weights, rng.random() * total), len(weights) - 1)
            if idx not in chosen:
                chosen.append(idx)
        return tuple(chosen)

    def _is_shielded(self, party_id: str) -> bool:
        return stable_int(self.seed, "shielded", party_id) % 100 < _SHIELDED_PERCENT

    def _make_party(self, party_id: str) -> PartyFacts | None:
        kind = party_kind(party_id)
        if kind is None:
            return None
        rng = stable_rng(self.seed, "party", party_id)
        banks = self._draw_banks(rng)
        address = random_address(rng)
        if kind is PartyKind.ORGANISATION:
            founded = _random_day(rng, dt.date(1950, 1, 1), self.world_date - dt.timedelta(400))
            name, trade = random_company_name(rng)
            huge = rng.random() < 0.02
            bankrupt = not huge and rng.random() < 0.02
            return PartyFacts(
                party_id, kind, name, founded, banks, False, address,
                trade=trade, huge=huge, bankrupt=bankrupt,
            )  # fmt: skip
        born = birth_date(party_id)
        name = random_person_name(rng)
        shielded = self._is_shielded(party_id)
        partner, since = self._couple(party_id, born, shielded)
        return PartyFacts(
            party_id, kind, name, born, banks, shielded, address, partner=partner,
            couple_since=since,
        )  # fmt: skip

    def _couple(
        self, party_id: str, born: dt.date, shielded: bool
    ) -> tuple[str | None, dt.date | None]:
        """The partner and since when, decided from the pair so both sides agree."""
        partner = _partner_of(party_id)
        if partner is None or shielded or self._is_shielded(partner):
            return None, None
        pair = min(party_id, partner), max(party_id, partner)
        if stable_int(self.seed, "couple", *pair) % 100 >= _COUPLE_PERCENT:
            return None, None
        adult_from = max(_add_years(born, 20), _add_years(birth_date(partner), 20))
        if adult_from >= self.world_date:
            return None, None
        rng = stable_rng(self.seed, "couple-since", *pair)
        return partner, _random_day(rng, max(adult_from, _EARLIEST_OPENING), self.world_date)

    def _grant(
        self, owner: str, grantee: str, bank_index: int
    ) -> m.AccountPermissionType.ValueType | None:
        """The role an owner gives the partner on their first account at a bank, if any."""
        h = stable_int(self.seed, "grant", owner, grantee, self.banks[bank_index].bank_id) % 100
        if h < 18:
            return _USE_WITH_OTHER
        if h < 30:
            return _SEE_ONLY
        return None

    def _make_profile(self, party_id: str) -> _Profile | None:
        p = self._party(party_id)
        if p is None:
            return None
        own = frozenset(p.banks)
        role_banks: frozenset[int] = frozenset()
        if p.partner is not None:
            q = self._party(p.partner)
            assert q is not None  # _partner_of returns valid numbers only
            role_banks = frozenset(
                b for b in q.banks if self._grant(p.partner, party_id, b) is not None
            )
        extra = tuple(sorted(role_banks - own))
        return _Profile(p, own, role_banks, p.banks + extra)

    def _make_owned(self, bank_index: int, party_id: str) -> tuple[AccountFacts, ...]:
        prof = self._profile(party_id)
        if prof is None or bank_index not in prof.own:
            return ()
        return self._bank_data[bank_index]._build_accounts(prof.party)

    def _make_signatories(self, party_id: str) -> tuple[_Signatory, ...]:
        p = self._party(party_id)
        assert p is not None
        return _signatories(self.seed, p)

    def _pools_(self) -> Pools:
        if self._pools is None:
            self._pools = Pools(self.seed, self.banks)
        return self._pools


def _roles_of(
    accounts: Sequence[AccountFacts], party_id: str
) -> Iterator[tuple[AccountFacts, RoleFacts]]:
    """(account, role) for each account where ``party_id`` has a role other than owner."""
    for a in accounts:
        for role in a.roles[1:]:
            if role.party_id == party_id:
                yield a, role
                break


class SyntheticBankData:
    """One synthetic bank's answers to the five APIs. Get it from
    :meth:`SyntheticDataset.bank`; every method returns fresh messages the caller may
    mutate. Periods are inclusive dates; "today" comes from the dataset's clock.

    accountReference: 16 bytes (party id, the account's position among the party's records
    here, and an 8-byte tag of this bank) encrypted with AES-128 under a key derived from the
    seed and the bank id, hex-encoded. The bank decodes it without any lookup table, it does
    not reveal the account number, and another bank's reference or random text fails the tag
    check (UnknownAccountError) instead of naming a wrong account.
    """

    def __init__(self, dataset: SyntheticDataset, info: BankInfo, index: int) -> None:
        self.info = info
        self.index = index
        self._ds = dataset
        seed = dataset.seed
        key = hashlib.blake2b(f"{seed}|{info.bank_id}|reference-key".encode(), digest_size=16)
        cipher = Cipher(algorithms.AES(key.digest()), modes.ECB())
        # ECB on exactly one block is a keyed permutation: no IV to store, no state between
        # blocks, so one context per direction serves every call.
        self._encryptor = cipher.encryptor()
        self._decryptor = cipher.decryptor()
        tag = f"{seed}|{info.bank_id}|reference-tag".encode()
        self._tag = hashlib.blake2b(tag, digest_size=8).digest()
        self._servicer = m.FinancialInstitution(
            identifier=m.Identifier(value=info.bank_id, type=_ORGNO, country_of_residence="NO"),
            name=info.name,
        ).SerializeToString()
        self._issuer = m.Identifier(value=info.bank_id, type=_ORGNO, country_of_residence="NO")
        self._factory: TransactionFactory | None = None
        # Cards are made on demand (card list, card transactions): most balance queries
        # never look at them.
        self._cards = functools.lru_cache(maxsize=4096)(self._make_cards)
        #: (holder, position, day, past) -> the account's balances of the day (_balances).
        self._balance_cache: dict[tuple[str, int, dt.date, bool], tuple[bytes, bytes]] = {}

    # -- the five APIs ----------------------------------------------------------------------

    def list_accounts(
        self, party_id: str, only_primary_owner: bool, from_date: dt.date, to_date: dt.date
    ) -> bank_pb2.ListAccountsResponse:
        """Accounts overlapping the period that the party owns, and with
        ``only_primary_owner=False`` also those where it has another role (their primaryOwner
        is then someone else). Unknown, invalid and shielded parties get an empty, complete
        list."""
        parts = [_COMPLETE]
        parts.extend(
            a.list_entry for a in self._listed(party_id, only_primary_owner, from_date, to_date)
        )
        return bank_pb2.ListAccountsResponse.FromString(b"".join(parts))

    def _listed(
        self, party_id: str, only_primary_owner: bool, from_date: dt.date, to_date: dt.date
    ) -> list[AccountFacts]:
        """The account records :meth:`list_accounts` lists, in its order."""
        prof = self._ds._profile(party_id)
        if prof is None or prof.party.shielded or from_date > to_date:
            return []
        idx = self.index
        listed = []
        if idx in prof.own:
            for a in self._ds._owned(idx, party_id):
                if a.start <= to_date and (a.end is None or a.end >= from_date):
                    listed.append(a)  # noqa: PERF401 - the hot path; a loop is fastest
        partner = prof.party.partner
        if not only_primary_owner and partner is not None and idx in prof.role_banks:
            for a, role in _roles_of(self._ds._owned(idx, partner), party_id):
                if a.overlaps(from_date, to_date) and role.overlaps(from_date, to_date):
                    listed.append(a)
        return listed

    def get_account_details(
        self, account_reference: str, from_date: dt.date, to_date: dt.date
    ) -> bank_pb2.GetAccountDetailsResponse:
        """The account with its balances as of ``to_date``: available and booked balances
        when ``to_date`` is today (or later), the booked balance at ``to_date`` for a past
        date, none when the account was closed on or before ``to_date``, had not been opened
        by then, or is an account without balance. Raises UnknownAccountError."""
        a = self._lookup(account_reference)
        return bank_pb2.GetAccountDetailsResponse.FromString(
            _COMPLETE + field(_DETAIL_FIELD, self._detail(a, to_date))
        )

    def list_accounts_with_balances(
        self, party_id: str, only_primary_owner: bool, from_date: dt.date, to_date: dt.date
    ) -> bank_pb2.ListAccountsWithBalancesResponse:
        """What :meth:`list_accounts` and then :meth:`get_account_details` for each account
        give, composed (providers.balances), assembled at once from the account records.
        Raises UnknownAccountError where a details request would."""
        parts = [_COMPLETE]
        now = None
        for a in self._listed(party_id, only_primary_owner, from_date, to_date):
            if a.hidden:
                raise UnknownAccountError("unknown accountReference")
            now = now or self._ds.now()
            parts.append(field(_BALANCES_ACCOUNTS_FIELD, self._detail(a, to_date, now)))
        return bank_pb2.ListAccountsWithBalancesResponse.FromString(b"".join(parts))

    def _detail(self, a: AccountFacts, to_date: dt.date, now: dt.datetime | None = None) -> bytes:
        """The account's AccountDetail, encoded, with its balances as of ``to_date`` (``now``:
        the dataset's current time, when the caller has it)."""
        body = a.detail_body
        if a.kind == "no_balance" or a.start > to_date or (a.end is not None and a.end <= to_date):
            return body
        now = now or self._ds.now()
        today = now.date()
        if to_date < today:
            return body + self._balances(a, to_date, today)[0]
        # The current balance is registered now; all else about the day's balances is fixed.
        booked, available = self._balances(a, today, today)
        registered = field(_BALANCE_REGISTERED_FIELD, now.isoformat(timespec="seconds").encode())
        return body + field(_DETAIL_BALANCES_FIELD, available + registered) + booked

    def _balances(self, a: AccountFacts, day: dt.date, today: dt.date) -> tuple[bytes, bytes]:
        """The account's booked balance at the end of ``day``, encoded (field 8 of
        AccountDetail), and when ``day`` is today, the available balance's Balance fields
        but its registration time. Cached: balances of a day do not change."""
        past = day < today  # a day's balances read differently once it is over
        key = (a.holder, a.position, day, past)
        cached = self._balance_cache.get(key)
        if cached is not None:
            return cached
        booked_cents = self._booked_cents(a, day)
        if past:
            iso, _, off_noon = booking_offsets(day)
            cached = (_balance(a, False, booked_cents, f"{iso}T23:59:59{off_noon}"), b"")
        else:
            iso, off_midnight, _ = booking_offsets(day)
            cached = (
                _balance(a, False, booked_cents, f"{iso}T00:00:00{off_midnight}"),
                _balance_fields(a, True, self._available_cents(a, booked_cents, day)),
            )
        if len(self._balance_cache) >= _BALANCE_CACHE_SIZE:
            self._balance_cache.clear()
        self._balance_cache[key] = cached
        return cached

    def iter_transactions(
        self,
        account_reference: str,
        from_date: dt.date,
        to_date: dt.date,
        page_size: int = 1000,
    ) -> Iterator[list[m.Transaction]]:
        """The period's transactions in booking-date order, in pages of exactly
        ``page_size`` (the last smaller; an empty period yields one empty page). Generated a
        day at a time as pages are taken. Nothing after today (pending card transactions on
        today itself). Raises UnknownAccountError at the call, not at the first page."""
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        a = self._lookup(account_reference)
        holder = self._ds._party(a.holder)
        assert holder is not None  # the reference decoded to a valid party
        siblings = tuple(
            {x.number for x in self._ds._owned(self.index, a.holder) if x.number != a.number}
        )
        today = self._ds.now().date()
        first = max(from_date, a.start)
        last = min(to_date, today if a.end is None else min(a.end, today))
        return self._pages(
            a,
            holder,
            siblings=tuple(sorted(siblings)),
            first=first,
            last=last,
            today=today,
            page_size=page_size,
        )

    def transaction_count(
        self, account_reference: str, from_date: dt.date, to_date: dt.date
    ) -> int:
        """How many transactions :meth:`iter_transactions` yields for the period, computed
        without building them. Raises UnknownAccountError."""
        a = self._lookup(account_reference)
        holder = self._ds._party(a.holder)
        assert holder is not None
        today = self._ds.now().date()
        first = max(from_date, a.start)
        last = min(to_date, today if a.end is None else min(a.end, today))
        return self._transactions().count(a, holder, first, last)

    def list_cards(
        self, account_reference: str, from_date: dt.date, to_date: dt.date
    ) -> bank_pb2.ListCardsResponse:
        """Payment cards on the account valid at some point of the period (PCI-masked).
        Raises UnknownAccountError."""
        a = self._lookup(account_reference)
        parts = [_COMPLETE]
        parts.extend(
            field(_CARDS_FIELD, c.wire)
            for c in self._cards(a.holder, a.position)
            if c.overlaps(from_date, to_date)
        )
        return bank_pb2.ListCardsResponse.FromString(b"".join(parts))

    def list_roles(
        self, account_reference: str, from_date: dt.date, to_date: dt.date
    ) -> bank_pb2.ListRolesResponse:
        """The owner and everyone else with a right on the account during the period, with
        permission and start/end dates. Raises UnknownAccountError."""
        a = self._lookup(account_reference)
        parts = [_COMPLETE]
        parts.extend(field(_ROLES_FIELD, r.wire) for r in a.roles if r.overlaps(from_date, to_date))
        return bank_pb2.ListRolesResponse.FromString(b"".join(parts))

    # -- references -------------------------------------------------------------------------

    def _reference(self, party_id: str, index: int) -> str:
        block = (
            bytes((len(party_id),)) + int(party_id).to_bytes(6, "big") + bytes((index,)) + self._tag
        )
        return self._encryptor.update(block).hex()

    def _lookup(self, reference: str) -> AccountFacts:
        """The account a reference names; UnknownAccountError for anything this bank did not
        issue or does not disclose. The 8-byte bank tag inside the encrypted block makes
        another bank's reference (or random text) fail with probability 1 - 2**-64."""
        if len(reference) != 32:
            raise UnknownAccountError("unknown accountReference")
        try:
            block = bytes.fromhex(reference)
        except ValueError:
            raise UnknownAccountError("unknown accountReference") from None
        plain = self._decryptor.update(block)
        length = plain[0]
        number = int.from_bytes(plain[1:7], "big")
        if plain[8:] != self._tag or length not in (9, 11) or number >= 10**length:
            raise UnknownAccountError("unknown accountReference")
        party_id = str(number).zfill(length)
        accounts = self._ds._owned(self.index, party_id)
        index = plain[7]
        if index >= len(accounts) or accounts[index].hidden:
            raise UnknownAccountError("unknown accountReference")
        return accounts[index]

    # -- balances ---------------------------------------------------------------------------

    def _booked_cents(self, a: AccountFacts, day: dt.date) -> int:
        """The booked balance at the end of ``day``, signed (negative = debit)."""
        u = mix64(a.tx_seed, day.toordinal()) / 2.0**64
        if a.kind == "loan":
            left = max(0.02, 1.0 - (day - a.start).days / _LOAN_TERM_DAYS)
            return -int(a.base_cents * left)
        if a.kind == "credit":
            return -int(a.credit_line_cents * 0.6 * u)
        return int(a.base_cents * (0.4 + 1.2 * u))

    def _available_cents(self, a: AccountFacts, booked: int, day: dt.date) -> int:
        if a.kind == "credit":
            return a.credit_line_cents + booked
        if a.kind in ("salary", "business", "prepaid") and booked > 0:
            # Card reservations not yet booked.
            reserved = mix64(a.tx_seed ^ 0x5EED, day.toordinal()) % 300_000
            return booked - min(reserved, booked)
        return booked

    # -- transactions -----------------------------------------------------------------------

    def _transactions(self) -> TransactionFactory:
        if self._factory is None:
            self._factory = TransactionFactory(self._ds.seed, self.info, self._ds._pools_())
        return self._factory

    def _pages(
        self,
        a: AccountFacts,
        holder: PartyFacts,
        *,
        siblings: tuple[str, ...],
        first: dt.date,
        last: dt.date,
        today: dt.date,
        page_size: int,
    ) -> Iterator[list[m.Transaction]]:
        factory = self._transactions()
        cards = self._cards(a.holder, a.position)
        page: list[m.Transaction] = []
        yielded = False
        for made in factory.days(
            a, holder, first, last, today=today, siblings=siblings, cards=cards
        ):
            page.extend(made)
            while len(page) >= page_size:
                yield page[:page_size]
                yielded = True
                page = page[page_size:]
        if page or not yielded:
            yield page

    # -- account skeletons ------------------------------------------------------------------

    def _build_accounts(self, p: PartyFacts) -> tuple[AccountFacts, ...]:
        """The account records ``p`` owns at this bank (called once per cache miss)."""
        ds = self._ds
        rng = stable_rng(ds.seed, "accounts", self.info.bank_id, p.party_id)
        world = ds.world_date
        main = p.banks[0] == self.index
        if p.kind is PartyKind.PERSON:
            adult = _add_years(p.born, 18) <= world
            kinds = _person_kinds(rng, main, adult)
            earliest = max(_EARLIEST_OPENING, _add_years(p.born, 18) if adult else p.born)
        else:
            kinds = _organisation_kinds(rng, main, p.trade)
            earliest = max(_EARLIEST_OPENING, p.born)
        owner_type = _NIN if p.kind is PartyKind.PERSON else _ORGNO
        signatories = ds._signatories(p.party_id) if p.kind is PartyKind.ORGANISATION else ()
        grant = None
        if p.partner is not None:
            grant = ds._grant(p.party_id, p.partner, self.index)
        records: list[AccountFacts] = []
        for slot, kind in enumerate(kinds):
            currency = pick(rng, ("EUR", "EUR", "USD", "SEK")) if kind == "currency" else "NOK"
            number = random_account_number(rng, self.info.prefix)
            huge = slot == 0 and main and p.huge
            if huge:
                start = _random_day(rng, earliest, world - dt.timedelta(days=3 * 365))
            elif slot == 0:
                start = min(_random_day(rng, earliest, world), _random_day(rng, earliest, world))
            else:
                start = _random_day(rng, earliest, world)
            periods: list[tuple[dt.date, dt.date | None]] = [(start, None)]
            u = rng.random()
            # The first account at a bank stays open, so a bank KAR names keeps an account.
            if slot > 0 and start + dt.timedelta(days=60) < world and u < 0.14:
                year_before = world - dt.timedelta(days=365)
                if rng.random() < 0.5 and start + dt.timedelta(days=60) < year_before:
                    closed = _random_day(rng, year_before, world)
                else:
                    closed = _random_day(rng, start + dt.timedelta(days=60), world)
                periods = [(start, closed)]
                reopen = closed + dt.timedelta(days=14 + below(rng, 186))
                if u < 0.04 and reopen <= world:
                    periods.append((reopen, None))
            name = pick(rng, names.ACCOUNT_NAMES[kind])
            if kind == "currency":
                name = f"{name} {currency}"
            base = int(_BASE_AMOUNT[kind] * rng.lognormvariate(0.0, 0.6) * 100)
            if huge:
                base *= 15
            disabled = p.bankrupt or rng.random() < 0.02
            for begin, end in periods:
                records.append(
                    self._record(
                        rng, p, owner_type=owner_type, index=len(records), number=number,
                        kind=kind, currency=currency, name=name, start=begin, end=end,
                        disabled=disabled, huge=huge, base=base, reopened=len(periods) > 1,
                        grant=grant if slot == 0 else None, signatories=signatories,
                    )
                )  # fmt: skip
        return tuple(records)

    def _record(
        self,
        rng: random.Random,
        p: PartyFacts,
        *,
        owner_type: m.IdentifierType.ValueType,
        index: int,
        number: str,
        kind: AccountKind,
        currency: str,
        name: str,
        start: dt.date,
        end: dt.date | None,
        disabled: bool,
        huge: bool,
        base: int,
        reopened: bool,
        grant: m.AccountPermissionType.ValueType | None,
        signatories: Sequence[_Signatory],
    ) -> AccountFacts:
        ds = self._ds
        if end is not None:
            status = m.ACCOUNT_STATUS_DELETED
        elif disabled:
            status = m.ACCOUNT_STATUS_DISABLED
        else:
            status = m.ACCOUNT_STATUS_ENABLED
        owner = _role(p.party_id, owner_type, p.name, _USE_ALONE, start=start, end=end)
        roles = [owner]
        if grant is not None and p.partner is not None and p.couple_since is not None:
            partner = ds._party(p.partner)
            assert partner is not None
            since = max(start, p.couple_since)
            if end is None or since <= end:
                roles.append(
                    _role(partner.party_id, _NIN, partner.name, grant, start=since, end=end)
                )
        for party_id, holder_name, id_type, permission in signatories:
            role_start = _random_day(rng, start, max(start, ds.world_date))
            role_end = None
            if permission == _USE_WITH_OTHER and rng.random() < 0.2:
                role_end = _random_day(rng, role_start, max(role_start, ds.world_date))
            if end is not None:
                role_start = min(role_start, end)
                role_end = end if role_end is None else min(role_end, end)
            roles.append(
                _role(party_id, id_type, holder_name, permission, start=role_start, end=role_end)
            )
        reference = self._reference(p.party_id, index)
        tx_seed = rng.getrandbits(64)
        # Fields 1-6 are the same in Account and AccountDetail (checked at import): encode
        # them once and add each message's remaining fields as wire fragments.
        common = m.Account(
            status=status,
            account_identifier=number,
            account_reference=reference,
            type=ACCOUNT_TYPES[kind],
            currency=currency,
        )
        common.servicer.MergeFromString(self._servicer)
        shared = common.SerializeToString()
        name_bytes = name.encode()
        account = (
            shared
            + field(_ACCOUNT_OWNER_FIELD, owner.wire)
            + field(_ACCOUNT_NAME_FIELD, name_bytes)
        )
        detail = (
            shared
            + field(_DETAIL_NAME_FIELD, name_bytes)
            + field(_DETAIL_OWNER_FIELD, owner.wire)
            + field(_DETAIL_START_FIELD, start.isoformat().encode())
        )
        if end is not None:
            detail += field(_DETAIL_END_FIELD, end.isoformat().encode())
        return AccountFacts(
            holder=p.party_id,
            position=index,
            number=number,
            reference=reference,
            kind=kind,
            currency=currency,
            status=status,
            name=name,
            start=start,
            end=end,
            owner=owner,
            roles=tuple(roles),
            reopened=reopened,
            hidden=p.shielded,
            huge=huge,
            tx_key=f"{tx_seed:016x}",
            tx_seed=tx_seed,
            base_cents=0 if kind in ("credit", "no_balance") else base,
            credit_line_cents=base if kind == "credit" else 0,
            list_entry=field(_ACCOUNTS_FIELD, account),
            detail_body=detail,
        )

    def _make_cards(self, holder: str, index: int) -> tuple[CardFacts, ...]:
        """The cards of the holder's account ``index``: per card holder (the owner, or an
        organisation's first signatories) a current card and sometimes the one it replaced.
        Cards last four years; a closed account's cards are blocked. Loan, savings and the
        other non-card kinds have none."""
        ds = self._ds
        a = ds._owned(self.index, holder)[index]
        p = ds._party(holder)
        if a.kind not in _CARD_KINDS or p is None:
            return ()
        if p.kind is PartyKind.PERSON:
            holders = [p.name]
        else:
            holders = [s[1] for s in ds._signatories(holder)[:2]]
        rng = stable_rng(ds.seed, "cards", self.info.bank_id, holder, index)
        kind, start, end = a.kind, a.start, a.end
        world = ds.world_date
        card_type = m.CARD_TYPE_CREDIT_CARD if kind == "credit" else m.CARD_TYPE_DEBIT_CARD
        scheme = "4" if rng.random() < 0.6 else "5"
        bin6 = f"{scheme}{stable_int(self.info.bank_id, kind, scheme) % 100_000:05d}"
        last_day = world if end is None else end
        cards: list[CardFacts] = []
        for card_holder in holders:
            version = 1 + below(rng, 4)
            issued = _random_day(rng, max(start, last_day - dt.timedelta(days=3 * 365)), last_day)
            history = [(issued, version)]
            if version > 1 and rng.random() < 0.5:
                previous = _add_years(issued, -4)
                history.append((max(previous, start), version - 1))
            for valid_from, v in history:
                expiry = _add_years(valid_from, 4)
                current = v == version and end is None
                status = m.CARD_STATUS_ACTIVE if current else m.CARD_STATUS_BLOCKED
                masked = f"{bin6}XXXXXX{below(rng, 10_000):04d}"
                card = m.PaymentCard(
                    card_identifier=masked,
                    holder_name=card_holder,
                    start_date=f"{valid_from.year:04d}-{valid_from.month:02d}",
                    expiry_date=f"{expiry.year:04d}-{expiry.month:02d}",
                    card_issuer_name=self.info.name,
                    type=card_type,
                    card_status=status,
                    version_number=str(v),
                )
                card.card_issuer_identifier.CopyFrom(self._issuer)
                cards.append(
                    CardFacts(
                        masked=masked,
                        holder=card_holder,
                        valid_from=valid_from.replace(day=1),
                        valid_to=_month_end(expiry.year, expiry.month),
                        status=status,
                        wire=card.SerializeToString(),
                    )
                )
        return tuple(cards)


@functools.lru_cache(maxsize=256)
def _balance_fixed(
    balance_type: m.BalanceType.ValueType, currency: str, credit_line_cents: int, included: bool
) -> bytes:
    """The fields of a Balance that do not change from day to day, encoded."""
    b = m.Balance(type=balance_type, currency=currency, credit_line_included=included)
    if credit_line_cents:
        b.credit_line_amount = f"{credit_line_cents // 100}.{credit_line_cents % 100:02d}"
        b.credit_line_currency = currency
    return b.SerializeToString()


def _balance(a: AccountFacts, available: bool, cents: int, registered: str) -> bytes:
    """One Balance as field 8 of AccountDetail: ``cents`` signed (negative = debit). The
    card's credit line is included in the available balance only."""
    return field(
        _DETAIL_BALANCES_FIELD,
        _balance_fields(a, available, cents)
        + field(_BALANCE_REGISTERED_FIELD, registered.encode()),
    )


def _balance_fields(a: AccountFacts, available: bool, cents: int) -> bytes:
    """A Balance's fields but its registration time, encoded."""
    balance_type = m.BALANCE_TYPE_AVAILABLE_BALANCE if available else m.BALANCE_TYPE_BOOKED_BALANCE
    fixed = _balance_fixed(
        balance_type, a.currency, a.credit_line_cents, available and a.kind == "credit"
    )
    magnitude = abs(cents)
    return (
        fixed
        + field(_BALANCE_AMOUNT_FIELD, f"{magnitude // 100}.{magnitude % 100:02d}".encode())
        + _BALANCE_DIRECTION[m.CREDIT_OR_DEBIT_DEBIT if cents < 0 else m.CREDIT_OR_DEBIT_CREDIT]
    )


def _role(
    party_id: str,
    id_type: m.IdentifierType.ValueType,
    name: str,
    permission: m.AccountPermissionType.ValueType,
    *,
    start: dt.date,
    end: dt.date | None,
) -> RoleFacts:
    role = m.AccountRole(permission=permission, name=name, start_date=start.isoformat())
    role.identifier.value = party_id
    role.identifier.type = id_type
    role.identifier.country_of_residence = "NO"
    if end is not None:
        role.end_date = end.isoformat()
    return RoleFacts(party_id, id_type, name, permission, start, end, role.SerializeToString())


def _person_kinds(rng: random.Random, main: bool, adult: bool) -> list[AccountKind]:
    count = bisect.bisect_right(_ACCOUNT_COUNT_CUM, rng.random()) + 1
    if not adult:
        # Children have savings and perhaps a youth card account.
        young: list[AccountKind] = ["savings", "prepaid"]
        return young[: min(count, 2)]
    first: AccountKind = "salary" if main else _weighted(rng, _FIRST_ELSEWHERE)
    return [first] + [_weighted(rng, _FURTHER) for _ in range(count - 1)]


def _organisation_kinds(rng: random.Random, main: bool, trade: str) -> list[AccountKind]:
    kinds: list[AccountKind] = ["business"]
    if not main:
        if rng.random() < 0.3:
            kinds.append(pick(rng, ("savings", "loan", "currency", "business")))
        return kinds
    optional: tuple[tuple[AccountKind, float], ...] = (
        ("tax", 0.6), ("savings", 0.3), ("loan", 0.2), ("credit", 0.15), ("currency", 0.1),
        ("no_balance", 0.03), ("other", 0.03),
    )  # fmt: skip
    kinds.extend(kind for kind, p in optional if rng.random() < p)
    if trade in names.CLIENT_ACCOUNT_TRADES or rng.random() < 0.02:
        kinds.append("client")
    return kinds


def _signatories(seed: int, p: PartyFacts) -> tuple[_Signatory, ...]:
    """(id, name, id type, permission) of who may operate an organisation's accounts: the
    general manager alone, board members jointly, sometimes an accounting firm that may only
    see. The same on every account of the organisation."""
    rng = stable_rng(seed, "signatories", p.party_id)
    out: list[_Signatory] = []
    manager, _born = random_person_id(rng, 1950, 1998)
    out.append((manager, random_person_name(rng), _NIN, _USE_ALONE))
    for _ in range(below(rng, 3)):
        member, _born = random_person_id(rng, 1945, 1998)
        out.append((member, random_person_name(rng), _NIN, _USE_WITH_OTHER))
    if rng.random() < 0.25:
        firm = f"{pick(rng, names.COMPANY_WORDS)} Regnskap AS"
        out.append((random_org_id(rng), firm, _ORGNO, _SEE_ONLY))
    return tuple(out)
