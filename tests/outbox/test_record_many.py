"""core.outbox.outbox_record_many: the sequences outbox_record would give, aggregate by aggregate."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from core.models import OutboxEvent
from core.outbox import outbox_record, outbox_record_many

pytestmark = pytest.mark.django_db


def _event(aggregate: str, n: int) -> dict:
    return {"type": "T", "subject": f"s-{aggregate}", "aggregate_id": aggregate, "data": {"n": n}}


def test_sequences_continue_each_aggregate_and_follow_list_order():
    with transaction.atomic():
        for _ in range(3):
            outbox_record(type="T", subject="s", aggregate_id="has-three", data={})
        outbox_record(type="T", subject="s", aggregate_id="has-one", data={})
    with transaction.atomic():
        written = outbox_record_many(events=[_event("has-three", 1), _event("new", 2), _event("has-one", 3),
                                             _event("new", 4), _event("has-three", 5)])
    assert written == 5
    rows = list(OutboxEvent.objects.filter(data__has_key="n").order_by("position")
                .values_list("aggregate_id", "sequence", "data"))
    assert rows == [("has-three", 4, {"n": 1}), ("new", 1, {"n": 2}), ("has-one", 2, {"n": 3}),
                    ("new", 2, {"n": 4}), ("has-three", 5, {"n": 5})]


def test_the_last_sequences_are_read_in_one_query_per_thousand_aggregates():
    with transaction.atomic(), CaptureQueriesContext(connection) as ctx:
        outbox_record_many(events=[_event(f"a-{i}", i) for i in range(1500)])
    reads = [q["sql"] for q in ctx.captured_queries
             if "sequence" in q["sql"] and q["sql"].lstrip().upper().startswith("SELECT")]
    assert len(reads) == 2
    assert OutboxEvent.objects.filter(sequence=1).count() == 1500


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_it_refuses_and_writes_nothing():
    with pytest.raises(RuntimeError):
        outbox_record_many(events=[_event("x", 1)])
    assert not OutboxEvent.objects.exists()
