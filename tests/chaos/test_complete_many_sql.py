"""``payments.status.payment_complete_many`` on PostgreSQL — check-ach's completions as one SQL statement — against
the Python path it stands for (``payment_apply_status_many(to_status=COMPLETED)``): twin payments (the same values
but for their ids) completed one way and the other must end with the same rows — the payment, its history row, its
outbox event with the next sequence — and each SQL-rendered event's ``data`` must be exactly ``payment_render`` of
the stored payment. A payment a concurrent transaction fails while the statement waits for its row lock is left
alone, as the Python path leaves it."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction

from core.models import OutboxEvent
from core.outbox import outbox_record
from payments.models import Payment, PaymentStatusChange, Source, Status
from payments.serializers import payment_render
from payments.status import payment_apply_status, payment_apply_status_many, payment_complete_many

_numbers = itertools.count(1)

# (purpose, payment_type, method, provider, status) — completable or not, with and without an event type.
KINDS = [
    ("float", "debit", "ach", "usio", "ACHSENT"),
    ("subscription", "debit", "ach", "jpm", "CLEARED"),
    ("loan", "debit", "ach", "usio", "ACHSENT"),
    ("loan", "credit", "ach", "usio", "PROCESSING"),
    ("float", "credit", "rtp", "usio", "PROCESSING"),
    ("subscription", "credit", "ach", "jpm", "ACHSENT"),  # no event for this pair: event_type left as it was
    ("prenote", "debit", "ach", "jpm", "ACHSENT"),  # PRENOTE_VERIFIED
    ("float", "debit", "pinless", "usio", "PROCESSING"),
    ("float", "debit", "ach", "usio", "COMPLETED"),  # refused: a duplicate
    ("float", "debit", "ach", "usio", "FAILED"),  # refused: final
]
# Values of the fields the event renders: None or not, dates with and without microseconds, amounts.
VARIANTS = [
    {"amount": Decimal("42.50"), "submit_date": datetime(2026, 11, 2, 15, 4, 5, tzinfo=UTC), "loan_id": None,
     "return_code": None, "event_type": None, "merchant_account": None, "cleared_date": None},
    {"amount": Decimal("1234567890.12"), "submit_date": datetime(2026, 11, 2, 15, 4, 5, 120, tzinfo=UTC),
     "loan_id": "loan-7", "subscription_id": "sub-\u00e9\"'\\", "cbc_card_id": "cbc-1", "return_code": "R01",
     "return_info": "NSF: insufficient funds", "event_type": "SUBSCRIPTION_CLEARED", "merchant_account": "8855",
     "cleared_date": datetime(2026, 11, 3, 9, 0, 0, 999999, tzinfo=UTC),
     "return_date": datetime(2026, 1, 1, 0, 0, tzinfo=UTC)},
    {"amount": Decimal("7"), "submit_date": None, "masked_account_number": None, "account_id": None,
     "confirmation_id": None},
]


def _payment(kind, variant, *, pair: int) -> Payment:
    purpose, payment_type, method, provider, status = kind
    values = {"user_id": f"user-{pair}", "purpose": purpose, "payment_type": payment_type, "payment_method": method,
              "payment_provider": provider, "payment_status": status, "account_id": "acc-1",
              "masked_account_number": "6789", "masked_card_number": "4242" if method == "pinless" else None,
              "client_id": "test-client", "confirmation_id": f"conf-{next(_numbers)}", "version": 3}
    values.update(variant)
    if purpose == "prenote":
        values["amount"] = Decimal("0.00")
    return Payment.objects.create(**values)


def _twins(with_events: bool) -> list[tuple[Payment, Payment]]:
    twins = []
    for pair, (kind, variant) in enumerate(itertools.product(KINDS, VARIANTS)):
        one, other = _payment(kind, variant, pair=pair), _payment(kind, variant, pair=pair)
        if with_events and pair % 2:
            with transaction.atomic():  # an earlier event of each: the next one continues its sequence
                for payment in (one, other):
                    outbox_record(type="SUBSCRIPTION_SENT", subject=str(payment.pk), aggregate_id=str(payment.pk),
                                  data={"earlier": True}, occurred_at=datetime(2026, 11, 20, 12, 0, tzinfo=UTC))
        twins.append((one, other))
    return twins


def _state(payment: Payment) -> dict:
    """The payment's row, history and events, what differs between twins masked (their ids, when they were created,
    the moment each path ran: ``updated_at``)."""
    pk = str(payment.pk)
    masks = {pk: "<id>"}
    if payment.confirmation_id:
        masks[payment.confirmation_id] = "<confirmation>"
    row = Payment.objects.filter(pk=payment.pk).values().get()
    updated_at = row.pop("updated_at")
    row.pop("id"), row.pop("confirmation_id"), row.pop("user_id"), row.pop("created_at")  # the twins' own
    history = list(PaymentStatusChange.objects.filter(payment=payment).order_by("id").values(
        "from_status", "to_status", "source", "actor", "return_code", "raw_payload_ref", "event_type", "at"))
    events = []
    for event in OutboxEvent.objects.filter(aggregate_id=pk).order_by("sequence"):
        data = dict(event.data)
        for name in ("id", "confirmation_id", "user_id", "updated_at", "created_at"):
            data.pop(name, None)
        events.append({"type": event.type, "source": event.source, "sequence": event.sequence,
                       "subject": masks.get(event.subject, event.subject), "occurred_at": event.occurred_at,
                       "published_at": event.published_at, "data": data})
    return {"row": row, "updated_at_set": updated_at is not None, "history": history, "events": events}


def _differences(mine, reference, path="") -> list:
    """Where two states differ (for a readable failure)."""
    if isinstance(mine, dict) and isinstance(reference, dict):
        return [d for key in sorted(set(mine) | set(reference), key=str)
                for d in _differences(mine.get(key), reference.get(key), f"{path}.{key}")]
    if isinstance(mine, list) and isinstance(reference, list) and len(mine) == len(reference):
        return [d for index, (a, b) in enumerate(zip(mine, reference, strict=True))
                for d in _differences(a, b, f"{path}[{index}]")]
    return [] if mine == reference else [(path, mine, reference)]


@pytest.mark.django_db
@pytest.mark.parametrize("at", [datetime(2026, 11, 21, 17, 0, 0, tzinfo=UTC),
                                datetime(2026, 11, 21, 17, 0, 0, 123456, tzinfo=UTC)], ids=["whole-second", "micro"])
def test_the_sql_completions_write_what_the_python_path_writes(at):
    twins = _twins(with_events=True)
    refs = {payment.pk: f"check_ach:ref-{index}" for index, pair in enumerate(twins) for payment in pair}
    before = datetime.now(UTC)

    completed = payment_complete_many(payment_ids=[one.pk for one, _ in twins], source=Source.CHECK_ACH,
                                      actor="check_ach", raw_payload_refs=refs, at=at)
    results = payment_apply_status_many(payment_ids=[other.pk for _, other in twins], to_status=Status.COMPLETED,
                                        source=Source.CHECK_ACH, actor="check_ach", raw_payload_refs=refs, at=at)

    applied = {other.pk for other in (o for _, o in twins) if results[other.pk].applied}
    assert len(completed) == len(applied) == (len(KINDS) - 2) * len(VARIANTS)
    by_other = {one.pk: other.pk for one, other in twins}
    assert {by_other[pk] for pk in completed} == applied
    for one, other in twins:
        mine, reference = _state(one), _state(other)
        assert mine == reference, (one.purpose, one.payment_type, one.payment_status, _differences(mine, reference))
        stored = Payment.objects.get(pk=one.pk)
        sql_events = list(OutboxEvent.objects.filter(aggregate_id=str(one.pk), type__endswith="VERIFIED")
                          | OutboxEvent.objects.filter(aggregate_id=str(one.pk), type__endswith="COMPLETED"))
        if one.pk in completed:
            assert stored.payment_status == Status.COMPLETED and stored.completion_date == at
            assert stored.updated_at >= before and stored.version == 4
            if stored.event_type and stored.event_type.endswith(("COMPLETED", "VERIFIED")):
                [event] = sql_events
                assert event.data == payment_render(stored)  # the database's rendering is the serializer's
                assert event.subject == (stored.confirmation_id or str(stored.pk))
        else:
            assert stored.version == 3 and not sql_events
    # the kinds without an event type kept theirs, and wrote a history row without an event
    kept = [one for one, _ in twins if one.purpose == "subscription" and one.payment_type == "credit"]
    assert {Payment.objects.get(pk=p.pk).event_type for p in kept} == {None, "SUBSCRIPTION_CLEARED"}
    assert all(PaymentStatusChange.objects.get(payment=p).event_type is None for p in kept)


@pytest.mark.django_db
def test_nothing_to_complete_writes_nothing():
    payment = _payment(KINDS[-1], VARIANTS[0], pair=0)  # FAILED: refused
    assert payment_complete_many(payment_ids=[payment.pk], source=Source.CHECK_ACH) == []
    assert payment_complete_many(payment_ids=[], source=Source.CHECK_ACH) == []
    assert not PaymentStatusChange.objects.exists() and not OutboxEvent.objects.exists()
    assert Payment.objects.get(pk=payment.pk).version == 3


def _waiting_for_a_lock() -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                       "AND datname = current_database()")
        return cursor.fetchone()[0] > 0


@pytest.mark.django_db(transaction=True)
def test_a_payment_failed_while_the_statement_waits_for_its_lock_is_left_alone():
    racing, other = (_payment(KINDS[0], VARIANTS[0], pair=n) for n in (1, 2))
    locked, release, done = threading.Event(), threading.Event(), {}

    def return_it():  # a late return holds the row, then commits FAILED
        try:
            with transaction.atomic():
                payment_apply_status(payment_id=racing.pk, to_status=Status.FAILED, source=Source.USIO_SYNC,
                                     failure="returned", return_code="R01")
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    def complete_them():
        try:
            done["ids"] = payment_complete_many(payment_ids=[racing.pk, other.pk], source=Source.CHECK_ACH)
        finally:
            connection.close()

    returner = threading.Thread(target=return_it)
    returner.start()
    assert locked.wait(30)
    completer = threading.Thread(target=complete_them)
    completer.start()
    deadline = time.monotonic() + 30
    while not _waiting_for_a_lock():  # the statement is blocked on the returned payment's row
        assert time.monotonic() < deadline, "the completion never waited for the row lock"
        time.sleep(0.02)
    release.set()
    returner.join(30), completer.join(30)

    assert done["ids"] == [other.pk]
    assert Payment.objects.get(pk=racing.pk).payment_status == Status.FAILED
    assert list(PaymentStatusChange.objects.filter(payment=racing).values_list("to_status", flat=True)) == ["FAILED"]
    assert list(OutboxEvent.objects.filter(aggregate_id=str(racing.pk)).values_list("type", flat=True)) == [
        "FLOAT_DEBIT_RETURNED"]
    assert Payment.objects.get(pk=other.pk).payment_status == Status.COMPLETED
    assert list(OutboxEvent.objects.filter(aggregate_id=str(other.pk)).values_list("type", flat=True)) == [
        "FLOAT_DEBIT_COMPLETED"]


@pytest.mark.django_db
def test_a_completion_writes_the_rows_the_spec_names():
    """The twins above could agree if both paths were wrong the same way: one completion checked from the SPEC's words
    (COMPLETED, version + 1, completion date, one history row, the COMPLETED event, the rendered dates)."""
    at = datetime(2026, 11, 21, 17, 0, tzinfo=UTC)
    payment = _payment(KINDS[0], VARIANTS[1], pair=9)
    [pk] = payment_complete_many(payment_ids=[payment.pk], source=Source.CHECK_ACH, actor="check_ach",
                                 raw_payload_refs={payment.pk: "check_ach:usio_auto_complete"}, at=at)
    stored = Payment.objects.get(pk=pk)
    assert (stored.payment_status, stored.version, stored.completion_date, stored.event_type) == (
        "COMPLETED", 4, at, "FLOAT_DEBIT_COMPLETED")
    assert list(PaymentStatusChange.objects.filter(payment=payment).values_list(
        "from_status", "to_status", "source", "actor", "raw_payload_ref", "event_type", "at")) == [
        ("ACHSENT", "COMPLETED", "check_ach", "check_ach", "check_ach:usio_auto_complete", "FLOAT_DEBIT_COMPLETED", at)]
    [event] = OutboxEvent.objects.filter(aggregate_id=str(payment.pk))
    assert (event.type, event.sequence, event.subject, event.source, event.occurred_at) == (
        "FLOAT_DEBIT_COMPLETED", 1, payment.confirmation_id, "PaymentService", at)
    assert event.data["amount"] == "1234567890.12" and event.data["payment_status"] == "COMPLETED"
    assert event.data["submit_date"] == "2026-11-02T15:04:05.000120Z"
    assert event.data["cleared_date"] == "2026-11-03T09:00:00.999999Z"
    assert event.data["return_date"] == "2026-01-01T00:00:00Z"
    assert event.data["completion_date"] == "2026-11-21T17:00:00Z"
    assert event.data["subscription_id"] == "sub-\u00e9\"'\\" and event.data["version"] == 4
    assert timedelta(0) <= datetime.now(UTC) - stored.updated_at < timedelta(minutes=5)
