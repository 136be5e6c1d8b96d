"""A worker SIGKILLed in the middle of the outbox relay and of the Transaction Service sender; the relay's crash
and broker-down paths with real failures (issue 9). Real processes throughout: Celery workers on a private Redis,
gunicorn, PostgreSQL, the sandbox (Transaction Service) and a local HTTP receiver for push subscriptions.

1. The relay killed mid-batch: thousands of pending events over many payments, with the in-process consumers that
   have database effects (blocklist auto-block, Transaction Service notification). A PostgreSQL trigger on the feed
   table sleeps on one chosen row, so the batch's transaction is provably open (its backend is in ``PgSleep``) when
   the worker is SIGKILLed; the worker's sessions run with ``client_connection_check_interval``, so PostgreSQL
   notices the dead client and rolls the batch back. Two new workers (one gets the relay message again:
   ``acks_late``) run the relay, the Transaction Service sender and the push runs side by side: every event is in
   the feed once, in its payment's order, every consumer effect exists once, every push subscription has one
   delivery per wanted event, delivered once, and each Transaction Service notification is POSTed once.
2. A crash before the batch commits (a real trigger raising in the feed insert): nothing of the batch is kept, not
   even the consumers' effects; the next run publishes everything once. And two push runs racing for one delivery
   (a trigger holds the first claim's row lock): the second leaves it alone (found by test 1: it used to send it
   again).
3. The broker down (the private Redis SIGKILLed) while the API writes: the writer's commit succeeds, the kick is
   only logged, and the next relay run (what the beat sends) publishes the event.
4. The Transaction Service sender SIGKILLed while it holds a notification's lease mid-POST: the lease keeps the
   redelivered run from sending it again; once the lease is over, the next run sends it; the receiver counted it
   once (the code promises at least once, the receiver de-duplicating on ``event_id``).
"""

from __future__ import annotations

import copy
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from django.db import connection, transaction
from django.utils import timezone

from blocklist.models import BlocklistRecord
from core.models import DeadLetter, OutboxConsumption, OutboxEvent, OutboxFeedEntry, PushDelivery
from core.outbox_push import push_attempt, push_subscription_create
from core.outbox_relay import outbox_relay_run, outbox_relay_task
from payments.models import Payment, PaymentStatusChange, TransactionServiceNotification
from payments.transaction_service_jobs import notify_transaction_service_task
from tests.broker import drain
from tests.chaos.stack import database_url
from tests.integration.stack import publish, wait_for
from tests.outbox.conftest import Receiver, make_payment, move, returned

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

WAIT = 90.0
PER_KIND = 300  # payments of each kind below: 7 events per triple, 2100 events in all
FEED = OutboxFeedEntry._meta.db_table
BLOCKLIST = "payments.blocklist_auto_block"
NOTIFIER = "payments.transaction_service_notifier"
# The events of each kind of payment, in order, and which consumers have something to do with each.
KINDS = {
    "float_r02": ["FLOAT_DEBIT_RETURNED"],
    "float_completed_r01": ["FLOAT_DEBIT_COMPLETED", "FLOAT_DEBIT_RETURNED"],
    "subscription_r02": ["SUBSCRIPTION_CLEARED", "SUBSCRIPTION_SENT", "SUBSCRIPTION_COMPLETED",
                         "SUBSCRIPTION_RETURNED"],
}
CONSUMERS = {  # the registered consumers of each event type (payments/consumers.py)
    "FLOAT_DEBIT_RETURNED": {BLOCKLIST, NOTIFIER},
    "FLOAT_DEBIT_COMPLETED": {NOTIFIER},
    "SUBSCRIPTION_RETURNED": {BLOCKLIST},
}
PUSH_TYPES = {"returns": ["SUBSCRIPTION_RETURNED"], "cleared": ["SUBSCRIPTION_CLEARED"]}


@pytest.fixture(autouse=True)
def _no_kicks_left():
    """The test process's own after-commit kicks go to its configured broker, where no worker listens: drop them."""
    drain("default")
    yield
    drain("default")


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


# --- helpers ------------------------------------------------------------------------------------------------------


