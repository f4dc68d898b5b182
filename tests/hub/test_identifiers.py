"""Check digits and dates of Norwegian identifiers (DSOP.md §6), against tables of known numbers
and an independent reference implementation."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.identifiers import (
    PartyKind,
    birth_date,
    complete_national_identity_number,
    is_valid_account_number,
    is_valid_national_identity_number,
    is_valid_organisation_number,
    make_account_number,
    make_national_identity_number,
    make_organisation_number,
    mod11_check_digit,
    party_kind,
)


def reference_check(digits: str, weights: tuple[int, ...]) -> int | None:
    """DSOP.md §6 spelled out digit by digit, independently of the module."""
    total = 0
    for digit, weight in zip(digits, weights, strict=False):
        total += int(digit) * weight
    result = 11 - total % 11
    if result == 11:
        return 0
    return None if result == 10 else result


# --- organisation numbers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["974761076", "915429785", "889640782", "974760673", "986186999", "123456785"],
)
def test_known_organisation_numbers_are_valid(value: str) -> None:
    assert is_valid_organisation_number(value)
    assert party_kind(value) is PartyKind.ORGANISATION


@pytest.mark.parametrize(
    "value",
    [
        "974761077",  # wrong check digit
        "123456789",
        "97476107",  # too short
        "9747610760",  # too long
        "",
        "97476107a",
        " 974761076",
        "974 761 076",
        "９７４７６１０７６",  # full-width digits: isdigit() but not ASCII
        "915429840",  # first eight give check digit 10: no ninth digit makes it valid
        "915429841",
    ],
)
def test_bad_organisation_numbers_are_invalid(value: str) -> None:
    assert not is_valid_organisation_number(value)


# --- account numbers --------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["12345678903", "86011117947"])
def test_known_account_numbers_are_valid(value: str) -> None:
    assert is_valid_account_number(value)


@pytest.mark.parametrize(
    "value",
    [
        "12345678904",
        "1234567890",
        "123456789031",
        "1234567890x",
        "1234.56.78903",
        "",
        *(f"1234567892{d}" for d in range(10)),  # body with check digit 10
    ],
)
def test_bad_account_numbers_are_invalid(value: str) -> None:
    assert not is_valid_account_number(value)


def test_mod11_uses_as_many_digits_as_there_are_weights() -> None:
    weights = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
    assert mod11_check_digit([1, 2, 3, 4, 5, 6, 7, 8, 9, 0], weights) == 3
    assert mod11_check_digit([1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 3], weights) == 3
    assert mod11_check_digit([1, 2, 3, 4, 5, 6, 7, 8, 9, 2], weights) is None


# --- national identity numbers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "born"),
    [
        ("14038512324", dt.date(1985, 3, 14)),  # ordinary
        ("14038510070", dt.date(1985, 3, 14)),
        ("54038510064", dt.date(1985, 3, 14)),  # D-number: day + 40
        ("14838510036", dt.date(1985, 3, 14)),  # synthetic test person: month + 80
        ("14438510053", dt.date(1985, 3, 14)),  # H-number: month + 40
        ("54838510100", dt.date(1985, 3, 14)),  # synthetic D-number
        ("29020050088", dt.date(2000, 2, 29)),  # 2000 is a leap year (individual 500-999)
        ("29020410181", dt.date(1904, 2, 29)),
        ("01016060085", dt.date(1860, 1, 1)),  # individual 500-749 with year 54-99: 1800s
        ("01011060044", dt.date(2010, 1, 1)),  # individual 500-999 with year 00-39: 2000s
        ("01014595089", dt.date(1945, 1, 1)),  # individual 900-999 with year 40-99: 1900s
        ("31123999935", dt.date(2039, 12, 31)),
    ],
)
def test_known_national_identity_numbers_are_valid(value: str, born: dt.date) -> None:
    assert is_valid_national_identity_number(value)
    assert party_kind(value) is PartyKind.PERSON
    assert birth_date(value) == born


@pytest.mark.parametrize(
    "value",
    [
        "31028510015",  # 31 February (check digits right)
        "29020010027",  # 29 February 1900: not a leap year
        "01015080082",  # individual 800 with year 50: no century
        "14038512325",  # wrong second check digit
        "14038512314",  # wrong first check digit
        "00038512300",
        "1403851232",
        "140385123245",
        "1403851232x",
        "",
        "１４０３８５１２３２４",
        "14138512324",  # month 13
        "14618512324",  # month 61: neither H (41-52) nor synthetic (81-92)
        "74038512324",  # day 74 is no D-number day
    ],
)
def test_bad_national_identity_numbers_are_invalid(value: str) -> None:
    assert not is_valid_national_identity_number(value)


@pytest.mark.parametrize("value", ["", "123", "1234567890", "12345678903", "abcdefghi"])
def test_party_kind_of_anything_else_is_none(value: str) -> None:
    assert party_kind(value) is None


def test_birth_date_refuses_an_invalid_number() -> None:
    with pytest.raises(ValueError, match="not a valid"):
        birth_date("31028510015")


# --- generators -------------------------------------------------------------------------------


def test_generators_make_the_known_numbers() -> None:
    assert make_organisation_number(97476107) == "974761076"
    assert make_account_number(1234, 567890) == "12345678903"
    assert (
        make_national_identity_number(dt.date(1985, 3, 14), 123, synthetic=False) == "14038512324"
    )
    assert make_national_identity_number(dt.date(1985, 3, 14), 100) == "14838510036"
    assert make_national_identity_number(dt.date(1985, 3, 14), 101, d_number=True) == "54838510100"


def test_completing_nine_digits_appends_both_check_digits() -> None:
    assert complete_national_identity_number("140385123") == "14038512324"
    assert complete_national_identity_number("140385002") is None  # a check digit would be 10
    with pytest.raises(ValueError, match="nine"):
        complete_national_identity_number("14038512")


def test_generators_give_none_for_check_digit_ten() -> None:
    assert make_organisation_number(91542984) is None
    assert make_account_number(1234, 567892) is None
    assert make_national_identity_number(dt.date(1985, 3, 14), 2, synthetic=False) is None


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: make_national_identity_number(dt.date(2005, 1, 1), 100), "century"),
        (lambda: make_national_identity_number(dt.date(1950, 1, 1), 800), "century"),
        (lambda: make_national_identity_number(dt.date(1950, 1, 1), 1000), "0-999"),
        (lambda: make_organisation_number(100_000_000), "0-99999999"),
        (lambda: make_account_number(999, 1), "4 digits"),
        (lambda: make_account_number(1234, 1_000_000), "0-999999"),
    ],
)
def test_generators_refuse_out_of_range_input(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def _individuals_for(year: int) -> st.SearchStrategy[int]:
    """Individual numbers whose century is ``year``'s."""
    yy = year % 100
    if year < 1900:
        return st.integers(500, 749)
    if year >= 2000:
        return st.integers(500, 999)
    return st.integers(0, 499) | st.integers(900, 999) if yy >= 40 else st.integers(0, 499)


