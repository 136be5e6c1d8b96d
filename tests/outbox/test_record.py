"""core.outbox.outbox_record: the aggregate's next sequence, read by the INSERT itself."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from core.models import OutboxEvent
from core.outbox import outbox_record

pytestmark = pytest.mark.django_db


def test_each_event_takes_its_aggregates_next_sequence_in_one_statement_and_comes_back_as_stored():
    with transaction.atomic():
        outbox_record(type="T", subject="s", aggregate_id="other", data={})
        for _ in range(2):
            outbox_record(type="T", subject="s", aggregate_id="agg", data={})
        with CaptureQueriesContext(connection) as ctx:
            event = outbox_record(type="PAID", subject="conf-1", aggregate_id="agg", data={"amount": "1.00"})
    assert len(ctx.captured_queries) == 1
    stored = OutboxEvent.objects.get(pk=event.pk)
    assert (event.sequence, stored.sequence) == (3, 3)
    assert event._state.adding is False and event.pk == max(OutboxEvent.objects.values_list("pk", flat=True))
    columns = [f.attname for f in OutboxEvent._meta.concrete_fields]
    assert {name: getattr(event, name) for name in columns} == {name: getattr(stored, name) for name in columns}
    assert (stored.type, stored.subject, stored.source, stored.data) == ("PAID", "conf-1", "PaymentService",
                                                                        {"amount": "1.00"})
    assert list(OutboxEvent.objects.filter(aggregate_id="agg").order_by("pk").values_list("sequence", flat=True)) \
        == [1, 2, 3]
    assert OutboxEvent.objects.get(aggregate_id="other").sequence == 1


def test_the_next_sequence_follows_the_highest_not_the_count():
    with transaction.atomic():
        outbox_record(type="T", subject="s", aggregate_id="agg", data={})
        OutboxEvent.objects.filter(aggregate_id="agg").update(sequence=5)
        event = outbox_record(type="T", subject="s", aggregate_id="agg", data={})
    assert event.sequence == 6
    assert sorted(OutboxEvent.objects.filter(aggregate_id="agg").values_list("sequence", flat=True)) == [5, 6]
