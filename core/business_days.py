"""ACH business days on the Federal Reserve calendar (SPEC §11).

Rules (SPEC §11):

* Saturdays and Sundays are closed.
* The Federal Reserve's standard holidays are closed. A holiday falling on a **Sunday** is observed
  (closed) on the following **Monday**. A holiday falling on a **Saturday** is **not** observed: the
  Fed is open on the Friday before. This is where the Fed calendar differs from ``holidays.US``,
  which moves Saturday holidays to the preceding Friday (e.g. it marks Fri 2021-12-24 as
  "Christmas Day (observed)"; the Fed was open that day).
* Dates are America/Chicago calendar dates; use :func:`chicago_date` to turn an aware ``datetime``
  into one.
* "Three business days passed" means the third business day after the submission date has begun
  (:func:`third_business_day_reached`).

The ``holidays`` package has no Federal Reserve calendar, so the actual (unobserved) federal
holiday dates come from ``holidays.US(observed=False)`` (no subdivision, default "public" category)
and the Fed observance rule is applied here.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo

import holidays

__all__ = [
    "CHICAGO",
    "add_business_days",
    "business_days_between",
    "chicago_date",
    "fed_holidays",
    "is_business_day",
    "next_business_day",
    "third_business_day_reached",
]

CHICAGO = ZoneInfo("America/Chicago")

# The Federal Reserve's standard holidays, by the exact English name ``holidays.US`` (0.108,
# language "en_US", default "public" category, observed=False) gives them. We filter by name
# rather than taking everything holidays.US returns so that one-off closures the package may list
# (national days of mourning, Inauguration Day, ...) and anything added to the package in future
# never become Fed closures by accident. Checked by printing holidays.US(observed=False) for
# 2020-2030: it returns exactly these eleven names (Juneteenth from 2021), nothing else.
_FED_HOLIDAY_NAMES: frozenset[str] = frozenset(
    {
        "New Year's Day",
        "Martin Luther King Jr. Day",
        "Washington's Birthday",
        "Memorial Day",
        "Juneteenth National Independence Day",
        "Independence Day",
        "Labor Day",
        "Columbus Day",
        "Veterans Day",
        "Thanksgiving Day",
        "Christmas Day",
    }
)
_JUNETEENTH = "Juneteenth National Independence Day"
# holidays.US has Juneteenth from 2021, but the Fed first closed for it in 2022 (SPEC §11).
_FED_JUNETEENTH_FIRST_YEAR = 2022
# MLK Day is a federal holiday from 1986; from then on every year must contain all names above
# (Juneteenth from 2022). Fail loudly if the package ever renames one, rather than silently
# treating a Fed holiday as a business day.
_FULL_CALENDAR_FIRST_YEAR = 1986

_SATURDAY = 5
_SUNDAY = 6


def _require_date(value: object, name: str) -> None:
    # datetime is a subclass of date; truncating it silently would drop its time zone (SPEC §11 says
    # dates are Chicago calendar dates), so callers must convert with chicago_date() first.
    if isinstance(value, datetime) or not isinstance(value, date):
        raise TypeError(
            f"{name} must be a datetime.date (not a datetime; use chicago_date()), got {type(value).__name__}"
        )


def _require_aware(value: object, name: str) -> None:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime.datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")


def _require_int(value: object, name: str) -> None:
    # bool is an int subclass but add_business_days(d, True) is almost certainly a bug.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")


def _actual_fed_holidays(year: int) -> dict[date, str]:
    """The Fed's standard holidays of ``year`` on their actual (unobserved) dates."""
    us = holidays.US(observed=False, years=year, language="en_US")
    found: dict[date, str] = {}
    for day, names in us.items():
        # One date can carry several names joined by "; "; keep the Fed one(s).
        kept = [
            n
            for n in names.split("; ")
            if n in _FED_HOLIDAY_NAMES and not (n == _JUNETEENTH and year < _FED_JUNETEENTH_FIRST_YEAR)
        ]
        if kept:
            found[day] = "; ".join(kept)
    if year >= _FULL_CALENDAR_FIRST_YEAR:
        expected = set(_FED_HOLIDAY_NAMES)
        if year < _FED_JUNETEENTH_FIRST_YEAR:
            expected.discard(_JUNETEENTH)
        seen = {n for names in found.values() for n in names.split("; ")}
        missing = expected - seen
        if missing:
            raise RuntimeError(
                f"holidays.US({year}) lacks Fed holiday name(s) {sorted(missing)}; "
                "the holidays package may have renamed them - update _FED_HOLIDAY_NAMES"
            )
    return found


