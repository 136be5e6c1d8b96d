"""JPM transaction sync (SPEC §7.5): payments submitted to JPM appear in ``JpmTransaction`` after the sync of their
day, across several pages; a re-run writes nothing; a failure on any page writes nothing; a protocol error fails
the job (retried by the default queue's attempts, then dead-lettered)."""

from __future__ import annotations

import json
import threading
import time
from datetime import date, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from core.business_days import chicago_date
from core.models import DeadLetter
from core.schedules import all_schedules
from integrations.errors import ProcessorProtocolError, ProcessorUnavailable
from payments.models import Payment
from syncing.jpm_sync import jpm_transactions_sync, sync_day
from syncing.jpm_sync_jobs import SYNC_TASK, jpm_transaction_sync_job, jpm_transaction_sync_task
from syncing.models import JpmTransaction
from tests.payments import conftest as payments_fixtures
from tests.payments.conftest import payment_body, post_payment

pytestmark = pytest.mark.django_db(transaction=True)

# Fixtures (bound by assignment so that pytest finds them in this module).
bank_account, caller, service = payments_fixtures.bank_account, payments_fixtures.caller, payments_fixtures.service


def _submit_jpm_payments(service, count: int) -> list[str]:
    """``count`` subscription ACH debits (routed to JPM); their endToEndIds."""
    ids = []
    for n in range(count):
        response = post_payment(service, payment_body(purpose="subscription", amount=f"{10 + n}.00"))
        assert response.status_code == 201, response.content
        assert response.json()["payment_provider"] == "jpm"
        ids.append(response.json()["confirmation_id"])
    return ids


def _execution_day(sandbox) -> date:
    days = {entry["requestedExecutionDate"] for entry in sandbox.control("GET", "jpm/ledger")["ledger"]}
    assert len(days) == 1
    return date.fromisoformat(days.pop())


def _rows() -> list[dict]:
    return list(JpmTransaction.objects.order_by("transaction_id").values())


@pytest.fixture
def three_pages(sandbox, service, bank_account):
    """Five JPM payments, JPM pages of two records: three pages."""
    bank_account()
    sandbox.control("PUT", "jpm/page-size", {"size": 2})
    ids = _submit_jpm_payments(service, 5)
    return ids, _execution_day(sandbox)


def test_the_job_is_on_the_default_queue_daily_at_13_utc():
    assert (jpm_transaction_sync_task.name, jpm_transaction_sync_task.job_queue,
            jpm_transaction_sync_task.attempts) == (SYNC_TASK, "default", 3)
    [spec] = [s for s in all_schedules() if s.name == "jpm transaction sync"]
    assert (spec.task, spec.crontab, spec.prod_only) == (SYNC_TASK, "0 13 * * *", False)


def test_the_day_synced_is_the_day_before():
    assert sync_day(as_of=date(2026, 3, 2)) == date(2026, 3, 1)


def test_payments_submitted_to_jpm_appear_from_every_page(sandbox, three_pages, capsys):
    ids, day = three_pages
    call_command("run_job", "jpm_transaction_sync", "--as-of", (day + timedelta(days=1)).isoformat())
    result = json.loads(capsys.readouterr().out)["result"]
    assert (result["day"], result["fetched"], result["created"]) == (day.isoformat(), 5, 5)
    assert len(sandbox.requests("jpm", "jpm.transactions")) == 3  # every page, once

    rows = {row.end_to_end_id: row for row in JpmTransaction.objects.all()}
    assert sorted(rows) == sorted(ids)
    for payment in Payment.objects.filter(confirmation_id__in=ids):
        row = rows[payment.confirmation_id]
        assert row.amount == payment.amount and row.transaction_date == day
        assert row.status == "PENDING" and row.credit_debit_indicator == "CREDIT" and row.currency == "USD"
        assert row.raw["transactionId"] == row.transaction_id and row.raw["endToEndId"] == payment.confirmation_id


