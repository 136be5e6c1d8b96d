"""Chaos (issue 9): a Celery worker SIGKILLed in the middle of check-ach and of the Usio sync.

Everything is real: PostgreSQL, a private Redis (the broker; visibility timeout 4 s), ``celery worker`` processes and
the sandbox over HTTP. The scheduler job is published as beat does; the worker is SIGKILLed (main process and pool
child) at a point the test observes from outside, at one of two places per pipeline:

- ``processor``: the sandbox holds one processor request open (fault ``timeout`` with a 30 s hang; the first worker's
  read timeout is longer still) and the test waits until the sandbox's request log shows it: the job is waiting for
  the processor, with the earlier payments / windows done and the later ones not started;
- ``transaction``: a PostgreSQL trigger makes the status-change INSERT of one chosen payment wait for an advisory lock
  the test holds, and the test waits until ``pg_stat_activity`` shows the worker's backend waiting: the job is inside
  the transaction that changes that payment (row updated, not committed; alone or with others of its batch). The
  worker's sessions run with ``client_connection_check_interval``, so PostgreSQL notices the dead client and rolls
  that transaction back.

What is SIGKILLed: the whole worker (main process and pool child; a new worker then gets the killed job again from
Redis after the visibility timeout: ``acks_late``, it was never acknowledged), or only the pool child running the job
(the worker's main process sees it die and puts the message back at once: ``reject_on_worker_lost``; its new child
runs it). Everything is then counted against what one clean run writes: status changes, outbox events, processor
requests per payment / account, Transaction Service notifications, blocklist entries, staging rows, dead letters.
"""

from __future__ import annotations

import os
import re
import signal
from collections import Counter
from datetime import timedelta
from uuid import UUID

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from blocklist.models import BlocklistRecord
from core.models import DeadLetter, JobRun, OutboxEvent
from core.outbox_relay import outbox_relay_task
from payments.models import NotificationStatus, Payment, PaymentStatusChange, TransactionServiceNotification
from payments.transaction_service_jobs import notify_transaction_service_task
from syncing.check_ach import WORKER_TASK, check_ach_schedule
from syncing.check_ach_jobs import check_ach_schedule_task
from syncing.models import UsioTransaction
from syncing.usio_sync_jobs import WINDOW_TASK, usio_sync_schedule_task
from tests.broker import drain as drain_configured_broker
from tests.chaos.stack import database_url
from tests.integration import tasks
from tests.integration.stack import broker_connection, publish, wait_for
from tests.payments.conftest import payment_body, post_payment
from tests.syncing import conftest_check_ach as check_ach_fixtures
from tests.syncing.conftest_check_ach import REJECTED_R03, RETURNED_R02

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

make_payment = check_ach_fixtures.make_payment  # fixture (bound by assignment so that pytest finds it)

WAIT = 90.0  # generous: 2 shared cores
HANG = 30.0  # how long the sandbox holds the request the kill lands on
OLD = timedelta(days=7)  # always past the third business day
JOB_SIZE = 3  # check-ach ids per job: the run spans several jobs
HISTORY = PaymentStatusChange._meta.db_table
HOLD_KEY = 0x6B696C6C  # the advisory lock the trigger waits for
# The dead worker's backend must notice its client is gone while it waits (and roll back).
CHECKED_DATABASE_URL = "?options=-c%20client_connection_check_interval%3D200"
# (where the job is held, what is SIGKILLed): the whole worker (a new one is started), or only its pool child (the
# worker's main process sees the child die and puts the message back at once: ``reject_on_worker_lost``).
CHECK_ACH_KILLS = [("processor", "worker"), ("transaction", "worker"), ("processor", "pool-child")]
USIO_KILLS = [("processor", "worker"), ("transaction", "pool-child")]


def sigkill(worker, what: str):
    """SIGKILL ``what`` of ``worker``; return the worker that carries on (a new one, or the same)."""
    if what == "worker":
        worker.kill()
        return None
    (child,) = worker.pool_children()
    os.kill(child, signal.SIGKILL)
    wait_for(lambda: child not in worker.pool_children() and "WorkerLostError" in worker.log(), timeout=WAIT,
             what="the worker to see its pool child die")
    return worker


# --- holding a job at a known point ---------------------------------------------------------------------------------