@functools.lru_cache(maxsize=256)
def _fed_holidays_cached(year: int) -> Mapping[date, str]:
    closed: dict[date, str] = {}
    # Look at the previous year too, so that a Sunday observance crossing into ``year`` is kept
    # (cannot happen with today's holiday list, but costs nothing).
    for source_year in (year - 1, year):
        for day, name in _actual_fed_holidays(source_year).items():
            weekday = day.weekday()
            if weekday == _SATURDAY:
                continue  # Fed: Saturday holidays are not observed; the Friday before is open.
            if weekday == _SUNDAY:
                day, name = day + timedelta(days=1), f"{name} (observed)"
            if day.year == year:
                closed[day] = f"{closed[day]}; {name}" if day in closed else name
    return MappingProxyType(dict(sorted(closed.items())))


def fed_holidays(year: int) -> dict[date, str]:
    """Return the Federal Reserve holiday closures in ``year`` as ``{date: name}`` (SPEC §11).

    Dates are after the Fed observance rule: a holiday on Sunday is closed on the following Monday
    (named "... (observed)"); a holiday on Saturday is not observed at all and does not appear.
    Weekends are not included. The result is a fresh dict; the underlying set is cached per year.
    """
    _require_int(year, "year")
    return dict(_fed_holidays_cached(year))


def is_business_day(d: date) -> bool:
    """Return True if ``d`` is an ACH business day on the Federal Reserve calendar (SPEC §11).

    Closed: Saturdays, Sundays, and Fed holidays (a Sunday holiday closes the following Monday;
    a Saturday holiday closes nothing extra). ``d`` must be a ``date`` (a Chicago calendar date),
    not a ``datetime``: passing a ``datetime`` raises TypeError.
    """
    _require_date(d, "d")
    if d.weekday() >= _SATURDAY:
        return False
    return d not in _fed_holidays_cached(d.year)


def add_business_days(d: date, n: int) -> date:
    """Return the ``n``-th business day after ``d`` (before it if ``n`` is negative) (SPEC §11).

    * ``n == 0``: returns ``d`` unchanged, whether or not it is a business day.
    * ``n > 0``: the ``n``-th business day strictly after ``d``; ``d`` itself need not be a business
      day (e.g. Saturday + 1 is the next open weekday).
    * ``n < 0``: the ``|n|``-th business day strictly before ``d``.

    Raises TypeError if ``d`` is not a ``date`` (or is a ``datetime``) or ``n`` is not an ``int``.
    """
    _require_date(d, "d")
    _require_int(n, "n")
    step = timedelta(days=1 if n > 0 else -1)
    remaining = abs(n)
    current = d
    while remaining:
        current += step
        if is_business_day(current):
            remaining -= 1
    return current


def next_business_day(d: date) -> date:
    """Return the first business day strictly after ``d`` (``add_business_days(d, 1)``; SPEC §11)."""
    return add_business_days(d, 1)


def business_days_between(start: date, end: date) -> int:
    """Count business days in the half-open interval ``(start, end]`` (SPEC §11).

    ``start`` itself is not counted, ``end`` is. If ``end < start`` the result is the negated count
    of business days in ``(end, start]``; ``start == end`` gives 0. Both must be ``date`` objects.
    """
    _require_date(start, "start")
    _require_date(end, "end")
    if end < start:
        return -business_days_between(end, start)
    count = 0
    current = start
    while current < end:
        current += timedelta(days=1)
        if is_business_day(current):
            count += 1
    return count


def chicago_date(dt: datetime) -> date:
    """Return the America/Chicago calendar date of the aware datetime ``dt`` (SPEC §11).

    Raises ValueError for a naive datetime (its zone is unknown) and TypeError for a non-datetime.
    """
    _require_aware(dt, "dt")
    return dt.astimezone(CHICAGO).date()


def third_business_day_reached(submitted: datetime, now: datetime) -> bool:
    """Return True once three business days have passed since ``submitted`` (SPEC §11).

    "Three business days passed" means the third business day after the Chicago calendar date of
    ``submitted`` has begun in Chicago time, i.e.
    ``chicago_date(now) >= add_business_days(chicago_date(submitted), 3)``.
    Both arguments must be timezone-aware datetimes (naive ones raise ValueError).
    """
    return chicago_date(now) >= _third_business_day_after(chicago_date(submitted))


def third_business_day_cutoff(now: datetime) -> datetime:
    """The gate of :func:`third_business_day_reached` at ``now`` as one instant: a submission at ``submitted`` has
    passed three business days at ``now`` exactly when ``submitted < third_business_day_cutoff(now)``.

    Adding business days never puts a later date before an earlier one's result, so the submission dates that have
    passed the gate are every Chicago date up to the last one that has; the cut-off is the Chicago midnight after
    it (aware, in Chicago time). A query can then apply the gate to many rows with one comparison.
    """
    today = chicago_date(now)
    day = today
    while _third_business_day_after(day) > today:  # at most a few weekend and holiday days back
        day -= timedelta(days=1)
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=CHICAGO)


@functools.lru_cache(maxsize=4096)
def _third_business_day_after(day: date) -> date:
    """``add_business_days(day, 3)``, once per date (the calendar is fixed per year): check-ach and the Usio sync ask
    for every payment, and a day's payments share one date."""
    return add_business_days(day, 3)
