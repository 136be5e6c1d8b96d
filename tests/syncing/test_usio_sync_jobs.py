"""The Usio sync jobs (SPEC §7, §7.3): the scheduler's fan-out and windows (Chicago days, DST), the window job on
queue ``usio-sync`` through Celery's tracer (retries, dead letter with the raw answer), ``run_job usio_sync`` and
the beat schedules."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from config.celery import app
from core.business_days import chicago_date
from core.models import DeadLetter
from core.schedules import all_schedules
from syncing.models import UsioTransaction
from syncing.usio_sync_jobs import (
    SCHEDULE_TASK,
    WINDOW_TASK,
    usio_sync_enqueue,
    usio_sync_schedule_task,
    usio_sync_window_task,
)
from tests.broker import drain
from tests.payments import conftest as payments_fixtures
from tests.syncing.conftest_usio_sync import RETURNED, float_ach, next_chicago_day_window, state

pytestmark = pytest.mark.django_db

QUEUE = "usio-sync"

# The payments tests' fixtures, used here too.
bank_account = payments_fixtures.bank_account
caller = payments_fixtures.caller
service = payments_fixtures.service


@pytest.fixture
def usio_queue():
    """The ``usio-sync`` queue, emptied before and after the test: ``usio_queue()`` drains what was sent."""
    drain(QUEUE)
    yield lambda: drain(QUEUE)
    drain(QUEUE)


def sent(messages) -> list[list]:
    assert all(headers["task"] == WINDOW_TASK for headers, _ in messages), messages
    return sorted(payload[0] for _, payload in messages)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- declaration ----------------------------------------------------------------------------------------------------


def test_the_jobs_are_declared_on_their_queues_with_the_spec_attempts_and_time_limits():
    assert app.tasks[WINDOW_TASK].name == usio_sync_window_task.name
    assert app.amqp.router.route({}, WINDOW_TASK, task_type=usio_sync_window_task)["queue"].name == QUEUE
    assert (usio_sync_window_task.attempts, usio_sync_window_task.time_limit) == (10, 540)
    assert usio_sync_window_task.acks_late is True
    assert app.tasks[SCHEDULE_TASK].job_queue == "default"


def test_the_three_schedules_are_registered_and_the_transactions_one_is_prod_only(settings):
    specs = {spec.name: spec for spec in all_schedules()}
    expected = {
        "usio transactions sync": ("*/30 * * * *", True, {"job_type": "transactions"}),
        "usio ACH returns sync": ("30 16 * * *", False, {"job_type": "ach_returns"}),
        "usio chargebacks sync": ("30 20 * * *", False, {"job_type": "chargebacks"}),
    }
    for name, (crontab, prod_only, kwargs) in expected.items():
        spec = specs[name]
        assert (spec.task, spec.crontab, spec.prod_only, spec.kwargs) == (SCHEDULE_TASK, crontab, prod_only, kwargs)

    assert settings.ENVIRONMENT != "prod"
    call_command("setup_schedules")
    rows = {task.name: task for task in PeriodicTask.objects.filter(name__in=expected)}
    assert {name: row.enabled for name, row in rows.items()} == {
        "usio transactions sync": False, "usio ACH returns sync": True, "usio chargebacks sync": True}
    assert json.loads(rows["usio ACH returns sync"].kwargs) == {"job_type": "ach_returns"}
    assert (rows["usio ACH returns sync"].crontab.hour, rows["usio ACH returns sync"].crontab.minute) == ("16", "30")


# --- the scheduler --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("now", "start", "end"), [
    # An ordinary CST day: 24 hours from 06:00 UTC.
    (utc(2026, 11, 20, 16, 30), "2026-11-20T06:00:00+00:00", "2026-11-21T06:00:00+00:00"),
    # DST ends on 2026-11-01: the Chicago day is 25 hours long.
    (utc(2026, 11, 1, 16, 30), "2026-11-01T05:00:00+00:00", "2026-11-02T06:00:00+00:00"),
    # DST starts on 2026-03-08: 23 hours.
    (utc(2026, 3, 8, 20, 30), "2026-03-08T06:00:00+00:00", "2026-03-09T05:00:00+00:00"),
    # A CDT day; 02:00 UTC is still the previous Chicago day.
    (utc(2026, 7, 2, 2, 0), "2026-07-01T05:00:00+00:00", "2026-07-02T05:00:00+00:00"),
])
@pytest.mark.parametrize("job_type", ["ach_returns", "chargebacks"])
def test_the_scheduler_enqueues_one_job_per_account_for_the_chicago_day(usio_queue, job_type, now, start, end):
    result = usio_sync_enqueue(job_type=job_type, now=now)

    assert result == {"job_type": job_type, "start": start, "end": end, "enqueued": 4}
    assert sent(usio_queue()) == sorted([account, job_type, start, end] for account in settings.USIO_SYNC_ACCOUNTS)
    assert sorted(settings.USIO_SYNC_ACCOUNTS) == ["float_credit", "float_debit", "loan", "subscription"]


def test_the_transactions_window_is_the_35_minutes_ending_now(usio_queue):
    usio_sync_enqueue(job_type="transactions", now=utc(2026, 11, 1, 7, 30))

    assert sent(usio_queue()) == sorted(
        [account, "transactions", "2026-11-01T06:55:00+00:00", "2026-11-01T07:30:00+00:00"]
        for account in settings.USIO_SYNC_ACCOUNTS)


def test_the_beat_task_enqueues_todays_window(usio_queue):
    result = usio_sync_schedule_task.apply(kwargs={"job_type": "chargebacks"})

    assert result.successful()
    day = chicago_date(datetime.now(UTC))
    messages = sent(usio_queue())
    assert len(messages) == 4 and {m[0] for m in messages} == set(settings.USIO_SYNC_ACCOUNTS)
    starts = {datetime.fromisoformat(m[2]) for m in messages}
    assert len(starts) == 1 and chicago_date(starts.pop()) == day


# --- the window job -------------------------------------------------------------------------------------------------


def window_args(account: str = "float_debit") -> list:
    start, end = next_chicago_day_window()
    return [account, "ach_returns", start.isoformat(), end.isoformat()]


def test_the_window_job_applies_the_returns_of_its_account(sandbox, service, bank_account):
    payment = float_ach(service, bank_account, RETURNED + "02")
    sandbox.advance(days=2)

    result = usio_sync_window_task.apply(args=window_args())

    assert result.successful()
    assert (result.get()["applied"], result.get()["account"]) == (1, "float_debit")
    payment.refresh_from_db()
    assert payment.payment_status == "FAILED"


def test_a_failed_attempt_is_retried_and_the_next_one_applies(sandbox, service, bank_account):
    payment = float_ach(service, bank_account, RETURNED + "02")
    sandbox.advance(days=2)
    sandbox.fault("usio.GetTransactionList", "malformed", count=2)

    result = usio_sync_window_task.apply(args=window_args())

    assert result.successful() and result.get()["applied"] == 1
    assert len(sandbox.requests("usio", "usio.GetTransactionList")) == 3
    assert DeadLetter.objects.count() == 0
    payment.refresh_from_db()
    assert payment.payment_status == "FAILED"


def test_a_report_that_breaks_the_protocol_ten_times_is_dead_lettered_with_the_raw_answer(sandbox, service,
                                                                                          bank_account):
    payment = float_ach(service, bank_account, RETURNED + "02")
    sandbox.advance(days=2)
    sandbox.fault("usio.GetTransactionList", "malformed", count=10)
    before = state()
    args = window_args()

    result = usio_sync_window_task.apply(args=args)

    assert result.failed()
    assert len(sandbox.requests("usio", "usio.GetTransactionList")) == 10
    letter = DeadLetter.objects.get()
    assert (letter.task_name, letter.queue, letter.args, letter.attempts) == (WINDOW_TASK, QUEUE, args, 10)
    assert "ProcessorProtocolError" in letter.last_error
    assert letter.raw_answer["operation"] == "GetTransactionList" and letter.raw_answer["response_body"]
    assert settings.USIO_ACCOUNTS["float_debit"]["password"] not in json.dumps(letter.raw_answer)
    assert state() == before and UsioTransaction.objects.count() == 0
    payment.refresh_from_db()
    assert payment.payment_status == "ACHSENT"

    # The operator's replay (same task, same args) completes it once the processor answers properly.
    replay = usio_sync_window_task.apply(args=letter.args)
    assert replay.successful() and replay.get()["applied"] == 1


@pytest.mark.parametrize("args", [
    ["float_debit", "everything", "2026-11-20T06:00:00+00:00", "2026-11-21T06:00:00+00:00"],
    ["nobody", "ach_returns", "2026-11-20T06:00:00+00:00", "2026-11-21T06:00:00+00:00"],
    ["float_debit", "ach_returns", "yesterday", "2026-11-21T06:00:00+00:00"],
    ["float_debit", "ach_returns", "2026-11-21T06:00:00+00:00", "2026-11-20T06:00:00+00:00"],
])
def test_a_job_with_arguments_that_cannot_work_is_dead_lettered_at_once(sandbox, args):
    result = usio_sync_window_task.apply(args=args)

    assert result.failed()
    letter = DeadLetter.objects.get()
    assert (letter.task_name, letter.attempts, letter.args) == (WINDOW_TASK, 1, args)
    assert sandbox.requests("usio", "usio.GetTransactionList") == []


# --- run_job ---------------------------------------------------------------------------------------------------------


def test_run_job_syncs_every_account_for_the_chicago_day_of_as_of(sandbox, service, bank_account, capsys):
    payment = float_ach(service, bank_account, RETURNED + "02")
    sandbox.advance(days=2)
    day = chicago_date(payment.created_at) + timedelta(days=1)

    call_command("run_job", "usio_sync", "--job-type", "ach_returns", "--as-of", day.isoformat())

    out = json.loads(capsys.readouterr().out)["result"]
    start, end = next_chicago_day_window()
    assert (out["job_type"], out["start"], out["end"]) == ("ach_returns", start.isoformat(), end.isoformat())
    assert set(out["accounts"]) == set(settings.USIO_SYNC_ACCOUNTS)
    assert (out["accounts"]["float_debit"]["fetched"], out["accounts"]["float_debit"]["applied"]) == (1, 1)
    assert all(out["accounts"][a]["fetched"] == 0 for a in ("subscription", "float_credit", "loan"))
    payment.refresh_from_db()
    assert payment.payment_status == "FAILED"


def test_run_job_for_one_account_reports_an_unreadable_report(sandbox, capsys):
    sandbox.fault("usio.GetTransactionList", "malformed")

    call_command("run_job", "usio_sync", "--job-type", "chargebacks", "--account", "loan")

    out = json.loads(capsys.readouterr().out)["result"]
    assert list(out["accounts"]) == ["loan"]
    assert out["accounts"]["loan"]["error"].startswith("ProcessorProtocolError")
    assert UsioTransaction.objects.count() == 0
