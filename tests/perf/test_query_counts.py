"""Query counts that must not grow with the number of rows (issue 10: no N+1 in list endpoints and jobs).

Each test measures the same operation over few and over many rows and asserts the same number of queries (and the
exact rows written, for the writers). Timing lives in ``bench/``, never here.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from blocklist.models import BlocklistRecord
from cards.models import DebitCardChange
from core.models import OutboxConsumption, OutboxEvent, OutboxFeedEntry
from core.outbox_relay import outbox_relay_run
from payments.models import Payment, PaymentStatusChange
from payments.serializers import PaymentOutput, payment_render
from payments.status import payment_apply_status, payment_apply_status_many
from refunds.models import Refund

pytestmark = pytest.mark.django_db

USER = "perf-user-1"


def _queries(call) -> int:
    with CaptureQueriesContext(connection) as captured:
        call()
    return len(captured)


def _list_queries(client, url: str, rows: int) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content
    assert len(response.json()["results"]) == rows
    return len(captured)


@pytest.fixture
def service(client_as):
    client = client_as("service")
    client.get("/api/v1/auth/whoami")  # first use of a fresh key: not part of what is measured
    return client


def _payments(count: int, *, status: str = "ACHSENT", purpose: str = "float") -> list[Payment]:
    at = timezone.now() - timedelta(days=10)
    return Payment.objects.bulk_create([
        Payment(user_id=USER, purpose=purpose, payment_method="ach", payment_type="debit", payment_provider="usio",
                merchant_account="29063402", amount=Decimal("10.00"), payment_status=status, submit_date=at,
                confirmation_id=f"UPERF{uuid.uuid4().hex[:12]}", account_id="acc-1", masked_account_number="1234")
        for _ in range(count)])


# --- list endpoints ---------------------------------------------------------------------------------------------


def test_refund_list_queries_do_not_grow_with_rows(service):
    def make(n: int) -> None:
        Refund.objects.all().delete()
        Refund.objects.bulk_create([
            Refund(user_id=USER, amount=Decimal("5.00"), description="perf", account_type="debit",
                   target="arbitrary", method="card_credit", usio_account="float_credit",
                   merchant_account="29063410", support_name="perf") for _ in range(n)])

    make(2)
    few = _list_queries(service, f"/api/v1/users/{USER}/refunds", 2)
    make(40)
    many = _list_queries(service, f"/api/v1/users/{USER}/refunds?page_size=40", 40)
    assert few == many == 2  # the API key, the page


def test_debit_card_changes_list_queries_do_not_grow_with_rows(service):
    def make(n: int) -> None:
        DebitCardChange.objects.all().delete()
        DebitCardChange.objects.bulk_create([
            DebitCardChange(user_id=USER, change_type="created", new_masked_card_number="4242", actor="perf")
            for _ in range(n)])

    make(2)
    few = _list_queries(service, f"/api/v1/users/{USER}/debit-card/changes", 2)
    make(40)
    many = _list_queries(service, f"/api/v1/users/{USER}/debit-card/changes?page_size=40", 40)
    assert few == many == 2


def test_blocklist_history_queries_do_not_grow_with_rows(service):
    def make(n: int) -> None:
        BlocklistRecord.objects.all().delete()
        BlocklistRecord.objects.bulk_create([
            BlocklistRecord(user_id=USER, status="BLOCKED" if i % 2 else "NOTBLOCKED", reason="perf",
                            source="manual", actor="perf", created_at=timezone.now()) for i in range(n)])

    make(2)
    few = _list_queries(service, f"/api/v1/users/{USER}/blocklist/history", 2)
    make(40)
    many = _list_queries(service, f"/api/v1/users/{USER}/blocklist/history?page_size=40", 40)
    assert few == many == 2


def _feed_queries(client, n: int) -> int:
    OutboxFeedEntry.objects.all().delete()
    OutboxEvent.objects.all().delete()
    now = timezone.now()
    events = OutboxEvent.objects.bulk_create([
        OutboxEvent(event_id=uuid.uuid4(), type="SUBSCRIPTION_COMPLETED", subject=f"s{i}", aggregate_id=f"a{i}",
                    sequence=1, data={"i": i}, occurred_at=now, published_at=now) for i in range(n)])
    OutboxFeedEntry.objects.bulk_create([OutboxFeedEntry(event=e, published_at=now) for e in events])
    with CaptureQueriesContext(connection) as captured:
        response = client.get("/api/v1/events?limit=500")
    assert response.status_code == 200, response.content
    assert [e["subject"] for e in response.json()["events"]] == [f"s{i}" for i in range(n)]
    return len(captured)


def test_event_feed_queries_do_not_grow_with_events(service):
    assert _feed_queries(service, 2) == _feed_queries(service, 60) == 2  # the API key, the page (with its events)


# --- jobs -------------------------------------------------------------------------------------------------------


def test_bulk_status_change_queries_do_not_grow_and_write_what_one_by_one_writes():
    def run(n: int) -> tuple[int, list[Payment]]:
        payments = _payments(n)
        ids = [p.pk for p in payments]
        refs = {pk: f"perf:{pk}" for pk in ids}
        count = _queries(lambda: payment_apply_status_many(payment_ids=ids, to_status="COMPLETED",
                                                           source="check_ach", actor="check_ach",
                                                           raw_payload_refs=refs))
        return count, list(Payment.objects.filter(pk__in=ids))

    few, _ = run(2)
    many, done = run(30)
    assert few == many

    # The same rows as payment_apply_status writes one by one, for every payment of the batch.
    single = _payments(1)[0]
    payment_apply_status(payment_id=single.pk, to_status="COMPLETED", source="check_ach", actor="check_ach")
    single.refresh_from_db()
    for payment in [*done, single]:
        assert (payment.payment_status, payment.version, payment.event_type) == ("COMPLETED", 1,
                                                                                  "FLOAT_DEBIT_COMPLETED")
        assert payment.completion_date is not None
        changes = list(PaymentStatusChange.objects.filter(payment=payment))
        assert [(c.from_status, c.to_status, c.source, c.event_type) for c in changes] == [
            ("ACHSENT", "COMPLETED", "check_ach", "FLOAT_DEBIT_COMPLETED")]
        events = list(OutboxEvent.objects.filter(aggregate_id=str(payment.pk)))
        assert [(e.type, e.sequence, e.subject) for e in events] == [
            ("FLOAT_DEBIT_COMPLETED", 1, payment.confirmation_id)]
        assert events[0].data["payment_status"] == "COMPLETED" and events[0].data["version"] == 1
        assert events[0].data == payment_render(payment)  # the event shows the row exactly as written
    assert OutboxEvent.objects.count() == PaymentStatusChange.objects.count() == 33


def test_bulk_returns_with_their_own_dates_and_codes_take_the_same_queries_and_write_what_one_by_one_writes():
    """A Usio window's returns each carry their own return date and code: still one UPDATE for all of them."""
    base = timezone.now() - timedelta(days=2)

    def details_for(payments) -> dict:
        return {p.pk: {"failure": "returned", "return_code": f"R0{i % 9 + 1}", "return_info": f"RETURNED {i}",
                       "at": base + timedelta(minutes=i)} for i, p in enumerate(payments)}

    def run(n: int) -> tuple[int, list[Payment], dict]:
        payments = _payments(n)
        details = details_for(payments)
        count = _queries(lambda: payment_apply_status_many(
            payment_ids=[p.pk for p in payments], to_status="FAILED", source="usio_sync", details=details))
        return count, list(Payment.objects.filter(pk__in=details)), details

    few, _, _ = run(2)
    many, done, details = run(30)
    assert few == many

    # Each payment got its own values, the same as payment_apply_status writes for it alone.
    single = _payments(1)[0]
    alone = details_for([single])[single.pk]
    payment_apply_status(payment_id=single.pk, to_status="FAILED", source="usio_sync", **alone)
    single.refresh_from_db()
    for payment, wanted in [*((p, details[p.pk]) for p in done), (single, alone)]:
        assert (payment.payment_status, payment.version, payment.event_type) == ("FAILED", 1, "FLOAT_DEBIT_RETURNED")
        assert (payment.return_code, payment.return_info, payment.return_date) == (
            wanted["return_code"], wanted["return_info"], wanted["at"])
        changes = list(PaymentStatusChange.objects.filter(payment=payment))
        assert [(c.to_status, c.return_code, c.at) for c in changes] == [("FAILED", wanted["return_code"],
                                                                           wanted["at"])]
        event = OutboxEvent.objects.get(aggregate_id=str(payment.pk))
        assert event.data == payment_render(payment)
    assert len({p.return_date for p in done}) == 30