def seed(per_kind: int) -> dict[str, list[Payment]]:
    """``per_kind`` payments of each kind of ``KINDS``, each for its own user. One payment of each kind goes through
    the status machine; the others are copies of it (payment, status history, events with their own ids, user and
    confirmation id in the event data), bulk-inserted with the events interleaved as concurrent payments write them
    (by sequence, then payment)."""
    tag = uuid.uuid4().hex[:6]
    templates = {}
    with transaction.atomic():
        templates["float_r02"] = make_payment("float_debit_ach", user_id=f"relay-{tag}-a0")
        move(templates["float_r02"], "ACHSENT", returned("R02"))
        templates["float_completed_r01"] = make_payment("float_debit_ach", user_id=f"relay-{tag}-b0")
        move(templates["float_completed_r01"], "ACHSENT", "CLEARED", "COMPLETED", returned("R01"))
        templates["subscription_r02"] = make_payment("subscription_ach", user_id=f"relay-{tag}-c0")
        move(templates["subscription_r02"], "ACHSENT", "CLEARED", "SENT", "COMPLETED", returned("R02"))
    made: dict[str, list[Payment]] = {kind: [template] for kind, template in templates.items()}
    changes, events = [], []
    for kind, template in templates.items():
        template_changes = list(PaymentStatusChange.objects.filter(payment=template).order_by("id"))
        template_events = list(OutboxEvent.objects.filter(aggregate_id=str(template.pk)).order_by("sequence"))
        for i in range(1, per_kind):
            payment = copy.copy(template)
            payment.pk, payment.user_id = uuid.uuid4(), f"relay-{tag}-{kind[0]}{kind[-1]}{i}"
            payment.confirmation_id = f"C{uuid.uuid4().hex[:20]}"
            made[kind].append(payment)
            for change in template_changes:
                changes.append(copy.copy(change))
                changes[-1].pk, changes[-1].payment_id = None, payment.pk
            for event in template_events:
                clone = copy.copy(event)
                clone.pk, clone.event_id, clone.aggregate_id = None, uuid.uuid4(), str(payment.pk)
                clone.subject = payment.confirmation_id
                clone.data = {**event.data, "id": str(payment.pk), "user_id": payment.user_id,
                              "confirmation_id": payment.confirmation_id}
                events.append((event.sequence, i, len(events), clone))
    with transaction.atomic():
        Payment.objects.bulk_create([p for payments in made.values() for p in payments[1:]])
        PaymentStatusChange.objects.bulk_create(changes)
        OutboxEvent.objects.bulk_create([e[-1] for e in sorted(events, key=lambda e: e[:3])])
    return made


def events_by_payment() -> dict[str, list[tuple[int, str]]]:
    rows = OutboxEvent.objects.order_by("aggregate_id", "sequence").values_list("aggregate_id", "sequence", "type")
    out: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for aggregate, sequence, kind in rows:
        out[aggregate].append((sequence, kind))
    return out


def history() -> dict:
    """What the relay must never change: every payment's row and its status history."""
    return {
        "payments": {str(pk): (status, version) for pk, status, version in
                     Payment.objects.values_list("pk", "payment_status", "version")},
        "changes": Counter(str(p) for p in PaymentStatusChange.objects.values_list("payment_id", flat=True)),
    }


def install_trigger(sql_body: str, *, table: str = FEED, event: str = "INSERT") -> None:
    """A BEFORE ``event`` trigger on ``table`` running ``sql_body`` (PL/pgSQL) for every row; the sequence
    ``chaos_once`` lets it act once (sequences ignore rollbacks)."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE SEQUENCE IF NOT EXISTS chaos_once")
        cursor.execute(f"""
            CREATE OR REPLACE FUNCTION chaos_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                {sql_body}
                RETURN NEW;
            END $$""")
        cursor.execute(f"CREATE TRIGGER chaos_trigger BEFORE {event} ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION chaos_trigger()")
    _installed.append(table)


_installed: list[str] = []


def drop_triggers() -> None:
    with connection.cursor() as cursor:
        while _installed:
            cursor.execute(f"DROP TRIGGER IF EXISTS chaos_trigger ON {_installed.pop()}")
        cursor.execute("DROP FUNCTION IF EXISTS chaos_trigger()")
        cursor.execute("DROP SEQUENCE IF EXISTS chaos_once")


@pytest.fixture
def trigger():
    yield install_trigger
    drop_triggers()


def backends_sleeping() -> list[int]:
    """Sessions of the test database (other than ours) sleeping in ``pg_sleep``: the trigger holding a batch."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                       "AND wait_event = 'PgSleep' AND pid <> pg_backend_pid()")
        return [row[0] for row in cursor.fetchall()]


