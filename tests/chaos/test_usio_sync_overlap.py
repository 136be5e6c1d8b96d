"""The Usio sync stages the next pages in threads of their own (each with its own PostgreSQL connection) while the
page before them is applied (``syncing.usio_sync._sync_pages_overlapped``, issue 10). Real PostgreSQL, row locks and
triggers; the sandbox over HTTP. What must hold: the outcome of one page after the other, a failure in a staging
thread raised at its page's turn with the pages before it kept, and no connection left behind."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from django.db import Error as DatabaseError
from django.db import connection

from integrations.usio import usio_client
from payments.models import Payment
from syncing.models import UsioTransaction
from syncing.usio_sync import usio_sync_window
from tests.payments import conftest as payments_fixtures
from tests.payments.conftest import ROUTING
from tests.syncing.conftest_usio_sync import RETURNED, around, events, float_ach, next_chicago_day_window

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

bank_account = payments_fixtures.bank_account
caller = payments_fixtures.caller
service = payments_fixtures.service

STAGING = UsioTransaction._meta.db_table


def sync(job_type: str, window, account: str = "float_debit"):
    start, end = window
    return usio_sync_window(account=account, job_type=job_type, start=start, end=end)


def counts(stats) -> dict:
    return {key: value for key, value in stats.as_dict().items() if isinstance(value, int) and value}


def connect(*, autocommit: bool) -> psycopg.Connection:
    """A connection of our own to the test database, outside Django."""
    params = connection.get_connection_params()
    return psycopg.connect(**{key: params[key] for key in ("dbname", "user", "host", "port") if key in params},
                           autocommit=autocommit)


def backends() -> int:
    """Connections open to the test database (every thread's, this one's included)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


@pytest.fixture
def settled_apart(sandbox, service, bank_account):
    """A payment left PROCESSING (Usio's answer lost: no confirmation yet) and a second Usio transaction carrying its
    reference, same amount and direction; both returned the next day. Whichever the report lists first claims the
    payment; the other no longer fits it (another confirmation): ``mismatched``."""
    sandbox.fault("usio.SubmitACHPayment", "timeout")
    payment = float_ach(service, bank_account, RETURNED + "03")
    assert (payment.payment_status, payment.confirmation_id) == ("PROCESSING", None)
    usio_client("float_debit").submit_ach_payment(
        routing_number=ROUTING, account_number=RETURNED + "03", trans_code=27, amount=payment.amount,
        reference=payment.reference, first_name="A", last_name="B")
    sandbox.advance(days=2)
    return payment


def test_a_page_staged_while_the_page_before_is_applied_is_read_again_after_it(settled_apart, settings):
    """Deterministic: the payment's row is locked (``FOR NO KEY UPDATE``: page 1's status change waits for it, page
    2's staging and its foreign-key check do not) until page 2 is staged — so page 2 read the payment before page 1
    changed it. Applied as it was read, page 2's record would look like a second claim on a PROCESSING payment
    without a confirmation (refused by the status machine, not counted ``mismatched``)."""
    settings.USIO_SYNC_PAGE_SIZE = 1
    payment = settled_apart
    staged_first = []
    with connect(autocommit=False) as locker, connect(autocommit=True) as watcher:
        locker.execute("SELECT 1 FROM payments_payment WHERE id = %s FOR NO KEY UPDATE", [payment.pk])

        def release_once_both_pages_are_staged():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if watcher.execute(f"SELECT count(*) FROM {STAGING}").fetchone()[0] == 2:
                    staged_first.append(True)
                    break
                time.sleep(0.02)
            locker.rollback()

        releaser = threading.Thread(target=release_once_both_pages_are_staged)
        releaser.start()
        try:
            stats = sync("transactions", around(payment))
        finally:
            releaser.join()

    assert staged_first == [True]  # page 2 was staged while page 1's change waited for the row
    assert counts(stats) == {"fetched": 2, "created": 2, "matched": 2, "applied": 1, "mismatched": 1}
    payment.refresh_from_db()
    claimed = UsioTransaction.objects.get(confirmation=payment.confirmation_id)
    assert (payment.payment_status, payment.return_code, claimed.payment_id) == ("FAILED", "R03", payment.pk)
    assert events(payment) == ["FLOAT_DEBIT_RETURNED"]


