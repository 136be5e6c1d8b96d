"""check-ach (SPEC §7.2): the scheduler's selection and fan-out, the worker's outcomes through the sandbox (Usio
auto-complete, JPM COMPLETED / RETURNED / REJECTED, JPM faults), idempotency, query bounds, the jobs and schedule.

The three-business-day gate on exact calendar dates is in ``test_check_ach_gate.py``; a real worker in
``test_check_ach_worker.py``.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config.celery import app
from config.queues import QUEUES
from core.models import DeadLetter, OutboxEvent
from core.outbox_relay import outbox_relay_run
from core.schedules import all_schedules
from payments.models import Payment, PaymentStatusChange
from payments.prenotes import prenote_process_batch
from payments.transaction_service import ts_notifications_send_due
from syncing.check_ach import (
    DB_WORK_MARGIN_SECONDS,
    SCHEDULER_TASK,
    WORKER_TASK,
    check_ach_process,
    check_ach_run,
    check_ach_schedule,
)
from syncing.check_ach_jobs import check_ach_fan_out, check_ach_process_task, check_ach_schedule_task
from tests.broker import drain
from tests.syncing import conftest_check_ach as fixtures
from tests.syncing.conftest_check_ach import REJECTED_R03, RETURNED_R02, chicago, events, state, totals

pytestmark = pytest.mark.django_db

# Fixtures (bound by assignment so that pytest finds them in this module).
bank_account, debit_card, make_payment = fixtures.bank_account, fixtures.debit_card, fixtures.make_payment

WEEK = timedelta(days=7)  # always past the third business day


def later():
    return timezone.now() + WEEK


def jpm_status_calls(sandbox) -> int:
    return len(sandbox.requests("jpm", "jpm.payment_status"))


# --- the scheduler: selection and fan-out -------------------------------------------------------------------------


@pytest.fixture
def check_ach_queue():
    drain("check-ach")  # whatever an earlier test left on the broker
    yield lambda: drain("check-ach")
    drain("check-ach")


def test_the_scheduler_enqueues_every_in_flight_debit_once_and_nothing_else(
        make_payment, client_as, debit_card, sandbox, settings, check_ach_queue):
    settings.CHECK_ACH_JOB_SIZE = settings.CHECK_ACH_JPM_JOB_SIZE = 2
    expected = [
        make_payment(),  # float ACH debit, Usio, ACHSENT
        make_payment(purpose="subscription"),  # JPM, ACHSENT
        make_payment(purpose="loan"),  # Usio, ACHSENT
        make_payment(purpose="subscription", submit_date=timezone.now() - timedelta(days=400)),  # no date cutoff
    ]
    cleared = make_payment(purpose="subscription")
    from payments.status import payment_apply_status
    payment_apply_status(payment_id=cleared.pk, to_status="CLEARED", source="webhook")
    expected.append(cleared)
    # Never selected: credits, FAILED (rejected at submission), COMPLETED (card), prenotes.
    credit = make_payment(payment_type="credit")
    rejected = make_payment(account_number=REJECTED_R03)
    debit_card(user_id="user-card")
    card = client_as("service").post("/api/v1/payments", {"user_id": "user-card", "purpose": "float",
                                                          "payment_method": "pinless", "payment_type": "debit",
                                                          "amount": "5.00"},
                                     format="json", HTTP_IDEMPOTENCY_KEY=f"k-{uuid.uuid4()}")
    assert card.status_code == 201 and card.json()["payment_status"] == "COMPLETED"
    response = client_as("service").post("/api/v1/prenotes", {"user_id": "user-ca-1", "account_id": "acc-ca-1",
                                                               "provider": "jpm"}, format="json")
    assert response.status_code == 202, response.content
    prenote_process_batch()
    prenote = Payment.objects.get(purpose="prenote")
    assert (credit.payment_status, rejected.payment_status, prenote.payment_status) == (
        "ACHSENT", "FAILED", "ACHSENT")

    stats = check_ach_fan_out()

    messages = check_ach_queue()
    assert {headers["task"] for headers, _ in messages} == {WORKER_TASK}
    batches = [payload[0][0] for _, payload in messages]  # args = [payment_ids]
    sent = [pk for batch in batches for pk in batch]
    assert sorted(sent) == sorted(str(p.pk) for p in expected)  # each exactly once, nothing else
    provider = {str(p.pk): p.payment_provider for p in expected}
    kinds = sorted((provider[b[0]], len(b)) for b in batches)
    assert kinds == [("jpm", 1), ("jpm", 2), ("usio", 2)]  # 3 JPM in jobs of 2, 2 Usio in jobs of 2
    assert all(len({provider[pk] for pk in b}) == 1 for b in batches)  # a job holds one kind
    assert stats.as_dict() == {"selected": 5, "jobs": 3}


def test_the_scheduler_task_publishes_to_the_check_ach_queue(make_payment, check_ach_queue):
    payments = [make_payment(), make_payment()]
    result = check_ach_schedule_task.apply()
    assert result.successful() and result.get() == {"selected": 2, "jobs": 1}
    ((headers, payload),) = check_ach_queue()
    assert headers["task"] == WORKER_TASK
    assert sorted(payload[0][0]) == sorted(str(p.pk) for p in payments)


def _bulk_in_flight(count: int) -> list[Payment]:
    """``count`` ACHSENT Usio float debits placed directly (volume set-up for the query-count tests)."""
    rows = [Payment(user_id=f"user-bulk-{i}", purpose="float", payment_method="ach", payment_type="debit",
                    payment_provider="usio", amount="10.00", payment_status="ACHSENT",
                    submit_date=timezone.now()) for i in range(count)]
    return Payment.objects.bulk_create(rows)


@pytest.mark.parametrize("count, chunk", [(25, 10), (30, 10), (7, 100)])
def test_the_selection_reads_ids_in_keyset_chunks_one_query_each(count, chunk):
    payments = _bulk_in_flight(count)
    batches: list[list[str]] = []

    with CaptureQueriesContext(connection) as queries:
        stats = check_ach_schedule(enqueue=batches.append, size=3, chunk_size=chunk)

    # ceil(N / chunk) reads, plus the one that finds the end when N is a multiple of the chunk.
    assert len(queries) == count // chunk + 1 == math.ceil(count / chunk) + (count % chunk == 0)
    assert all(q["sql"].lstrip().upper().startswith("SELECT") for q in queries)
    sent = [pk for batch in batches for pk in batch]
    assert sent == sorted(str(p.pk) for p in payments)  # every id once, in id order
    assert [len(b) for b in batches] == [3] * (count // 3) + ([count % 3] if count % 3 else [])
    assert stats.as_dict() == {"selected": count, "jobs": math.ceil(count / 3)}


def test_jpm_and_usio_payments_go_to_jobs_of_their_own_size_in_id_order():
    usio = _bulk_in_flight(7)
    jpm = Payment.objects.bulk_create(
        [Payment(user_id=f"user-bulk-jpm-{i}", purpose="subscription", payment_method="ach", payment_type="debit",
                 payment_provider="jpm", amount="10.00", payment_status="CLEARED", submit_date=timezone.now())
         for i in range(5)])
    batches: list[list[str]] = []

    with CaptureQueriesContext(connection) as queries:
        stats = check_ach_schedule(enqueue=batches.append, size=3, jpm_size=2, chunk_size=4)

    assert len(queries) == 4  # 12 / 4 reads, plus the one that finds the end (12 is a multiple of 4)
    jpm_ids, usio_ids = {str(p.pk) for p in jpm}, {str(p.pk) for p in usio}
    jpm_batches = [b for b in batches if set(b) <= jpm_ids]
    usio_batches = [b for b in batches if set(b) <= usio_ids]
    assert len(jpm_batches) + len(usio_batches) == len(batches)  # no job mixes the two
    assert [len(b) for b in jpm_batches] == [2, 2, 1] and [len(b) for b in usio_batches] == [3, 3, 1]
    assert [pk for b in jpm_batches for pk in b] == sorted(jpm_ids)  # in id order, each once
    assert [pk for b in usio_batches for pk in b] == sorted(usio_ids)
    assert stats.as_dict() == {"selected": 12, "jobs": 6}


@pytest.mark.parametrize("count", [5, 50])
def test_the_worker_reads_its_batch_in_one_query_whatever_its_size(count, django_assert_num_queries):
    payments = _bulk_in_flight(count)  # submitted now: none is due
    with django_assert_num_queries(1):
        stats = check_ach_process(payment_ids=[str(p.pk) for p in payments], now=timezone.now())
    assert (stats.examined, stats.not_due) == (count, count)


def test_the_worker_adds_only_the_status_changes_per_due_payment(make_payment):
    def queries_for(n: int) -> int:
        ids = [str(make_payment(submit_date=timezone.now() - WEEK).pk) for _ in range(n)]
        with CaptureQueriesContext(connection) as captured:
            assert check_ach_process(payment_ids=ids, now=timezone.now()).completed == n
        return len(captured)

    one, three = queries_for(1), queries_for(3)
    # one batch read, then the batch's completions in one set-based transaction: no query per payment
    assert three == one


# --- the worker: Usio ---------------------------------------------------------------------------------------------


def test_a_due_usio_debit_completes_and_the_transaction_service_hears_once(make_payment, sandbox):
    floats = [make_payment(), make_payment()]
    subscription = make_payment(purpose="subscription", provider="usio")  # not a float: no notification
    every = [*floats, subscription]

    stats = check_ach_process(payment_ids=[str(p.pk) for p in every], now=later())
    outbox_relay_run()
    ts_notifications_send_due()  # the Transaction Service is told outside the relay's transaction

    assert (stats.examined, stats.completed) == (3, 3)
    for payment in every:
        payment.refresh_from_db()
        assert payment.payment_status == "COMPLETED" and payment.completion_date is not None
        last = PaymentStatusChange.objects.filter(payment=payment).order_by("id").last()
        assert (last.from_status, last.to_status, last.source, last.actor) == (
            "ACHSENT", "COMPLETED", "check_ach", "check_ach")
    assert [events(p) for p in floats] == [["FLOAT_DEBIT_COMPLETED"]] * 2
    assert events(subscription) == ["SUBSCRIPTION_COMPLETED"]
    received = sandbox.received("transactions")
    assert sorted(r["confirmation_id"] for r in received) == sorted(p.confirmation_id for p in floats)
    assert {(r["payment_status"], r["previous_status"]) for r in received} == {("COMPLETED", "ACHSENT")}
    assert sandbox.requests("jpm") == []  # Usio payments are not asked anywhere


def test_a_payment_not_due_is_left_exactly_as_it_was(make_payment, sandbox):
    payment = make_payment(purpose="subscription")
    before, counts = state(payment), totals()

    stats = check_ach_process(payment_ids=[str(payment.pk)], now=timezone.now() + timedelta(hours=1))

    assert (stats.examined, stats.not_due, stats.completed) == (1, 1, 0)
    assert state(payment) == before and totals() == counts
    assert jpm_status_calls(sandbox) == 0  # JPM is asked only for due payments


# --- the worker: JPM ----------------------------------------------------------------------------------------------


def test_a_jpm_payment_completed_at_jpm_completes(make_payment, sandbox):
    payment = make_payment(purpose="subscription")
    sandbox.advance(days=2)  # PENDING → ACCEPTED → CLEARED → COMPLETED

    stats = check_ach_process(payment_ids=[str(payment.pk)], now=later())

    payment.refresh_from_db()
    assert stats.completed == 1 and payment.payment_status == "COMPLETED" and payment.completion_date
    assert events(payment) == ["SUBSCRIPTION_COMPLETED"]
    assert jpm_status_calls(sandbox) == 1
    change = PaymentStatusChange.objects.filter(payment=payment).order_by("id").last()
    assert change.raw_payload_ref == f"jpm:payment_status:{payment.reference}"


def test_a_jpm_payment_returned_at_jpm_fails_returned_with_its_code(make_payment, sandbox):
    payment = make_payment(purpose="subscription", account_number=RETURNED_R02)
    sandbox.advance(days=3)  # RETURNED two days after submission; the callback was never delivered

    stats = check_ach_process(payment_ids=[str(payment.pk)], now=later())
    outbox_relay_run()

    payment.refresh_from_db()
    assert (stats.completed, stats.failed) == (0, 1)
    assert (payment.payment_status, payment.return_code) == ("FAILED", "AC04")
    assert payment.return_info.startswith("AC04: ") and len(payment.return_info) > len("AC04: ")
    assert payment.return_date is not None and payment.completion_date is None
    assert events(payment) == ["SUBSCRIPTION_RETURNED"]
    from blocklist.selectors import blocklist_is_blocked
    assert blocklist_is_blocked(user_id=payment.user_id)  # AC04 blocks (SPEC §12), through the outbox consumer


def test_a_jpm_payment_rejected_at_jpm_fails_rejected(make_payment, sandbox):
    payment = make_payment(purpose="subscription", account_number=REJECTED_R03)
    assert payment.payment_status == "ACHSENT"  # JPM accepts the request (202) and rejects the entry

    stats = check_ach_process(payment_ids=[str(payment.pk)], now=later())

    payment.refresh_from_db()
    assert stats.failed == 1
    assert (payment.payment_status, payment.return_code) == ("FAILED", "AC01")
    assert payment.return_info.startswith("AC01") and payment.return_date is None
    assert events(payment) == ["SUBSCRIPTION_FAILED"]


def test_an_answer_breaking_the_protocol_dead_letters_that_payment_alone(make_payment, sandbox):
    old = timezone.now() - WEEK  # due today, also for the replay below (which runs on the real clock)
    jpm = sorted((make_payment(purpose="subscription", submit_date=old) for _ in range(3)), key=lambda p: p.pk)
    usio = make_payment(submit_date=old)
    sandbox.advance(days=2)
    before = {p.pk: state(p) for p in jpm}
    # The first JPM request to arrive gets it (the look-ups run concurrently: not necessarily the first in id order).
    sandbox.fault("jpm.payment_status", "malformed", count=1)

    stats = check_ach_process(payment_ids=[str(p.pk) for p in [*jpm, usio]], now=later())

    [hit] = [r for r in sandbox.requests("jpm", "jpm.payment_status") if r["fault"] == "malformed"]
    first = next(p for p in jpm if hit["path"].endswith(p.reference))
    assert (stats.examined, stats.dead_lettered, stats.completed, stats.errors) == (4, 1, 3, 0)
    assert state(first) == before[first.pk]  # never half-updated
    others = [p for p in [*jpm, usio] if p.pk != first.pk]
    assert {Payment.objects.get(pk=p.pk).payment_status for p in others} == {"COMPLETED"}
    letter = DeadLetter.objects.get()
    assert (letter.task_name, letter.queue, letter.attempts) == (WORKER_TASK, "check-ach", 1)
    assert letter.args == [[str(first.pk)]] and letter.kwargs == {}
    assert letter.raw_answer and letter.raw_answer["operation"] == "get_payment_status"
    assert letter.raw_answer["status"] == 200 and letter.raw_answer["response_body"]
    assert "ProcessorProtocolError" in letter.last_error

    # An operator's replay runs the same task with the letter's arguments: just that payment.
    calls = jpm_status_calls(sandbox)
    replayed = check_ach_process_task(*letter.args)
    assert replayed["completed"] == 1 and replayed["examined"] == 1
    assert Payment.objects.get(pk=first.pk).payment_status == "COMPLETED"
    assert jpm_status_calls(sandbox) == calls + 1


def test_jpm_unavailable_leaves_the_payment_for_the_next_run_without_a_dead_letter(make_payment, sandbox):
    payment, usio = make_payment(purpose="subscription"), make_payment()
    before = state(payment)
    sandbox.fault("jpm.payment_status", "500", count=1)

    stats = check_ach_process(payment_ids=[str(payment.pk), str(usio.pk)], now=later())

    assert (stats.errors, stats.completed, stats.dead_lettered) == (1, 1, 0)
    assert state(payment) == before and DeadLetter.objects.count() == 0
    assert check_ach_process(payment_ids=[str(payment.pk)], now=later()).completed == 1  # the next run


def test_three_consecutive_jpm_errors_open_the_breaker_for_the_rest_of_the_job(make_payment, sandbox):
    jpm = [make_payment(purpose="subscription") for _ in range(5)]
    usio = make_payment()
    sandbox.fault("jpm.payment_status", "500", count=10)

    stats = check_ach_process(payment_ids=[str(p.pk) for p in [*jpm, usio]], now=later())

    assert (stats.examined, stats.errors, stats.skipped, stats.completed) == (6, 3, 2, 1)
    assert jpm_status_calls(sandbox) == 3
    assert {Payment.objects.get(pk=p.pk).payment_status for p in jpm} == {"ACHSENT"}
    assert Payment.objects.get(pk=usio.pk).payment_status == "COMPLETED"
    assert DeadLetter.objects.count() == 0


def test_a_payment_jpm_does_not_know_is_left_alone(make_payment, sandbox):
    payment = make_payment(purpose="subscription")
    sandbox.reset()  # JPM forgets it
    from integrations.jpm import clear_token_cache
    clear_token_cache()
    before = state(payment)

    stats = check_ach_process(payment_ids=[str(payment.pk)], now=later())

    assert (stats.errors, stats.completed, stats.failed) == (1, 0, 0)
    assert state(payment) == before and DeadLetter.objects.count() == 0


def test_the_time_budget_leaves_the_rest_for_tomorrow(make_payment, sandbox, settings):
    payments = [make_payment(), make_payment(purpose="subscription")]
    before = [state(p) for p in payments]
    settings.CHECK_ACH_TIME_BUDGET_SECONDS = 0

    stats = check_ach_process(payment_ids=[str(p.pk) for p in payments], now=later())

    assert (stats.examined, stats.skipped, stats.completed) == (2, 2, 0)
    assert [state(p) for p in payments] == before and jpm_status_calls(sandbox) == 0


def test_the_task_starts_no_jpm_lookup_that_could_outlive_its_time_limit(make_payment, sandbox, settings):
    old = timezone.now() - WEEK
    jpm, usio = make_payment(purpose="subscription", submit_date=old), make_payment(submit_date=old)
    before = state(jpm)
    settings.JPM_READ_TIMEOUT = 60.0  # a hung JPM answer would outlast the job's 49 s soft limit

    stats = check_ach_process_task([str(jpm.pk), str(usio.pk)])

    assert (stats["skipped"], stats["completed"]) == (1, 1)
    assert state(jpm) == before and jpm_status_calls(sandbox) == 0
    assert Payment.objects.get(pk=usio.pk).payment_status == "COMPLETED"
    settings.JPM_READ_TIMEOUT = 1.5
    assert check_ach_process_task([str(jpm.pk)])["completed"] == 1  # a normal timeout fits: asked and resolved


def test_a_jpm_lookup_leaves_the_job_time_for_its_database_work_before_the_soft_limit(make_payment, sandbox,
                                                                                    settings):
    old = timezone.now() - WEEK
    jpm = make_payment(purpose="subscription", submit_date=old)
    before = state(jpm)
    # 49 s soft limit - (3.05 s connect + 42 s read) = 3.95 s: the look-up itself would end in time, but not the
    # database work after it (DB_WORK_MARGIN_SECONDS).
    settings.JPM_CONNECT_TIMEOUT, settings.JPM_READ_TIMEOUT = 3.05, 42.0
    assert 0 < check_ach_process_task.soft_time_limit - 45.05 < DB_WORK_MARGIN_SECONDS

    stats = check_ach_process_task([str(jpm.pk)])

    assert (stats["skipped"], stats["completed"]) == (1, 0)
    assert state(jpm) == before and jpm_status_calls(sandbox) == 0


def _jpm_window(seconds: float) -> float:
    """A ``time_limit`` that leaves the job ``seconds`` to start JPM look-ups (after the call and database margins)."""
    from syncing.check_ach import _jpm_call_seconds

    return _jpm_call_seconds() + DB_WORK_MARGIN_SECONDS + seconds


def _subscriptions(make_payment, count: int, **fields) -> list[Payment]:
    """``count`` JPM payments, in id order (the order the job asks in)."""
    return sorted((make_payment(purpose="subscription", **fields) for _ in range(count)), key=lambda p: p.pk)


def test_the_jpm_payments_a_job_has_no_time_to_ask_about_are_handed_to_a_new_job(make_payment, sandbox, settings):
    settings.CHECK_ACH_JPM_CONCURRENCY = 1
    first, *rest = _subscriptions(make_payment, 4)
    before = [state(p) for p in rest]
    sandbox.fault("jpm.payment_status", "slow", count=1, delay=0.8)  # the first answer outlasts the 0.3 s window
    handed: list[list[str]] = []

    stats = check_ach_process(payment_ids=[str(p.pk) for p in [first, *rest]], now=later(),
                              time_limit=_jpm_window(0.3), continue_with=handed.append)

    assert (stats.examined, stats.completed, stats.continued, stats.skipped, stats.errors) == (4, 1, 3, 0, 0)
    assert handed == [[str(p.pk) for p in rest]]  # once, in id order
    assert [state(p) for p in rest] == before and jpm_status_calls(sandbox) == 1  # not asked, unchanged
    assert Payment.objects.get(pk=first.pk).payment_status == "COMPLETED"
    # the new job asks about them
    assert check_ach_process(payment_ids=handed[0], now=later()).completed == 3
    assert jpm_status_calls(sandbox) == 4


def test_nothing_is_handed_on_without_an_answer_from_jpm_or_with_the_breaker_open(make_payment, sandbox, settings):
    settings.CHECK_ACH_JPM_CONCURRENCY = 8
    payments = _subscriptions(make_payment, 5)
    ids = [str(p.pk) for p in payments]
    before = [state(p) for p in payments]
    handed: list[list[str]] = []

    # No time for even one look-up: handing them on could go on for ever.
    stats = check_ach_process(payment_ids=ids, now=later(), time_limit=_jpm_window(-1),
                              continue_with=handed.append)
    assert (stats.skipped, stats.continued) == (5, 0) and handed == [] and jpm_status_calls(sandbox) == 0

    # Three look-ups in flight time out after the window closed: the breaker is open, JPM looks down.
    sandbox.fault("jpm.payment_status", "timeout", count=3)
    stats = check_ach_process(payment_ids=ids, now=later(), time_limit=_jpm_window(0.3),
                              continue_with=handed.append)
    assert (stats.errors, stats.skipped, stats.continued) == (3, 2, 0) and handed == []
    assert [state(p) for p in payments] == before


def test_payments_are_left_for_the_next_run_when_handing_them_on_fails(make_payment, sandbox, settings):
    settings.CHECK_ACH_JPM_CONCURRENCY = 1
    first, *rest = _subscriptions(make_payment, 3)
    before = [state(p) for p in rest]
    sandbox.fault("jpm.payment_status", "slow", count=1, delay=0.8)

    def refuse(ids):
        raise ConnectionError("broker down")

    stats = check_ach_process(payment_ids=[str(p.pk) for p in [first, *rest]], now=later(),
                              time_limit=_jpm_window(0.3), continue_with=refuse)

    assert (stats.completed, stats.skipped, stats.continued) == (1, 2, 0)
    assert [state(p) for p in rest] == before


def test_the_task_publishes_what_it_hands_on_as_a_new_check_ach_job(make_payment, sandbox, settings,
                                                                     check_ach_queue):
    settings.CHECK_ACH_JPM_CONCURRENCY = 1
    # the task's 49 s soft limit leaves 0.3 s to start look-ups
    settings.JPM_CONNECT_TIMEOUT = 3.05
    settings.JPM_READ_TIMEOUT = check_ach_process_task.soft_time_limit - 3.05 - DB_WORK_MARGIN_SECONDS - 0.3
    first, *rest = _subscriptions(make_payment, 3, submit_date=timezone.now() - WEEK)  # due by the clock
    sandbox.fault("jpm.payment_status", "slow", count=1, delay=0.8)

    stats = check_ach_process_task([str(p.pk) for p in [first, *rest]])

    assert (stats["completed"], stats["continued"]) == (1, 2)
    ((headers, payload),) = check_ach_queue()
    assert headers["task"] == WORKER_TASK and payload[0] == [[str(p.pk) for p in rest]]


def test_run_job_asks_about_the_payments_a_batch_hands_on_right_after_it(make_payment, sandbox, settings):
    settings.CHECK_ACH_JPM_CONCURRENCY = 1
    settings.CHECK_ACH_TIME_BUDGET_SECONDS = 0.5  # run_job has no task limit: its budget closes the window
    payments = _subscriptions(make_payment, 4)
    sandbox.fault("jpm.payment_status", "slow", count=1, delay=0.8)

    result = check_ach_run(now=later())

    assert (result["jobs"], result["examined"], result["completed"], result["continued"]) == (1, 7, 4, 3)
    assert {Payment.objects.get(pk=p.pk).payment_status for p in payments} == {"COMPLETED"}
    assert jpm_status_calls(sandbox) == 4


# --- selection in the worker, idempotency ------------------------------------------------------------------------


def test_the_worker_ignores_ids_that_are_no_longer_in_flight_or_never_were(make_payment, sandbox):
    done = make_payment()
    credit = make_payment(payment_type="credit")
    check_ach_process(payment_ids=[str(done.pk)], now=later())
    before, counts = [state(done), state(credit)], totals()

    stats = check_ach_process(payment_ids=[str(done.pk), str(credit.pk), str(uuid.uuid4())], now=later())

    assert (stats.examined, stats.unchanged, stats.completed) == (3, 3, 0)
    assert [state(done), state(credit)] == before and totals() == counts


def test_running_the_same_day_again_changes_nothing(make_payment, sandbox):
    payments = [make_payment(), make_payment(purpose="subscription"),
                make_payment(purpose="subscription", account_number=RETURNED_R02)]
    sandbox.advance(days=3)
    now = later()
    first = check_ach_run(now=now)
    assert (first["selected"], first["completed"], first["failed"]) == (3, 2, 1)
    after = [state(p) for p in payments]
    counts, calls = totals(), jpm_status_calls(sandbox)

    second = check_ach_run(now=now)

    assert (second["selected"], second["jobs"], second["examined"]) == (0, 0, 0)
    assert [state(p) for p in payments] == after and totals() == counts
    assert jpm_status_calls(sandbox) == calls


# --- jobs, tasks, schedule ----------------------------------------------------------------------------------------


def test_the_tasks_are_declared_on_their_queues():
    worker, scheduler = app.tasks[WORKER_TASK], app.tasks[SCHEDULER_TASK]
    assert (check_ach_process_task.name, check_ach_schedule_task.name) == (WORKER_TASK, SCHEDULER_TASK)
    assert (worker.job_queue, worker.attempts, worker.max_retries, worker.time_limit) == ("check-ach", 1, 0, 54)
    assert app.amqp.router.route({}, WORKER_TASK, task_type=worker)["queue"].name == "check-ach"
    assert scheduler.job_queue == "default" and scheduler.time_limit == QUEUES["default"].time_limit == 300


def test_the_beat_schedule_is_daily_at_17_utc_in_every_environment():
    (spec,) = [s for s in all_schedules() if s.name == "check-ach"]
    assert (spec.task, spec.crontab, spec.prod_only, spec.kwargs) == (SCHEDULER_TASK, "0 17 * * *", False, {})


def test_a_job_that_raises_is_dead_lettered_after_exactly_one_attempt(make_payment):
    payment = make_payment(submit_date=timezone.now() - WEEK)
    before, counts = state(payment), totals()

    result = check_ach_process_task.apply(args=[[str(payment.pk), "not-a-uuid"]])

    assert result.failed()
    letter = DeadLetter.objects.get()
    assert (letter.task_name, letter.queue, letter.attempts) == (WORKER_TASK, "check-ach", 1)
    assert letter.args == [[str(payment.pk), "not-a-uuid"]]
    assert result.info.__class__ is ValueError and letter.raw_answer is None
    assert state(payment) == before and totals()[:2] == counts[:2]


def test_run_job_check_ach_as_of_a_date(make_payment, sandbox, capsys):
    # Submitted Tue 2026-11-10; Wed 11-11 is Veterans Day: business days Thu 12, Fri 13, Mon 16.
    payment = make_payment(submit_date=chicago(2026, 11, 10, 14, 0))
    before = state(payment)

    call_command("run_job", "check_ach", "--as-of", "2026-11-14")  # as at the end of Sat 14: not due
    out = json.loads(capsys.readouterr().out)
    assert out["result"]["not_due"] == 1 and out["result"]["completed"] == 0
    assert state(payment) == before

    call_command("run_job", "check_ach", "--as-of", "2026-11-15")  # the end of Sun 15 = Mon 16 begins: due
    out = json.loads(capsys.readouterr().out)
    assert out == {"job": "check_ach", "as_of": "2026-11-15",
                   "result": {"selected": 1, "jobs": 1, "examined": 1, "not_due": 0, "completed": 1, "failed": 0,
                              "unchanged": 0, "errors": 0, "skipped": 0, "dead_lettered": 0,
                              "continued": 0}}
    payment.refresh_from_db()
    assert payment.payment_status == "COMPLETED"
    assert OutboxEvent.objects.filter(aggregate_id=str(payment.pk)).count() == 1
