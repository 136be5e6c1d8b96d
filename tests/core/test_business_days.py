"""Tests for core.business_days: the Federal Reserve ACH business-day calendar (SPEC §11)."""

from datetime import UTC, date, datetime, timedelta

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import business_days as bd
from core.business_days import (
    add_business_days,
    business_days_between,
    chicago_date,
    fed_holidays,
    is_business_day,
    next_business_day,
    third_business_day_cutoff,
    third_business_day_reached,
)

# --- Saturday holidays are not observed (the Fed differs from holidays.US here) ---------------------


@pytest.mark.parametrize(
    "friday, saturday_holiday",
    [
        (date(2021, 12, 24), date(2021, 12, 25)),  # Christmas 2021 on Saturday
        (date(2021, 12, 31), date(2022, 1, 1)),  # New Year 2022 on Saturday
        (date(2027, 12, 24), date(2027, 12, 25)),  # Christmas 2027 on Saturday
        (date(2027, 12, 31), date(2028, 1, 1)),  # New Year 2028 on Saturday
        (date(2023, 11, 10), date(2023, 11, 11)),  # Veterans Day 2023 on Saturday
        (date(2026, 7, 3), date(2026, 7, 4)),  # Independence Day 2026 on Saturday
    ],
)
def test_saturday_holiday_leaves_friday_open(friday, saturday_holiday):
    assert friday.weekday() == 4 and saturday_holiday.weekday() == 5
    assert saturday_holiday in holidays.US(observed=False, years=saturday_holiday.year)
    # holidays.US (observed=True, its default) closes the Friday before ...
    assert friday in holidays.US(years=friday.year)
    assert "(observed)" in holidays.US(years=friday.year)[friday]
    # ... the Fed does not.
    assert is_business_day(friday) is True
    assert friday not in fed_holidays(friday.year)
    assert is_business_day(saturday_holiday) is False  # still a weekend


def test_saturday_holiday_does_not_close_friday_in_arithmetic():
    # Thu 2021-12-23 + 1 is Fri 12-24 (open at the Fed; holidays.US would skip to Mon 12-27).
    assert add_business_days(date(2021, 12, 23), 1) == date(2021, 12, 24)
    assert add_business_days(date(2021, 12, 30), 1) == date(2021, 12, 31)
    assert add_business_days(date(2021, 12, 31), 1) == date(2022, 1, 3)


# --- Sunday holidays are observed the following Monday ------------------------------------------------


@pytest.mark.parametrize(
    "monday, name",
    [
        (date(2022, 12, 26), "Christmas Day (observed)"),
        (date(2023, 1, 2), "New Year's Day (observed)"),
        (date(2022, 6, 20), "Juneteenth National Independence Day (observed)"),
        (date(2021, 7, 5), "Independence Day (observed)"),
        (date(2027, 7, 5), "Independence Day (observed)"),
        (date(2029, 11, 12), "Veterans Day (observed)"),
    ],
)
def test_sunday_holiday_observed_monday(monday, name):
    assert monday.weekday() == 0
    assert is_business_day(monday) is False
    assert fed_holidays(monday.year)[monday] == name
    # The Friday before and the Tuesday after are open.
    assert is_business_day(monday - timedelta(days=3)) is True
    assert is_business_day(monday + timedelta(days=1)) is True


# --- Specific holidays ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "day",
    [
        date(2026, 10, 12),  # Columbus Day
        date(2026, 11, 11),  # Veterans Day (Wednesday)
        date(2023, 6, 19),  # Juneteenth (Monday)
        date(2022, 6, 20),  # Juneteenth 2022: Sunday 19th observed Monday
        date(2026, 11, 26),  # Thanksgiving
        date(2026, 9, 7),  # Labor Day
        date(2026, 1, 19),  # MLK Day
        date(2026, 2, 16),  # Washington's Birthday
        date(2026, 5, 25),  # Memorial Day
        date(2025, 7, 4),  # Independence Day (Friday)
        date(2025, 12, 25),  # Christmas (Thursday)
        date(2026, 1, 1),  # New Year's Day (Thursday)
    ],
)
def test_fed_holiday_weekdays_are_closed(day):
    assert day.weekday() < 5
    assert is_business_day(day) is False


