"""core.bulk.bulk_insert: the rows ``save`` would write (COPY on PostgreSQL, bulk_create elsewhere), in list order."""

import uuid
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
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


def test_ignore_conflicts_leaves_out_the_rows_a_unique_constraint_refuses_and_writes_the_rest():
    """As ``bulk_create(ignore_conflicts=True)``: a row whose unique ``event_id`` is taken (by a stored row, or by an
    earlier row of the same call) is left out, the stored row unchanged; the others are written as ``save`` writes
    them, in list order."""
    taken = _event(0)
    taken.save()
    twin_id = uuid.uuid4()
    offered = [_event(1), _event(2, event_id=taken.event_id, subject="not-this"), _event(3, event_id=twin_id),
               _event(4, event_id=twin_id, subject="nor-this")]
    with transaction.atomic():
        assert bulk_insert(OutboxEvent, offered, ignore_conflicts=True) == 4
    stored = list(OutboxEvent.objects.order_by("position"))
    assert [(e.event_id, e.subject) for e in stored] == [
        (taken.event_id, "s-0"), (offered[0].event_id, "s-1"), (twin_id, "s-3")]
    assert stored[1].data == offered[0].data and stored[1].occurred_at == offered[0].occurred_at
    # a second call in the same transaction (the temporary table is dropped after each) changes nothing more
    with transaction.atomic():
        assert bulk_insert(OutboxEvent, offered, ignore_conflicts=True) == 4
        assert bulk_insert(OutboxEvent, [_event(5)], ignore_conflicts=True) == 1
    assert OutboxEvent.objects.count() == 4


def test_ignore_conflicts_treats_other_constraints_as_bulk_create_does():
    """Only unique conflicts are ignored on PostgreSQL (``ON CONFLICT DO NOTHING``): a NOT NULL violation still raises
    and writes none of the rows. SQLite's ``INSERT OR IGNORE`` (``bulk_create``'s) ignores that row too: whatever the
    backend, ``bulk_insert`` does what ``bulk_create`` does."""

    def outcome(insert) -> tuple[bool, list]:
        offered = [_event(1, event_id=uuid.UUID(int=1)), _event(2, event_id=uuid.UUID(int=2), type=None)]
        raised = False
        try:
            with transaction.atomic():
                insert(offered)
        except IntegrityError:
            raised = True
        written = sorted(OutboxEvent.objects.values_list("event_id", flat=True))
        OutboxEvent.objects.all().delete()
        return raised, written

    expected = outcome(lambda offered: OutboxEvent.objects.bulk_create(offered, ignore_conflicts=True))
    assert outcome(lambda offered: bulk_insert(OutboxEvent, offered, ignore_conflicts=True)) == expected
    if connection.vendor == "postgresql":
        assert expected == (True, [])