def test_a_column_that_differs_between_payments_takes_one_case_branch_per_distinct_value():
    """A check-ach batch mixes float and subscription debits: its UPDATE sets ``event_type`` with one ``CASE``
    branch per event type, not one per payment (the statement, and the work of building it, does not grow)."""
    def when_branches(n: int) -> int:
        payments = [*_payments(n), *_payments(n, purpose="subscription")]
        ids = [p.pk for p in payments]
        with CaptureQueriesContext(connection) as captured:
            payment_apply_status_many(payment_ids=ids, to_status="COMPLETED", source="check_ach", actor="check_ach")
        [update] = [q["sql"] for q in captured if q["sql"].lstrip().upper().startswith("UPDATE")]
        written = Payment.objects.filter(pk__in=ids).values_list("purpose", "event_type", "payment_status")
        assert sorted(set(written)) == [("float", "FLOAT_DEBIT_COMPLETED", "COMPLETED"),
                                        ("subscription", "SUBSCRIPTION_COMPLETED", "COMPLETED")]
        return update.upper().count(" WHEN ")

    assert when_branches(2) == when_branches(40) == 2


def test_payment_render_gives_exactly_what_the_serializer_gives():
    """``payment_render`` renders without DRF's per-field attribute walk: the same dict as
    ``PaymentOutput(payment).data`` for every kind of value (None, strings, Decimal, UUID, every date, the version)."""
    plain = _payments(1)[0]
    full = _payments(1, purpose="subscription")[0]
    at = timezone.now()
    Payment.objects.filter(pk=full.pk).update(
        payment_status="FAILED", return_code="R02", return_info="R02: Account closed", return_date=at,
        cleared_date=at - timedelta(days=1), completion_date=at - timedelta(hours=5), loan_id="loan-9",
        subscription_id="sub-9", cbc_card_id="card-9", masked_card_number="4111", event_type="SUBSCRIPTION_RETURNED",
        amount=Decimal("1234.50"), version=7)
    for payment in Payment.objects.filter(pk__in=[plain.pk, full.pk]):
        assert payment_render(payment) == dict(PaymentOutput(payment).data)
    assert payment_render(Payment.objects.get(pk=full.pk))["amount"] == "1234.50"