@pytest.mark.parametrize(
    "day",
    [
        date(2023, 11, 10),  # Veterans Day 2023 was Saturday 11-11: the Friday is OPEN at the Fed
        date(2021, 6, 18),  # Juneteenth 2021 (Sat 19th): not a Fed holiday in 2021, Friday open
        date(2022, 6, 17),  # Friday before Juneteenth 2022 (observed Monday)
        date(2026, 11, 12),  # day after Veterans Day
        date(2026, 11, 27),  # day after Thanksgiving (Black Friday) - the Fed is open
        date(2025, 12, 24),  # Christmas Eve
        date(2025, 12, 26),  # day after Christmas
        date(2026, 4, 3),  # Good Friday (not a Fed holiday)
        date(2024, 11, 5),  # Election Day
        date(2025, 1, 9),  # day of mourning for President Carter: one-off, excluded per SPEC §11
        date(2026, 11, 4),  # ordinary Wednesday
    ],
)
def test_ordinary_weekdays_are_open(day):
    assert day.weekday() < 5
    assert is_business_day(day) is True


@pytest.mark.parametrize("day", [date(2026, 11, 7), date(2026, 11, 8), date(2024, 2, 10), date(2024, 2, 11)])
def test_weekends_are_closed(day):
    assert day.weekday() >= 5
    assert is_business_day(day) is False


def test_fed_holidays_exact_2021_2022_2027():
    assert fed_holidays(2021) == {
        date(2021, 1, 1): "New Year's Day",
        date(2021, 1, 18): "Martin Luther King Jr. Day",
        date(2021, 2, 15): "Washington's Birthday",
        date(2021, 5, 31): "Memorial Day",
        date(2021, 7, 5): "Independence Day (observed)",
        date(2021, 9, 6): "Labor Day",
        date(2021, 10, 11): "Columbus Day",
        date(2021, 11, 11): "Veterans Day",
        date(2021, 11, 25): "Thanksgiving Day",
    }
    assert fed_holidays(2022) == {
        date(2022, 1, 17): "Martin Luther King Jr. Day",
        date(2022, 2, 21): "Washington's Birthday",
        date(2022, 5, 30): "Memorial Day",
        date(2022, 6, 20): "Juneteenth National Independence Day (observed)",
        date(2022, 7, 4): "Independence Day",
        date(2022, 9, 5): "Labor Day",
        date(2022, 10, 10): "Columbus Day",
        date(2022, 11, 11): "Veterans Day",
        date(2022, 11, 24): "Thanksgiving Day",
        date(2022, 12, 26): "Christmas Day (observed)",
    }
    assert fed_holidays(2027) == {
        date(2027, 1, 1): "New Year's Day",
        date(2027, 1, 18): "Martin Luther King Jr. Day",
        date(2027, 2, 15): "Washington's Birthday",
        date(2027, 5, 31): "Memorial Day",
        date(2027, 7, 5): "Independence Day (observed)",
        date(2027, 9, 6): "Labor Day",
        date(2027, 10, 11): "Columbus Day",
        date(2027, 11, 11): "Veterans Day",
        date(2027, 11, 25): "Thanksgiving Day",
    }


def test_fed_holidays_returns_a_copy():
    first = fed_holidays(2026)
    first[date(2026, 3, 3)] = "tampered"
    assert date(2026, 3, 3) not in fed_holidays(2026)
    assert is_business_day(date(2026, 3, 3)) is True


def test_juneteenth_only_from_2022():
    # holidays.US lists Juneteenth in 2021; the Fed first observed it in 2022.
    assert date(2021, 6, 19) in holidays.US(observed=False, years=2021)
    assert date(2021, 6, 19) not in bd._actual_fed_holidays(2021)
    assert bd._actual_fed_holidays(2022)[date(2022, 6, 19)] == "Juneteenth National Independence Day"


