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
