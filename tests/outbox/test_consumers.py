"""The in-process consumers of payment events (``payments.consumers``), run by the relay against the sandbox's
Transaction Service: the blocklist auto-block and the Transaction Service notifier."""

from __future__ import annotations

import pytest
from django.test import override_settings

from blocklist.models import BlocklistRecord
from blocklist.selectors import blocklist_is_blocked
from core.models import DeadLetter, OutboxConsumption, OutboxEvent
from core.outbox_relay import outbox_relay_run
from tests.outbox.conftest import make_payment, move, returned

pytestmark = pytest.mark.django_db

BLOCKLIST = "payments.blocklist_auto_block"
NOTIFIER = "payments.transaction_service_notifier"


def notifications(sandbox) -> list[dict]:
    """What the Transaction Service accepted (it de-duplicates on event_id)."""
    return sandbox.received("transactions")


def ts_requests(sandbox) -> int:
    """Every POST the Transaction Service got, duplicates included."""
    return len(sandbox.requests("transactions"))


def only_event(payment, type_: str) -> OutboxEvent:
    return OutboxEvent.objects.get(aggregate_id=str(payment.pk), type=type_)


# --- Blocklist auto-block --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "failure", "code", "event_type", "blocks"),
    [
        ("subscription_ach", "returned", "R02", "SUBSCRIPTION_RETURNED", True),
        ("subscription_ach", "returned", "AC04", "SUBSCRIPTION_RETURNED", True),
        ("float_debit_ach", "returned", "R02", "FLOAT_DEBIT_RETURNED", True),
        ("float_debit_ach", "returned", "R16", "FLOAT_DEBIT_RETURNED", True),
        ("float_debit_ach", "returned", "R01", "FLOAT_DEBIT_RETURNED", False),  # not a blocking code
        ("subscription_ach", "returned", "R01", "SUBSCRIPTION_RETURNED", False),
        ("float_credit_ach", "returned", "R02", "FLOAT_CREDIT_RETURNED", False),  # never: not a debit of the user
        ("loan_debit_ach", "returned", "R02", "LOAN_DEBIT_RETURNED", False),
        ("subscription_ach", "rejected", "R02", "SUBSCRIPTION_FAILED", False),  # rejected, not returned
    ],
)
def test_the_blocklist_blocks_only_for_subscription_and_float_debit_returns_with_a_blocking_code(
    sandbox, kind, failure, code, event_type, blocks
):
    payment = make_payment(kind)
    move(payment, "ACHSENT", ("FAILED", {"failure": failure, "return_code": code, "source": "usio_sync"}))
    event = OutboxEvent.objects.get(aggregate_id=str(payment.pk))
    assert event.type == event_type

    assert outbox_relay_run().published == 1

    assert blocklist_is_blocked(user_id=payment.user_id) is blocks
    records = list(BlocklistRecord.objects.filter(user_id=payment.user_id).values(
        "status", "source", "return_code", "payment_id", "actor"))
    assert records == ([{"status": "BLOCKED", "source": "auto", "return_code": code, "payment_id": payment.pk,
                         "actor": "system"}] if blocks else [])
    handled = OutboxConsumption.objects.filter(consumer=BLOCKLIST, event_id=event.event_id).exists()
    assert handled is (event_type in ("SUBSCRIPTION_RETURNED", "FLOAT_DEBIT_RETURNED"))


def test_a_late_return_after_completion_also_blocks(sandbox):
    payment = make_payment("subscription_ach")
    move(payment, "ACHSENT", "COMPLETED", returned("R03"))
    outbox_relay_run()
    assert blocklist_is_blocked(user_id=payment.user_id)
    assert BlocklistRecord.objects.filter(user_id=payment.user_id).count() == 1


# --- Transaction Service notifier ------------------------------------------------------------------------------------


def test_a_float_payment_leaving_achsent_notifies_the_transaction_service(sandbox):
    debit = make_payment("float_debit_ach", amount="40.10")
    credit = make_payment("float_credit_ach")
    move(debit, "ACHSENT", "COMPLETED")
    move(credit, "ACHSENT", returned("R03"))

    outbox_relay_run()

    debit_event = only_event(debit, "FLOAT_DEBIT_COMPLETED")
    credit_event = only_event(credit, "FLOAT_CREDIT_RETURNED")
    assert notifications(sandbox) == [
        {"event_id": str(debit_event.event_id), "confirmation_id": debit.confirmation_id, "user_id": debit.user_id,
         "payment_status": "COMPLETED", "previous_status": "ACHSENT", "amount": "40.10",
         "occurred_at": debit_event.occurred_at.isoformat()},
        {"event_id": str(credit_event.event_id), "confirmation_id": credit.confirmation_id,
         "user_id": credit.user_id, "payment_status": "FAILED", "previous_status": "ACHSENT", "amount": "25.00",
         "occurred_at": credit_event.occurred_at.isoformat()},
    ]
    assert ts_requests(sandbox) == 2