def test_one_off_special_days_are_filtered_out(monkeypatch):
    """A one-off closure listed by holidays.US (day of mourning, Inauguration Day) is not a Fed holiday."""
    real_us = holidays.US

    def us_with_specials(*args, **kwargs):
        cal = real_us(*args, **kwargs)
        if 2025 in cal.years:
            cal[date(2025, 1, 9)] = "National Day of Mourning for former President Jimmy Carter"
            cal[date(2025, 1, 20)] = "Inauguration Day"  # shares the date with MLK Day in 2025
        return cal

    monkeypatch.setattr(bd.holidays, "US", us_with_specials)
    bd._fed_holidays_cached.cache_clear()
    try:
        assert date(2025, 1, 9) in bd.holidays.US(observed=False, years=2025)  # the fake is in effect
        assert is_business_day(date(2025, 1, 9)) is True
        assert fed_holidays(2025)[date(2025, 1, 20)] == "Martin Luther King Jr. Day"
    finally:
        monkeypatch.undo()
        bd._fed_holidays_cached.cache_clear()


def test_renamed_holiday_fails_loudly(monkeypatch):
    real_us = holidays.US

    def us_renamed(*args, **kwargs):
        cal = real_us(*args, **kwargs)
        cal.pop(date(2026, 10, 12))
        cal[date(2026, 10, 12)] = "Indigenous Peoples' Day"
        return cal

    monkeypatch.setattr(bd.holidays, "US", us_renamed)
    bd._fed_holidays_cached.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="Columbus Day"):
            fed_holidays(2026)
    finally:
        monkeypatch.undo()
        bd._fed_holidays_cached.cache_clear()


# --- add_business_days / next_business_day / business_days_between -----------------------------------


def test_add_across_weekend_and_veterans_day():
    # Fri 11-06 -> Mon 11-09 (1), Tue 11-10 (2), Wed 11-11 Veterans Day closed, Thu 11-12 (3).
    assert add_business_days(date(2026, 11, 6), 3) == date(2026, 11, 12)
    assert add_business_days(date(2026, 11, 6), 1) == date(2026, 11, 9)
    assert add_business_days(date(2026, 11, 6), 2) == date(2026, 11, 10)


def test_add_over_year_end():
    # Fri 2022-12-23 + 1: Sat, Sun, Mon 12-26 (Christmas observed) closed -> Tue 12-27.
    assert add_business_days(date(2022, 12, 23), 1) == date(2022, 12, 27)
    # Fri 2022-12-30 + 1: Sat, Sun, Mon 2023-01-02 (New Year observed) closed -> Tue 2023-01-03.
    assert add_business_days(date(2022, 12, 30), 1) == date(2023, 1, 3)
    assert add_business_days(date(2022, 12, 23), 5) == date(2023, 1, 3)


def test_add_negative():
    assert add_business_days(date(2022, 12, 27), -1) == date(2022, 12, 23)
    assert add_business_days(date(2023, 1, 3), -1) == date(2022, 12, 30)
    assert add_business_days(date(2026, 11, 12), -3) == date(2026, 11, 6)
    # From a non-business day (Sunday 2026-11-08) one back is Friday 11-06.
    assert add_business_days(date(2026, 11, 8), -1) == date(2026, 11, 6)


def test_add_zero_returns_input_unchanged():
    assert add_business_days(date(2026, 11, 4), 0) == date(2026, 11, 4)
    assert add_business_days(date(2026, 11, 7), 0) == date(2026, 11, 7)  # Saturday stays Saturday
    assert add_business_days(date(2026, 11, 11), 0) == date(2026, 11, 11)  # holiday stays


def test_add_from_non_business_day():
    # Saturday + 1 is Monday; Veterans Day + 1 is the Thursday after.
    assert add_business_days(date(2026, 11, 7), 1) == date(2026, 11, 9)
    assert add_business_days(date(2026, 11, 11), 1) == date(2026, 11, 12)


def test_next_business_day():
    assert next_business_day(date(2026, 11, 10)) == date(2026, 11, 12)
    assert next_business_day(date(2026, 11, 25)) == date(2026, 11, 27)
    assert next_business_day(date(2021, 12, 23)) == date(2021, 12, 24)