def test_a_window_of_many_pages_is_applied_whole_and_the_staging_connection_closed(sandbox, service, bank_account,
                                                                                   settings):
    settings.USIO_SYNC_PAGE_SIZE = 2
    payments = [float_ach(service, bank_account, RETURNED + "02") for _ in range(7)]
    sandbox.advance(days=2)
    connections = backends()

    stats = sync("ach_returns", next_chicago_day_window())

    assert counts(stats) == {"fetched": 7, "created": 7, "matched": 7, "applied": 7}
    for payment in payments:
        payment.refresh_from_db()
        assert (payment.payment_status, payment.return_code) == ("FAILED", "R02")
        assert events(payment) == ["FLOAT_DEBIT_RETURNED"]
    assert backends() == connections  # the staging thread's connection is closed
    # Again: nothing to do, nothing written.
    assert counts(sync("ach_returns", next_chicago_day_window())) == {"fetched": 7, "unchanged": 7, "matched": 7}


@pytest.fixture
def staging_fails_for():
    """``staging_fails_for(confirmation)``: a real database failure in a staging thread — inserting that
    confirmation's staging row raises (a trigger) — until the returned ``disarm()`` or the end of the test."""

    def disarm():
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER IF EXISTS usio_overlap_fail ON {STAGING}")
            cursor.execute("DROP FUNCTION IF EXISTS usio_overlap_fail()")

    def arm(confirmation: str):
        with connection.cursor() as cursor:
            cursor.execute("CREATE FUNCTION usio_overlap_fail() RETURNS trigger AS $$ BEGIN "
                           f"IF NEW.confirmation = '{confirmation}' THEN RAISE EXCEPTION 'disk full'; END IF; "
                           "RETURN NEW; END $$ LANGUAGE plpgsql")
            cursor.execute(f"CREATE TRIGGER usio_overlap_fail BEFORE INSERT ON {STAGING} "
                           "FOR EACH ROW EXECUTE FUNCTION usio_overlap_fail()")
        return disarm

    yield arm
    disarm()


def test_a_failure_in_a_staging_thread_is_raised_and_the_pages_before_it_are_kept(
        sandbox, service, bank_account, settings, staging_fails_for):
    settings.USIO_SYNC_PAGE_SIZE = 2
    payments = [float_ach(service, bank_account, RETURNED + "02") for _ in range(4)]
    sandbox.advance(days=2)
    # The report lists them in submission order: pages [0, 1] and [2, 3]; page 2's staging fails (it runs while page
    # 1 is staged or applied).
    disarm = staging_fails_for(payments[2].confirmation_id)
    connections = backends()

    with pytest.raises(DatabaseError, match="disk full"):
        sync("ach_returns", next_chicago_day_window())

    # Page 1 staged and applied; page 2's staging rolled back whole, nothing of it applied.
    statuses = dict(Payment.objects.values_list("pk", "payment_status"))
    assert [statuses[payment.pk] for payment in payments] == ["FAILED", "FAILED", "ACHSENT", "ACHSENT"]
    assert set(UsioTransaction.objects.values_list("payment_id", flat=True)) == {payments[0].pk, payments[1].pk}
    assert backends() == connections

    disarm()  # the failure is gone: the next run completes the window
    assert counts(sync("ach_returns", next_chicago_day_window())) == {
        "fetched": 4, "created": 2, "unchanged": 2, "matched": 4, "applied": 2}
    for payment in payments:
        payment.refresh_from_db()
        assert (payment.payment_status, payment.return_code) == ("FAILED", "R02")
