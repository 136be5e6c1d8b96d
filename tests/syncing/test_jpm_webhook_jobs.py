# ruff: noqa: F811  (pytest fixtures imported from conftest_jpm_webhook)
"""The JPM webhook jobs: the processing task on ``jpm-webhooks`` (retries, dead letter, ``failed``), the sweeper,
and an end-to-end run where the sandbox POSTs its callbacks to a live server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from config.celery import app
from core.models import DeadLetter
from core.schedules import all_schedules
from payments.models import PaymentStatusChange
from syncing.jpm_webhook import jpm_webhook_sweep
from syncing.jpm_webhook_jobs import PROCESS_TASK, SWEEP_TASK, process_jpm_webhook_task
from syncing.models import JpmWebhookMessage
from tests.syncing.conftest_jpm_webhook import (  # noqa: F401  (fixtures)
    callback,
    changes,
    deliver,
    event_types,
    fresh,
    jpm,
    jpm_customer,
    message,
    queued_ids,
    run_queued,
    sandbox_callbacks,
    state,
    subscribe,
    webhook_queue,
)

pytestmark = pytest.mark.django_db


def test_the_tasks_are_declared_on_their_queues_and_the_sweeper_is_scheduled():
    task = app.tasks[PROCESS_TASK]
    assert (task.job_queue, task.attempts, task.time_limit, task.acks_late) == ("jpm-webhooks", 10, 540, True)
    assert app.amqp.router.route({}, task.name, task_type=task)["queue"].name == "jpm-webhooks"
    assert app.tasks[SWEEP_TASK].job_queue == "default"
    (spec,) = [s for s in all_schedules() if s.task == SWEEP_TASK]
    assert (spec.crontab, spec.prod_only) == ("*/5 * * * *", False)


def _stored(body: bytes, **fields) -> JpmWebhookMessage:
    import hashlib

    return JpmWebhookMessage.objects.create(content_hash=hashlib.sha256(body).hexdigest(), body=body.decode(),
                                            callbacks=1, authenticated_by="signature", **fields)


def test_a_stored_body_that_no_longer_parses_is_dead_lettered_at_once_and_failed():
    row = _stored(b'{"callbacks": [{"endToEndId": "x", "paymentStatus": "SETTLED"}]}')

    result = process_jpm_webhook_task.apply(args=[row.pk])

    assert result.failed()
    letter = DeadLetter.objects.get()
    assert (letter.task_name, letter.queue, letter.args, letter.attempts) == (PROCESS_TASK, "jpm-webhooks",
                                                                             [row.pk], 1)
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("failed", 1)
    assert "cannot be parsed" in row.last_error


@pytest.fixture
def failing_history_table():
    """A real database failure: every insert into the status history raises (a trigger), until the test ends."""
    table = PaymentStatusChange._meta.db_table

    def arm():
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("CREATE FUNCTION h1_fail() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk full'; "
                               "END $$ LANGUAGE plpgsql")
                cursor.execute(f"CREATE TRIGGER h1_fail BEFORE INSERT ON {table} "
                               "FOR EACH ROW EXECUTE FUNCTION h1_fail()")
            else:
                cursor.execute(f"CREATE TRIGGER h1_fail BEFORE INSERT ON {table} "
                               "BEGIN SELECT RAISE(ABORT, 'disk full'); END")

    yield arm
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"DROP TRIGGER IF EXISTS h1_fail ON {table}")
            cursor.execute("DROP FUNCTION IF EXISTS h1_fail()")
        else:
            cursor.execute("DROP TRIGGER IF EXISTS h1_fail")


def test_a_job_that_keeps_failing_is_retried_10_times_then_dead_lettered_and_the_message_failed(
        sandbox, subscribe, jpm, webhook_queue, failing_history_table):
    payment = subscribe("acc-rejected")
    before = state(payment)
    deliver(jpm, message(*sandbox_callbacks(sandbox)))
    (message_id,) = queued_ids()
    failing_history_table()

    result = process_jpm_webhook_task.apply(args=[message_id])  # Celery's tracer: every retry runs eagerly

    assert result.failed()
    letter = DeadLetter.objects.get()
    assert (letter.task_name, letter.args, letter.attempts) == (PROCESS_TASK, [message_id], 10)
    row = JpmWebhookMessage.objects.get(pk=message_id)
    assert (row.status, row.attempts) == ("failed", 10)
    assert "disk full" in row.last_error
    assert state(payment) == before  # nothing half-applied


def test_a_failed_message_replayed_later_is_processed(sandbox, subscribe, jpm, webhook_queue):
    payment = subscribe("acc-rejected")
    deliver(jpm, message(*sandbox_callbacks(sandbox)))
    (message_id,) = queued_ids()
    JpmWebhookMessage.objects.filter(pk=message_id).update(status="failed", attempts=10)  # as after the above

    from core.dead_letters import dead_letter_replay

    letter = DeadLetter.objects.create(task_name=PROCESS_TASK, task_id="t", queue="jpm-webhooks", args=[message_id],
                                       kwargs={}, last_error="x", attempts=10)
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        dead_letter_replay(dead_letter=letter, actor="mx")
    run_queued()

    assert JpmWebhookMessage.objects.get(pk=message_id).status == "processed"
    assert fresh(payment).payment_status == "FAILED"


def test_the_sweeper_queues_old_received_messages_whose_job_never_started(webhook_queue, settings):
    settings.JPM_WEBHOOK_SWEEP_MINUTES = 10
    old = _stored(message(callback("1" * 32, "PENDING")))
    fresh_row = _stored(message(callback("2" * 32, "PENDING")))
    processed = _stored(message(callback("3" * 32, "PENDING")), status="processed")
    started = _stored(message(callback("4" * 32, "PENDING")), attempts=2)  # its job is retrying
    failed = _stored(message(callback("5" * 32, "PENDING")), status="failed", attempts=10)
    JpmWebhookMessage.objects.filter(pk__in=[old.pk, processed.pk, started.pk, failed.pk]).update(
        received_at=timezone.now() - timedelta(minutes=11))
    assert fresh_row.pk

    stats = jpm_webhook_sweep()

    assert (stats.examined, stats.enqueued) == (1, 1)
    assert queued_ids() == [old.pk]
    assert jpm_webhook_sweep(now=timezone.now() + timedelta(minutes=11)).enqueued == 2  # old, and fresh by then


def test_the_sweeper_queues_a_started_message_whose_job_went_silent(webhook_queue):
    from syncing.jpm_webhook import STARTED_STALE_SECONDS

    now = timezone.now()
    silent = _stored(message(callback("6" * 32, "PENDING")), attempts=3,
                     last_attempt_at=now - timedelta(seconds=STARTED_STALE_SECONDS + 1))
    retrying = _stored(message(callback("7" * 32, "PENDING")), attempts=3,
                       last_attempt_at=now - timedelta(seconds=STARTED_STALE_SECONDS - 60))
    JpmWebhookMessage.objects.filter(pk__in=[silent.pk, retrying.pk]).update(received_at=now - timedelta(hours=1))

    stats = jpm_webhook_sweep(now=now)

    assert (stats.examined, stats.enqueued) == (1, 1)
    assert queued_ids() == [silent.pk]
    assert STARTED_STALE_SECONDS == 540 + 300 + 60  # one attempt's limit + the longest back-off + slack


@pytest.mark.django_db(transaction=True)
def test_end_to_end_the_sandbox_posts_duplicated_shuffled_callbacks_to_the_live_server(
        sandbox, subscribe, live_server, webhook_queue):
    sandbox.configure(jpm_webhook_url=live_server.url + "/webhooks/jpm")
    ok, returned, rejected = subscribe("acc-ok"), subscribe("acc-r02"), subscribe("acc-rejected")
    sandbox.advance(days=3)

    answer = sandbox.control("POST", "jpm/deliver-callbacks",
                             {"batch_size": 4, "duplicate": 3, "shuffle": True, "seed": 11})

    assert answer["pending"] == 0 and answer["delivered"] == 10
    assert {s for m in answer["messages"] for s in m["statuses"]} == {200}
    assert JpmWebhookMessage.objects.count() == len(answer["messages"])
    assert all(row.deliveries == 4 for row in JpmWebhookMessage.objects.all())
    run_queued()

    assert set(JpmWebhookMessage.objects.values_list("status", flat=True)) == {"processed"}
    assert fresh(ok).payment_status == "CLEARED"
    assert event_types(ok) == ["SUBSCRIPTION_CLEARED", "SUBSCRIPTION_SENT"]
    assert (fresh(returned).payment_status, fresh(returned).return_code) == ("FAILED", "AC04")
    assert event_types(returned).count("SUBSCRIPTION_RETURNED") == 1
    assert (fresh(rejected).payment_status, fresh(rejected).return_code) == ("FAILED", "AC01")
    assert changes(rejected)[-1] == ("ACHSENT", "FAILED", "webhook")
