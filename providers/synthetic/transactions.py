"""Transactions of the synthetic accounts, generated one booking day at a time.

A day's transactions derive from (seed, bank, account, day and its week) alone, so a period can
start anywhere without generating what lies before it: the first page of an account with
100,000+ transactions a year costs what the page costs, and :meth:`TransactionFactory.count`
counts a year without building a single message. Within a day the transactions are numbered, and the
transaction identifier is ``tx_key + YYYYMMDD + sequence``, unique in the bank.

Transactions and balances are generated independently: the booked balance of a day is not the
running sum of the transactions (summing 100,000 transactions per balance query would defeat
the point of generating lazily).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Final, Literal, NamedTuple
from zoneinfo import ZoneInfo

from dsop.controlinfo.v2 import model_pb2
from providers.synthetic import names
from providers.synthetic.facts import AccountFacts, Address, CardFacts, PartyFacts
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
    stable_rng,
)
from providers.synthetic.wire import field

__all__ = ["OSLO", "Pools", "TransactionFactory", "booking_offsets"]

OSLO: Final = ZoneInfo("Europe/Oslo")

m = model_pb2
CREDIT: Final = m.CREDIT_OR_DEBIT_CREDIT
DEBIT: Final = m.CREDIT_OR_DEBIT_DEBIT

Source = Literal[
    "merchant", "foreign_merchant", "atm", "biller", "person", "company", "employer",
    "self", "foreign", "acquirer", "tax_office", "employee", "none",
]  # fmt: skip

R = m.TransactionReferenceType
#: The Tax Administration's organisation number (DSOP.md §1).
TAX_ADMINISTRATION: Final = "974761076"


@dataclass(frozen=True, slots=True)
class Event:
    """A kind of transaction: its label, ISO 20022 code, direction and counterparty."""

    label: str
    credit: bool
    domain: m.DomainType.ValueType
    family: m.FamilyType.ValueType
    sub_family: m.SubFamilyType.ValueType
    source: Source
    median_cents: int
    sigma: float
    card: bool = False
    refs: tuple[m.TransactionReferenceType.ValueType, ...] = ()
    #: Probability of a payer's note in additionalInfo.
    note: float = 0.0
    reversal: bool = False


def _event(
    label: str,
    credit: bool,
    code: tuple[m.DomainType.ValueType, m.FamilyType.ValueType, m.SubFamilyType.ValueType],
    source: Source,
    median: float,
    *,
    sigma: float = 0.8,
    card: bool = False,
    refs: tuple[m.TransactionReferenceType.ValueType, ...] = (),
    note: float = 0.0,
    reversal: bool = False,
) -> Event:
    domain, family, sub_family = code
    return Event(
        label, credit, domain, family, sub_family, source, int(median * 100), sigma, card, refs,
        note, reversal,
    )  # fmt: skip


PMNT, ACMT = m.DOMAIN_TYPE_PAYMENTS, m.DOMAIN_TYPE_ACCOUNT_MANAGEMENT
_CARD_POS = (
    PMNT,
    m.FAMILY_TYPE_CUSTOMER_CARD_TRANSACTIONS,
    m.SUB_FAMILY_TYPE_POINT_OF_SALE_POS_PAYMENT,
)
_CARD_CASH = (PMNT, m.FAMILY_TYPE_CUSTOMER_CARD_TRANSACTIONS, m.SUB_FAMILY_TYPE_CASH_WITHDRAWAL)
_OUT_DOMESTIC = (
    PMNT,
    m.FAMILY_TYPE_ISSUED_CREDIT_TRANSFERS,
    m.SUB_FAMILY_TYPE_DOMESTIC_CREDIT_TRANSFER,
)
_IN_DOMESTIC = (
    PMNT,
    m.FAMILY_TYPE_RECEIVED_CREDIT_TRANSFERS,
    m.SUB_FAMILY_TYPE_DOMESTIC_CREDIT_TRANSFER,
)
_OUT_INVOICE = (
    PMNT,
    m.FAMILY_TYPE_ISSUED_CREDIT_TRANSFERS,
    m.SUB_FAMILY_TYPE_CREDIT_TRANSFER_WITH_AGREED_COMMERCIAL_INFORMATION,
)
_DIRECT_DEBIT = (PMNT, m.FAMILY_TYPE_RECEIVED_DIRECT_DEBITS, m.SUB_FAMILY_TYPE_DIRECT_DEBIT_PAYMENT)
_OUT_INSTANT = (
    PMNT,
    m.FAMILY_TYPE_ISSUED_CREDIT_TRANSFERS,
    m.SUB_FAMILY_TYPE_SAME_DAY_VALUE_CREDIT_TRANSFER,
)
_IN_INSTANT = (
    PMNT,
    m.FAMILY_TYPE_RECEIVED_CREDIT_TRANSFERS,
    m.SUB_FAMILY_TYPE_SAME_DAY_VALUE_CREDIT_TRANSFER,
)
_IN_SALARY = (PMNT, m.FAMILY_TYPE_RECEIVED_CREDIT_TRANSFERS, m.SUB_FAMILY_TYPE_ACH_TRANSACTION_SALA)
_OUT_SALARY = (PMNT, m.FAMILY_TYPE_ISSUED_CREDIT_TRANSFERS, m.SUB_FAMILY_TYPE_ACH_TRANSACTION_SALA)
_OUT_OWN = (
    PMNT,
    m.FAMILY_TYPE_ISSUED_CREDIT_TRANSFERS,
    m.SUB_FAMILY_TYPE_CORPORATE_OWN_ACCOUNT_TRANSFER,
)
_IN_OWN = (
    PMNT,
    m.FAMILY_TYPE_RECEIVED_CREDIT_TRANSFERS,
    m.SUB_FAMILY_TYPE_CORPORATE_OWN_ACCOUNT_TRANSFER,
)
_INTEREST_IN = (
    ACMT,
    m.FAMILY_TYPE_MISCELLANEOUS_CREDIT_OPERATIONS,
    m.SUB_FAMILY_TYPE_INTERESTS_GENERIC,
)
_INTEREST_OUT = (
    ACMT,
    m.FAMILY_TYPE_MISCELLANEOUS_DEBIT_OPERATIONS,
    m.SUB_FAMILY_TYPE_INTERESTS_GENERIC,
)
_FEE = (ACMT, m.FAMILY_TYPE_MISCELLANEOUS_DEBIT_OPERATIONS, m.SUB_FAMILY_TYPE_CHARGES_GENERIC)
_CASH_IN = (PMNT, m.FAMILY_TYPE_COUNTER_TRANSACTIONS, m.SUB_FAMILY_TYPE_CASH_DEPOSIT)
_SETTLEMENT = (
    PMNT,
    m.FAMILY_TYPE_MERCHANT_CARD_TRANSACTIONS,
    m.SUB_FAMILY_TYPE_POINT_OF_SALE_POS_PAYMENT,
)
_PRINCIPAL = (PMNT, m.FAMILY_TYPE_RECEIVED_CREDIT_TRANSFERS, m.SUB_FAMILY_TYPE_PRINCIPAL_PAYMENT)
_CARD_BILL = (PMNT, m.FAMILY_TYPE_RECEIVED_CREDIT_TRANSFERS, m.SUB_FAMILY_TYPE_CREDIT_CARD_PAYMENT)
_TAXES = (PMNT, m.FAMILY_TYPE_ISSUED_CREDIT_TRANSFERS, m.SUB_FAMILY_TYPE_TAXES)
_IN_FOREIGN = (
    PMNT,
    m.FAMILY_TYPE_RECEIVED_CREDIT_TRANSFERS,
    m.SUB_FAMILY_TYPE_CROSS_BORDER_CREDIT_TRANSFER,
)
_OUT_FOREIGN = (
    PMNT,
    m.FAMILY_TYPE_ISSUED_CREDIT_TRANSFERS,
    m.SUB_FAMILY_TYPE_CROSS_BORDER_CREDIT_TRANSFER,
)

_SERVICER = R.TRANSACTION_REFERENCE_TYPE_ACCOUNT_SERVICER_REFERENCE
_ARCHIVE = R.TRANSACTION_REFERENCE_TYPE_ARCHIVE_REFERENCE
_E2E = R.TRANSACTION_REFERENCE_TYPE_END_TO_END_IDENTIFICATION
_KID = R.TRANSACTION_REFERENCE_TYPE_REMITTANCE_REFERENCE
_INVOICE = R.TRANSACTION_REFERENCE_TYPE_INVOICE_NUMBER
_MANDATE = R.TRANSACTION_REFERENCE_TYPE_MANDATE_IDENTIFICATION
_MESSAGE = R.TRANSACTION_REFERENCE_TYPE_MESSAGE_IDENTIFICATION
_INSTRUCTION = R.TRANSACTION_REFERENCE_TYPE_INSTRUCTION_IDENTIFICATION
_PAYMENT_INFO = R.TRANSACTION_REFERENCE_TYPE_PAYMENT_INFORMATION_IDENTIFICATION
_OTHER = R.TRANSACTION_REFERENCE_TYPE_OTHER_REFERENCE

N = names
EVENTS: Final = {
    "purchase": _event(
        N.LABEL_CARD_PURCHASE, False, _CARD_POS, "merchant", 260, sigma=1.0, card=True
    ),
    "visa": _event(N.LABEL_VISA, False, _CARD_POS, "foreign_merchant", 420, sigma=1.0, card=True),
    "cash": _event(N.LABEL_CASH_WITHDRAWAL, False, _CARD_CASH, "atm", 800, sigma=0.5, card=True),
    "reversal": _event(
        N.LABEL_REVERSAL, True, _CARD_POS, "merchant", 300, sigma=0.9, card=True, reversal=True
    ),
    "giro": _event(
        N.LABEL_ONLINE_GIRO,
        False,
        _OUT_DOMESTIC,
        "biller",
        1400,
        sigma=0.9,
        refs=(_KID, _INSTRUCTION, _E2E),
        note=0.15,
    ),
    "efaktura": _event(
        N.LABEL_EINVOICE, False, _OUT_INVOICE, "biller", 950, sigma=0.8, refs=(_INVOICE, _KID)
    ),
    "avtalegiro": _event(
        N.LABEL_DIRECT_DEBIT, False, _DIRECT_DEBIT, "biller", 1100, sigma=0.6, refs=(_MANDATE, _KID)
    ),
    "instant_out": _event(
        N.LABEL_INSTANT, False, _OUT_INSTANT, "person", 350, sigma=1.0, refs=(_E2E,), note=0.6
    ),
    "instant_in": _event(
        N.LABEL_INSTANT, True, _IN_INSTANT, "person", 300, sigma=1.0, refs=(_E2E,), note=0.6
    ),
    "salary_in": _event(
        N.LABEL_SALARY,
        True,
        _IN_SALARY,
        "employer",
        36_000,
        sigma=0.08,
        refs=(_MESSAGE, _E2E),
        note=1.0,
    ),
    "transfer_out": _event(
        N.LABEL_TRANSFER, False, _OUT_OWN, "self", 2500, sigma=0.9, refs=(_E2E,)
    ),
    "transfer_in": _event(N.LABEL_TRANSFER, True, _IN_OWN, "self", 2500, sigma=0.9, refs=(_E2E,)),
    "interest_in": _event(N.LABEL_INTEREST, True, _INTEREST_IN, "none", 450, sigma=0.8),
    "interest_out": _event(N.LABEL_INTEREST, False, _INTEREST_OUT, "none", 2800, sigma=0.5),
    "fee": _event(N.LABEL_FEE, False, _FEE, "none", 45, sigma=0.3),
    "deposit": _event(N.LABEL_DEPOSIT, True, _CASH_IN, "none", 1500, sigma=0.8),
    "kid_in": _event(
        N.LABEL_KID_PAYMENT, True, _IN_DOMESTIC, "company", 2600, sigma=1.1, refs=(_KID, _E2E)
    ),
    "card_settlement": _event(
        N.LABEL_CARD_SETTLEMENT, True, _SETTLEMENT, "acquirer", 3200, sigma=1.0, refs=(_OTHER,)
    ),
    "supplier_out": _event(
        N.LABEL_ONLINE_GIRO,
        False,
        _OUT_DOMESTIC,
        "company",
        9000,
        sigma=1.0,
        refs=(_KID, _PAYMENT_INFO, _E2E),
    ),
    "salary_out": _event(
        N.LABEL_SALARY,
        False,
        _OUT_SALARY,
        "employee",
        34_000,
        sigma=0.25,
        refs=(_PAYMENT_INFO, _E2E),
        note=1.0,
    ),
    "tax_transfer_out": _event(
        N.LABEL_TRANSFER, False, _OUT_OWN, "self", 60_000, sigma=0.5, refs=(_E2E,)
    ),
    "tax_transfer_in": _event(
        N.LABEL_TRANSFER, True, _IN_OWN, "self", 60_000, sigma=0.5, refs=(_E2E,)
    ),
    "withholding_out": _event(
        N.LABEL_WITHHOLDING_TAX, False, _TAXES, "tax_office", 110_000, sigma=0.5, refs=(_KID, _E2E)
    ),
    "instalment": _event(
        N.LABEL_INSTALMENT, True, _PRINCIPAL, "self", 6500, sigma=0.05, refs=(_E2E,)
    ),
    "card_bill": _event(N.LABEL_INCOMING, True, _CARD_BILL, "self", 5200, sigma=0.7, refs=(_KID,)),
    "top_up": _event(N.LABEL_TOP_UP, True, _IN_OWN, "self", 500, sigma=0.5, refs=(_E2E,)),
    "foreign_in": _event(
        N.LABEL_FOREIGN_IN, True, _IN_FOREIGN, "foreign", 30_000, sigma=1.0, refs=(_E2E, _MESSAGE)
    ),
    "foreign_out": _event(
        N.LABEL_FOREIGN_OUT,
        False,
        _OUT_FOREIGN,
        "foreign",
        20_000,
        sigma=1.0,
        refs=(_E2E, _INSTRUCTION),
    ),
    "client_in": _event(
        N.LABEL_INCOMING,
        True,
        _IN_DOMESTIC,
        "person",
        180_000,
        sigma=1.2,
        refs=(_KID, _E2E),
        note=0.5,
    ),
    "client_out": _event(
        N.LABEL_PAYOUT, False, _OUT_DOMESTIC, "person", 150_000, sigma=1.2, refs=(_E2E,), note=0.5
    ),
}


@dataclass(frozen=True, slots=True)
class Profile:
    """How an account moves: random events per day (weekday, weekend) and their mix."""

    weekday: float
    weekend: float
    #: (cumulative weight, event name), for a bisect-free linear draw over a short list.
    mix: tuple[tuple[float, str], ...]


def _profile(weekday: float, weekend: float, **weights: float) -> Profile:
    total = sum(weights.values())
    acc = 0.0
    mix = []
    for name, weight in weights.items():
        acc += weight / total
        mix.append((acc, name))
    return Profile(weekday, weekend, tuple(mix))


# fmt: off
PROFILES: Final = {
    "salary": _profile(
        2.4, 1.6, purchase=44, visa=12, cash=3, giro=7, efaktura=7, instant_out=9,
        instant_in=6, transfer_out=6, transfer_in=3, deposit=1, reversal=0.5,
    ),
    "savings": _profile(0.08, 0.04, transfer_in=70, transfer_out=30),
    "credit": _profile(0.9, 0.7, purchase=55, visa=40, cash=5),
    "prepaid": _profile(0.4, 0.5, purchase=80, visa=20),
    "loan": _profile(0.0, 0.0),
    "currency": _profile(0.12, 0.0, foreign_in=55, foreign_out=45),
    "business": _profile(
        6.0, 0.8, kid_in=30, card_settlement=15, instant_in=10, supplier_out=20, efaktura=12,
        avtalegiro=3, transfer_out=3, purchase=7,
    ),
    "huge": _profile(650.0, 180.0, kid_in=40, card_settlement=28, instant_in=25,
                     supplier_out=5, efaktura=2),
    "tax": _profile(0.0, 0.0),
    "client": _profile(0.6, 0.05, client_in=45, client_out=45, transfer_out=5, fee=5),
    "no_balance": _profile(0.03, 0.0, transfer_in=50, transfer_out=50),
    "other": _profile(0.01, 0.0, transfer_in=100),
}
# fmt: on

_MONTHS_NO: Final = (
    "", "januar", "februar", "mars", "april", "mai", "juni", "juli", "august", "september",
    "oktober", "november", "desember",
)  # fmt: skip


@functools.lru_cache(maxsize=8192)
@functools.lru_cache(maxsize=8192)
def booking_offsets(day: dt.date) -> tuple[str, str, str]:
    """(ISO date, UTC offset at midnight, UTC offset at noon) of an Oslo day: booking dates
    are midnight date-times, and transactions are registered in the daytime (after any DST
    switch, which happens at night)."""

    def offset(hour: int) -> str:
        when = dt.datetime(day.year, day.month, day.day, hour, tzinfo=OSLO)
        return when.isoformat()[-6:]

    return day.isoformat(), offset(0), offset(12)


@functools.lru_cache(maxsize=8192)
def _day_strings(day: dt.date) -> tuple[str, bytes, bytes, str, str]:
    """What every account's transactions of ``day`` share: YYYYMMDD, bookingDate and
    valueDate encoded (booked), valueDate alone encoded (pending), "YYYY-MM-DDT" and the
    daytime UTC offset."""
    iso, off_midnight, off_noon = booking_offsets(day)
    booking = f"{iso}T00:00:00{off_midnight}".encode()
    value_date = field(_VALUE_DATE_FIELD, booking)
    booked = field(_BOOKING_DATE_FIELD, booking) + value_date
    return iso.replace("-", ""), booked, value_date, f"{iso}T", off_noon


#: ASCII digits to their values, and to the digit sum of their double (Luhn).
_DIGIT_VALUES: Final = bytes.maketrans(b"0123456789", bytes(range(10)))
_LUHN_DOUBLED: Final = bytes.maketrans(b"0123456789", bytes((0, 2, 4, 6, 8, 1, 3, 5, 7, 9)))


def _kid(random01: Callable[[], float], length: int) -> str:
    """A KID (customer id on a payment) with its Luhn (mod 10) check digit."""
    body = f"{int(random01() * 10 ** (length - 1)):0{length - 1}d}"
    backwards = body.encode()[::-1]
    # From the right, the digits next to the check digit are doubled, then every other one.
    total = sum(backwards[0::2].translate(_LUHN_DOUBLED)) + sum(
        backwards[1::2].translate(_DIGIT_VALUES)
    )
    return f"{body}{(10 - total % 10) % 10}"


@dataclass(frozen=True, slots=True)
class Counterparty:
    """A pool entry: someone transactions are made with, serialized once per role."""

    name: str
    account: str | None
    #: Per CounterPartyType value, the counterparty as an entry of Transaction.counterParties
    #: (tag and length included).
    entry: dict[int, bytes]


def _counterparty(
    name: str,
    account: str | None,
    identifier: str | None,
    id_type: m.IdentifierType.ValueType,
    *,
    address: Address,
    address_type: m.AddressType.ValueType,
) -> Counterparty:
    wire: dict[int, bytes] = {}
    for cp_type in (
        m.COUNTER_PARTY_TYPE_DEBTOR,
        m.COUNTER_PARTY_TYPE_CREDITOR,
        m.COUNTER_PARTY_TYPE_ULTIMATE_DEBTOR,
        m.COUNTER_PARTY_TYPE_ULTIMATE_CREDITOR,
    ):
        cp = m.CounterParty(name=name, type=cp_type)
        if account is not None:
            cp.account_identifier = account
        if identifier is not None:
            cp.identifier.value = identifier
            cp.identifier.type = id_type
            cp.identifier.country_of_residence = address.country
        pa = cp.postal_address
        pa.type = address_type
        pa.street_name = address.street
        pa.building_number = address.building
        pa.post_code = address.post_code
        pa.town_name = address.town
        pa.country = address.country
        pa.address_lines.extend(
            (f"{address.street} {address.building}", f"{address.post_code} {address.town}")
        )
        wire[cp_type] = field(_COUNTER_PARTIES_FIELD, cp.SerializeToString())
    return Counterparty(name, account, wire)


class Pools:
    """The counterparties every bank's transactions draw from, built once per dataset."""

    def __init__(self, seed: int, banks: Sequence[BankInfo]) -> None:
        rng = stable_rng(seed, "pools")
        prefixes = [b.prefix for b in banks] or [1503]
        biz = m.ADDRESS_TYPE_BUSINESS
        org, nin = (
            m.IDENTIFIER_TYPE_COUNTRY_IDENTIFICATION_CODE,
            m.IDENTIFIER_TYPE_NATIONAL_IDENTITY_NUMBER,
        )

        def company(name: str) -> Counterparty:
            account = random_account_number(rng, pick(rng, prefixes))
            return _counterparty(
                name,
                account,
                random_org_id(rng),
                org,
                address=random_address(rng),
                address_type=biz,
            )

        self.merchants = tuple(company(f"{chain} Norge AS") for chain in names.MERCHANTS)
        self.billers = tuple(company(name) for name in names.BILLERS)
        self.companies = tuple(company(random_company_name(rng)[0]) for _ in range(300))
        # Withheld tax goes to the Tax Administration: its real, public organisation number.
        self.tax_office = _counterparty(
            "Skatteetaten",
            random_account_number(rng, pick(rng, prefixes)),
            TAX_ADMINISTRATION,
            org,
            address=Address("Postboks", "9200", "0134", "Oslo"),
            address_type=biz,
        )
        self.acquirer = company("Nets Branch Norway")
        self.persons = tuple(
            _counterparty(
                random_person_name(rng),
                random_account_number(rng, pick(rng, prefixes)),
                random_person_id(rng, 1945, 2006)[0],
                nin,
                address=random_address(rng),
                address_type=m.ADDRESS_TYPE_RESIDENTIAL,
            )
            for _ in range(400)
        )
        foreign = []
        for merchant, country, _currency in names.FOREIGN_MERCHANTS:
            street, post_code, town = names.FOREIGN_ADDRESSES[country]
            address = Address(street, str(1 + below(rng, 300)), post_code, town, country)
            foreign.append(
                _counterparty(merchant, None, None, org, address=address, address_type=biz)
            )
        self.foreign = tuple(foreign)


