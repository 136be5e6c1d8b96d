"""check-ach on a real Celery worker (its own process, the configured broker, the test database): the scheduler's
messages run as jobs, and a job that raises is dead-lettered after exactly one attempt (queue ``check-ach``)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import DeadLetter
from payments.models import Payment
from syncing.check_ach import WORKER_TASK
from syncing.check_ach_jobs import check_ach_fan_out, check_ach_process_task
from tests.integration import conftest as integration
from tests.integration import tasks
from tests.integration.stack import JOB_TIMEOUT, publish, wait_for
from tests.syncing import conftest_check_ach as fixtures
from tests.syncing.conftest_check_ach import events, state

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Fixtures (bound by assignment so that pytest finds them in this module).
bank_account, make_payment = fixtures.bank_account, fixtures.make_payment
configured_broker, start_worker = integration.configured_broker, integration.start_worker


def _drain(broker_url: str, tmp_path, label: str) -> None:
    """A `touch` through check-ach, waited for: the one-child worker runs the queue in order, so anything that
    was queued before it (e.g. a retry that should not exist) has run by then."""
    marker = tmp_path / f"drained-{label}"
    publish(broker_url, tasks.touch, [str(marker)], queue="check-ach")
    wait_for(marker.exists, timeout=JOB_TIMEOUT, what="the drain marker")


def test_a_failing_check_ach_job_is_dead_lettered_after_one_attempt(start_worker, configured_broker,
                                                                     make_payment, tmp_path):
    payment = make_payment(submit_date=timezone.now() - timedelta(days=7))
    before = state(payment)
    start_worker(configured_broker, ["check-ach"])

    publish(configured_broker, check_ach_process_task, [[str(payment.pk), "not-a-uuid"]])

    letter = wait_for(lambda: DeadLetter.objects.filter(task_name=WORKER_TASK).first(), timeout=JOB_TIMEOUT,
                      what="the dead letter")
    _drain(configured_broker, tmp_path, "after-dead-letter")
    assert DeadLetter.objects.count() == 1  # no second attempt
    assert (letter.queue, letter.attempts) == ("check-ach", 1)
    assert letter.args == [[str(payment.pk), "not-a-uuid"]] and letter.task_id
    assert "ValueError" in letter.last_error
    assert state(payment) == before


def test_the_scheduler_fan_out_runs_on_a_worker(start_worker, configured_broker, make_payment,
                                               tmp_path, settings):
    settings.CHECK_ACH_JOB_SIZE = 2
    old = timezone.now() - timedelta(days=7)
    payments = [make_payment(submit_date=old) for _ in range(3)]  # Usio: no processor call in the worker
    start_worker(configured_broker, ["check-ach"])

    assert check_ach_fan_out().as_dict() == {"selected": 3, "jobs": 2}

    wait_for(lambda: not Payment.objects.filter(pk__in=[p.pk for p in payments], payment_status="ACHSENT").exists(),
             timeout=JOB_TIMEOUT, what="the payments completed")
    _drain(configured_broker, tmp_path, "after-jobs")
    for payment in payments:
        assert Payment.objects.get(pk=payment.pk).payment_status == "COMPLETED"
        assert events(payment) == ["FLOAT_DEBIT_COMPLETED"]
    assert DeadLetter.objects.count() == 0