def test_business_days_between():
    assert business_days_between(date(2026, 11, 6), date(2026, 11, 12)) == 3
    assert business_days_between(date(2026, 11, 6), date(2026, 11, 11)) == 2  # end closed: not counted
    assert business_days_between(date(2026, 11, 6), date(2026, 11, 6)) == 0
    assert business_days_between(date(2026, 11, 5), date(2026, 11, 6)) == 1  # end counted, start not
    assert business_days_between(date(2026, 11, 12), date(2026, 11, 6)) == -3
    assert business_days_between(date(2022, 12, 23), date(2023, 1, 3)) == 5


# --- Chicago dates / third business day -----------------------------------------------------------------


def test_chicago_date_boundary():
    # CDT (UTC-5) in summer, CST (UTC-6) in winter.
    assert chicago_date(datetime(2026, 7, 1, 4, 59, tzinfo=UTC)) == date(2026, 6, 30)
    assert chicago_date(datetime(2026, 7, 1, 5, 0, tzinfo=UTC)) == date(2026, 7, 1)
    assert chicago_date(datetime(2026, 11, 3, 5, 59, tzinfo=UTC)) == date(2026, 11, 2)
    assert chicago_date(datetime(2026, 11, 3, 6, 0, tzinfo=UTC)) == date(2026, 11, 3)


def test_third_business_day_uses_chicago_submission_date():
    submitted = datetime(2026, 11, 3, 3, 0, tzinfo=UTC)  # Chicago: Mon 2026-11-02 21:00 CST
    assert chicago_date(submitted) == date(2026, 11, 2)
    assert add_business_days(chicago_date(submitted), 3) == date(2026, 11, 5)
    # Chicago midnight starting Thu 2026-11-05 is 06:00Z.
    assert third_business_day_reached(submitted, datetime(2026, 11, 5, 5, 59, 59, tzinfo=UTC)) is False
    assert third_business_day_reached(submitted, datetime(2026, 11, 5, 6, 0, tzinfo=UTC)) is True
    # UTC date is already 11-05 here but Chicago is still 11-04 18:30: not reached.
    assert third_business_day_reached(submitted, datetime(2026, 11, 5, 0, 30, tzinfo=UTC)) is False
    # Had the UTC date (11-03) been used, the third business day would be 11-06 and this would be False.
    assert third_business_day_reached(submitted, datetime(2026, 11, 5, 12, 0, tzinfo=UTC)) is True
    assert third_business_day_reached(submitted, datetime(2026, 11, 2, 22, 0, tzinfo=UTC)) is False


def test_third_business_day_skips_holiday():
    submitted = datetime(2026, 11, 6, 15, 0, tzinfo=UTC)  # Chicago Fri 11-06 09:00
    assert third_business_day_reached(submitted, datetime(2026, 11, 12, 5, 59, tzinfo=UTC)) is False
    assert third_business_day_reached(submitted, datetime(2026, 11, 12, 6, 0, tzinfo=UTC)) is True


def test_third_business_day_accepts_other_aware_zones():
    chicago = bd.CHICAGO
    submitted = datetime(2026, 11, 2, 23, 59, tzinfo=chicago)
    assert third_business_day_reached(submitted, datetime(2026, 11, 4, 23, 59, tzinfo=chicago)) is False
    assert third_business_day_reached(submitted, datetime(2026, 11, 5, 0, 0, tzinfo=chicago)) is True


# --- The gate as one cut-off instant ---------------------------------------------------------------------------

_instants = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31),
                         timezones=st.sampled_from([UTC, bd.CHICAGO]))


@given(submitted=_instants, now=_instants)
@settings(max_examples=3000, deadline=None)
def test_the_cutoff_agrees_with_the_gate_for_any_submission_and_clock(submitted, now):
    assert (submitted < third_business_day_cutoff(now)) is third_business_day_reached(submitted, now)


@given(now=_instants, seconds=st.integers(min_value=-1, max_value=0))
@settings(max_examples=500, deadline=None)
def test_the_cutoff_is_the_first_instant_not_yet_due(now, seconds):
    cutoff = third_business_day_cutoff(now)
    edge = cutoff + timedelta(seconds=seconds)  # the last due instant (a second before), and the cut-off itself
    assert third_business_day_reached(edge, now) is (seconds < 0)