def test_payments_render_in_utc_whatever_time_zone_is_active():
    payment = _payments(1)[0]
    payment.refresh_from_db()
    utc = payment_render(payment)
    assert utc["submit_date"].endswith("Z") and utc["created_at"].endswith("Z")
    with timezone.override("America/Chicago"):  # a request that activated another time zone changes nothing
        assert payment_render(payment) == dict(PaymentOutput(payment).data) == utc


def test_bulk_status_change_refuses_what_the_status_machine_refuses():
    completed = _payments(2, status="COMPLETED")
    in_flight = _payments(2)
    results = payment_apply_status_many(payment_ids=[p.pk for p in completed + in_flight], to_status="COMPLETED",
                                        source="check_ach")
    assert sorted((r.applied, r.outcome) for r in results.values()) == [
        (False, "duplicate"), (False, "duplicate"), (True, "applied"), (True, "applied")]
    assert PaymentStatusChange.objects.count() == OutboxEvent.objects.count() == 2
    assert set(Payment.objects.filter(pk__in=[p.pk for p in completed]).values_list("version", flat=True)) == {0}


def _relay_queries(n: int) -> int:
    """Publish n events that no in-process consumer wants (SUBSCRIPTION_COMPLETED) in one relay batch."""
    OutboxFeedEntry.objects.all().delete()
    OutboxEvent.objects.all().delete()
    now = timezone.now()
    OutboxEvent.objects.bulk_create([
        OutboxEvent(event_id=uuid.uuid4(), type="SUBSCRIPTION_COMPLETED", subject=f"s{i}", aggregate_id=f"a{i}",
                    sequence=1, data={"i": i}, occurred_at=now) for i in range(n)])
    count = _queries(lambda: outbox_relay_run(batch_size=100, max_batches=1))
    assert OutboxFeedEntry.objects.count() == OutboxEvent.objects.filter(published_at__isnull=False).count() == n
    return count


def test_a_relay_batch_without_consumers_takes_the_same_queries_for_few_and_many_events():
    assert _relay_queries(3) == _relay_queries(80)


def _relay_queries_with_consumers(n: int) -> int:
    """Publish, in one relay batch, n events of which 60 % have in-process consumers (the start-up registry, with
    their batch handlers): FLOAT_DEBIT_COMPLETED from ACHSENT (the notifier records a notification) and
    FLOAT_DEBIT_RETURNED with a non-blocking code (the blocklist consumer and the notifier), the rest
    SUBSCRIPTION_COMPLETED (no consumer). A blocking return is left out: blocking a user is per user, by design."""
    from payments.models import TransactionServiceNotification

    completed, returned, subscriptions = n * 2 // 5, n // 5, n - n * 2 // 5 - n // 5
    floats = _payments(completed + returned)
    payment_apply_status_many(payment_ids=[p.pk for p in floats[:completed]], to_status="COMPLETED",
                              source="check_ach")
    for payment in floats[completed:]:
        assert payment_apply_status(payment_id=payment.pk, to_status="FAILED", source="usio_sync",
                                    failure="returned", return_code="R01", return_info="RETURNED").applied
    subs = _payments(subscriptions, purpose="subscription")
    payment_apply_status_many(payment_ids=[p.pk for p in subs], to_status="COMPLETED", source="check_ach")
    assert OutboxEvent.objects.filter(published_at__isnull=True).count() == n
    notifications = TransactionServiceNotification.objects.count()
    consumptions = OutboxConsumption.objects.filter(status="done").count()

    count = _queries(lambda: outbox_relay_run(batch_size=100, max_batches=1))

    assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()
    assert TransactionServiceNotification.objects.count() - notifications == completed + returned
    assert OutboxConsumption.objects.filter(status="done").count() - consumptions == completed + 2 * returned
    return count


def test_a_relay_batch_with_consumers_takes_the_same_queries_for_few_and_many_events():
    assert _relay_queries_with_consumers(5) == _relay_queries_with_consumers(50)