def backends_waiting_for_a_row_lock() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                       "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
        return [row[0] for row in cursor.fetchall()]


def backend_alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone()[0] == 1


def published_ids() -> set:
    return set(OutboxEvent.objects.filter(published_at__isnull=False).values_list("event_id", flat=True))


def assert_consistent_after_rollback() -> dict:
    """After the killed batch rolled back: published = in the feed, and every effect belongs to a published event.
    Returns the counts."""
    published = published_ids()
    feed = list(OutboxFeedEntry.objects.values_list("event__event_id", flat=True))
    assert len(feed) == len(set(feed)) and set(feed) == published
    consumed = set(OutboxConsumption.objects.values_list("event_id", flat=True))
    assert consumed <= published
    notified = set(TransactionServiceNotification.objects.values_list("event_id", flat=True))
    assert notified <= published
    pushed = set(PushDelivery.objects.values_list("event__event_id", flat=True))
    assert pushed <= published
    returned_payments = {str(p) for p in BlocklistRecord.objects.values_list("payment_id", flat=True)}
    published_returns = {str(aggregate) for aggregate in OutboxEvent.objects.filter(
        event_id__in=published, type__in=["FLOAT_DEBIT_RETURNED", "SUBSCRIPTION_RETURNED"]
    ).values_list("aggregate_id", flat=True)}
    assert returned_payments <= published_returns
    return {"published": len(published), "consumptions": len(consumed), "notifications": len(notified),
            "push_deliveries": len(pushed), "blocklist": len(returned_payments)}


# --- 1. the relay SIGKILLed mid-batch ------------------------------------------------------------------------------


