"""check-ach's concurrent JPM look-ups (``syncing.check_ach._jpm_lookups``), through the sandbox over HTTP: the
look-ups of a job overlap, yet the breaker, the dead-lettering of a protocol error and the outcomes are those of
one look-up after the other (``CHECK_ACH_JPM_CONCURRENCY`` = 1). The sandbox's request log is the witness of what
was asked; its faults hit the next requests in the order they arrive.
"""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import DeadLetter, OutboxEvent
from integrations.jpm import clear_token_cache
from payments.models import Payment, PaymentStatusChange
from sandbox.keys import ensure_dev_keys
from syncing.check_ach import MAX_CONSECUTIVE_ERRORS, WORKER_TASK, check_ach_process
from tests.integrations.keepalive_proxy import ClosingProxy, keepalive_sandbox
from tests.syncing import conftest_check_ach as fixtures
from tests.syncing.conftest_check_ach import REJECTED_R03, RETURNED_R02, state

pytestmark = pytest.mark.django_db

bank_account, debit_card, make_payment = fixtures.bank_account, fixtures.debit_card, fixtures.make_payment

WEEK = timedelta(days=7)


def later():
    return timezone.now() + WEEK


def status_requests(sandbox) -> list[dict]:
    return sandbox.requests("jpm", "jpm.payment_status")


def asked(sandbox) -> list[str]:
    """The endToEndIds JPM was asked about, in arrival order."""
    return [entry["path"].rstrip("/").rsplit("/", 1)[-1] for entry in status_requests(sandbox)]


def test_the_look_ups_of_a_job_overlap(make_payment, sandbox, settings):
    settings.CHECK_ACH_JPM_CONCURRENCY = 8
    jpm = [make_payment(purpose="subscription") for _ in range(4)]
    sandbox.fault("jpm.payment_status", "slow", count=4, delay=0.8)  # each answer 0.8 s late (under the timeout)

    started = time.monotonic()
    stats = check_ach_process(payment_ids=[str(p.pk) for p in jpm], now=later())
    elapsed = time.monotonic() - started

    assert stats.completed == 4 and len(status_requests(sandbox)) == 4
    # One after the other: >= 3.2 s. Overlapping (3 in flight while none has answered yet): ~1.6 s.
    assert elapsed < 2.8, f"4 look-ups of 0.8 s each took {elapsed:.1f} s: they did not overlap"


def test_the_breaker_trips_after_three_consecutive_500s_and_no_more_look_ups_are_started(
        make_payment, sandbox, settings):
    settings.CHECK_ACH_JPM_CONCURRENCY = 8  # more than the JPM payments: only the breaker rule holds them back
    jpm = [make_payment(purpose="subscription") for _ in range(8)]
    usio = make_payment()
    before = [state(p) for p in jpm]
    sandbox.fault("jpm.payment_status", "500", count=50)

    stats = check_ach_process(payment_ids=[str(p.pk) for p in [*jpm, usio]], now=later())

    assert (stats.examined, stats.errors, stats.skipped, stats.completed) == (9, 3, 5, 1)
    assert len(status_requests(sandbox)) == MAX_CONSECUTIVE_ERRORS  # nothing started after the third 500
    first_three = {p.reference for p in sorted(jpm, key=lambda p: p.pk)[:3]}
    assert set(asked(sandbox)) == first_three  # the first three in id order, as one after the other would
    assert [state(p) for p in jpm] == before and DeadLetter.objects.count() == 0
    assert Payment.objects.get(pk=usio.pk).payment_status == "COMPLETED"



class _Interrupted(Exception):
    """What Celery's soft time limit does to a job: an exception raised in its thread by a signal handler."""


def test_a_job_interrupted_with_a_look_up_in_flight_leaves_it_behind(make_payment, sandbox, settings):
    settings.CHECK_ACH_JPM_CONCURRENCY = 1  # one look-up thread: the next job could only ask after the stale one
    settings.JPM_READ_TIMEOUT = 20.0  # the stale look-up waits for its answer (the sandbox fixture's is 1.5 s)
    interrupted, follower = make_payment(purpose="subscription"), make_payment(purpose="subscription")
    before = state(interrupted)
    sandbox.fault("jpm.payment_status", "slow", count=1, delay=8)  # the interrupted job's look-up: 8 s late

    def interrupt(signum, frame):
        raise _Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(_Interrupted):
            check_ach_process(payment_ids=[str(interrupted.pk)], now=later())
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert state(interrupted) == before

    started = time.monotonic()
    stats = check_ach_process(payment_ids=[str(follower.pk)], now=later())
    elapsed = time.monotonic() - started

    # Asked and answered; the stale look-up still waits for its answer (the sandbox logs a request as it answers).
    assert stats.completed == 1 and asked(sandbox) == [follower.reference]
    # Held behind the stale look-up, the job would take the rest of its 8 s; on threads of its own, a round trip.
    assert elapsed < 5, f"the next job waited {elapsed:.1f} s for the interrupted job's look-up"
    assert state(interrupted) == before

def test_errors_that_are_not_consecutive_do_not_trip_the_breaker(make_payment, sandbox, settings):
    settings.CHECK_ACH_JPM_CONCURRENCY = 8
    jpm = [make_payment(purpose="subscription") for _ in range(8)]
    sandbox.fault("jpm.payment_status", "500", count=MAX_CONSECUTIVE_ERRORS - 1)

    stats = check_ach_process(payment_ids=[str(p.pk) for p in jpm], now=later())

    assert (stats.errors, stats.skipped, stats.completed) == (2, 0, 6)
    assert sorted(asked(sandbox)) == sorted(p.reference for p in jpm)  # every one asked, once