def test_the_cutoff_over_thanksgiving_and_a_weekend():
    # Thu 2026-11-26 is Thanksgiving. On Tue 12-01, business days after Mon 11-23: Tue 24, Wed 25, Fri 27 → due;
    # after Tue 11-24: 25, 27, Mon 30 → due; after Wed 11-25: 27, 30, Tue 12-01 → due; after Thu 11-26 (a
    # holiday) the same: due; after Fri 11-27: 30, 12-01, 12-02 → not yet. The cut-off: Chicago midnight of 11-27.
    now = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)
    assert third_business_day_cutoff(now) == datetime(2026, 11, 27, 0, 0, tzinfo=bd.CHICAGO)


# --- Type and value errors --------------------------------------------------------------------------------


def test_datetime_passed_as_date_is_type_error():
    aware = datetime(2026, 11, 4, 12, 0, tzinfo=UTC)
    with pytest.raises(TypeError):
        is_business_day(aware)
    with pytest.raises(TypeError):
        add_business_days(aware, 1)
    with pytest.raises(TypeError):
        next_business_day(aware)
    with pytest.raises(TypeError):
        business_days_between(aware, date(2026, 11, 10))
    with pytest.raises(TypeError):
        is_business_day("2026-11-04")


@pytest.mark.parametrize("n", [1.0, "1", None, True])
def test_non_int_n_is_type_error(n):
    with pytest.raises(TypeError):
        add_business_days(date(2026, 11, 4), n)


def test_naive_datetime_is_value_error():
    naive = datetime(2026, 11, 4, 12, 0)
    with pytest.raises(ValueError):
        chicago_date(naive)
    with pytest.raises(ValueError):
        third_business_day_reached(naive, datetime(2026, 11, 10, tzinfo=UTC))
    with pytest.raises(ValueError):
        third_business_day_reached(datetime(2026, 11, 4, tzinfo=UTC), naive)
    with pytest.raises(TypeError):
        chicago_date(date(2026, 11, 4))


# --- Property-style sweep 2020-2030 -----------------------------------------------------------------------


def test_every_day_2020_2030_consistent():
    start, end = date(2020, 1, 1), date(2030, 12, 31)
    closed_holidays = {d for y in range(2020, 2031) for d in fed_holidays(y)}
    assert all(d.year == y for y in range(2020, 2031) for d in fed_holidays(y))
    assert all(d.weekday() < 5 for d in closed_holidays)  # observed closures never land on a weekend
    d = start
    closed_days = 0
    while d <= end:
        expected_closed = d.weekday() >= 5 or d in closed_holidays
        assert is_business_day(d) is (not expected_closed), d
        closed_days += expected_closed
        nxt = add_business_days(d, 1)
        assert nxt > d and is_business_day(nxt), d
        # Nothing between d and nxt is a business day.
        assert all(not is_business_day(d + timedelta(days=k)) for k in range(1, (nxt - d).days)), d
        assert business_days_between(d, nxt) == 1
        prev = add_business_days(d, -1)
        assert prev < d and is_business_day(prev), d
        if is_business_day(d):
            assert add_business_days(prev, 1) == d
        d += timedelta(days=1)
    # Hand count of weekday Fed closures (11 names, Juneteenth from 2022, minus Saturday holidays):
    # 2020: 9 (Jul 4 Sat), 2021: 9 (Dec 25 Sat), 2022: 10 (Jan 1 Sat), 2023: 10 (Nov 11 Sat),
    # 2024: 11, 2025: 11, 2026: 10 (Jul 4 Sat), 2027: 9 (Jun 19, Dec 25 Sat),
    # 2028: 9 (Jan 1, Nov 11 Sat), 2029: 11, 2030: 11  -> 110.
    assert [len(fed_holidays(y)) for y in range(2020, 2031)] == [9, 9, 10, 10, 11, 11, 10, 9, 9, 11, 11]
    assert len(closed_holidays) == 110
    assert closed_days == 1148 + 110  # 1148 Saturdays and Sundays from 2020-01-01 to 2030-12-31