def test_a_relay_worker_killed_mid_batch_loses_and_duplicates_nothing(
        sandbox, redis_server, start_worker, trigger, receiver):
    subscriptions = {
        name: push_subscription_create(name=f"chaos-{name}", url=f"{receiver.url}/{name}", secret="s" * 32,
                                       event_types=types, actor="test")
        for name, types in PUSH_TYPES.items()
    }
    started = time.monotonic()
    made = seed(PER_KIND)
    print(f"\nseeded in {time.monotonic() - started:.1f}s")
    before = history()
    events = list(OutboxEvent.objects.values_list("event_id", "aggregate_id", "sequence", "type"))
    assert len(events) == 7 * PER_KIND and OutboxEvent.objects.filter(published_at__isnull=False).count() == 0
    by_payment = events_by_payment()
    for kind, payments in made.items():
        for payment in payments:
            assert [t for _, t in by_payment[str(payment.pk)]] == KINDS[kind]
    # The batch to kill: the one publishing the return (R02) of a float debit two thirds into the first events of
    # the payments (batch 3 of 250): a blocklist record, a notification, deliveries are written in it.
    target = OutboxEvent.objects.get(aggregate_id=str(made["float_r02"][2 * PER_KIND // 3].pk))
    trigger(f"""
        IF NEW.event_id = {target.position} THEN
            IF nextval('chaos_once') = 1 THEN
                PERFORM pg_sleep(120);
            END IF;
        END IF;""")

    # The worker's sessions check their client every 200 ms: a dead worker's open batch is rolled back at once.
    doomed_db = database_url() + "?options=-c%20client_connection_check_interval%3D200"
    doomed = start_worker(["default"], purge_first=True, DATABASE_URL=doomed_db, OUTBOX_BATCH_SIZE="250")
    publish(redis_server.url, outbox_relay_task, [])  # what the beat sends every minute
    [sleeper] = wait_for(backends_sleeping, timeout=WAIT, what="the relay's batch to reach the chosen feed row")
    doomed.kill()
    wait_for(lambda: not backend_alive(sleeper), timeout=WAIT, what="PostgreSQL to drop the dead worker's session")

    at_kill = assert_consistent_after_rollback()
    assert 0 < at_kill["published"] < len(events)
    assert OutboxEvent.objects.get(pk=target.pk).published_at is None  # it was in the batch rolled back
    assert not BlocklistRecord.objects.filter(payment_id=target.aggregate_id).exists()  # its consumers' effects too
    assert not TransactionServiceNotification.objects.filter(event_id=target.event_id).exists()
    assert not OutboxConsumption.objects.filter(event_id=target.event_id).exists()

    print(f"killed at {time.monotonic() - started:.1f}s")
    for _ in range(2):  # the relay message comes back (acks_late) to one of two new workers, which run side by side
        start_worker(["default"], OUTBOX_BATCH_SIZE="250")
    wait_for(lambda: not OutboxEvent.objects.filter(published_at__isnull=True).exists(), timeout=WAIT,
             what="every event to be published")
    print(f"all published at {time.monotonic() - started:.1f}s")

    # The feed: every event once, each payment's events in their order.
    feed = list(OutboxFeedEntry.objects.order_by("position").values_list("event__event_id", "event__aggregate_id",
                                                                         "event__sequence"))
    assert Counter(e for e, _, _ in feed) == Counter({e: 1 for e, _, _, _ in events})
    order: dict[str, list[int]] = defaultdict(list)
    for _, aggregate, sequence in feed:
        order[aggregate].append(sequence)
    assert all(seqs == sorted(seqs) for seqs in order.values()) and len(order) == 3 * PER_KIND

    # Each consumer's effect once.
    expected_consumptions = Counter({(e, c) for e, _, _, t in events for c in CONSUMERS.get(t, ())})
    consumptions = Counter(OutboxConsumption.objects.values_list("event_id", "consumer"))
    assert consumptions == expected_consumptions and len(consumptions) == 6 * PER_KIND
    assert set(OutboxConsumption.objects.values_list("status", "attempts")) == {("done", 0)}
    blocked = Counter(BlocklistRecord.objects.values_list("user_id", "payment_id"))
    assert blocked == Counter({(p.user_id, p.pk): 1 for kind in ("float_r02", "subscription_r02")
                               for p in made[kind]})
    exits = {e for e, _, _, t in events if t in ("FLOAT_DEBIT_COMPLETED", "FLOAT_DEBIT_RETURNED")}
    exits -= {e for e, a, _, t in events if t == "FLOAT_DEBIT_RETURNED"
              and a in {str(p.pk) for p in made["float_completed_r01"]}}  # returned after COMPLETED: not in flight
    notifications = Counter(TransactionServiceNotification.objects.values_list("event_id", flat=True))
    assert notifications == Counter({e: 1 for e in exits}) and len(notifications) == 2 * PER_KIND

    # One push delivery per subscription and wanted event.
    deliveries = Counter(PushDelivery.objects.values_list("subscription__name", "event__event_id"))
    assert deliveries == Counter({(f"chaos-{name}", e): 1 for name, sub in subscriptions.items()
                                  for e, _, _, t in events if t in PUSH_TYPES[name]})
    assert len(deliveries) == 2 * PER_KIND

    # Outside the database: each Transaction Service notification POSTed once, each push delivered once.
    wait_for(lambda: not TransactionServiceNotification.objects.exclude(status="sent").exists(), timeout=WAIT,
             what="every Transaction Service notification to be sent")
    posted = Counter(r["body"]["event_id"] for r in sandbox.requests("transactions"))
    assert posted == Counter({str(e): 1 for e in exits})
    assert len(sandbox.received("transactions")) == 2 * PER_KIND
    wait_for(lambda: not PushDelivery.objects.exclude(status="delivered").exists(), timeout=WAIT,
             what="every push delivery to be delivered")
    pushed = Counter((r["path"].lstrip("/"), r["headers"]["X-Payments-Event-Id"]) for r in receiver.requests)
    assert pushed == Counter({(name, str(e)): 1 for name in PUSH_TYPES for e, _, _, t in events
                              if t in PUSH_TYPES[name]})

    # The relay changed no payment and wrote no dead letter.
    assert history() == before
    assert DeadLetter.objects.count() == 0
    print(f"\nrelay kill: {len(events)} events, {3 * PER_KIND} payments; at the kill {at_kill}; "
          f"afterwards feed {len(feed)}, consumptions {len(consumptions)}, blocklist {sum(blocked.values())}, "
          f"notifications {len(notifications)} (POSTs {sum(posted.values())}), push deliveries {len(deliveries)} "
          f"(received {len(receiver.requests)})")


# --- 2. a crash before the batch commits (a real trigger raising) --------------------------------------------------


def test_a_crash_before_commit_publishes_nothing_and_the_next_run_redelivers(trigger):
    made = seed(3)
    before = history()
    total = OutboxEvent.objects.count()
    trigger("RAISE EXCEPTION 'disk full' USING ERRCODE = 'disk_full';")

    with pytest.raises(Exception, match="disk full"):
        outbox_relay_run()

    # The batch ran its consumers (blocklist, notifications) and rolled all of it back with the feed insert.
    assert OutboxEvent.objects.filter(published_at__isnull=False).count() == 0
    assert (OutboxFeedEntry.objects.count(), OutboxConsumption.objects.count(), BlocklistRecord.objects.count(),
            TransactionServiceNotification.objects.count(), DeadLetter.objects.count()) == (0, 0, 0, 0, 0)

    drop_triggers()
    stats = outbox_relay_run()

    assert stats.published == total == 21 and stats.consumer_failures == 0
    assert OutboxFeedEntry.objects.count() == 21
    assert OutboxConsumption.objects.filter(status="done").count() == 18  # 6 per triple of payments
    assert Counter(BlocklistRecord.objects.values_list("payment_id", flat=True)) == Counter(
        {p.pk: 1 for kind in ("float_r02", "subscription_r02") for p in made[kind]})
    assert TransactionServiceNotification.objects.count() == 6
    assert history() == before and DeadLetter.objects.count() == 0


# --- 2b. two push runs racing for one delivery (found by test 1 with two workers) ------------------------------------


def test_two_push_runs_never_claim_the_same_delivery(trigger, receiver):
    """The first run's claim of the delivery holds the row (a trigger sleeps in its UPDATE) while the second run's
    claim waits for it: once the first commits, the second must see the delivery leased and leave it alone."""
    push_subscription_create(name="chaos-race", url=receiver.url, secret="s" * 32, event_types=[], actor="test")
    payment = make_payment("subscription_ach", user_id="race-user")
    move(payment, "ACHSENT", "CLEARED")
    assert outbox_relay_run().published == 1
    [delivery] = PushDelivery.objects.all()
    trigger("IF nextval('chaos_once') = 1 THEN PERFORM pg_sleep(3); END IF;",
            table=PushDelivery._meta.db_table, event="UPDATE")

    def attempt() -> str | None:
        try:
            return push_attempt(delivery_id=delivery.pk)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(attempt)
        wait_for(backends_sleeping, timeout=WAIT, what="the first claim to hold the delivery")
        second = pool.submit(attempt)
        wait_for(backends_waiting_for_a_row_lock, timeout=WAIT, what="the second claim to wait for the row")
        outcomes = [first.result(timeout=WAIT), second.result(timeout=WAIT)]

    assert outcomes == ["delivered", None]  # the second run found it leased: not attempted
    assert [r["headers"]["X-Payments-Event-Id"] for r in receiver.requests] == [str(delivery.event.event_id)]
    delivered = PushDelivery.objects.get()
    assert (delivered.status, delivered.attempts) == ("delivered", 1)


# --- 3. the broker down while the API writes -----------------------------------------------------------------------


def test_a_broker_failure_never_breaks_the_writer(sandbox, redis_server, start_api, start_worker, make_api_key,
                                                  debit_card):
    from tests.payments.conftest import PAYMENTS_URL, card_body

    debit_card()
    api = start_api(workers=1, threads=2)
    key = make_api_key("service")
    redis_server.kill()  # the broker is gone: nothing can be enqueued

    response = requests.post(f"{api.url}{PAYMENTS_URL}", json=card_body(),
                             headers={"X-API-Key": key, "Idempotency-Key": f"k-{uuid.uuid4()}"}, timeout=60)

    assert response.status_code == 201, response.text
    payment = Payment.objects.get()
    assert payment.payment_status == "COMPLETED" and str(payment.pk) == response.json()["id"]
    [event] = OutboxEvent.objects.all()  # committed with the payment all the same
    assert event.type == "FLOAT_DEBIT_COMPLETED" and event.published_at is None
    assert api.log().count("could not enqueue core.outbox_relay") == 1
    assert OutboxFeedEntry.objects.count() == 0

    # A second write during the outage: kicks are paused after a failed one, so it does not try the broker again.
    second = requests.post(f"{api.url}{PAYMENTS_URL}", json=card_body(amount="30.00"),
                           headers={"X-API-Key": key, "Idempotency-Key": f"k-{uuid.uuid4()}"}, timeout=60)
    assert second.status_code == 201, second.text
    assert api.log().count("could not enqueue core.outbox_relay") == 1
    assert OutboxEvent.objects.filter(published_at__isnull=True).count() == 2

    redis_server.start()  # the broker is back (empty: the kick never reached it)
    start_worker(["default"])
    publish(redis_server.url, outbox_relay_task, [])  # the beat's next run
    wait_for(lambda: OutboxFeedEntry.objects.count() == 2, timeout=WAIT,
             what="the next relay run to publish both events")

    assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()
    for written in Payment.objects.all():  # PROCESSING, COMPLETED: once each
        assert PaymentStatusChange.objects.filter(payment=written).count() == 2
    assert len([r for r in sandbox.requests("usio") if r["operation"] == "usio.SubmitTokenPayment"]) == 2
    assert DeadLetter.objects.count() == 0
    print(f"\nbroker down: 201 in {response.elapsed.total_seconds():.2f}s, 1 event, feed 0 -> 1 after the next run")


# --- 4. the Transaction Service sender killed holding the lease ------------------------------------------------------


def test_a_sender_killed_mid_post_sends_again_only_after_its_lease(sandbox, redis_server, start_worker):
    payment = make_payment("float_debit_ach", user_id="lease-user")
    move(payment, "ACHSENT", "CLEARED", "COMPLETED")
    assert outbox_relay_run().published == 1  # the consumer records the notification
    notification = TransactionServiceNotification.objects.get()
    event_id = str(notification.event_id)
    sandbox.configure(hang_seconds=45)  # the Transaction Service takes the POST, then answers only after 45 s
    sandbox.fault("transactions.payments", "timeout")

    sender = start_worker(["default"], purge_first=True, OUTBOUND_READ_TIMEOUT="60")
    publish(redis_server.url, notify_transaction_service_task, [])
    wait_for(lambda: sandbox.requests("transactions"), timeout=WAIT, what="the POST to be in flight")
    leased = TransactionServiceNotification.objects.get()
    assert leased.status == "pending" and leased.next_attempt_at > timezone.now() + timedelta(seconds=60)
    sender.kill()  # mid-POST, holding the lease

    successor = start_worker(["default"])
    # The killed run's message comes back (acks_late) and runs: the lease keeps it from sending again.
    wait_for(lambda: "payments.notify_transaction_service" in successor.log() and " succeeded " in successor.log(),
             timeout=WAIT, what="the redelivered sender run to finish")
    assert "'claimed': 0" in successor.log()
    assert len(sandbox.requests("transactions")) == 1
    assert TransactionServiceNotification.objects.get().status == "pending"

    # The lease runs out (120 s; moved on here instead of waited for), and the next run (the beat's) sends it.
    TransactionServiceNotification.objects.filter(pk=notification.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1))
    publish(redis_server.url, notify_transaction_service_task, [])
    wait_for(lambda: TransactionServiceNotification.objects.get().status == "sent", timeout=WAIT,
             what="the notification to be sent after the lease")

    posts = [r for r in sandbox.requests("transactions") if r["body"]["event_id"] == event_id]
    assert [r["fault"] for r in posts] == ["timeout", None] and [r["status"] for r in posts] == [200, 200]
    [accepted] = sandbox.received("transactions")  # the receiver de-duplicates on event_id: counted once
    assert accepted["event_id"] == event_id and accepted["payment_status"] == "COMPLETED"
    sent = TransactionServiceNotification.objects.get()
    assert (sent.attempts, sent.last_error, sent.sent_at is not None) == (0, "", True)
    assert DeadLetter.objects.count() == 0
    print(f"\nlease: POSTs {len(posts)} (the killed one, then after the lease), accepted 1")
