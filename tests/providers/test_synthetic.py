"""The synthetic world: deterministic, consistent with its KAR, realistic where DSOP.md §8 asks.

Every test uses a fixed clock so "today" and the bytes produced do not depend on when it runs.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator

import pytest

import providers.synthetic
from dsop.controlinfo.v2 import bank_pb2, model_pb2
from dsop.kar.v1 import kar_pb2
from hub.identifiers import (
    PartyKind,
    is_valid_account_number,
    is_valid_national_identity_number,
    is_valid_organisation_number,
)
from providers.synthetic import names
from providers.synthetic.dataset import (
    TRAITS,
    WORLD_DATE,
    SyntheticBankData,
    SyntheticDataset,
    UnknownAccountError,
)
from providers.synthetic.transactions import OSLO
from providers.synthetic.universe import MAX_BANKS, BankInfo, make_banks

SEED = 5
NOW = dt.datetime(2026, 11, 23, 10, 30, tzinfo=OSLO)
TODAY = NOW.date()
YEAR_AGO = TODAY - dt.timedelta(days=365)
m = model_pb2

AMOUNT = re.compile(r"^(0|[1-9]\d*)\.\d{2}$")
DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+0[12]:00$")
YEAR_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
MASKED_CARD = re.compile(r"^\d{6}X{6}\d{4}$")


@pytest.fixture(scope="module")
def banks() -> list[BankInfo]:
    return make_banks(30, SEED)


def _dataset(banks: list[BankInfo], seed: int = SEED) -> SyntheticDataset:
    return SyntheticDataset(seed, banks, clock=lambda: NOW)


@pytest.fixture(scope="module")
def ds(banks: list[BankInfo]) -> SyntheticDataset:
    return _dataset(banks)


def _accounts(
    ds: SyntheticDataset, party: str, start: dt.date = YEAR_AGO, end: dt.date = TODAY
) -> Iterator[tuple[SyntheticBankData, model_pb2.Account]]:
    for relation in ds.relations(party, start, end):
        bank = ds.bank(relation.organization_id)
        for account in bank.list_accounts(party, False, start, end).accounts:
            yield bank, account


def _valid_identifier(identifier: model_pb2.Identifier) -> bool:
    if identifier.type == m.IDENTIFIER_TYPE_NATIONAL_IDENTITY_NUMBER:
        return is_valid_national_identity_number(identifier.value)
    if identifier.type == m.IDENTIFIER_TYPE_COUNTRY_IDENTIFICATION_CODE:
        return is_valid_organisation_number(identifier.value)
    return False


# --- the universe -----------------------------------------------------------------------------


def test_the_package_exports_the_few_names_users_need() -> None:
    assert sorted(providers.synthetic.__all__) == [
        "BankInfo",
        "SyntheticBankData",
        "SyntheticDataset",
        "UnknownAccountError",
        "make_banks",
    ]


def test_banks_are_unique_valid_and_stable() -> None:
    banks = make_banks(200, 3)
    assert len({b.bank_id for b in banks}) == len({b.name for b in banks}) == 200
    assert len({b.prefix for b in banks}) == 200
    assert all(is_valid_organisation_number(b.bank_id) for b in banks)
    assert all(1000 <= b.prefix <= 9999 for b in banks)
    assert make_banks(50, 3) == banks[:50]
    assert make_banks(50, 4) != banks[:50]
    assert banks[0].name == "Fjordkysten Sparebank"


def test_make_banks_refuses_more_banks_than_it_can_name() -> None:
    assert len(make_banks(MAX_BANKS, 1)) == MAX_BANKS
    with pytest.raises(ValueError, match="count"):
        make_banks(MAX_BANKS + 1, 1)


def test_an_unknown_bank_is_a_key_error(ds: SyntheticDataset) -> None:
    with pytest.raises(KeyError):
        ds.bank("974761076")


# --- determinism ------------------------------------------------------------------------------


def _fingerprint(ds: SyntheticDataset, parties: list[str]) -> list[bytes]:
    out: list[bytes] = []
    for party in parties:
        out.extend(r.SerializeToString() for r in ds.relations(party, YEAR_AGO, TODAY))
        for bank, account in _accounts(ds, party):
            ref = account.account_reference
            out.append(account.SerializeToString())
            out.append(bank.get_account_details(ref, YEAR_AGO, TODAY).SerializeToString())
            out.append(bank.get_account_details(ref, YEAR_AGO, YEAR_AGO).SerializeToString())
            out.append(bank.list_cards(ref, YEAR_AGO, TODAY).SerializeToString())
            out.append(bank.list_roles(ref, YEAR_AGO, TODAY).SerializeToString())
            first = next(bank.iter_transactions(ref, TODAY - dt.timedelta(days=20), TODAY))
            out.extend(t.SerializeToString() for t in first)
    return out


def test_the_same_seed_gives_the_same_bytes(banks: list[BankInfo]) -> None:
    first, second = _dataset(banks), _dataset(banks)
    parties = first.party_sample(15, kind=None)
    assert second.party_sample(15, kind=None) == parties
    assert _fingerprint(first, parties) == _fingerprint(second, parties)


def test_another_seed_gives_other_data(banks: list[BankInfo]) -> None:
    parties = _dataset(banks).party_sample(15)
    assert _fingerprint(_dataset(banks, 1), parties) != _fingerprint(_dataset(banks, 2), parties)
    assert _dataset(banks, 1).party_sample(15) != _dataset(banks, 2).party_sample(15)


def test_samples_are_valid_distinct_parties_of_the_kind_asked(ds: SyntheticDataset) -> None:
    persons = ds.party_sample(300)
    organisations = ds.party_sample(100, kind=PartyKind.ORGANISATION)
    mixed = ds.party_sample(300, kind=None)
    assert len(set(persons)) == 300 and len(set(organisations)) == 100
    assert all(is_valid_national_identity_number(p) and int(p[2:4]) > 80 for p in persons)
    assert all(is_valid_organisation_number(p) for p in organisations)
    assert 0 < sum(len(p) == 9 for p in mixed) < 100


# --- KAR and the banks agree ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end"),
    [(TODAY, TODAY), (YEAR_AGO, TODAY), (dt.date(2020, 1, 1), dt.date(2020, 12, 31))],
)
def test_kar_names_exactly_the_banks_that_hold_something(
    ds: SyntheticDataset, banks: list[BankInfo], start: dt.date, end: dt.date
) -> None:
    parties = ds.party_sample(120, kind=None)
    parties += [ds.find_party("operator_only"), ds.find_party("many_banks")]
    for party in parties:
        if ds.has_trait(party, "shielded"):
            continue  # KAR names their banks; the banks disclose nothing (tested below)
        named = {r.organization_id: r for r in ds.relations(party, start, end)}
        assert len(named) >= 1 or end < WORLD_DATE  # today everyone banks somewhere
        for info in banks:
            bank = ds.bank(info.bank_id)
            held = bank.list_accounts(party, False, start, end)
            owned = bank.list_accounts(party, True, start, end)
            assert held.response_details.status == m.RESPONSE_STATUS_COMPLETE
            if info.bank_id not in named:
                assert not held.accounts
                continue
            relation = named[info.bank_id]
            assert len(held.accounts) >= 1
            assert relation.bank_name == info.name
            primary = relation.ownership_type == kar_pb2.OWNERSHIP_TYPE_PRIMARY_OWNER
            assert primary == bool(owned.accounts)
            ends = [
                bank.get_account_details(a.account_reference, start, end).account.end_date
                for a in held.accounts
            ]
            # Active: an account still open when the period ends (status is today's, so
            # compare end dates).
            if relation.active_account:
                assert any(not e or e > end.isoformat() for e in ends)


def test_typical_persons_bank_with_about_two_banks_and_two_accounts_each(
    ds: SyntheticDataset,
) -> None:
    parties = ds.party_sample(400)
    relations = [ds.relations(p, TODAY, TODAY) for p in parties]
    per_party = [len(r) for r in relations]
    assert 1.6 <= sum(per_party) / len(per_party) <= 2.6
    assert max(per_party) >= 5
    counts = [
        len(ds.bank(r.organization_id).list_accounts(p, True, TODAY, TODAY).accounts)
        for p, rs in zip(parties, relations, strict=True)
        for r in rs
        if r.ownership_type == kar_pb2.OWNERSHIP_TYPE_PRIMARY_OWNER
    ]
    assert 1.4 <= sum(counts) / len(counts) <= 2.2
    assert max(counts) <= 5


def test_an_invalid_party_is_known_nowhere(ds: SyntheticDataset, banks: list[BankInfo]) -> None:
    for party in ("12345678901", "123456789", "", "abc"):
        assert ds.relations(party, YEAR_AGO, TODAY) == []
        answer = ds.bank(banks[0].bank_id).list_accounts(party, False, YEAR_AGO, TODAY)
        assert answer == bank_pb2.ListAccountsResponse(
            response_details=m.ResponseDetails(status=m.RESPONSE_STATUS_COMPLETE)
        )


def test_a_shielded_person_gets_empty_complete_lists(ds: SyntheticDataset) -> None:
    party = ds.find_party("shielded")
    relations = ds.relations(party, YEAR_AGO, TODAY)
    assert relations  # KAR knows the relationship; the banks disclose nothing
    for relation in relations:
        answer = ds.bank(relation.organization_id).list_accounts(party, False, YEAR_AGO, TODAY)
        assert answer.response_details.status == m.RESPONSE_STATUS_COMPLETE
        assert not answer.accounts


def test_a_party_with_five_banks(ds: SyntheticDataset) -> None:
    party = ds.find_party("many_banks")
    assert len(ds.relations(party, TODAY, TODAY)) >= 5


def test_an_operator_sees_the_account_it_does_not_own(ds: SyntheticDataset) -> None:
    party = ds.find_party("operator_only")
    relations = ds.relations(party, TODAY, TODAY)
    others = [r for r in relations if r.ownership_type == kar_pb2.OWNERSHIP_TYPE_NOT_PRIMARY_OWNER]
    assert others
    bank = ds.bank(others[0].organization_id)
    assert not bank.list_accounts(party, True, TODAY, TODAY).accounts
    (account,) = bank.list_accounts(party, False, TODAY, TODAY).accounts
    assert account.primary_owner.identifier.value != party
    roles = bank.list_roles(account.account_reference, TODAY, TODAY).roles
    assert roles[0].identifier.value == account.primary_owner.identifier.value
    mine = [r for r in roles if r.identifier.value == party]
    assert [r.permission for r in mine] in (
        [m.ACCOUNT_PERMISSION_TYPE_RIGHT_TO_USE_WITH_OTHER],
        [m.ACCOUNT_PERMISSION_TYPE_RIGHT_TO_SEE_ONLY],
    )


def test_find_party_knows_every_trait(ds: SyntheticDataset) -> None:
    assert len({ds.find_party(trait) for trait in TRAITS}) >= 5
    with pytest.raises(ValueError, match="trait"):
        ds.find_party("rich")  # type: ignore[arg-type]


# --- accounts ---------------------------------------------------------------------------------


def test_every_account_type_appears(ds: SyntheticDataset) -> None:
    parties = ds.party_sample(250) + ds.party_sample(120, kind=PartyKind.ORGANISATION)
    seen = {account.type for party in parties for _bank, account in _accounts(ds, party)}
    assert seen == set(m.AccountType.values()) - {m.ACCOUNT_TYPE_UNSPECIFIED}


def test_account_fields_are_valid_and_mostly_nok(ds: SyntheticDataset) -> None:
    currencies: list[str] = []
    statuses: set[int] = set()
    for party in ds.party_sample(150, kind=None):
        for bank, account in _accounts(ds, party, dt.date(2016, 1, 1), TODAY):
            assert is_valid_account_number(account.account_identifier)
            assert account.account_identifier[:4] == f"{bank.info.prefix:04d}"
            assert account.servicer.identifier.value == bank.info.bank_id
            assert account.servicer.name == bank.info.name
            assert _valid_identifier(account.primary_owner.identifier)
            assert 0 < len(account.name) <= 70
            currencies.append(account.currency)
            statuses.add(account.status)
    assert currencies.count("NOK") > 0.8 * len(currencies)
    assert set(currencies) - {"NOK"} <= {"EUR", "USD", "SEK"}
    assert statuses >= {m.ACCOUNT_STATUS_ENABLED, m.ACCOUNT_STATUS_DELETED}


def test_organisations_hold_business_accounts_and_frozen_ones_exist(
    ds: SyntheticDataset,
) -> None:
    types: set[int] = set()
    statuses: set[int] = set()
    for party in ds.party_sample(200, kind=PartyKind.ORGANISATION):
        for _bank, account in _accounts(ds, party):
            types.add(account.type)
            statuses.add(account.status)
    assert {
        m.ACCOUNT_TYPE_BUSINESS_ACCOUNT,
        m.ACCOUNT_TYPE_CLIENT_ACCOUNT,
        m.ACCOUNT_TYPE_TAX_DEDUCTION_ACCOUNT,
    } <= types
    assert m.ACCOUNT_STATUS_DISABLED in statuses


def test_a_reopened_account_is_two_records_with_one_number(ds: SyntheticDataset) -> None:
    party = ds.find_party("reopened")
    details = [
        bank.get_account_details(a.account_reference, dt.date(1985, 1, 1), TODAY).account
        for bank, a in _accounts(ds, party, dt.date(1985, 1, 1), TODAY)
    ]
    by_number: dict[str, list[model_pb2.AccountDetail]] = {}
    for detail in details:
        by_number.setdefault(detail.account_identifier, []).append(detail)
    pairs = [records for records in by_number.values() if len(records) == 2]
    assert pairs
    closed, reopened = sorted(pairs[0], key=lambda d: d.start_date)
    assert closed.status == m.ACCOUNT_STATUS_DELETED and closed.HasField("end_date")
    assert reopened.start_date > closed.end_date
    assert closed.account_reference != reopened.account_reference


# --- references -------------------------------------------------------------------------------


def test_references_hide_the_account_and_round_trip(ds: SyntheticDataset) -> None:
    for party in ds.party_sample(40, kind=None):
        for bank, account in _accounts(ds, party):
            ref = account.account_reference
            assert account.account_identifier not in ref
            assert party not in ref
            assert re.fullmatch(r"[0-9a-f]{32}", ref)
            detail = bank.get_account_details(ref, TODAY, TODAY).account
            assert detail.account_identifier == account.account_identifier
            assert detail.account_reference == ref


def test_unknown_references_are_refused(ds: SyntheticDataset, banks: list[BankInfo]) -> None:
    party = ds.find_party("many_banks")
    (bank, account), *_ = _accounts(ds, party)
    other = next(ds.bank(b.bank_id) for b in banks if b.bank_id != bank.info.bank_id)
    ref = account.account_reference
    flipped = ref[:5] + ("0" if ref[5] != "0" else "1") + ref[6:]
    for bad in (
        "",
        "dataNotDelivered",
        "zz" * 16,
        ref[:-2],
        ref + "00",
        ref.upper()[:-1] + "g",
        flipped,
    ):
        with pytest.raises(UnknownAccountError):
            bank.get_account_details(bad, TODAY, TODAY)
    for call in (other.get_account_details, other.list_cards, other.list_roles):
        with pytest.raises(UnknownAccountError):
            call(ref, TODAY, TODAY)
    with pytest.raises(UnknownAccountError):
        other.iter_transactions(ref, YEAR_AGO, TODAY)
    # A refused reference leaves the bank able to decode the next one.
    assert bank.get_account_details(ref, TODAY, TODAY).account.account_reference == ref


def test_responses_are_fresh_objects(ds: SyntheticDataset) -> None:
    party = ds.party_sample(1)[0]
    relation = ds.relations(party, TODAY, TODAY)[0]
    bank = ds.bank(relation.organization_id)
    first = bank.list_accounts(party, True, TODAY, TODAY)
    first.accounts[0].name = "changed"
    assert bank.list_accounts(party, True, TODAY, TODAY).accounts[0].name != "changed"


# --- balances ---------------------------------------------------------------------------------


def _first_account(
    ds: SyntheticDataset, party: str, account_type: int
) -> tuple[SyntheticBankData, model_pb2.Account]:
    return next((b, a) for b, a in _accounts(ds, party) if a.type == account_type)


def test_today_gives_available_and_booked_balances(ds: SyntheticDataset) -> None:
    party = ds.party_sample(1)[0]
    bank, account = next(_accounts(ds, party, TODAY, TODAY))
    detail = bank.get_account_details(account.account_reference, YEAR_AGO, TODAY).account
    assert [b.type for b in detail.balances] == [
        m.BALANCE_TYPE_AVAILABLE_BALANCE,
        m.BALANCE_TYPE_BOOKED_BALANCE,
    ]
    available, booked = detail.balances
    assert available.registered == "2026-11-23T10:30:00+01:00"
    assert booked.registered.startswith("2026-11-23T")
    for balance in detail.balances:
        assert AMOUNT.match(balance.amount)
        assert balance.currency == account.currency
        assert balance.credit_debit_indicator != m.CREDIT_OR_DEBIT_UNSPECIFIED
        dt.datetime.fromisoformat(balance.registered)


def test_a_past_date_gives_the_booked_balance_then(ds: SyntheticDataset) -> None:
    party = ds.party_sample(1)[0]
    bank, account = next(_accounts(ds, party, TODAY, TODAY))
    summer = dt.date(2026, 7, 1)
    (balance,) = bank.get_account_details(
        account.account_reference, summer, summer
    ).account.balances
    assert balance.type == m.BALANCE_TYPE_BOOKED_BALANCE
    assert balance.registered == "2026-07-01T23:59:59+02:00"  # summer time
    winter = dt.date(2026, 1, 15)
    (balance,) = bank.get_account_details(
        account.account_reference, winter, winter
    ).account.balances
    assert balance.registered == "2026-01-15T23:59:59+01:00"


def test_an_account_closed_in_the_period_has_no_balance(ds: SyntheticDataset) -> None:
    start = WORLD_DATE - dt.timedelta(days=365)
    assert ds.has_trait(ds.find_party("closed_in_period"), "closed_in_period")
    bank, account = next(
        (bank, account)
        for party in ds.party_sample(300)
        if ds.has_trait(party, "closed_in_period")
        for bank, account in _accounts(ds, party, start, WORLD_DATE)
        if account.status == m.ACCOUNT_STATUS_DELETED
        and account.type != m.ACCOUNT_TYPE_ACCOUNT_WITHOUT_BALANCE
    )
    detail = bank.get_account_details(account.account_reference, start, WORLD_DATE).account
    end = dt.date.fromisoformat(detail.end_date)
    assert start <= end <= WORLD_DATE
    assert not detail.balances
    before = end - dt.timedelta(days=1)
    earlier = bank.get_account_details(account.account_reference, before, before).account
    assert [b.type for b in earlier.balances] == [m.BALANCE_TYPE_BOOKED_BALANCE]


def test_loans_are_debit_and_credit_cards_carry_their_credit_line(ds: SyntheticDataset) -> None:
    parties = ds.party_sample(200)
    loan = next(
        (b, a)
        for p in parties
        for b, a in _accounts(ds, p)
        if a.type == m.ACCOUNT_TYPE_LOAN_ACCOUNT and a.status != m.ACCOUNT_STATUS_DELETED
    )
    card = next(
        (b, a)
        for p in parties
        for b, a in _accounts(ds, p)
        if a.type == m.ACCOUNT_TYPE_CREDIT_CARD_ACCOUNT and a.status != m.ACCOUNT_STATUS_DELETED
    )
    bank, account = loan
    balances = bank.get_account_details(account.account_reference, TODAY, TODAY).account.balances
    assert {b.credit_debit_indicator for b in balances} == {m.CREDIT_OR_DEBIT_DEBIT}
    bank, account = card
    available, booked = bank.get_account_details(
        account.account_reference, TODAY, TODAY
    ).account.balances
    assert available.credit_line_included and not booked.credit_line_included
    assert AMOUNT.match(available.credit_line_amount)
    assert available.credit_line_currency == account.currency


# --- cards and roles --------------------------------------------------------------------------


def test_cards_are_masked_and_issued_by_the_bank(ds: SyntheticDataset) -> None:
    cards = 0
    for party in ds.party_sample(60, kind=None):
        for bank, account in _accounts(ds, party):
            listed = bank.list_cards(account.account_reference, YEAR_AGO, TODAY)
            assert listed.response_details.status == m.RESPONSE_STATUS_COMPLETE
            if account.type in (m.ACCOUNT_TYPE_LOAN_ACCOUNT, m.ACCOUNT_TYPE_SAVINGS_ACCOUNT):
                assert not listed.payment_cards
            for card in listed.payment_cards:
                cards += 1
                assert MASKED_CARD.match(card.card_identifier)
                assert YEAR_MONTH.match(card.start_date) and YEAR_MONTH.match(card.expiry_date)
                assert card.start_date < card.expiry_date
                assert card.version_number in set("123456789")
                assert card.card_issuer_name == bank.info.name
                assert card.card_issuer_identifier.value == bank.info.bank_id
                assert (
                    card.card_issuer_identifier.type
                    == m.IDENTIFIER_TYPE_COUNTRY_IDENTIFICATION_CODE
                )
                assert card.type != m.CARD_TYPE_UNSPECIFIED
                assert card.card_status != m.CARD_STATUS_UNSPECIFIED
                assert card.holder_name
    assert cards > 20


def test_roles_name_the_owner_first_with_valid_identifiers(ds: SyntheticDataset) -> None:
    permissions: set[int] = set()
    for party in ds.party_sample(60, kind=None):
        for bank, account in _accounts(ds, party):
            roles = bank.list_roles(account.account_reference, YEAR_AGO, TODAY).roles
            assert roles[0].identifier == account.primary_owner.identifier
            assert roles[0].permission == m.ACCOUNT_PERMISSION_TYPE_RIGHT_TO_USE_ALONE
            for role in roles:
                assert _valid_identifier(role.identifier)
                assert role.name and role.start_date
                dt.date.fromisoformat(role.start_date)
                permissions.add(role.permission)
    assert permissions == set(m.AccountPermissionType.values()) - {
        m.ACCOUNT_PERMISSION_TYPE_UNSPECIFIED
    }


# --- transactions -----------------------------------------------------------------------------


def _luhn_valid(kid: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(kid)):
        digit = int(char) * (2 if i % 2 else 1)
        total += digit - 9 if digit > 9 else digit
    return total % 10 == 0


def _salary_account(ds: SyntheticDataset) -> tuple[SyntheticBankData, model_pb2.Account]:
    for party in ds.party_sample(50):
        for bank, account in _accounts(ds, party):
            if (
                account.type == m.ACCOUNT_TYPE_SALARY_ACCOUNT
                and account.status == m.ACCOUNT_STATUS_ENABLED
            ):
                return bank, account
    raise AssertionError("no salary account")


def test_pages_hold_page_size_transactions_without_duplicates(ds: SyntheticDataset) -> None:
    bank, account = _salary_account(ds)
    ref = account.account_reference
    (everything,) = list(bank.iter_transactions(ref, YEAR_AGO, TODAY, page_size=100_000))
    pages = list(bank.iter_transactions(ref, YEAR_AGO, TODAY, page_size=100))
    assert all(len(page) == 100 for page in pages[:-1]) and 0 < len(pages[-1]) <= 100
    paged = [t for page in pages for t in page]
    ids = [t.transaction_identifier for t in paged]
    assert (
        len(ids) == len(set(ids)) == len(everything) == bank.transaction_count(ref, YEAR_AGO, TODAY)
    )
    assert paged == everything
    days = [t.value_date[:10] for t in paged]
    assert days == sorted(days)
    assert days[0] >= YEAR_AGO.isoformat() and days[-1] <= TODAY.isoformat()
    assert len(everything) > 300  # a salary account is busy


def test_a_days_transactions_do_not_depend_on_the_period_asked(ds: SyntheticDataset) -> None:
    bank, account = _salary_account(ds)
    ref = account.account_reference
    day = dt.date(2026, 10, 15)  # a Thursday: its week starts before every period below

    def on(start: dt.date, end: dt.date) -> list[bytes]:
        return [
            t.SerializeToString()
            for page in bank.iter_transactions(ref, start, end)
            for t in page
            if t.value_date.startswith(day.isoformat())
        ]

    alone = on(day, day)
    assert alone
    assert on(day - dt.timedelta(days=2), day) == alone
    assert on(day, day + dt.timedelta(days=9)) == alone
    assert on(dt.date(2026, 1, 1), TODAY) == alone


def test_an_empty_period_yields_one_empty_page(ds: SyntheticDataset) -> None:
    bank, account = _salary_account(ds)
    ref = account.account_reference
    assert list(bank.iter_transactions(ref, TODAY, YEAR_AGO)) == [[]]
    assert list(bank.iter_transactions(ref, dt.date(1900, 1, 1), dt.date(1900, 12, 31))) == [[]]
    with pytest.raises(ValueError, match="page_size"):
        bank.iter_transactions(ref, YEAR_AGO, TODAY, page_size=0)


def test_transactions_are_fully_and_validly_populated(ds: SyntheticDataset) -> None:
    bank, account = _salary_account(ds)
    transactions = [
        t
        for page in bank.iter_transactions(account.account_reference, YEAR_AGO, TODAY)
        for t in page
    ]
    labels = {v for k, v in vars(names).items() if k.startswith("LABEL_")}
    foreign_merchants = {name for name, _country, _currency in names.FOREIGN_MERCHANTS}
    statuses: set[int] = set()
    for t in transactions:
        assert t.transaction_identifier
        assert AMOUNT.match(t.amount) and t.currency == account.currency
        assert t.credit_debit_indicator != m.CREDIT_OR_DEBIT_UNSPECIFIED
        assert t.HasField("reversal_indicator")
        code = t.transaction_code
        assert code.domain and code.family and code.sub_family and code.free_text in labels
        assert t.references[0].type == m.TRANSACTION_REFERENCE_TYPE_ACCOUNT_SERVICER_REFERENCE
        assert DATE_TIME.match(t.value_date) and DATE_TIME.match(t.registered)
        statuses.add(t.status)
        if t.status == m.TRANSACTION_STATUS_BOOKED:
            assert DATE_TIME.match(t.booking_date) and t.booking_date.endswith(t.value_date[10:])
        for party in t.counter_parties:
            assert party.type != m.COUNTER_PARTY_TYPE_UNSPECIFIED and party.name
            if party.HasField("account_identifier"):
                assert is_valid_account_number(party.account_identifier)
            if party.HasField("identifier"):
                assert _valid_identifier(party.identifier)
        for reference in t.references:
            if reference.type == m.TRANSACTION_REFERENCE_TYPE_REMITTANCE_REFERENCE:
                assert _luhn_valid(reference.value), reference.value
                assert party.postal_address.post_code and party.postal_address.town_name
        card = t.transaction_code.family == m.FAMILY_TYPE_CUSTOMER_CARD_TRANSACTIONS
        assert t.HasField("payment_card") == card
        # Card purchases of today are still reserved (pending); nothing else is pending.
        today = t.value_date.startswith(TODAY.isoformat())
        assert (t.status == m.TRANSACTION_STATUS_PENDING) == (card and today)
        if card:
            assert MASKED_CARD.match(t.payment_card.card_identifier) and t.merchant
        if t.HasField("currency_exchange"):
            fx = t.currency_exchange
            assert t.merchant in foreign_merchants and fx.target_currency == "NOK"
            assert fx.source_currency == fx.unit_currency != "NOK"
            assert AMOUNT.match(fx.original_amount) and float(fx.exchange_rate) > 0
    assert statuses <= {
        m.TRANSACTION_STATUS_BOOKED,
        m.TRANSACTION_STATUS_PENDING,
        m.TRANSACTION_STATUS_INFO,
    }
    booked = [t for t in transactions if t.status == m.TRANSACTION_STATUS_BOOKED]
    assert len(booked) > 0.95 * len(transactions)
    assert any(t.HasField("currency_exchange") for t in transactions)
    assert any(t.HasField("additional_info") for t in transactions)
    assert {t.credit_debit_indicator for t in transactions} == {
        m.CREDIT_OR_DEBIT_CREDIT,
        m.CREDIT_OR_DEBIT_DEBIT,
    }


def test_transaction_identifiers_are_unique_in_the_bank(ds: SyntheticDataset) -> None:
    seen: dict[str, set[str]] = {}
    for party in ds.party_sample(30, kind=None):
        for bank, account in _accounts(ds, party, TODAY - dt.timedelta(days=60), TODAY):
            ids = seen.setdefault(bank.info.bank_id, set())
            for page in bank.iter_transactions(
                account.account_reference, TODAY - dt.timedelta(days=60), TODAY
            ):
                for t in page:
                    assert t.transaction_identifier not in ids
                    ids.add(t.transaction_identifier)


def test_the_huge_account_pages_lazily(ds: SyntheticDataset) -> None:
    party = ds.find_party("huge_transactions")
    bank, account = _first_account(ds, party, m.ACCOUNT_TYPE_BUSINESS_ACCOUNT)
    ref = account.account_reference
    assert bank.transaction_count(ref, YEAR_AGO, TODAY) >= 100_000
    started = time.process_time()
    pages = bank.iter_transactions(ref, YEAR_AGO, TODAY)
    first, second = next(pages), next(pages)
    assert time.process_time() - started < 2.0  # two pages, not a year
    assert len(first) == len(second) == 1000
    assert not {t.transaction_identifier for t in first} & {
        t.transaction_identifier for t in second
    }
    # The count agrees with what the days produce.
    three_days = YEAR_AGO + dt.timedelta(days=2)
    produced = sum(len(p) for p in bank.iter_transactions(ref, YEAR_AGO, three_days))
    assert produced == bank.transaction_count(ref, YEAR_AGO, three_days) > 300


def test_accounts_with_balances_in_one_are_the_list_and_each_accounts_details(
    ds: SyntheticDataset, banks: list[BankInfo]
) -> None:
    from providers.balances import BalancesAnswer  # noqa: PLC0415

    compared = with_roles = 0
    for party in ds.party_sample(150):
        for relation in ds.relations(party, YEAR_AGO, TODAY):
            bank = ds.bank(relation.organization_id)
            for owner_only in (True, False):
                for to_date in (TODAY, YEAR_AGO + dt.timedelta(days=40)):
                    listing = bank.list_accounts(party, owner_only, YEAR_AGO, to_date)
                    composed = BalancesAnswer(listing)
                    for index, reference in composed.wanted:
                        composed.add(index, bank.get_account_details(reference, YEAR_AGO, to_date))
                    got = bank.list_accounts_with_balances(party, owner_only, YEAR_AGO, to_date)
                    assert got == composed.answer()
                    compared += 1
                    with_roles += any(
                        a.primary_owner.identifier.value != party for a in got.accounts
                    )
    assert compared > 300
    assert with_roles, "accounts where the party has another role were compared too"


def test_balances_kept_from_yesterday_read_as_a_past_day_after_midnight(
    banks: list[BankInfo],
) -> None:
    clock = [NOW]
    kept = SyntheticDataset(SEED, banks, clock=lambda: clock[0])
    party = next(p for p in kept.party_sample(50) if kept.relations(p, TODAY, TODAY))
    bank_id = kept.relations(party, TODAY, TODAY)[0].organization_id
    kept.bank(bank_id).list_accounts_with_balances(party, True, TODAY, TODAY)  # today's kept
    clock[0] = NOW + dt.timedelta(days=1)
    fresh = SyntheticDataset(SEED, banks, clock=lambda: clock[0])
    for owner_only in (True, False):
        assert kept.bank(bank_id).list_accounts_with_balances(
            party, owner_only, TODAY, TODAY
        ) == fresh.bank(bank_id).list_accounts_with_balances(party, owner_only, TODAY, TODAY)