def test_leaving_cleared_notifies_with_cleared_as_the_previous_status(sandbox):
    payment = make_payment("float_debit_ach")
    move(payment, "ACHSENT", "CLEARED", "COMPLETED")  # entering CLEARED writes no float event
    outbox_relay_run()
    assert [(n["previous_status"], n["payment_status"]) for n in notifications(sandbox)] == [("CLEARED", "COMPLETED")]


def test_other_events_never_notify(sandbox):
    late = make_payment("float_debit_ach")
    move(late, "ACHSENT", "COMPLETED", returned("R01"))  # the late return leaves COMPLETED, not ACHSENT
    card = make_payment("float_debit_pinless")
    move(card, "COMPLETED")  # PROCESSING → COMPLETED
    rejected = make_payment("float_debit_ach")
    move(rejected, ("FAILED", {"failure": "rejected", "return_code": "R02"}))  # PROCESSING → FAILED
    subscription = make_payment("subscription_ach")
    move(subscription, "ACHSENT", "COMPLETED")

    stats = outbox_relay_run()

    assert stats.published == 5 and stats.consumer_failures == 0
    assert [n["event_id"] for n in notifications(sandbox)] == [str(only_event(late, "FLOAT_DEBIT_COMPLETED").event_id)]
    assert ts_requests(sandbox) == 1


def test_a_consumer_failing_midway_resumes_without_loss_repeats_or_reordering(sandbox, monkeypatch):
    """Exact counts of every effect: blocklist calls and records, Transaction Service requests and acceptances."""
    import blocklist.services

    real_block = blocklist.services.blocklist_block_for_return
    block_calls: list[str] = []

    def counting_block(**kwargs):
        block_calls.append(kwargs["payment_id"])
        return real_block(**kwargs)

    monkeypatch.setattr(blocklist.services, "blocklist_block_for_return", counting_block)
    first = make_payment("float_debit_ach")  # one event: blocklist (blocks) + notifier
    move(first, "ACHSENT", returned("R02"))
    second = make_payment("float_debit_ach")  # two events: notifier (COMPLETED), then blocklist (late R02)
    move(second, "ACHSENT", "COMPLETED", returned("R02"))
    sandbox.fault("transactions.payments", "500", count=1)  # the first notification fails: `first`'s

    with override_settings(OUTBOX_CONSUMER_BACKOFF_SECONDS=0):
        run1 = outbox_relay_run()

    first_event = only_event(first, "FLOAT_DEBIT_RETURNED")
    second_completed = only_event(second, "FLOAT_DEBIT_COMPLETED")
    assert (run1.published, run1.consumer_failures) == (2, 1)
    assert OutboxEvent.objects.get(pk=first_event.pk).published_at is None
    assert block_calls == [str(first.pk), str(second.pk)]  # the blocklist handled `first` despite the failure
    assert BlocklistRecord.objects.filter(user_id=first.user_id).count() == 1
    assert [n["event_id"] for n in notifications(sandbox)] == [str(second_completed.event_id)]
    assert ts_requests(sandbox) == 2

    with override_settings(OUTBOX_CONSUMER_BACKOFF_SECONDS=0):
        run2 = outbox_relay_run()

    assert (run2.published, run2.consumer_failures) == (1, 0)
    assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()
    assert block_calls == [str(first.pk), str(second.pk)]  # not called again for `first`
    assert BlocklistRecord.objects.filter(user_id=first.user_id).count() == 1
    assert BlocklistRecord.objects.filter(user_id=second.user_id).count() == 1
    assert [n["event_id"] for n in notifications(sandbox)] == [str(second_completed.event_id),
                                                               str(first_event.event_id)]
    assert ts_requests(sandbox) == 3  # one failed, two delivered: none repeated
    assert OutboxConsumption.objects.filter(status="done").count() == 5  # 2 blocklist + 3 notifier (2 no-op)

    assert outbox_relay_run().selected == 0
    assert ts_requests(sandbox) == 3


def test_a_timed_out_notification_is_sent_again_and_the_receiver_deduplicates_it(sandbox):
    payment = make_payment("float_debit_ach")
    move(payment, "ACHSENT", "COMPLETED")
    sandbox.fault("transactions.payments", "timeout", count=1)  # received, but the answer never comes

    with override_settings(OUTBOX_CONSUMER_BACKOFF_SECONDS=0):
        assert outbox_relay_run().consumer_failures == 1
        assert outbox_relay_run().published == 1

    assert ts_requests(sandbox) == 2  # at least once...
    assert len(notifications(sandbox)) == 1  # ...and idempotent on event_id at the receiver


def test_a_refused_notification_is_dead_lettered_at_once(sandbox):
    sandbox.fault("transactions.payments", "400")  # the Transaction Service refuses it for real (HTTP 400)
    payment = make_payment("float_debit_ach")
    move(payment, "ACHSENT", "COMPLETED")

    stats = outbox_relay_run()

    assert (stats.published, stats.dead_lettered) == (1, 1)
    letter = DeadLetter.objects.get()
    assert letter.task_name == "core.outbox_consumer_replay" and letter.kwargs["consumer"] == NOTIFIER
    assert "http_400" in letter.last_error
    assert [r["status"] for r in sandbox.requests("transactions")] == [400]  # sent once, never retried
    assert sandbox.received("transactions") == []
