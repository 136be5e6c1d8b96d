"""Relays running at the same time, and writers committing out of position order (SPEC §4).

Run in both database modes. On PostgreSQL the relays really overlap (``SELECT … FOR UPDATE SKIP LOCKED``) and two
writers really commit out of order; on SQLite writers (and so relays) take turns, and the same guarantees hold.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from django.db import connection, transaction

from blocklist.models import BlocklistRecord
from core import outbox_relay
from core.models import OutboxConsumption, OutboxEvent, OutboxFeedEntry
from core.outbox_relay import outbox_relay_run
from payments.consumers import BLOCKING_EVENT_TYPES, BLOCKLIST_CONSUMER, blocklist_on_return
from payments.status import payment_apply_status
from tests.outbox.conftest import make_payment, move, returned

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v1/events"
THREADS = 4


def test_concurrent_relays_handle_each_event_once_per_consumer_in_each_payments_order(recorder):
    seen = recorder("seen")
    seen.delay = 0.003  # long enough for the relays to overlap
    outbox_relay.register_consumer(BLOCKLIST_CONSUMER, blocklist_on_return, BLOCKING_EVENT_TYPES)
    payments = []
    for index in range(20):
        payment = make_payment("subscription_ach")
        move(payment, "ACHSENT", "CLEARED", "SENT", "COMPLETED", returned("R02" if index % 2 else "R01"))
        payments.append(payment)
    total = OutboxEvent.objects.count()
    assert total == 80

    start = threading.Barrier(THREADS)
    published: dict[int, int] = {}
    errors: list[BaseException] = []

    def relay(number: int) -> None:
        try:
            start.wait(10)
            count, deadline = 0, time.monotonic() + 60
            while OutboxEvent.objects.filter(published_at__isnull=True).exists() and time.monotonic() < deadline:
                count += outbox_relay_run(batch_size=3).published
            published[number] = count
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=relay, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)

    assert errors == []
    assert sum(published.values()) == total
    assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()
    # Exactly once per consumer...
    assert Counter(seen.ids()) == Counter({str(e): 1 for e in OutboxEvent.objects.values_list("event_id", flat=True)})
    assert OutboxConsumption.objects.filter(consumer="seen", status="done").count() == total
    assert OutboxConsumption.objects.filter(consumer=BLOCKLIST_CONSUMER, status="done").count() == 20
    assert BlocklistRecord.objects.count() == 10  # one per R02 return
    # ...in each payment's order, in the handlers and in the feed.
    feed = list(OutboxFeedEntry.objects.select_related("event").order_by("position"))
    assert len(feed) == total
    for payment in payments:
        assert seen.sequences(payment) == [1, 2, 3, 4]
        assert [f.event.sequence for f in feed if f.event.aggregate_id == str(payment.pk)] == [1, 2, 3, 4]
    if connection.vendor == "postgresql":
        assert sum(1 for count in published.values() if count) > 1  # the relays did share the work


def test_the_feed_never_skips_an_event_that_commits_after_a_later_one(registry, client_as):
    service = client_as("service")
    early, late = make_payment("subscription_ach"), make_payment("subscription_ach")
    move(early, "ACHSENT")
    move(late, "ACHSENT")
    opened, release, late_done = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def slow_writer() -> None:  # takes the lower outbox position, commits last
        try:
            with transaction.atomic():
                payment_apply_status(payment_id=early.pk, to_status="CLEARED", source="webhook")
                opened.set()
                release.wait(20)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    def fast_writer() -> None:
        try:
            payment_apply_status(payment_id=late.pk, to_status="CLEARED", source="webhook")
            late_done.set()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=slow_writer), threading.Thread(target=fast_writer)]
    threads[0].start()
    assert opened.wait(10)
    threads[1].start()
    concurrent = late_done.wait(2)
    # PostgreSQL: the later event commits while the earlier one is still open. SQLite: writers take turns.
    assert concurrent is (connection.vendor == "postgresql")

    seen: list[str] = []
    cursor = None

    def read() -> None:
        nonlocal cursor
        body = service.get(URL, {"after": cursor} if cursor else {}).json()
        seen.extend(e["id"] for e in body["events"])
        cursor = body["next_cursor"] or cursor

    if concurrent:
        stats = outbox_relay_run()  # the open transaction's event is invisible: neither published nor skipped
        assert stats.published == 1
        read()
        assert seen == [str(OutboxEvent.objects.get(aggregate_id=str(late.pk)).event_id)]

    release.set()
    for thread in threads:
        thread.join(30)
    assert errors == []
    outbox_relay_run()
    read()

    ids = {str(e) for e in OutboxEvent.objects.values_list("event_id", flat=True)}
    assert len(ids) == 2 and sorted(seen) == sorted(ids)  # each exactly once, following the cursor
