"""Property: whatever sequence of updates arrives (any status, any source, any failure kind, repeated, out of
order), the status machine only ever walks SPEC §3's table, never leaves a final status, and its bookkeeping adds
up: one history row and one version per applied change, one outbox event per applied change that has an event
type, in order, each carrying the payment as it was right after that change."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payments.models import PaymentStatusChange, Source
from payments.status import payment_apply_status
from tests.payments.test_status import FINAL, STATUSES, events, history, make_payment, spec_allows

pytestmark = pytest.mark.django_db

KINDS = [
    ("subscription", "debit", "ach"),
    ("float", "debit", "ach"),
    ("float", "credit", "ach"),
    ("loan", "debit", "ach"),
    ("float", "debit", "pinless"),
    ("loan", "credit", "pinless"),
    ("float", "credit", "rtp"),
    ("prenote", "debit", "ach"),
]
FAILURES = [None, "returned", "rejected", "declined", "not_submitted"]

updates = st.lists(
    st.tuples(st.sampled_from(STATUSES), st.sampled_from(Source.values), st.sampled_from(FAILURES)),
    min_size=1,
    max_size=15,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(KINDS), sequence=updates)
def test_random_update_sequences_respect_the_table(kind, sequence):
    purpose, payment_type, method = kind
    payment = make_payment(purpose=purpose, payment_type=payment_type, payment_method=method)
    status = "PROCESSING"
    applied: list[tuple[str, str, str | None]] = []  # (from, to, event type) of every applied change
    for to_status, source, failure in sequence:
        result = payment_apply_status(payment_id=payment.pk, to_status=to_status, source=source, actor="hypothesis",
                                      failure=failure)
        assert result.applied == spec_allows(status, to_status, method), (status, to_status, method)
        if result.applied:
            assert status not in FINAL  # a final status is never left
            applied.append((status, to_status, result.event_type))
            status = to_status
        assert result.payment.payment_status == status

    payment.refresh_from_db()
    assert payment.payment_status == status
    assert payment.version == len(applied)
    rows = history(payment)
    assert [(r.from_status, r.to_status, r.event_type) for r in rows] == applied
    assert all(spec_allows(r.from_status, r.to_status, method) for r in rows)
    assert PaymentStatusChange.objects.filter(payment=payment).count() == len(applied)
    written = events(payment)
    assert [e.type for e in written] == [event for _, _, event in applied if event]
    assert [e.sequence for e in written] == list(range(1, len(written) + 1))
    # Each event carries the payment right after its change: versions increase with the changes that wrote one.
    versions = [index + 1 for index, (_, _, event) in enumerate(applied) if event]
    assert [e.data["version"] for e in written] == versions
    assert [e.data["payment_status"] for e in written] == [to for _, to, event in applied if event]
