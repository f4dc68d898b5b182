"""Norwegian identifiers and their check digits (DSOP.md §6).

Validators return a bool and never raise: they run once per query in the hub, so they avoid
regular expressions, exceptions and per-call allocations beyond one small ``bytes``. The
generators build the synthetic data's numbers and share one mod-11 routine with the
validators, so a number the generators return always validates.

National identity numbers (``DDMMYYIIIKK``) are accepted as ordinary numbers, D-numbers (day
+ 40), H-numbers (month + 40) and synthetic test persons (month + 80, as issued by the Tax
Administration's test register), in any combination of one day offset and one month offset.
The date part must be a real calendar date in the century the individual number III gives.
A birth date in the future is not rejected: validation must not depend on the clock.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from operator import mul
from typing import Final

__all__ = [
    "PartyKind",
    "birth_date",
    "complete_national_identity_number",
    "is_valid_account_number",
    "is_valid_national_identity_number",
    "is_valid_organisation_number",
    "make_account_number",
    "make_national_identity_number",
    "make_organisation_number",
    "mod11_check_digit",
    "party_kind",
]

#: Weights of the national identity number's first check digit (on d1..d9).
K1_WEIGHTS: Final = (3, 7, 6, 1, 8, 9, 4, 5, 2)
#: Weights of its second check digit (on d1..d9 and k1).
K2_WEIGHTS: Final = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
#: Weights of the organisation number's check digit (on the first 8 digits).
ORGANISATION_WEIGHTS: Final = (3, 2, 7, 6, 5, 4, 3, 2)
#: Weights of the account number's check digit (on the first 10 digits).
ACCOUNT_WEIGHTS: Final = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)

#: Turns ASCII digits into their values (b"0" -> 0 ...) in one C-level pass.
_DIGIT_VALUES: Final = bytes.maketrans(b"0123456789", bytes(range(10)))
_DAYS_IN_MONTH: Final = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_D_NUMBER_DAY_OFFSET: Final = 40
_H_NUMBER_MONTH_OFFSET: Final = 40
_SYNTHETIC_MONTH_OFFSET: Final = 80


class PartyKind(enum.Enum):
    """What a PartyID names."""

    PERSON = "person"
    ORGANISATION = "organisation"


def mod11_check_digit(digits: Sequence[int], weights: Sequence[int]) -> int | None:
    """The mod-11 check digit of ``digits`` under ``weights``: 11 - (sum of products mod 11),
    where 11 becomes 0; None when the result is 10 (no valid number has these digits).

    Only as many leading digits as there are weights are used, so a whole number (check digit
    included) can be passed as it is.
    """
    total: int = sum(map(mul, digits, weights))
    result = 11 - total % 11
    if result == 11:
        return 0
    if result == 10:
        return None
    return result


def _digits(value: str, length: int) -> bytes | None:
    """The digit values of ``value`` when it is exactly ``length`` ASCII digits."""
    # isdigit() alone accepts non-ASCII digits such as "²" or Arabic-Indic digits.
    if len(value) != length or not value.isascii() or not value.isdigit():
        return None
    return value.encode("ascii").translate(_DIGIT_VALUES)


def is_valid_organisation_number(value: str) -> bool:
    """True when ``value`` is 9 digits whose last is the mod-11 check digit of the first 8."""
    d = _digits(value, 9)
    return d is not None and mod11_check_digit(d, ORGANISATION_WEIGHTS) == d[8]


def is_valid_account_number(value: str) -> bool:
    """True when ``value`` is 11 digits whose last is the mod-11 check digit of the first 10."""
    d = _digits(value, 11)
    return d is not None and mod11_check_digit(d, ACCOUNT_WEIGHTS) == d[10]


def _century(individual: int, year: int) -> int | None:
    """The century of a birth year from the individual number (None: no such combination)."""
    if individual < 500:
        return 1900
    if individual < 750 and year >= 54:
        return 1800
    if year < 40:
        return 2000
    if individual >= 900:
        return 1900
    return None


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _date_parts(d: bytes) -> tuple[int, int, int] | None:
    """(year, month, day) of a national identity number's digits, offsets removed; None when
    the date part is not a real date."""
    day = d[0] * 10 + d[1]
    month = d[2] * 10 + d[3]
    year = d[4] * 10 + d[5]
    if day > _D_NUMBER_DAY_OFFSET:
        day -= _D_NUMBER_DAY_OFFSET
    if month > _SYNTHETIC_MONTH_OFFSET:
        month -= _SYNTHETIC_MONTH_OFFSET
    elif month > _H_NUMBER_MONTH_OFFSET:
        month -= _H_NUMBER_MONTH_OFFSET
    if not 1 <= month <= 12 or day < 1:
        return None
    century = _century(d[6] * 100 + d[7] * 10 + d[8], year)
    if century is None:
        return None
    year += century
    last = 29 if month == 2 and _is_leap(year) else _DAYS_IN_MONTH[month]
    if day > last:
        return None
    return year, month, day


def is_valid_national_identity_number(value: str) -> bool:
    """True for a valid national identity number, D-number, H-number or synthetic test person:
    11 digits, both check digits right, and a real birth date once the offsets are removed."""
    d = _digits(value, 11)
    if d is None:
        return False
    if mod11_check_digit(d, K1_WEIGHTS) != d[9] or mod11_check_digit(d, K2_WEIGHTS) != d[10]:
        return False
    return _date_parts(d) is not None


def party_kind(value: str) -> PartyKind | None:
    """PERSON for a valid national identity number (any variant), ORGANISATION for a valid
    organisation number, None for anything else."""
    if len(value) == 11:
        return PartyKind.PERSON if is_valid_national_identity_number(value) else None
    if len(value) == 9:
        return PartyKind.ORGANISATION if is_valid_organisation_number(value) else None
    return None


def birth_date(value: str) -> dt.date:
    """The birth date encoded in a valid national identity number (offsets removed).

    Raises ValueError when ``value`` is not a valid national identity number.
    """
    if not is_valid_national_identity_number(value):
        raise ValueError("not a valid national identity number")
    parts = _date_parts(value.encode("ascii").translate(_DIGIT_VALUES))
    assert parts is not None  # validated above
    return dt.date(*parts)


def _individual_fits(birth_year: int, individual: int) -> bool:
    return _century(individual, birth_year % 100) == birth_year - birth_year % 100


def make_national_identity_number(
    birth: dt.date, individual: int, *, synthetic: bool = True, d_number: bool = False
) -> str | None:
    """The national identity number of ``birth`` and individual number ``individual`` (0-999),
    as a synthetic test person (month + 80) unless ``synthetic`` is False, and as a D-number
    (day + 40) when ``d_number``. None when this individual number gives a check digit of 10:
    callers try the next one.

    Raises ValueError when ``individual`` is out of range or its century does not match the
    birth year (e.g. 100 for a birth in 2005).
    """
    if not 0 <= individual <= 999:
        raise ValueError("individual number must be 0-999")
    if not _individual_fits(birth.year, individual):
        raise ValueError("the individual number does not match the birth year's century")
    day = birth.day + (_D_NUMBER_DAY_OFFSET if d_number else 0)
    month = birth.month + (_SYNTHETIC_MONTH_OFFSET if synthetic else 0)
    return complete_national_identity_number(
        f"{day:02d}{month:02d}{birth.year % 100:02d}{individual:03d}"
    )


def complete_national_identity_number(first9: str) -> str | None:
    """``first9`` (nine ASCII digits, DDMMYYIII) with its two check digits appended, or None
    when either check digit would be 10. The date part is not checked.

    Raises ValueError when ``first9`` is not nine ASCII digits.
    """
    digits = _digits(first9, 9)
    if digits is None:
        raise ValueError("first9 must be nine ASCII digits")
    k1 = mod11_check_digit(digits, K1_WEIGHTS)
    if k1 is None:
        return None
    k2 = mod11_check_digit(digits + bytes((k1,)), K2_WEIGHTS)
    if k2 is None:
        return None
    return f"{first9}{k1}{k2}"


def make_organisation_number(base8: int) -> str | None:
    """The organisation number whose first 8 digits are ``base8`` (zero-padded), or None when
    they give a check digit of 10. Raises ValueError outside 0-99999999."""
    if not 0 <= base8 <= 99_999_999:
        raise ValueError("base8 must be 0-99999999")
    body = f"{base8:08d}"
    check = mod11_check_digit(body.encode("ascii").translate(_DIGIT_VALUES), ORGANISATION_WEIGHTS)
    return None if check is None else f"{body}{check}"


def make_account_number(bank_prefix: int, body: int) -> str | None:
    """The account number of a 4-digit bank registration prefix and a 6-digit body (account
    group and serial), or None when they give a check digit of 10. Raises ValueError when
    either part is out of range."""
    if not 1000 <= bank_prefix <= 9999:
        raise ValueError("bank_prefix must be 4 digits")
    if not 0 <= body <= 999_999:
        raise ValueError("body must be 0-999999")
    first10 = f"{bank_prefix:04d}{body:06d}"
    check = mod11_check_digit(first10.encode("ascii").translate(_DIGIT_VALUES), ACCOUNT_WEIGHTS)
    return None if check is None else f"{first10}{check}"