def _amount(cents: int) -> str:
    """Cents as the standard's decimal string ("1234.50")."""
    return f"{cents // 100}.{_CENTS[cents % 100]}"


_KID_LENGTHS: Final = (7, 10, 15)
#: Keeps the seeds of generation units apart from the per-day hashes of the same account.
_UNIT_SALT: Final = 0x5A17_0F_DA75
# Formatting through tables: f"{n:05d}" and friends cost more than the lookups they replace.
_SEQUENCE: Final = tuple(f"{i:05d}" for i in range(4096))
_CLOCK_MINUTES: Final = tuple(f"{m // 60:02d}:{m % 60:02d}:" for m in range(24 * 60))
_CLOCK_SECONDS: Final = tuple(f"{s:02d}" for s in range(60))
_CENTS: Final = tuple(f"{c:02d}" for c in range(100))


def _lognormal_table(sigma: float, size: int = 4096) -> tuple[float, ...]:
    """Equally likely values of exp(sigma * Z), Z standard normal: a draw is one index, where
    random.lognormvariate() costs a microsecond per transaction."""
    normal = NormalDist()
    return tuple(math.exp(sigma * normal.inv_cdf((i + 0.5) / size)) for i in range(size))


_LOGNORMAL: Final = {sigma: _lognormal_table(sigma) for sigma in {e.sigma for e in EVENTS.values()}}
_REFERENCES_FIELD: Final = m.Transaction.REFERENCES_FIELD_NUMBER
_BOOKING_DATE_FIELD: Final = m.Transaction.BOOKING_DATE_FIELD_NUMBER
_COUNTER_PARTIES_FIELD: Final = m.Transaction.COUNTER_PARTIES_FIELD_NUMBER
_PAYMENT_CARD_FIELD: Final = m.Transaction.PAYMENT_CARD_FIELD_NUMBER
_VALUE_DATE_FIELD: Final = m.Transaction.VALUE_DATE_FIELD_NUMBER
_REFERENCE_VALUE_FIELD: Final = m.TransactionReference.VALUE_FIELD_NUMBER
_REFERENCE_TYPES: Final = {
    ref_type: m.TransactionReference(type=ref_type).SerializeToString()
    for ref_type in R.values()
    if ref_type
}


