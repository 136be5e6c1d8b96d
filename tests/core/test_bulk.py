"""core.bulk.bulk_insert: the rows ``save`` would write (COPY on PostgreSQL, bulk_create elsewhere), in list order."""

import uuid
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.bulk import bulk_insert
from core.models import OutboxEvent

pytestmark = pytest.mark.django_db


def _event(n: int, **overrides) -> OutboxEvent:
    values = {"event_id": uuid.uuid4(), "type": "T", "subject": f"s-{n}", "aggregate_id": f"a-{n}", "sequence": 1,
              "data": {"n": n, "text": 'quote " backslash \\ tab \t newline \n é', "nested": [1, None, {"x": 1.5}]},
              "occurred_at": timezone.now() - timedelta(minutes=n)}
    return OutboxEvent(**{**values, **overrides})


def test_rows_are_written_as_save_writes_them_in_list_order():
    before = timezone.now()
    events = [_event(n) for n in range(7)]
    assert bulk_insert(OutboxEvent, events) == 7
    stored = list(OutboxEvent.objects.order_by("position"))
    assert [e.event_id for e in stored] == [e.event_id for e in events]  # positions follow the list
    for original, row in zip(events, stored, strict=True):
        assert (row.type, row.subject, row.aggregate_id, row.sequence, row.data, row.occurred_at) == (
            original.type, original.subject, original.aggregate_id, original.sequence, original.data,
            original.occurred_at)
        assert row.source == "PaymentService"  # the field default
        assert row.created_at >= before and row.published_at is None  # auto_now_add, nullable


def test_nothing_to_insert_writes_nothing():
    assert bulk_insert(OutboxEvent, []) == 0
    assert not OutboxEvent.objects.exists()


def test_a_constraint_violation_writes_none_of_the_rows():
    OutboxEvent.objects.create(**{k: v for k, v in vars(_event(0)).items() if not k.startswith("_")
                                  and k != "position"} | {"event_id": (taken := uuid.uuid4())})
    with pytest.raises(IntegrityError), transaction.atomic():
        bulk_insert(OutboxEvent, [_event(1), _event(2, event_id=taken)])
    assert OutboxEvent.objects.count() == 1


def test_status_changes_are_stored_as_save_stores_them():
    """Every kind of value the bulk path may hand over without Django's preparation (strings, a foreign key's UUID,
    aware date-times, None) and the rest (integers, JSON): stored exactly as ``save`` stores the same instances."""
    from payments.models import Payment, PaymentStatusChange

    payment = Payment.objects.create(user_id="u-1", purpose="float", payment_method="ach", payment_type="debit",
                                     payment_provider="usio", amount="10.00", payment_status="ACHSENT")
    at = timezone.now() - timedelta(days=1, microseconds=7)

    def changes() -> list[PaymentStatusChange]:
        return [PaymentStatusChange(payment=payment, from_status="ACHSENT", to_status="FAILED", source="usio_sync",
                                    actor='a "quoted" \\ actor \t é', return_code="R01", event_type=None, at=at,
                                    raw_payload_ref=""),
                PaymentStatusChange(payment_id=payment.pk, from_status=None, to_status="COMPLETED",
                                    source="check_ach", actor="check_ach", return_code=None,
                                    event_type="FLOAT_DEBIT_COMPLETED", at=at + timedelta(hours=3),
                                    raw_payload_ref="check_ach:usio_auto_complete")]

    fields = ["payment_id", "from_status", "to_status", "source", "actor", "return_code", "raw_payload_ref",
              "event_type", "at"]
    for change in changes():
        change.save()
    saved = list(PaymentStatusChange.objects.order_by("id").values_list(*fields))
    assert bulk_insert(PaymentStatusChange, changes()) == 2
    bulked = list(PaymentStatusChange.objects.order_by("id").values_list(*fields))[2:]
    assert bulked == saved
    assert bulked[0][fields.index("at")] == at
