"""The hub's idea of "today": the calendar date in Europe/Oslo (DSOP.md §2, periods)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

OSLO = ZoneInfo("Europe/Oslo")


def today() -> dt.date:
    return dt.datetime.now(OSLO).date()


def period_dates(from_date: str, to_date: str) -> tuple[dt.date, dt.date]:
    """The inclusive period of a query; an empty end is today. Raises ValueError for text
    that is not a "YYYY-MM-DD" date."""
    now = today() if not (from_date and to_date) else None
    start = dt.date.fromisoformat(from_date) if from_date else now
    end = dt.date.fromisoformat(to_date) if to_date else now
    assert start is not None and end is not None
    return start, end
