# ruff: noqa: F811  (pytest fixtures imported from conftest_jpm_webhook)
"""Processing JPM webhook messages (SPEC §7.1): JPM subscription payments are submitted through the API to the
sandbox, the sandbox's own callbacks are delivered (signed) to ``POST /webhooks/jpm``, and the queued job is run
as a worker runs it. Exact history and outbox counts per payment; stale, duplicate and shuffled callbacks."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from django.core.management import call_command

from blocklist.selectors import blocklist_is_blocked
from core.outbox_relay import outbox_relay_run
from payments.models import Source
from payments.status import payment_apply_status
from syncing.models import JpmUnknownCallback, JpmWebhookMessage
from tests.syncing.conftest_jpm_webhook import (  # noqa: F401  (fixtures)
    USER,
    callback,
    changes,
    deliver,
    event_types,
    fresh,
    jpm,
    jpm_customer,
    message,
    queued_ids,
    run_queued,
    sandbox_callbacks,
    state,
    subscribe,
    webhook_queue,
)

pytestmark = pytest.mark.django_db

API = (None, "PROCESSING", "api")
SENT = ("PROCESSING", "ACHSENT", "api")


def test_duplicated_x10_and_shuffled_callbacks_apply_once(sandbox, subscribe, jpm, webhook_queue):
    ok, returned = subscribe("acc-ok"), subscribe("acc-r02")
    sandbox.advance(days=3)  # ok: PENDING, ACCEPTED, CLEARED, COMPLETED; r02: the same, then RETURNED
    callbacks = sandbox_callbacks(sandbox)
    assert Counter(c["endToEndId"] for c in callbacks) == {ok.confirmation_id: 4, returned.confirmation_id: 5}
    copies = callbacks * 10
    rng = random.Random(7)
    rng.shuffle(copies)
    bodies, i = [], 0
    while i < len(copies):  # messages of 1 to 50 callbacks
        size = rng.randint(1, 50)
        bodies.append(message(*copies[i:i + size]))
        i += size
    for body in bodies:
        response = deliver(jpm, body)
        assert response.status_code == 200, response.content

    results = run_queued()

    assert sum(r["callbacks"] for r in results) == 90
    ok = fresh(ok)
    assert ok.payment_status == "CLEARED" and ok.completion_date is None  # JPM COMPLETED is not final
    assert changes(ok) == [API, SENT, ("ACHSENT", "CLEARED", "webhook")]
    assert event_types(ok) == ["SUBSCRIPTION_CLEARED", "SUBSCRIPTION_SENT"]
    returned = fresh(returned)
    assert (returned.payment_status, returned.return_code) == ("FAILED", "AC04")
    assert returned.return_date is not None and returned.return_info.startswith("AC04: ")
    events = event_types(returned)
    assert events.count("SUBSCRIPTION_RETURNED") == 1 and events[-1] == "SUBSCRIPTION_RETURNED"
    assert all(events.count(t) == 1 for t in events)
    webhook_changes = [c for c in changes(returned) if c[2] == "webhook"]
    assert webhook_changes[-1][1] == "FAILED" and len(webhook_changes) == 1 + ("SUBSCRIPTION_CLEARED" in events)
    assert len(changes(returned)) == 2 + len(webhook_changes)

    before = (state(ok), state(returned))
    for body in bodies[:5]:  # JPM sends them all again: stored once, not processed again
        assert deliver(jpm, body).json()["duplicate"] is True
    assert queued_ids() == []
    assert (state(ok), state(returned)) == before
    assert JpmWebhookMessage.objects.filter(status="processed").count() == len(set(bodies))


def test_every_message_ends_processed_with_its_outcome_counts(sandbox, subscribe, jpm, webhook_queue):
    payment = subscribe("acc-ok")
    sandbox.advance(days=2)
    callbacks = sandbox_callbacks(sandbox)
    deliver(jpm, message(*callbacks, *callbacks, callback("f" * 32, "CLEARED")))

    (result,) = run_queued()

    row = JpmWebhookMessage.objects.get()
    # PENDING/ACCEPTED: ACHSENT already (duplicate); CLEARED, COMPLETED applied once, then duplicates.
    assert row.outcome == {"applied": 2, "duplicate": 6, "stale": 0, "unknown": 1}
    assert (row.status, row.attempts, row.callbacks) == ("processed", 1, 9)
    assert row.processed_at is not None and row.last_error == ""
    assert result["payments"] == 1
    assert fresh(payment).payment_status == "CLEARED"


def test_stale_callbacks_after_failed_never_regress(sandbox, subscribe, jpm, webhook_queue):
    payment = subscribe("acc-rejected")
    deliver(jpm, message(*sandbox_callbacks(sandbox)))  # REJECTED
    run_queued()
    payment = fresh(payment)
    assert (payment.payment_status, payment.return_code) == ("FAILED", "AC01")
    assert payment.return_info.startswith("AC01: ") and payment.return_date is None  # rejected, not returned
    assert changes(payment)[-1] == ("ACHSENT", "FAILED", "webhook")
    assert event_types(payment) == ["SUBSCRIPTION_FAILED"]
    before = state(payment)

    e2e = payment.confirmation_id
    deliver(jpm, message(*(callback(e2e, s, at="2031-01-01T00:00:00+00:00") for s in
                           ("PENDING", "ACCEPTED", "HOLD", "CLEARED", "COMPLETED"))))
    run_queued()

    assert state(payment) == before
    stale = JpmWebhookMessage.objects.order_by("-id").first()
    assert stale.outcome == {"applied": 0, "duplicate": 0, "stale": 5, "unknown": 0}


def _completed_by_check_ach(payment):
    """Setup: what check-ach does after the three-business-day gate (the status service, as check-ach calls it)."""
    result = payment_apply_status(payment_id=payment.pk, to_status="COMPLETED", source=Source.CHECK_ACH,
                                  actor="check_ach")
    assert result.applied


@pytest.mark.parametrize(("account_id", "code", "blocked"), [("acc-r02", "AC04", True), ("acc-r01", "AM04", False)])
def test_after_our_completed_stale_callbacks_change_nothing_and_a_late_return_fails_it(
        sandbox, subscribe, jpm, webhook_queue, account_id, code, blocked):
    payment = subscribe(account_id)
    sandbox.advance(days=1, seconds=60)  # up to COMPLETED at JPM
    early = sandbox_callbacks(sandbox)
    deliver(jpm, message(*early))
    run_queued()
    assert event_types(payment) == ["SUBSCRIPTION_CLEARED", "SUBSCRIPTION_SENT"]
    _completed_by_check_ach(payment)
    outbox_relay_run()
    before = state(payment)

    # CLEARED / ACCEPTED / COMPLETED again, in a new message: our COMPLETED never regresses, no second SENT.
    deliver(jpm, message(*(dict(c, createDateTime="2031-01-01T00:00:00+00:00") for c in early)))
    run_queued()
    assert state(payment) == before

    sandbox.advance(days=2)  # the late return
    late = [c for c in sandbox_callbacks(sandbox) if c["paymentStatus"] == "RETURNED"]
    assert len(late) == 1
    deliver(jpm, message(*late))
    run_queued()

    payment = fresh(payment)
    assert (payment.payment_status, payment.return_code) == ("FAILED", code)
    assert payment.return_date is not None and payment.completion_date is not None
    assert changes(payment)[-1] == ("COMPLETED", "FAILED", "webhook")
    assert event_types(payment) == ["SUBSCRIPTION_CLEARED", "SUBSCRIPTION_SENT", "SUBSCRIPTION_COMPLETED",
                                     "SUBSCRIPTION_RETURNED"]
    assert blocklist_is_blocked(user_id=USER) is False
    outbox_relay_run()
    assert blocklist_is_blocked(user_id=USER) is blocked


def test_a_return_before_the_other_callbacks_wins_and_they_are_stale(sandbox, subscribe, jpm, webhook_queue):
    payment = subscribe("acc-r02")
    sandbox.advance(days=3)
    callbacks = sandbox_callbacks(sandbox)
    returned = [c for c in callbacks if c["paymentStatus"] == "RETURNED"]
    deliver(jpm, message(*returned))
    run_queued()
    deliver(jpm, message(*[c for c in callbacks if c["paymentStatus"] != "RETURNED"]))
    run_queued()

    payment = fresh(payment)
    assert payment.payment_status == "FAILED" and payment.cleared_date is None
    assert changes(payment) == [API, SENT, ("ACHSENT", "FAILED", "webhook")]
    assert event_types(payment) == ["SUBSCRIPTION_RETURNED"]  # no CLEARED, no SENT after the final event


def test_a_callback_for_a_payment_still_processing_moves_it_to_achsent(sandbox, jpm_customer, jpm, webhook_queue):
    """The submission's worker died between the processor call and step 3: the callback carries our reference."""
    from core.auth.principal import Principal
    from core.idempotency import fingerprint
    from payments.services import payment_call_processor, payment_claim

    data = {"user_id": USER, "purpose": "subscription", "payment_type": "debit", "payment_method": "ach",
            "amount": "9.99", "account_id": "acc-ok"}
    claim = payment_claim(principal=Principal(role="service", name="t", client_id="key:t"), idempotency_key="k-1",
                          fingerprint=fingerprint(method="POST", path="/api/v1/payments", body=data), data=data)
    assert payment_call_processor(claim=claim).kind == "sent"
    payment = fresh(claim.payment)
    assert payment.payment_status == "PROCESSING"

    deliver(jpm, message(*sandbox_callbacks(sandbox)))  # PENDING, endToEndId = our reference
    run_queued()

    payment = fresh(payment)
    assert (payment.payment_status, payment.confirmation_id) == ("ACHSENT", payment.reference)
    assert changes(payment) == [API, ("PROCESSING", "ACHSENT", "webhook")]
    assert event_types(payment) == []