def test_a_malformed_answer_dead_letters_only_that_payment(make_payment, sandbox, settings):
    settings.CHECK_ACH_JPM_CONCURRENCY = 8
    jpm = [make_payment(purpose="subscription") for _ in range(6)]
    usio = make_payment()
    before = {p.reference: state(p) for p in jpm}
    sandbox.fault("jpm.payment_status", "malformed", count=1)

    stats = check_ach_process(payment_ids=[str(p.pk) for p in [*jpm, usio]], now=later())

    assert (stats.examined, stats.dead_lettered, stats.completed, stats.errors, stats.skipped) == (7, 1, 6, 0, 0)
    [hit] = [entry for entry in status_requests(sandbox) if entry["fault"] == "malformed"]
    victim = next(p for p in jpm if hit["path"].endswith(p.reference))
    assert state(victim) == before[victim.reference]  # never half-updated
    letter = DeadLetter.objects.get()
    assert (letter.task_name, letter.args, letter.attempts) == (WORKER_TASK, [[str(victim.pk)]], 1)
    others = [p for p in [*jpm, usio] if p.pk != victim.pk]
    assert {Payment.objects.get(pk=p.pk).payment_status for p in others} == {"COMPLETED"}
    assert len(status_requests(sandbox)) == len(jpm)  # a protocol error does not count towards the breaker


def _outcomes(payments) -> list[tuple]:
    """Everything check-ach wrote about each payment, with nothing that differs between two equal payments."""
    rows = []
    for payment in payments:
        row = Payment.objects.filter(pk=payment.pk).values(
            "payment_status", "return_code", "return_info", "event_type", "version").get()
        row["completion_date"] = Payment.objects.get(pk=payment.pk).completion_date is not None
        row["return_date"] = Payment.objects.get(pk=payment.pk).return_date is not None
        changes = [(c.from_status, c.to_status, c.source, c.actor, c.return_code, c.event_type,
                    c.raw_payload_ref.replace(payment.reference, "REF"))
                   for c in PaymentStatusChange.objects.filter(payment=payment, source="check_ach").order_by("id")]
        events = [(e.type, sorted(e.data), e.data["payment_status"], e.data.get("return_code"))
                  for e in OutboxEvent.objects.filter(aggregate_id=str(payment.pk)).order_by("sequence")]
        rows.append((row, changes, events))
    return rows


def test_the_outcomes_are_those_of_a_sequential_run(make_payment, sandbox, settings):
    old, today = timezone.now() - WEEK, timezone.now()

    def batch():
        return [
            make_payment(purpose="subscription", submit_date=old),
            make_payment(purpose="subscription", account_number=RETURNED_R02, submit_date=old),
            make_payment(submit_date=old),  # Usio
            make_payment(purpose="subscription", account_number=REJECTED_R03, submit_date=old),
            make_payment(purpose="subscription", submit_date=today),  # not due: JPM is not asked
            make_payment(purpose="subscription", submit_date=old),
            make_payment(purpose="loan", submit_date=old),  # Usio
            make_payment(purpose="subscription", submit_date=old),
        ]

    sequential_batch, concurrent_batch = batch(), batch()
    sandbox.advance(days=3)  # the returned ones are RETURNED at JPM by now
    now = timezone.now() + timedelta(days=2)  # the old ones are due, today's are not

    settings.CHECK_ACH_JPM_CONCURRENCY = 1
    sequential = check_ach_process(payment_ids=[str(p.pk) for p in sequential_batch], now=now)
    calls = len(status_requests(sandbox))
    settings.CHECK_ACH_JPM_CONCURRENCY = 8
    concurrent = check_ach_process(payment_ids=[str(p.pk) for p in concurrent_batch], now=now)

    assert concurrent == sequential
    assert (sequential.completed, sequential.failed, sequential.not_due) == (5, 2, 1)
    assert len(status_requests(sandbox)) - calls == calls == 5  # the same look-ups
    assert _outcomes(sequential_batch) == _outcomes(concurrent_batch)  # payment by payment, position by position


@pytest.fixture(scope="module")
def keepalive_jpm(tmp_path_factory):
    """The sandbox served with keep-alive (as a processor's front end), its own ledger and keys: (URL, private
    key path). The session's sandbox closes every connection after its answer, so it cannot show reuse."""
    base = tmp_path_factory.mktemp("check-ach-keepalive")
    private_key, _ = ensure_dev_keys(base / "keys")  # the ones the sandbox started below verifies assertions with
    with keepalive_sandbox(base, keep_alive=60) as url:
        yield url, private_key


def test_a_jobs_look_ups_reuse_the_connections_of_the_job_before(make_payment, settings, keepalive_jpm):
    url, private_key = keepalive_jpm
    forwarder = ClosingProxy(url)  # counts the TCP connections made to JPM
    settings.JPM_BASE_URL, settings.JPM_TOKEN_URL = forwarder.url("/jpm"), forwarder.url("/jpm/oauth2/token")
    settings.JPM_PRIVATE_KEY_PATH = str(private_key)
    settings.PROCESSOR_KEEPALIVE_SECONDS = 30
    settings.CHECK_ACH_JPM_CONCURRENCY = 1
    clear_token_cache()
    try:
        first, second = ([make_payment(purpose="subscription") for _ in range(2)] for _ in range(2))
        assert check_ach_process(payment_ids=[str(p.pk) for p in first], now=later()).completed == 2
        opened = forwarder.accepted

        stats = check_ach_process(payment_ids=[str(p.pk) for p in second], now=later())

        assert stats.completed == 2
        assert forwarder.accepted == opened  # the second job asked over the first job's connection
    finally:
        forwarder.stop()
        clear_token_cache()