@st.composite
def births(draw: st.DrawFn) -> tuple[dt.date, int]:
    born = draw(st.dates(dt.date(1854, 1, 1), dt.date(2039, 12, 31)))
    return born, draw(_individuals_for(born.year))


@given(births(), st.booleans(), st.booleans())
def test_every_generated_national_identity_number_validates(
    birth: tuple[dt.date, int], synthetic: bool, d_number: bool
) -> None:
    born, individual = birth
    made = make_national_identity_number(born, individual, synthetic=synthetic, d_number=d_number)
    body = f"{born.day + 40 * d_number:02d}{born.month + 80 * synthetic:02d}"
    body += f"{born.year % 100:02d}{individual:03d}"
    k1 = reference_check(body, (3, 7, 6, 1, 8, 9, 4, 5, 2))
    k2 = None if k1 is None else reference_check(f"{body}{k1}", (5, 4, 3, 2, 7, 6, 5, 4, 3, 2))
    if k1 is None or k2 is None:
        assert made is None
        return
    assert made == f"{body}{k1}{k2}"
    assert is_valid_national_identity_number(made)
    assert birth_date(made) == born


@given(st.integers(0, 99_999_999))
def test_every_generated_organisation_number_validates(base8: int) -> None:
    made = make_organisation_number(base8)
    if reference_check(f"{base8:08d}", (3, 2, 7, 6, 5, 4, 3, 2)) is None:
        assert made is None
    else:
        assert made is not None and is_valid_organisation_number(made)


@given(st.integers(1000, 9999), st.integers(0, 999_999))
def test_every_generated_account_number_validates(prefix: int, body: int) -> None:
    made = make_account_number(prefix, body)
    if reference_check(f"{prefix:04d}{body:06d}", (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)) is None:
        assert made is None
    else:
        assert made is not None and is_valid_account_number(made)


def _one_digit_changes(value: str) -> list[str]:
    return [
        value[:i] + other + value[i + 1 :]
        for i in range(len(value))
        for other in "0123456789"
        if other != value[i]
    ]


@given(births(), st.booleans())
def test_changing_one_digit_invalidates_a_national_identity_number(
    birth: tuple[dt.date, int], synthetic: bool
) -> None:
    made = make_national_identity_number(*birth, synthetic=synthetic)
    if made is not None:
        assert not any(map(is_valid_national_identity_number, _one_digit_changes(made)))


@given(st.integers(0, 99_999_999))
def test_changing_one_digit_invalidates_an_organisation_number(base8: int) -> None:
    made = make_organisation_number(base8)
    if made is not None:
        assert not any(map(is_valid_organisation_number, _one_digit_changes(made)))


@given(st.integers(1000, 9999), st.integers(0, 999_999))
def test_changing_one_digit_invalidates_an_account_number(prefix: int, body: int) -> None:
    made = make_account_number(prefix, body)
    if made is not None:
        assert not any(map(is_valid_account_number, _one_digit_changes(made)))