def test_unknown_end_to_end_id_is_recorded_once_and_the_message_completes(subscribe, jpm, webhook_queue):
    unknown = callback("UNKNOWN-E2E-1", "RETURNED", code="AC04")
    deliver(jpm, message(unknown))
    run_queued()
    row = JpmUnknownCallback.objects.get()
    assert (row.end_to_end_id, row.payment_status, row.return_code, row.times_seen) == (
        "UNKNOWN-E2E-1", "RETURNED", "AC04", 1)
    assert row.callback == unknown
    first = JpmWebhookMessage.objects.get()
    assert first.status == "processed" and first.outcome["unknown"] == 1 and first.attempts == 1

    deliver(jpm, message(unknown, callback("UNKNOWN-E2E-2", "PENDING")))  # another message with it again
    deliver(jpm, message(unknown))  # the first body again: a duplicate, not processed again
    run_queued()

    assert JpmUnknownCallback.objects.get(end_to_end_id="UNKNOWN-E2E-1").times_seen == 2
    assert JpmUnknownCallback.objects.count() == 2
    assert set(JpmWebhookMessage.objects.values_list("status", flat=True)) == {"processed"}


def test_a_jpm_callback_never_touches_a_usio_payment(jpm, webhook_queue, sandbox, client_as, jpm_customer):
    response = client_as("service").post("/api/v1/payments", {
        "user_id": USER, "purpose": "float", "payment_method": "ach", "payment_type": "debit", "amount": "5.00",
        "account_id": "acc-ok"}, format="json", HTTP_IDEMPOTENCY_KEY="k-usio")
    assert response.status_code == 201, response.content
    from payments.models import Payment

    payment = Payment.objects.get(pk=response.json()["id"])
    before = state(payment)
    deliver(jpm, message(callback(payment.reference, "RETURNED", code="AC04"),
                         callback(payment.confirmation_id, "REJECTED", code="AC04")))
    run_queued()
    assert state(payment) == before
    assert JpmUnknownCallback.objects.count() == 2


def test_run_job_jpm_webhooks_processes_every_received_message(sandbox, subscribe, jpm, webhook_queue, capsys):
    payment = subscribe("acc-ok")
    sandbox.advance(seconds=3700)
    deliver(jpm, message(*sandbox_callbacks(sandbox)))
    deliver(jpm, message(callback("NOPE", "PENDING")))
    assert len(queued_ids()) == 2  # the queued jobs are lost (say the broker was flushed)

    call_command("run_job", "jpm_webhooks", "--as-of", "2020-01-01")  # as_of is ignored

    assert '"processed": 2' in capsys.readouterr().out
    assert fresh(payment).payment_status == "CLEARED"
    assert set(JpmWebhookMessage.objects.values_list("status", flat=True)) == {"processed"}
    call_command("run_job", "jpm_webhooks")
    assert '"examined": 0' in capsys.readouterr().out
