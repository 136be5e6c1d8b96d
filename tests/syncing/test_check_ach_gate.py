"""check-ach's three-business-day gate (SPEC §7.2, §11) on exact dates: Chicago calendar dates, weekends, Fed
holidays (a Sunday holiday observed Monday, a Saturday holiday not observed). Each case checks both sides: the
payment is left exactly as it was the moment before its third business day begins, and completes once it has."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from syncing.check_ach import check_ach_process
from tests.syncing import conftest_check_ach as fixtures
from tests.syncing.conftest_check_ach import chicago, events, state

pytestmark = pytest.mark.django_db

bank_account, make_payment = fixtures.bank_account, fixtures.make_payment  # fixtures

CASES = {
    # id: (submitted, the last moment not due, the first moment due)
    "friday-then-weekend": (chicago(2026, 11, 20, 15, 0), chicago(2026, 11, 24, 23, 59, 59),
                            chicago(2026, 11, 25, 0, 0, 1)),  # Fri 20 → Mon 23, Tue 24, Wed 25
    "thanksgiving": (chicago(2026, 11, 24, 10, 0), chicago(2026, 11, 29, 23, 59, 59),
                     chicago(2026, 11, 30, 0, 0, 1)),  # Tue 24 → Wed 25, (Thu 26 closed), Fri 27, Mon 30
    "christmas-on-friday": (chicago(2026, 12, 22, 10, 0), chicago(2026, 12, 25, 23, 59, 59),
                            chicago(2026, 12, 28, 0, 0, 1)),  # Tue 22 → Wed 23, Thu 24, (Fri 25 closed), Mon 28
    "christmas-on-saturday-not-observed": (chicago(2027, 12, 21, 10, 0), chicago(2027, 12, 23, 23, 59, 59),
                                           chicago(2027, 12, 24, 0, 0, 1)),  # Tue 21 → Wed 22, Thu 23, Fri 24 open
    "juneteenth-on-friday": (chicago(2026, 6, 16, 10, 0), chicago(2026, 6, 21, 12, 0),
                             chicago(2026, 6, 22, 0, 0, 1)),  # Tue 16 → Wed 17, Thu 18, (Fri 19 closed), Mon 22
    "new-year-on-sunday-observed-monday": (chicago(2022, 12, 29, 10, 0), chicago(2023, 1, 3, 23, 59, 59),
                                           chicago(2023, 1, 4, 0, 0, 1)),  # Thu 29 → Fri 30, (Mon 2 closed), Tue 3,
                                                                          # Wed 4
    # Late evening in Chicago is already the next day in UTC: the Chicago date (Thu 19) counts, so Tue 24 is due
    # (the UTC date, Fri 20, would make it Wed 25). "now" given in UTC: Tue 05:59 UTC is still Monday in Chicago.
    "late-evening-chicago": (chicago(2026, 11, 19, 23, 30), datetime(2026, 11, 24, 5, 59, 59, tzinfo=UTC),
                             datetime(2026, 11, 24, 6, 0, 1, tzinfo=UTC)),
}


@pytest.mark.parametrize("submitted, not_yet, due", list(CASES.values()), ids=list(CASES))
def test_the_gate_opens_exactly_when_the_third_business_day_begins(make_payment, sandbox, submitted, not_yet, due):
    payment = make_payment(submit_date=submitted)
    before = state(payment)

    stats = check_ach_process(payment_ids=[str(payment.pk)], now=not_yet)
    assert (stats.not_due, stats.completed) == (1, 0)
    assert state(payment) == before

    stats = check_ach_process(payment_ids=[str(payment.pk)], now=due)
    payment.refresh_from_db()
    assert (stats.not_due, stats.completed) == (0, 1)
    assert payment.payment_status == "COMPLETED" and payment.completion_date is not None
    assert events(payment) == ["FLOAT_DEBIT_COMPLETED"]