def test_a_rerun_writes_nothing_and_a_status_change_updates_the_rows(sandbox, three_pages):
    _, day = three_pages
    assert jpm_transactions_sync(day=day).created == 5
    before = _rows()
    again = jpm_transactions_sync(day=day)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 5)
    assert _rows() == before  # not even updated_at moved

    sandbox.advance(days=1, seconds=60)  # JPM: PENDING → … → COMPLETED
    moved = jpm_transactions_sync(day=day)
    assert (moved.created, moved.updated, moved.unchanged) == (0, 5, 0)
    after = {row["transaction_id"]: row for row in _rows()}
    for row in before:
        assert after[row["transaction_id"]]["status"] == "COMPLETED"
        assert after[row["transaction_id"]]["first_seen_at"] == row["first_seen_at"]
        assert after[row["transaction_id"]]["updated_at"] > row["updated_at"]


def test_another_day_has_nothing(sandbox, three_pages):
    _, day = three_pages
    stats = jpm_transactions_sync(day=day - timedelta(days=1))
    assert (stats.fetched, stats.created) == (0, 0)
    assert JpmTransaction.objects.count() == 0


def _fail_page_two(sandbox, mode: str) -> threading.Thread:
    """Page 1 answers late (0.8 s); meanwhile the next call (page 2) is set to fail with ``mode``."""
    sandbox.fault("jpm.transactions", "slow", count=1, delay=0.8)

    def _arm():
        time.sleep(0.3)
        sandbox.fault("jpm.transactions", mode, count=1)

    thread = threading.Thread(target=_arm)
    thread.start()
    return thread


def test_a_failure_in_the_middle_of_the_pages_writes_nothing(sandbox, three_pages):
    _, day = three_pages
    thread = _fail_page_two(sandbox, "500")
    with pytest.raises(ProcessorUnavailable):
        jpm_transactions_sync(day=day)
    thread.join()
    assert [r["fault"] for r in sandbox.requests("jpm", "jpm.transactions")] == ["slow", "500"]
    assert JpmTransaction.objects.count() == 0
    assert jpm_transactions_sync(day=day).created == 5  # the next run does the whole day


def test_a_protocol_error_on_a_later_page_writes_nothing(sandbox, three_pages):
    _, day = three_pages
    thread = _fail_page_two(sandbox, "malformed")
    with pytest.raises(ProcessorProtocolError):
        jpm_transactions_sync(day=day)
    thread.join()
    assert JpmTransaction.objects.count() == 0


def test_a_protocol_error_is_retried_then_dead_lettered(sandbox, three_pages):
    _, day = three_pages
    sandbox.fault("jpm.transactions", "malformed", count=3)
    result = jpm_transaction_sync_task.apply(kwargs={"day": day.isoformat()})
    assert result.failed()
    assert len(sandbox.requests("jpm", "jpm.transactions")) == 3  # the default queue's three attempts
    letter = DeadLetter.objects.get(task_name=SYNC_TASK)
    assert (letter.queue, letter.attempts, letter.kwargs) == ("default", 3, {"day": day.isoformat()})
    assert "ProcessorProtocolError" in letter.last_error
    assert letter.raw_answer["operation"] == "list_transactions" and letter.raw_answer["status"] == 200
    assert JpmTransaction.objects.count() == 0


def test_one_failed_attempt_is_retried_and_the_day_synced(sandbox, three_pages):
    _, day = three_pages
    sandbox.fault("jpm.transactions", "500", count=1)
    result = jpm_transaction_sync_task.apply(kwargs={"day": day.isoformat()})
    assert result.successful()
    assert JpmTransaction.objects.count() == 5 and DeadLetter.objects.count() == 0


def test_run_job_without_as_of_syncs_yesterday(sandbox):
    result = jpm_transaction_sync_job()
    assert result["day"] == (chicago_date(timezone.now()) - timedelta(days=1)).isoformat()