class SandboxHold:
    """Let ``after`` calls of a processor operation through, then hold the next one ``HANG`` seconds: the sandbox
    processes and logs it at once, the answer waits (the worker's read timeout must be longer)."""

    def __init__(self, sandbox, service: str, operation: str, *, after: int):
        self.sandbox, self.service, self.operation = sandbox, service, operation
        sandbox.configure(hang_seconds=HANG)
        if after:
            sandbox.fault(operation, "slow", count=after, delay=0)
        sandbox.fault(operation, "timeout", count=1)

    def reached(self) -> dict | None:
        return next((r for r in self.sandbox.requests(self.service, self.operation) if r["fault"] == "timeout"), None)

    def release(self) -> None:
        self.sandbox.configure(hang_seconds=3)


class PgHold:
    """Hold the status-change INSERT of ``payment_id`` (``BEFORE INSERT`` trigger waiting for an advisory lock the
    test holds): the writer's transaction is open, its payment row updated and locked, nothing committed."""

    def __init__(self, payment_id):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [HOLD_KEY])
            cursor.execute(f"""
                CREATE OR REPLACE FUNCTION chaos_killer1_hold() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN PERFORM pg_advisory_xact_lock_shared({HOLD_KEY}); RETURN NEW; END $$""")
            cursor.execute(f"""
                CREATE TRIGGER chaos_killer1_hold BEFORE INSERT ON {HISTORY} FOR EACH ROW
                WHEN (NEW.payment_id = '{UUID(str(payment_id))}'::uuid) EXECUTE FUNCTION chaos_killer1_hold()""")

    @staticmethod
    def waiting() -> list[int]:
        """Backends (not ours) of the test database waiting for the advisory lock."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND "
                           "wait_event_type = 'Lock' AND wait_event = 'advisory' AND pid <> pg_backend_pid()")
            return [pid for (pid,) in cursor.fetchall()]

    def reached(self) -> list[int]:
        self.pids = self.waiting()
        return self.pids

    def release(self) -> None:
        """After the kill: PostgreSQL ends the dead process's backend by itself (its transaction rolled back); then
        the lock goes (a redelivered job already waiting for it passes), then the trigger."""
        wait_for(lambda: not set(self.pids) & set(self.waiting()), timeout=WAIT,
                 what="PostgreSQL to end the dead process's session")
        self.drop()

    @staticmethod
    def drop() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock_all()")
            cursor.execute(f"DROP TRIGGER IF EXISTS chaos_killer1_hold ON {HISTORY}")
            cursor.execute("DROP FUNCTION IF EXISTS chaos_killer1_hold()")


@pytest.fixture(autouse=True)
def _cleanup(transactional_db):
    """No hold survives the test; the test process's own after-commit kicks (they go to its configured broker, where
    no worker listens) are dropped."""
    drain_configured_broker("default")
    yield
    PgHold.drop()
    drain_configured_broker("default")


# --- helpers ------------------------------------------------------------------------------------------------------


def beat_publish(broker_url: str, task, *, schedule: str, kwargs: dict | None = None) -> str:
    """Send ``task`` as django-celery-beat does: to its queue, with the ``periodic_task_name`` header."""
    with broker_connection(broker_url) as conn:
        return task.apply_async(kwargs=kwargs or {}, connection=conn,
                                headers={"periodic_task_name": schedule}).id


def task_ids(log: str, task_name: str, what: str) -> set[str]:
    """Ids of ``task_name`` that a worker log says were ``received`` / ``succeeded``."""
    return set(re.findall(rf"Task {re.escape(task_name)}\[([0-9a-f-]{{36}})\] {what}", log))


def drain(broker_url: str, queues: list[str], tmp_path, label: str) -> None:
    """A ``touch`` through each queue, waited for: the one-child worker takes each queue in order, so everything
    queued before (a redelivered copy, a relay kick) has been taken by then."""
    for queue in queues:
        marker = tmp_path / f"drained-{label}-{queue}"
        publish(broker_url, tasks.touch, [str(marker)], queue=queue)
        wait_for(marker.exists, timeout=WAIT, what=f"the drain marker on {queue}")


def settle_outbox(broker_url: str, *, notifications: int) -> None:
    """Run the outbox relay and the Transaction Service sender as beat does every minute; wait until every event is
    published and ``notifications`` notifications are sent."""
    beat_publish(broker_url, outbox_relay_task, schedule="outbox relay")
    wait_for(lambda: not OutboxEvent.objects.filter(published_at__isnull=True).exists(), timeout=WAIT,
             what="every outbox event published")
    beat_publish(broker_url, notify_transaction_service_task, schedule="transaction service notifier")
    wait_for(lambda: TransactionServiceNotification.objects.filter(status=NotificationStatus.SENT).count()
             >= notifications, timeout=WAIT, what=f"{notifications} Transaction Service notifications sent")


def event_counts(since: int) -> Counter:
    """(payment id, event type) → outbox events after position ``since``."""
    return Counter(OutboxEvent.objects.filter(position__gt=since).values_list("aggregate_id", "type"))


def history(payment_ids, *, source: str) -> Counter:
    """(payment id, from, to) → status-change rows written by ``source``."""
    return Counter((str(pk), old, new) for pk, old, new in PaymentStatusChange.objects.filter(
        payment_id__in=payment_ids, source=source).values_list("payment_id", "from_status", "to_status"))


def ts_posts(sandbox) -> Counter:
    """confirmation id → Transaction Service POSTs the sandbox received (duplicates included)."""
    return Counter(r["body"]["confirmation_id"] for r in sandbox.requests("transactions"))


def max_position() -> int:
    return OutboxEvent.objects.order_by("-position").values_list("position", flat=True).first() or 0


def end_to_end_id(request: dict) -> str:
    """The payment a JPM status lookup asked about (``GET …/tsapi/v3/payment/{endToEndId}``: our reference)."""
    return request["path"].rstrip("/").rsplit("/", 1)[-1]


def jpm_lookups(sandbox) -> Counter:
    return Counter(end_to_end_id(r) for r in sandbox.requests("jpm", "jpm.payment_status"))


def resolved(pks) -> set[str]:
    return {str(pk) for pk in Payment.objects.filter(pk__in=pks).exclude(payment_status="ACHSENT")
            .values_list("pk", flat=True)}


# --- check-ach ----------------------------------------------------------------------------------------------------


def _killed_job_layout(jobs, due_jpm: set[str], jpm_failing: set[str]):
    """(job, failure, held): a job in which a due JPM payment that fails (its change is committed at once) comes
    before another due JPM payment — the one the kill lands on. None if the ids fell otherwise."""
    for job in jobs:
        for i, pk in enumerate(job):
            if pk in jpm_failing:
                held = next((later for later in job[i + 1:] if later in due_jpm), None)
                if held:
                    return job, pk, held
    return None


@pytest.mark.parametrize(("kill_point", "killed"), CHECK_ACH_KILLS)
def test_check_ach_worker_killed_mid_run_resolves_every_payment_exactly_once(
        kill_point, killed, sandbox, redis_server, start_worker, make_payment, tmp_path):
    old = timezone.now() - OLD
    usio_float = [make_payment(submit_date=old) for _ in range(4)]  # → COMPLETED, the Transaction Service told
    usio_loan = [make_payment(purpose="loan", submit_date=old) for _ in range(2)]  # → COMPLETED
    jpm_settled = [make_payment(purpose="subscription", submit_date=old) for _ in range(4)]  # → COMPLETED
    jpm_returned = [make_payment(purpose="subscription", account_number=RETURNED_R02, submit_date=old)
                    for _ in range(2)]  # → FAILED AC04, user blocked
    jpm_rejected = [make_payment(purpose="subscription", account_number=REJECTED_R03, submit_date=old)
                    for _ in range(2)]  # → FAILED AC01
    not_due = [make_payment(), make_payment(), make_payment(purpose="subscription"),
               make_payment(purpose="subscription")]  # submitted now: the gate keeps them

    # The jobs are known in advance: the scheduler (read here, with the worker's sizes) hands out JPM and Usio
    # payments in jobs of their own, JOB_SIZE each, in id order, and the one-child worker runs them in that order.
    # The kill must land in a job where a payment was already resolved and committed (a redelivered job must not
    # touch it again): add rejected ones until the ids allow it.
    def layout():
        every = [*usio_float, *usio_loan, *jpm_settled, *jpm_returned, *jpm_rejected, *not_due]
        jobs: list[list[str]] = []
        check_ach_schedule(enqueue=jobs.append, size=JOB_SIZE, jpm_size=JOB_SIZE)
        order = [pk for job in jobs for pk in job]  # the order the worker takes the payments in
        assert sorted(order) == sorted(str(p.pk) for p in every)
        jpm = {str(p.pk) for p in (*jpm_settled, *jpm_returned, *jpm_rejected)}
        return every, order, jobs, _killed_job_layout(jobs, jpm, {str(p.pk) for p in (*jpm_returned, *jpm_rejected)})

    every, order, jobs, found = layout()
    while found is None:
        assert len(jpm_rejected) < 12, "the ids never allowed the layout"
        jpm_rejected.append(make_payment(purpose="subscription", account_number=REJECTED_R03, submit_date=old))
        every, order, jobs, found = layout()
    killed_job, committed_first, held_pk = found
    sandbox.advance(days=3)  # JPM: the settled ones COMPLETED, the returned ones RETURNED
    expected = {  # payment id → (status, event type, return code)
        **{str(p.pk): ("COMPLETED", "FLOAT_DEBIT_COMPLETED", None) for p in usio_float},
        **{str(p.pk): ("COMPLETED", "LOAN_DEBIT_COMPLETED", None) for p in usio_loan},
        **{str(p.pk): ("COMPLETED", "SUBSCRIPTION_COMPLETED", None) for p in jpm_settled},
        **{str(p.pk): ("FAILED", "SUBSCRIPTION_RETURNED", "AC04") for p in jpm_returned},
        **{str(p.pk): ("FAILED", "SUBSCRIPTION_FAILED", "AC01") for p in jpm_rejected},
    }
    jpm = {str(p.pk): p for p in (*jpm_settled, *jpm_returned, *jpm_rejected)}
    assert {p.payment_status for p in every} == {"ACHSENT"}
    assert DeadLetter.objects.count() == 0 and not BlocklistRecord.objects.exists()
    untouched = {p.pk: check_ach_fixtures.state(p) for p in not_due}
    since = max_position()
    assert sandbox.requests("jpm", "jpm.payment_status") == []

    if kill_point == "processor":  # the held payment's JPM lookup, in flight
        lookup_order = [pk for job in jobs for pk in job if pk in jpm]
        hold = SandboxHold(sandbox, "jpm", "jpm.payment_status", after=lookup_order.index(held_pk))
        env = {"JPM_READ_TIMEOUT": str(HANG + 10)}
    else:  # the held payment's status-change transaction, open
        hold = PgHold(held_pk)
        env = {"DATABASE_URL": database_url() + CHECKED_DATABASE_URL}
    # One JPM look-up at a time: the hold names "the N-th look-up to arrive", which only one order of look-ups gives
    # (the concurrent look-ups have their own tests: tests/syncing/test_check_ach_concurrency.py).
    sequential = {"CHECK_ACH_JOB_SIZE": str(JOB_SIZE), "CHECK_ACH_JPM_JOB_SIZE": str(JOB_SIZE),
                  "CHECK_ACH_JPM_CONCURRENCY": "1"}
    first = start_worker(["default", "check-ach"], **sequential, **env)
    beat_publish(redis_server.url, check_ach_schedule_task, schedule="check-ach")

    reached = wait_for(hold.reached, timeout=WAIT, what=f"the job held at the {kill_point}")
    if kill_point == "processor":
        assert end_to_end_id(reached) == jpm[held_pk].reference
    done_at_kill, lookups_at_kill = resolved(expected), jpm_lookups(sandbox)
    # Demonstrably mid-run: every due payment of the earlier jobs resolved, and the failure before the held payment
    # in its job; the held payment and everything after it not.
    first_of_job, last_of_job = order.index(killed_job[0]), order.index(killed_job[-1])
    assert {pk for pk in order[:first_of_job] if pk in expected} | {committed_first} <= done_at_kill
    assert not done_at_kill & {held_pk, *order[last_of_job + 1:]}
    if kill_point == "processor":  # nothing after a lookup in flight has started
        assert not done_at_kill & set(order[order.index(held_pk):])
    assert lookups_at_kill[jpm[held_pk].reference] == 1  # asked (or being asked) once
    log = first.log()
    unfinished = task_ids(log, WORKER_TASK, "received") - task_ids(log, WORKER_TASK, "succeeded")
    assert unfinished  # the held job (and any reserved behind it)
    second = sigkill(first, killed)
    hold.release()
    if second is None:
        # Its change never committed (with a pool child killed, the redelivered job may already be at work).
        assert held_pk not in resolved(expected)
        assert not PaymentStatusChange.objects.filter(payment_id=held_pk, source="check_ach").exists()
        second = start_worker(["default", "check-ach"], **sequential)
    wait_for(lambda: len(resolved(expected)) == len(expected), timeout=WAIT, what="every due payment resolved")
    settle_outbox(redis_server.url, notifications=len(usio_float))
    drain(redis_server.url, ["check-ach", "default"], tmp_path, "end")

    # The killed job was delivered again and completed by the new worker.
    assert unfinished <= task_ids(second.log(), WORKER_TASK, "succeeded")
    # Every due payment reached its final state through exactly one check-ach status change and one event.
    for pk, (status, _, code) in expected.items():
        payment = Payment.objects.get(pk=pk)
        assert (payment.payment_status, payment.return_code) == (status, code), pk
        assert (payment.completion_date is not None) is (status == "COMPLETED"), pk
    assert history(expected, source="check_ach") == Counter(
        {(pk, "ACHSENT", status): 1 for pk, (status, *_) in expected.items()})
    assert PaymentStatusChange.objects.filter(source="check_ach").count() == len(expected)
    assert event_counts(since) == Counter({(pk, event): 1 for pk, (_, event, _) in expected.items()})
    # Not yet due: untouched (row, history, events), never asked at JPM.
    assert {p.pk: check_ach_fixtures.state(p) for p in not_due} == untouched
    # After the kill JPM was asked once about each JPM payment not resolved by then (the held one included) and never
    # again about one already resolved.
    lookups = jpm_lookups(sandbox)
    assert lookups - lookups_at_kill == Counter({p.reference: 1 for pk, p in jpm.items() if pk not in done_at_kill})
    assert set(lookups) == {p.reference for p in jpm.values()} and lookups[jpm[held_pk].reference] == 2
    # The Transaction Service heard once per float payment, and of nothing else.
    assert ts_posts(sandbox) == Counter({p.confirmation_id: 1 for p in usio_float})
    assert {(n["payment_status"], n["previous_status"]) for n in sandbox.received("transactions")} == {
        ("COMPLETED", "ACHSENT")}
    assert TransactionServiceNotification.objects.filter(status=NotificationStatus.SENT).count() == len(usio_float)
    # The returns blocked their users once each; nobody else.
    assert Counter(BlocklistRecord.objects.values_list("user_id", "status")) == Counter(
        {(p.user_id, "BLOCKED"): 1 for p in jpm_returned})
    assert DeadLetter.objects.count() == 0
    run = JobRun.objects.get(name="check-ach")
    assert (run.runs, run.last_outcome, run.last_result) == (
        1, "succeeded", {"selected": len(every), "jobs": len(jobs)})
    print(f"\nFIGURES check-ach/{kill_point}/{killed}: {len(every)} candidates in {len(jobs)} jobs, "
          f"{len(expected)} due ({len(jpm)} JPM); killed with {len(done_at_kill)} resolved, "
          f"{len(unfinished)} job(s) unfinished; "
          f"{len(expected)} check_ach status changes, {sum(event_counts(since).values())} events, "
          f"{sum(lookups.values())} JPM lookups ({sum((lookups - lookups_at_kill).values())} after the kill), "
          f"{sum(ts_posts(sandbox).values())} TS POSTs, {BlocklistRecord.objects.count()} blocks, "
          f"{DeadLetter.objects.count()} dead letters")


# --- Usio sync ----------------------------------------------------------------------------------------------------

RETURNS = "7391462899"  # + NN: settles, then is returned RNN (sandbox conventions)
SETTLES = "739146285017"


def usio_state() -> dict:
    """Everything the Usio sync and its consumers write (staging rows with ``updated_at``, payments, history, events,
    blocklist, Transaction Service notifications)."""
    return {
        "staged": list(UsioTransaction.objects.order_by("pk").values()),
        "payments": list(Payment.objects.order_by("pk").values()),
        "history": list(PaymentStatusChange.objects.order_by("pk").values()),
        "events": list(OutboxEvent.objects.order_by("pk").values_list("pk", "type", "published_at")),
        "blocklist": list(BlocklistRecord.objects.order_by("pk").values()),
        "notifications": list(TransactionServiceNotification.objects.order_by("pk").values()),
    }


@pytest.mark.parametrize(("kill_point", "killed"), USIO_KILLS)
def test_usio_sync_worker_killed_mid_window_converges_to_one_clean_run(
        kill_point, killed, sandbox, redis_server, start_worker, client_as, bank_account, tmp_path):
    service = client_as("service")
    users = iter(range(1, 100))

    def pay(account_number: str, **body) -> Payment:
        n = next(users)
        user_id, account_id = f"user-us-{n}", f"acc-us-{n}"
        bank_account(user_id=user_id, account_id=account_id, account_number=account_number)
        response = post_payment(service, payment_body(user_id=user_id, account_id=account_id, **body))
        assert response.status_code == 201, response.content
        return Payment.objects.get(pk=response.json()["id"])

    # Submitted in this order (the report lists them so). payment → (account, status, return code, event type,
    # user blocked, Transaction Service told)
    plan = {}
    for code, blocks in (("02", True), ("02", True), ("16", True), ("01", False)):
        plan[pay(RETURNS + code)] = ("float_debit", "FAILED", f"R{code}", "FLOAT_DEBIT_RETURNED", blocks, True)
    for _ in range(2):  # settled, but before the three-business-day gate: check-ach's, not the sync's
        plan[pay(SETTLES)] = ("float_debit", "ACHSENT", None, None, False, False)
    old = pay(SETTLES)  # settled and past the gate → COMPLETED
    Payment.objects.filter(pk=old.pk).update(submit_date=timezone.now() - OLD)
    plan[old] = ("float_debit", "COMPLETED", None, "FLOAT_DEBIT_COMPLETED", False, True)
    for _ in range(3):  # settled credits complete at once
        plan[pay(SETTLES, payment_type="credit")] = ("float_credit", "COMPLETED", None, "FLOAT_CREDIT_COMPLETED",
                                                     False, True)
    plan[pay(RETURNS + "02", purpose="loan")] = ("loan", "FAILED", "R02", "LOAN_DEBIT_RETURNED", False, False)
    plan[pay(SETTLES, purpose="loan", payment_type="credit")] = ("loan", "COMPLETED", None, "LOAN_CREDIT_COMPLETED",
                                                                 False, False)
    plan[pay(RETURNS + "02", purpose="subscription", provider="usio")] = (
        "subscription", "FAILED", "R02", "SUBSCRIPTION_RETURNED", True, False)
    assert {p.payment_status for p in plan} == {"ACHSENT"}
    sandbox.advance(days=2)  # the 99NN ones are now reported returned
    # The sandbox's log keeps the last 4 digits of a merchant id: enough to tell the four accounts apart.
    merchants = {"****" + settings.USIO_ACCOUNTS[name]["merchant_id"][-4:]: name
                 for name in settings.USIO_SYNC_ACCOUNTS}
    assert len(merchants) == len(settings.USIO_SYNC_ACCOUNTS)
    changed = {p.pk for p, (_, status, *_) in plan.items() if status != "ACHSENT"}
    float_debit = [p for p, (account, *_) in plan.items() if account == "float_debit"]
    since = max_position()
    assert UsioTransaction.objects.count() == 0 and not BlocklistRecord.objects.exists()

    def report_reads() -> Counter:
        return Counter(merchants[r["body"]["MerchantID"]] for r in sandbox.requests("usio", "usio.GetTransactionList"))

    if kill_point == "processor":  # the second report read (the scheduler's order: subscription, float_debit, ...)
        hold = SandboxHold(sandbox, "usio", "usio.GetTransactionList", after=1)
        env = {"USIO_READ_TIMEOUT": str(HANG + 10)}
    else:  # float_debit's window staged and its first return applied; the second return's transaction open
        held_payment = float_debit[1]
        hold = PgHold(held_payment.pk)
        env = {"DATABASE_URL": database_url() + CHECKED_DATABASE_URL}
    first = start_worker(["default", "usio-sync"], **env)
    beat_publish(redis_server.url, usio_sync_schedule_task, schedule="usio transactions sync",
                 kwargs={"job_type": "transactions"})

    reached = wait_for(hold.reached, timeout=WAIT, what=f"the window job held at the {kill_point}")
    held_merchant = settings.USIO_ACCOUNTS["float_debit"]["merchant_id"]
    done = resolved(changed)
    assert 1 <= len(done) < len(changed)  # demonstrably mid-run
    if kill_point == "processor":
        assert merchants[reached["body"]["MerchantID"]] == "float_debit"
        assert not UsioTransaction.objects.filter(merchant_account=held_merchant).exists()  # nothing of it staged
        assert not done & {str(p.pk) for p in float_debit}
    else:
        # float_debit's window is staged (committed); the held return's transaction is open. Whether the first
        # return is committed depends on how the changes are grouped in transactions: not asserted.
        assert UsioTransaction.objects.filter(merchant_account=held_merchant).count() == len(float_debit)
    assert not done & {str(p.pk) for p in float_debit[1:]}
    log = first.log()
    unfinished = task_ids(log, WINDOW_TASK, "received") - task_ids(log, WINDOW_TASK, "succeeded")
    assert unfinished  # the held window job (and any reserved behind it)
    second = sigkill(first, killed)
    hold.release()
    if second is None:
        assert resolved(changed) == done  # nothing more committed
        second = start_worker(["default", "usio-sync"])
    wait_for(lambda: resolved(changed) == {str(pk) for pk in changed}, timeout=WAIT,
             what="every payment the reports change")
    settle_outbox(redis_server.url, notifications=sum(1 for *_, told in plan.values() if told))
    drain(redis_server.url, ["usio-sync", "default"], tmp_path, "first")
    assert unfinished <= task_ids(second.log(), WINDOW_TASK, "succeeded")

    # Exactly what one clean run writes: one staging row per payment, linked; one status change and one event per
    # payment that changes; the blocking returns' users blocked once; the float exits told once.
    staged = {row["payment_id"]: row for row in UsioTransaction.objects.values()}
    assert UsioTransaction.objects.count() == len(plan) and set(staged) == {p.pk for p in plan}
    for payment, (account, status, code, *_) in plan.items():
        row = staged[payment.pk]
        assert (row["record_type"], row["merchant_account"], row["status"], row["return_code"]) == (
            "transaction", settings.USIO_ACCOUNTS[account]["merchant_id"],
            "returned" if code else "settled", code or ""), payment.pk
        fresh = Payment.objects.get(pk=payment.pk)
        assert (fresh.payment_status, fresh.return_code) == (status, code), payment.pk
    assert history([p.pk for p in plan], source="usio_sync") == Counter(
        {(str(p.pk), "ACHSENT", status): 1 for p, (_, status, *_) in plan.items() if status != "ACHSENT"})
    assert PaymentStatusChange.objects.filter(source="usio_sync").count() == len(changed)
    assert event_counts(since) == Counter(
        {(str(p.pk), event): 1 for p, (_, _, _, event, *_) in plan.items() if event})
    assert Counter(BlocklistRecord.objects.values_list("user_id", "status")) == Counter(
        {(p.user_id, "BLOCKED"): 1 for p, (*_, blocks, _) in plan.items() if blocks})
    told = {p.confirmation_id for p, (*_, ts) in plan.items() if ts}
    assert ts_posts(sandbox) == Counter(dict.fromkeys(told, 1))
    # Each account's report read once; float_debit's twice (the killed job's read, then the redelivered job's).
    reads = report_reads()
    assert reads == Counter({name: 2 if name == "float_debit" else 1 for name in settings.USIO_SYNC_ACCOUNTS})
    assert DeadLetter.objects.count() == 0

    # A second run reads every report again and changes nothing.
    before = usio_state()
    succeeded = task_ids(second.log(), WINDOW_TASK, "succeeded")
    beat_publish(redis_server.url, usio_sync_schedule_task, schedule="usio transactions sync",
                 kwargs={"job_type": "transactions"})
    wait_for(lambda: len(task_ids(second.log(), WINDOW_TASK, "succeeded") - succeeded) == len(merchants),
             timeout=WAIT, what="the second run's window jobs")
    drain(redis_server.url, ["usio-sync", "default"], tmp_path, "second")
    assert usio_state() == before
    assert ts_posts(sandbox) == Counter(dict.fromkeys(told, 1))
    reads = report_reads()
    assert reads == Counter({name: 3 if name == "float_debit" else 2 for name in settings.USIO_SYNC_ACCOUNTS})
    assert DeadLetter.objects.count() == 0
    print(f"\nFIGURES usio/{kill_point}/{killed}: {len(plan)} payments in 4 windows; killed in float_debit's "
          f"window with {len(done)} of {len(changed)} changes committed, {len(unfinished)} job(s) unfinished; "
          f"{len(plan)} staging rows, {len(changed)} usio_sync status changes, "
          f"{sum(event_counts(since).values())} events, "
          f"{BlocklistRecord.objects.count()} blocks, {sum(ts_posts(sandbox).values())} TS POSTs, "
          f"{sum(reads.values())} report reads over 2 runs, {DeadLetter.objects.count()} dead letters")