def _reference(value: str, ref_type: m.TransactionReferenceType.ValueType) -> bytes:
    """One entry of Transaction.references, encoded."""
    return field(
        _REFERENCES_FIELD,
        field(_REFERENCE_VALUE_FIELD, value.encode()) + _REFERENCE_TYPES[ref_type],
    )


_TOWNS_UPPER: Final = tuple(town.upper() for _, town in names.TOWNS)


class _DayContext(NamedTuple):
    """What every transaction of one account's day shares (a NamedTuple: built once per
    day, and cheaper to build than a frozen dataclass)."""

    a: AccountFacts
    holder: PartyFacts
    siblings: Sequence[str]
    ymd: str
    id_prefix: str
    servicer_prefix: str
    #: bookingDate and valueDate (a booked transaction), or valueDate alone, encoded.
    booked_dates: bytes
    value_date: bytes
    iso_t: str
    off_noon: str
    card: CardFacts | None
    #: The card as Transaction.paymentCard, encoded (empty without a card).
    card_entry: bytes
    is_today: bool
    mandate: str


class TransactionFactory:
    """Builds the transactions of one bank's accounts, one booking day at a time."""

    def __init__(self, seed: int, bank: BankInfo, pools: Pools) -> None:
        self._seed = seed
        self._bank = bank
        self._pools = pools
        self._templates: dict[tuple[str, str], bytes] = {}
        self._own_cache: dict[tuple[str, str, int], bytes] = {}

    def _scheduled(self, a: AccountFacts, holder: PartyFacts, day: dt.date) -> list[str]:
        """The events fixed by the calendar (salary day, bills, interest, fees)."""
        key = int(a.tx_key, 16)
        payday = (12, 15, 20, 25)[key % 4]
        events: list[str] = []
        kind = a.kind
        dom = day.day
        if kind == "salary":
            if dom == payday and 18 <= day.year - holder.born.year <= 67:
                events.append("salary_in")
            if dom in (1 + key % 5, 10 + (key >> 3) % 15):
                events.append("avtalegiro")
            if dom == 1 and day.month in (1, 4, 7, 10):
                events.append("fee")
            if dom == 31 and day.month == 12:
                events.append("interest_in")
        elif kind in ("savings", "other"):
            if dom == 31 and day.month == 12:
                events.append("interest_in")
        elif kind == "credit":
            if dom == 25:
                events.append("card_bill")
            if dom == 28 and key % 2:
                events.append("interest_out")
            if dom == 15 and day.month == 1:
                events.append("fee")
        elif kind == "prepaid":
            if day.weekday() == 0:
                events.append("top_up")
        elif kind == "loan":
            if dom == 20:
                events.extend(("instalment", "interest_out", "fee"))
        elif kind == "business":
            if dom == payday:
                employees = 120 if a.huge else key % 12
                events.extend(["salary_out"] * employees)
                if employees:
                    events.append("tax_transfer_out")
            if dom == 1:
                events.append("fee")
        elif kind == "tax":
            if dom == payday:
                events.append("tax_transfer_in")
            if dom == 15 and day.month % 2 == 1:
                events.append("withholding_out")
        return events

    def _plan(
        self, a: AccountFacts, holder: PartyFacts, day: dt.date
    ) -> tuple[int, list[str], int]:
        """The day's hash, its scheduled events and how many random events follow.

        The count comes from the hash itself, so counting days, and skipping the many empty
        days of a savings account, costs no generator seeding (a few microseconds each).
        """
        # tx_seed derives from (seed, bank, holder, account), so this is stable too.
        h = mix64(a.tx_seed, day.toordinal())
        profile = PROFILES["huge" if a.huge else a.kind]
        rate = profile.weekday if day.weekday() < 5 else profile.weekend
        count = 0
        if rate:
            u1 = (h >> 32) / 2.0**32
            u2 = (h & 0xFFFFFFFF) / 2.0**32
            count = int(rate * (0.6 + 0.8 * u1) + u2)
        return h, self._scheduled(a, holder, day), count

    def count(self, a: AccountFacts, holder: PartyFacts, first: dt.date, last: dt.date) -> int:
        """How many transactions the days first..last hold, without building them."""
        total = 0
        day = first
        one = dt.timedelta(days=1)
        while day <= last:
            _h, scheduled, extra = self._plan(a, holder, day)
            total += len(scheduled) + extra
            day += one
        return total

    def days(
        self,
        a: AccountFacts,
        holder: PartyFacts,
        first: dt.date,
        last: dt.date,
        *,
        today: dt.date,
        siblings: Sequence[str],
        cards: Sequence[CardFacts],
    ) -> Iterator[list[m.Transaction]]:
        """The transactions booked on each day first..last (pending on today), one list per
        day, generated as they are taken.

        ``siblings`` are the holder's other account numbers at the bank, the counterparty of
        own transfers; ``cards`` the account's cards, used by card transactions.

        How many transactions a day holds comes from the day alone (:meth:`count`); their
        contents come from a generator seeded once per unit of days, because seeding costs
        more than the few transactions of a typical day: a week (Monday to Sunday) for
        ordinary accounts, a day for accounts with hundreds a day. A period starting mid-week
        generates the week's earlier days and drops them, so a day's transactions never
        depend on the period asked for.
        """
        if first > last:
            return
        rng = random.Random()  # one per call: several iterators may be interleaved
        weekly = not a.huge
        one = dt.timedelta(days=1)
        day = first - dt.timedelta(days=first.weekday()) if weekly else first
        while day <= last:
            if not weekly or day.weekday() == 0:
                rng.seed(mix64(a.tx_seed ^ _UNIT_SALT, day.toordinal()))
            made = self._day(rng, a, holder, day, today=today, siblings=siblings, cards=cards)
            if day >= first:
                yield made
            day += one

    def _day(
        self,
        rng: random.Random,
        a: AccountFacts,
        holder: PartyFacts,
        day: dt.date,
        *,
        today: dt.date,
        siblings: Sequence[str],
        cards: Sequence[CardFacts],
    ) -> list[m.Transaction]:
        _h, events, extra = self._plan(a, holder, day)
        if not events and not extra:
            return []
        profile = PROFILES["huge" if a.huge else a.kind]
        r = rng.random
        for _ in range(extra):
            u = r()
            for threshold, name in profile.mix:
                if u < threshold:
                    events.append(name)
                    break
            else:
                events.append(profile.mix[-1][1])
        ymd, booked_dates, value_date, iso_t, off_noon = _day_strings(day)
        card = self._card_on(cards, day)
        ctx = _DayContext(
            a=a,
            holder=holder,
            siblings=siblings,
            ymd=ymd,
            id_prefix=a.tx_key + ymd,
            servicer_prefix=ymd[2:] + a.tx_key[:4],
            booked_dates=booked_dates,
            value_date=value_date,
            iso_t=iso_t,
            off_noon=off_noon,
            card=card,
            card_entry=b"" if card is None else field(_PAYMENT_CARD_FIELD, card.wire),
            is_today=day == today,
            mandate=str(1_000_000 + a.tx_seed % 9_000_000),
        )
        out: list[m.Transaction] = []
        for seq, event in enumerate(events):
            ev = EVENTS[event]
            # Without a valid card the money moves another way; the count stays the same.
            name = ("deposit" if ev.credit else "giro") if ev.card and ctx.card is None else event
            out.append(self._one(rng, ctx, name, seq))
        return out

    @staticmethod
    def _card_on(cards: Sequence[CardFacts], day: dt.date) -> CardFacts | None:
        for card in cards:
            if card.valid_from <= day <= card.valid_to:
                return card
        return None

    def _template(self, name: str, currency: str) -> bytes:
        """The fields an event fixes (code, direction, reversal, booked status, currency),
        serialized once: parsing them is cheaper than setting them one by one."""
        key = (name, currency)
        found = self._templates.get(key)
        if found is None:
            ev = EVENTS[name]
            t = m.Transaction(
                credit_debit_indicator=CREDIT if ev.credit else DEBIT,
                reversal_indicator=ev.reversal,
                status=m.TRANSACTION_STATUS_BOOKED,
                transaction_code=m.BankTransactionCode(
                    domain=ev.domain,
                    family=ev.family,
                    sub_family=ev.sub_family,
                    free_text=ev.label,
                ),
                currency=currency,
            )
            found = self._templates[key] = t.SerializeToString()
        return found

    def _one(self, rng: random.Random, ctx: _DayContext, name: str, seq: int) -> m.Transaction:
        # This runs for every transaction, so it draws with rng.random() scaled to an index
        # (randrange() costs several times more), formats through lookup tables, and collects
        # the message fields as wire fragments parsed once (see providers.synthetic.wire).
        r = rng.random
        ev = EVENTS[name]
        pools = self._pools
        a = ctx.a
        seq_text = _SEQUENCE[seq] if seq < len(_SEQUENCE) else f"{seq:05d}"
        wire = [
            self._template(name, a.currency),
            _reference(ctx.servicer_prefix + seq_text, _SERVICER),
        ]
        if r() < 0.7:
            wire.append(_reference(str(100_000_000 + int(r() * 900_000_000)), _ARCHIVE))
        for ref_type in ev.refs:
            if ref_type == _KID:
                value = _kid(r, _KID_LENGTHS[int(r() * 3)])
            elif ref_type == _MANDATE:
                value = ctx.mandate
            elif ref_type == _INVOICE:
                value = f"F{int(r() * 10_000_000):07d}"
            else:
                value = f"{rng.getrandbits(64):016X}"
            wire.append(_reference(value, ref_type))
        status = m.TRANSACTION_STATUS_BOOKED
        if ctx.is_today and ev.card:
            status = m.TRANSACTION_STATUS_PENDING
        elif ev.source == "biller" and r() < 0.002:
            status = m.TRANSACTION_STATUS_INFO
        wire.append(ctx.booked_dates if status == m.TRANSACTION_STATUS_BOOKED else ctx.value_date)

        spread = _LOGNORMAL[ev.sigma]
        cents = max(100, int(ev.median_cents * spread[int(r() * len(spread))]))
        if ev.source == "atm":
            cents = max(1, cents // 10_000) * 10_000
        rate_of = names.EXCHANGE_RATES.get(a.currency)
        if rate_of is not None:
            # Currency accounts hold foreign money: scale the NOK-sized medians down.
            cents = max(100, int(cents / rate_of))

        cp_type = m.COUNTER_PARTY_TYPE_DEBTOR if ev.credit else m.COUNTER_PARTY_TYPE_CREDITOR
        source = ev.source
        merchant: str | None = None
        foreign: tuple[str, str, str] | None = None
        party = None
        if source == "merchant" or (source == "foreign_merchant" and r() < 0.7):
            index = int(r() * len(names.MERCHANTS))
            party = pools.merchants[index]
            merchant = f"{names.MERCHANTS[index]} {_TOWNS_UPPER[int(r() * len(_TOWNS_UPPER))]}"
        elif source == "foreign_merchant":
            index = int(r() * len(names.FOREIGN_MERCHANTS))
            party = pools.foreign[index]
            foreign = names.FOREIGN_MERCHANTS[index]
            merchant = foreign[0]
        elif source == "atm":
            merchant = f"MINIBANK {_TOWNS_UPPER[int(r() * len(_TOWNS_UPPER))]}"
        elif source == "biller":
            party = pools.billers[int(r() * len(pools.billers))]
        elif source == "company":
            party = pools.companies[int(r() * len(pools.companies))]
        elif source == "employer":
            party = pools.companies[a.tx_seed % len(pools.companies)]
        elif source in ("person", "employee"):
            party = pools.persons[int(r() * len(pools.persons))]
        elif source == "acquirer":
            party = pools.acquirer
        elif source == "tax_office":
            party = pools.tax_office
        elif source == "foreign":
            party = pools.foreign[int(r() * len(pools.foreign))]
        if party is not None:
            wire.append(party.entry[cp_type])
            if source == "company" and ev.credit and r() < 0.1:
                # Paid through an accountant or payment service on the company's behalf.
                other = pools.companies[int(r() * len(pools.companies))]
                wire.append(other.entry[m.COUNTER_PARTY_TYPE_ULTIMATE_DEBTOR])
        elif source == "self":
            own = pick(rng, ctx.siblings) if ctx.siblings else self._elsewhere(a)
            wire.append(self._own(ctx.holder, own, cp_type))
        if ev.card and ctx.card is not None:
            wire.append(ctx.card_entry)

        t = m.Transaction.FromString(b"".join(wire))
        t.transaction_identifier = ctx.id_prefix + seq_text
        if status != m.TRANSACTION_STATUS_BOOKED:
            t.status = status
        if ev.note and r() < ev.note:
            if source in ("employer", "employee"):
                t.additional_info = f"Lønn {_MONTHS_NO[int(ctx.ymd[4:6])]} {ctx.ymd[:4]}"
            else:
                t.additional_info = names.PAYMENT_NOTES[int(r() * len(names.PAYMENT_NOTES))]
        elif status == m.TRANSACTION_STATUS_INFO:
            t.additional_info = "Betalingen ble avvist: manglende dekning"
        if foreign is not None and a.currency == "NOK":
            currency = foreign[2]
            rate = names.EXCHANGE_RATES[currency] * (0.98 + 0.04 * r())
            original = max(100, int(cents / rate))
            cents = round(original * rate)
            fx = t.currency_exchange
            fx.original_amount = _amount(original)
            fx.source_currency = currency
            fx.target_currency = "NOK"
            fx.unit_currency = currency
            fx.exchange_rate = f"{rate:.4f}"
        if merchant is not None:
            t.merchant = merchant
        # Card purchases happen 07-23, batch payments are registered in office hours.
        minute = (420 + int(r() * 960)) if ev.card else (360 + int(r() * 720))
        t.registered = (
            ctx.iso_t + _CLOCK_MINUTES[minute] + _CLOCK_SECONDS[int(r() * 60)] + ctx.off_noon
        )
        t.amount = _amount(cents)
        return t

    def _elsewhere(self, a: AccountFacts) -> str:
        """The account at another bank that a holder with one account here moves money to."""
        return random_account_number(random.Random(a.tx_seed), 1000 + a.tx_seed % 9000)

    def _own(
        self, holder: PartyFacts, account: str, cp_type: m.CounterPartyType.ValueType
    ) -> bytes:
        """The holder as the counterparty of an own transfer, encoded (and memoized: a
        holder's transfers repeat the same few)."""
        key = (holder.party_id, account, cp_type)
        found = self._own_cache.get(key)
        if found is None:
            person = len(holder.party_id) == 11
            found = _counterparty(
                holder.name,
                account,
                holder.party_id,
                m.IDENTIFIER_TYPE_NATIONAL_IDENTITY_NUMBER
                if person
                else m.IDENTIFIER_TYPE_COUNTRY_IDENTIFICATION_CODE,
                address=holder.address,
                address_type=m.ADDRESS_TYPE_RESIDENTIAL if person else m.ADDRESS_TYPE_BUSINESS,
            ).entry[cp_type]
            if len(self._own_cache) >= 8192:
                self._own_cache.clear()
            self._own_cache[key] = found
        return found
