"""Prenote verification (SPEC §6, §11): three business days without a return → COMPLETED, account ``verified``.
Plus the jobs, tasks and schedules of prenotes. ``now=`` moves our clock, ``sandbox.advance`` the processors'."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone

from bank_accounts.selectors import bank_account_get
from core.business_days import CHICAGO, third_business_day_cutoff
from core.models import OutboxEvent
from core.outbox_relay import outbox_relay_run
from core.schedules import all_schedules
from payments.models import Payment, PaymentStatusChange, PrenoteRequest
from payments.prenote_jobs import KICK_KEY, PROCESS_TASK, VERIFY_TASK, process_prenotes_task, verify_prenotes_task
from payments.prenotes import prenote_process_batch, prenote_verify_due
from payments.status import payment_apply_status
from tests.payments.conftest import ACCOUNT_ID, USER

pytestmark = pytest.mark.django_db

URL = "/api/v1/prenotes"
RETURNED_R02 = "7391462899" + "02"
REJECTED_R03 = "7391462898" + "03"
WEEK = timedelta(days=7)  # always past the third business day


@pytest.fixture(autouse=True)
def no_kick(prenote_kicks):
    return prenote_kicks


def prenote(service, *, provider="usio", account_id=ACCOUNT_ID) -> Payment:
    data = {"user_id": USER, "account_id": account_id, "provider": provider}
    if provider == "usio":
        data["usio_account"] = "float_debit"
    response = service.post(URL, data, format="json")
    assert response.status_code == 202, response.content
    prenote_process_batch()
    return PrenoteRequest.objects.get(pk=response.json()["id"]).payment


def chicago(*args) -> datetime:
    return datetime(*args, tzinfo=CHICAGO)


def events(payment) -> list[str]:
    return list(OutboxEvent.objects.filter(aggregate_id=str(payment.pk)).order_by("sequence")
                .values_list("type", flat=True))


def prenote_status(account_id=ACCOUNT_ID) -> str:
    return bank_account_get(user_id=USER, account_id=account_id).prenote_status


# --- the rule -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("now, last_verified_submission_day", [
    (chicago(2026, 11, 25, 0, 0, 1), date(2026, 11, 22)),  # Wed: Fri 20 to Sun 22 + Mon, Tue, Wed
    (chicago(2026, 11, 24, 23, 59), date(2026, 11, 19)),  # Tue: Thu 19 + Fri, Mon, Tue
    (chicago(2026, 11, 30, 9, 0), date(2026, 11, 24)),  # Mon after Thanksgiving (Thu 26 closed): Tue 24 + Wed, Fri, Mon
    (chicago(2026, 11, 29, 12, 0), date(2026, 11, 23)),  # Sunday: as Friday 27 (Mon 23 + Tue, Wed, Fri)
])
def test_the_cutoff_is_the_start_of_the_day_after_the_last_submission_day_that_passed_three_business_days(
        now, last_verified_submission_day):
    next_day = last_verified_submission_day + timedelta(days=1)
    assert third_business_day_cutoff(now) == chicago(*next_day.timetuple()[:3])


def test_three_business_days_without_a_return_verify_the_prenote_and_the_account(sandbox, bank_account, service):
    bank_account()
    payment = prenote(service)

    assert prenote_verify_due(now=timezone.now() + timedelta(hours=1)).examined == 0
    stats = prenote_verify_due(now=timezone.now() + WEEK)
    outbox_relay_run()

    assert (stats.examined, stats.completed) == (1, 1)
    payment.refresh_from_db()
    assert payment.payment_status == "COMPLETED" and payment.completion_date is not None
    assert events(payment) == ["PRENOTE_SUBMITTED", "PRENOTE_VERIFIED"]
    last = PaymentStatusChange.objects.filter(payment=payment).order_by("id").last()
    assert (last.from_status, last.to_status, last.source, last.actor) == (
        "ACHSENT", "COMPLETED", "check_ach", "prenote_verifier")
    assert prenote_status() == "verified"
    assert prenote_verify_due(now=timezone.now() + WEEK).examined == 0  # idempotent
    assert events(payment) == ["PRENOTE_SUBMITTED", "PRENOTE_VERIFIED"]


def test_the_business_day_boundary_is_exact(sandbox, bank_account, service):
    bank_account()
    payment = prenote(service)
    Payment.objects.filter(pk=payment.pk).update(submit_date=chicago(2026, 11, 20, 15, 0))  # a Friday

    assert prenote_verify_due(now=chicago(2026, 11, 24, 23, 59, 59)).completed == 0
    assert prenote_verify_due(now=chicago(2026, 11, 25, 0, 0, 1)).completed == 1


def test_cleared_prenotes_are_verified_and_other_payments_are_not_touched(sandbox, bank_account, service):
    bank_account()
    bank_account(account_id="acc-2")
    cleared = prenote(service, provider="jpm")
    payment_apply_status(payment_id=cleared.pk, to_status="CLEARED", source="webhook")
    waiting = prenote(service, account_id="acc-2")
    Payment.objects.filter(pk=waiting.pk).update(payment_status="PROCESSING")  # not ACHSENT: not verified here
    old = timezone.now() - WEEK
    other = Payment.objects.create(user_id=USER, purpose="float", payment_method="ach", payment_type="debit",
                                   payment_provider="usio", amount="5.00", payment_status="ACHSENT", submit_date=old)

    stats = prenote_verify_due(now=timezone.now() + WEEK)

    assert (stats.examined, stats.completed) == (1, 1)
    cleared.refresh_from_db()
    assert cleared.payment_status == "COMPLETED"
    assert Payment.objects.get(pk=waiting.pk).payment_status == "PROCESSING"
    assert Payment.objects.get(pk=other.pk).payment_status == "ACHSENT"


def test_a_returned_prenote_is_never_verified(sandbox, bank_account, service):
    bank_account(account_number=RETURNED_R02)
    payment = prenote(service)
    payment_apply_status(payment_id=payment.pk, to_status="FAILED", source="usio_sync", failure="returned",
                         return_code="R02", return_info="RETURNED")

    assert prenote_verify_due(now=timezone.now() + WEEK).examined == 0
    outbox_relay_run()
    assert prenote_status() == "failed"


# --- JPM is asked first (SPEC §7.2) -------------------------------------------------------------------------------


def test_a_jpm_prenote_completed_at_jpm_is_verified(sandbox, bank_account, service):
    bank_account()
    payment = prenote(service, provider="jpm")
    sandbox.advance(days=3)

    stats = prenote_verify_due(now=timezone.now() + WEEK)
    outbox_relay_run()

    assert stats.completed == 1 and Payment.objects.get(pk=payment.pk).payment_status == "COMPLETED"
    assert [r["operation"] for r in sandbox.requests("jpm") if r["operation"] != "jpm.token"] == [
        "jpm.payments", "jpm.payment_status"]
    assert prenote_status() == "verified"


def test_a_jpm_prenote_returned_at_jpm_fails_instead_of_verifying(sandbox, bank_account, service):
    bank_account(account_number=RETURNED_R02)
    payment = prenote(service, provider="jpm")
    sandbox.advance(days=3)  # JPM: RETURNED after two days; its callback was never delivered

    stats = prenote_verify_due(now=timezone.now() + WEEK)
    outbox_relay_run()

    payment.refresh_from_db()
    assert (stats.completed, stats.failed) == (0, 1)
    assert (payment.payment_status, payment.return_code) == ("FAILED", "AC04")
    assert payment.return_date is not None and payment.return_info.startswith("AC04")
    assert events(payment) == ["PRENOTE_SUBMITTED", "PRENOTE_RETURNED"]
    assert prenote_status() == "failed"


def test_a_jpm_prenote_rejected_at_jpm_fails(sandbox, bank_account, service):
    bank_account(account_number=REJECTED_R03)
    payment = prenote(service, provider="jpm")  # JPM accepts the request (202) and rejects the entry
    assert payment.payment_status == "ACHSENT"

    stats = prenote_verify_due(now=timezone.now() + WEEK)
    outbox_relay_run()

    payment.refresh_from_db()
    assert stats.failed == 1 and (payment.payment_status, payment.return_code) == ("FAILED", "AC01")
    assert payment.return_date is None  # rejected, not returned
    assert prenote_status() == "failed"


def test_jpm_unreachable_leaves_prenotes_for_the_next_run_and_opens_the_breaker(sandbox, bank_account, service):
    payments = []
    for index in range(4):
        bank_account(account_id=f"acc-{index}")
        payments.append(prenote(service, provider="jpm", account_id=f"acc-{index}"))
    bank_account(account_id="acc-usio")
    usio = prenote(service, account_id="acc-usio")
    sandbox.fault("jpm.payment_status", "500", count=10)

    stats = prenote_verify_due(now=timezone.now() + WEEK)

    assert (stats.examined, stats.errors, stats.skipped, stats.completed) == (5, 3, 1, 1)
    assert set(Payment.objects.filter(pk__in=[p.pk for p in payments])
               .values_list("payment_status", flat=True)) == {"ACHSENT"}
    assert Payment.objects.get(pk=usio.pk).payment_status == "COMPLETED"
    assert len(sandbox.requests("jpm", "jpm.payment_status")) == 3

    sandbox.control("DELETE", "faults")
    assert prenote_verify_due(now=timezone.now() + WEEK).completed == 4


# --- jobs, tasks, schedules ---------------------------------------------------------------------------------------


def test_run_job_verify_prenotes_never_verifies_early(sandbox, bank_account, service, capsys):
    bank_account()
    payment = prenote(service)

    call_command("run_job", "verify_prenotes", "--as-of", (date.today() + timedelta(days=30)).isoformat())

    output = json.loads(capsys.readouterr().out)
    assert output["job"] == "verify_prenotes" and output["result"]["examined"] == 0  # as_of is clamped to now
    assert Payment.objects.get(pk=payment.pk).payment_status == "ACHSENT"


def test_run_job_verify_prenotes_verifies_what_is_due(sandbox, bank_account, service, capsys):
    bank_account()
    payment = prenote(service)
    Payment.objects.filter(pk=payment.pk).update(submit_date=timezone.now() - WEEK)

    call_command("run_job", "verify_prenotes")

    assert json.loads(capsys.readouterr().out)["result"]["completed"] == 1


def test_run_job_process_prenotes(sandbox, bank_account, service, capsys):
    bank_account()
    service.post(URL, {"user_id": USER, "account_id": ACCOUNT_ID, "provider": "jpm"}, format="json")

    call_command("run_job", "process_prenotes")

    assert json.loads(capsys.readouterr().out)["result"]["outcomes"] == {"sent": 1}
    assert PrenoteRequest.objects.get().status == "submitted"


def test_the_tasks_run_on_their_queues_with_their_attempts():
    assert (process_prenotes_task.name, process_prenotes_task.job_queue, process_prenotes_task.attempts) == (
        PROCESS_TASK, "prenotes", 10)
    assert process_prenotes_task.time_limit == 30
    assert (verify_prenotes_task.name, verify_prenotes_task.job_queue, verify_prenotes_task.attempts) == (
        VERIFY_TASK, "check-ach", 1)


def test_the_schedules_are_registered():
    schedules = {spec.name: spec for spec in all_schedules()}
    assert (schedules["prenote submitter"].task, schedules["prenote submitter"].every_seconds) == (PROCESS_TASK, 300)
    assert (schedules["prenote verifier"].task, schedules["prenote verifier"].crontab) == (VERIFY_TASK, "5 17 * * *")


def test_the_task_kicks_another_run_when_requests_are_left(sandbox, bank_account, service, no_kick, settings):
    settings.PRENOTE_BATCH_SIZE = 1
    for index in range(2):
        bank_account(account_id=f"acc-{index}")
        service.post(URL, {"user_id": USER, "account_id": f"acc-{index}", "provider": "jpm"}, format="json")

    first = process_prenotes_task()

    assert (first["claimed"], first["more"]) == (1, True) and no_kick() == [PROCESS_TASK]
    cache.delete(KICK_KEY)  # the coalescing window (1 s) has passed
    second = process_prenotes_task()
    assert second["claimed"] == 1
    third = process_prenotes_task()
    assert (third["claimed"], third["more"]) == (0, False) and no_kick() == [PROCESS_TASK, PROCESS_TASK]


def test_the_verify_task_returns_its_stats(sandbox):
    assert verify_prenotes_task()["examined"] == 0
