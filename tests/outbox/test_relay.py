"""The outbox relay (SPEC §4): in order, at least once, never an event of a rolled-back transaction; consumers
de-duplicated on the event id; a failing consumer holds its payment's events (only) and is retried with back-off,
then dead-lettered; the after-commit kick; the job, task and schedule."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from core import outbox_relay
from core.models import DeadLetter, OutboxConsumption, OutboxEvent, OutboxFeedEntry
from core.outbox_relay import outbox_consumer_replay, outbox_relay_run
from payments.models import Payment, PaymentStatusChange
from payments.status import payment_apply_status
from tests.broker import drain
from tests.outbox.conftest import events_of, make_payment, move, subscription_with_events

pytestmark = pytest.mark.django_db


def pending() -> int:
    return OutboxEvent.objects.filter(published_at__isnull=True).count()


def test_a_rolled_back_transaction_writes_no_event_and_the_relay_publishes_nothing(recorder):
    seen = recorder("seen")
    payment = make_payment("subscription_ach")
    move(payment, "ACHSENT")

    with pytest.raises(RuntimeError), transaction.atomic():
        result = payment_apply_status(payment_id=payment.pk, to_status="CLEARED", source="webhook")
        assert result.applied and OutboxEvent.objects.count() == 1  # written inside the transaction...
        raise RuntimeError("crash after the change")

    assert OutboxEvent.objects.count() == 0  # ...and gone with it
    assert Payment.objects.get(pk=payment.pk).payment_status == "ACHSENT"
    assert PaymentStatusChange.objects.filter(payment=payment).count() == 1  # only the ACHSENT change
    stats = outbox_relay_run()
    assert (stats.selected, stats.published) == (0, 0)
    assert seen.calls == [] and OutboxFeedEntry.objects.count() == 0


def test_relay_publishes_every_event_once_in_order_and_marks_it_published(recorder):
    everything = recorder("everything")
    only_returns = recorder("only_returns", {"SUBSCRIPTION_RETURNED"})
    payments = [subscription_with_events() for _ in range(3)]
    assert pending() == 12

    stats = outbox_relay_run(batch_size=2)

    assert stats.published == 12 and pending() == 0
    assert sorted(everything.ids()) == sorted(str(e.event_id) for e in OutboxEvent.objects.all())
    assert len(set(everything.ids())) == 12  # once each
    for payment in payments:
        assert everything.sequences(payment) == [1, 2, 3, 4]
    assert [c["type"] for c in only_returns.calls] == ["SUBSCRIPTION_RETURNED"] * 3
    # Marked published, in the feed once each, and the de-duplication rows written.
    assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()
    assert OutboxFeedEntry.objects.count() == 12
    assert OutboxConsumption.objects.filter(consumer="everything", status="done").count() == 12
    assert OutboxConsumption.objects.filter(consumer="only_returns", status="done").count() == 3

    again = outbox_relay_run()
    assert (again.selected, again.published) == (0, 0)
    assert len(everything.calls) == 12


def test_the_envelope_is_the_event_as_written(recorder):
    seen = recorder("seen")
    payment = make_payment("subscription_ach")
    move(payment, "ACHSENT", "CLEARED")
    event = OutboxEvent.objects.get()

    outbox_relay_run()

    assert seen.calls == [{
        "id": str(event.event_id), "type": "SUBSCRIPTION_CLEARED", "source": "PaymentService",
        "subject": payment.confirmation_id, "sequence": 1, "occurred_at": event.occurred_at.isoformat(),
        "data": event.data,
    }]
    assert seen.calls[0]["data"]["payment_status"] == "CLEARED"


def test_a_failing_consumer_holds_its_payments_later_events_and_the_next_run_resumes_in_order(recorder):
    first = recorder("first")
    flaky = recorder("flaky")
    last = recorder("last")
    stuck, other = subscription_with_events(), subscription_with_events()
    stuck_events = events_of(stuck)
    flaky.fail_on[str(stuck_events[1].event_id)] = 1  # the SENT event of `stuck` fails once

    with override_settings(OUTBOX_CONSUMER_BACKOFF_SECONDS=0):
        stats = outbox_relay_run()

    # `other` went through; `stuck` stopped at #2 (unpublished), and #3, #4 were not even handed out.
    assert stats.consumer_failures == 1 and stats.published == 5
    assert first.sequences(other) == flaky.sequences(other) == last.sequences(other) == [1, 2, 3, 4]
    assert first.sequences(stuck) == last.sequences(stuck) == [1, 2]  # the others still handled #2
    assert flaky.sequences(stuck) == [1, 2]
    assert list(OutboxEvent.objects.filter(aggregate_id=str(stuck.pk), published_at__isnull=True)
                .values_list("sequence", flat=True).order_by("sequence")) == [2, 3, 4]
    failure = OutboxConsumption.objects.get(consumer="flaky", event_id=stuck_events[1].event_id)
    assert (failure.status, failure.attempts) == ("failing", 1)
    assert "RuntimeError: flaky failed on SUBSCRIPTION_SENT" in failure.last_error

    with override_settings(OUTBOX_CONSUMER_BACKOFF_SECONDS=0):
        resumed = outbox_relay_run()

    assert resumed.published == 3 and resumed.consumer_failures == 0 and pending() == 0
    # No loss, no reordering, and the consumers that had handled #2 did not handle it again.
    assert first.sequences(stuck) == last.sequences(stuck) == [1, 2, 3, 4]
    assert flaky.sequences(stuck) == [1, 2, 2, 3, 4]
    failure.refresh_from_db()
    assert (failure.status, failure.attempts) == ("done", 1)
    feed = [e.event.sequence for e in OutboxFeedEntry.objects.select_related("event").order_by("position")
            if e.event.aggregate_id == str(stuck.pk)]
    assert feed == [1, 2, 3, 4]


def test_a_failed_event_waits_for_its_back_off_before_it_is_retried(recorder):
    flaky = recorder("flaky")
    payment = make_payment("subscription_ach")
    move(payment, "ACHSENT", "CLEARED")
    event = OutboxEvent.objects.get()
    flaky.fail_on[str(event.event_id)] = 2

    with override_settings(OUTBOX_CONSUMER_BACKOFF_SECONDS=30):
        before = timezone.now()
        outbox_relay_run()
        failure = OutboxConsumption.objects.get(event_id=event.event_id)
        assert failure.attempts == 1
        assert before + timedelta(seconds=29) < failure.next_attempt_at < timezone.now() + timedelta(seconds=31)

        assert outbox_relay_run().selected == 0  # not due: not even taken
        assert len(flaky.calls) == 1

        OutboxConsumption.objects.filter(pk=failure.pk).update(next_attempt_at=timezone.now())  # time passes
        outbox_relay_run()
        failure.refresh_from_db()
        assert failure.attempts == 2 and len(flaky.calls) == 2
        # Exponential: the second failure waits twice as long.
        wait = failure.next_attempt_at - failure.updated_at
        assert timedelta(seconds=59) < wait < timedelta(seconds=61)


def test_after_the_last_attempt_the_handling_is_dead_lettered_and_the_relay_moves_on(recorder):
    steady = recorder("steady")
    broken = recorder("broken")
    payment = subscription_with_events()
    first_event = events_of(payment)[0]
    broken.fail_always.add(str(first_event.event_id))

    with override_settings(OUTBOX_CONSUMER_BACKOFF_SECONDS=0, OUTBOX_CONSUMER_MAX_ATTEMPTS=3):
        for _ in range(2):
            assert outbox_relay_run().published == 0
        assert DeadLetter.objects.count() == 0
        stats = outbox_relay_run()

    assert stats.dead_lettered == 1 and stats.published == 4 and pending() == 0
    assert broken.sequences(payment) == [1, 1, 1, 2, 3, 4]
    assert steady.sequences(payment) == [1, 2, 3, 4]
    dead = OutboxConsumption.objects.get(consumer="broken", event_id=first_event.event_id)
    assert (dead.status, dead.attempts) == ("dead", 3)
    letter = DeadLetter.objects.get()
    assert letter.task_name == "core.outbox_consumer_replay" and letter.queue == "default"
    assert letter.kwargs == {"consumer": "broken", "event_id": str(first_event.event_id)}
    assert letter.attempts == 3 and "broken failed on SUBSCRIPTION_CLEARED" in letter.last_error

    # The replay (what the dead letter's replay runs) handles it once the consumer works again.
    broken.fail_always.clear()
    assert outbox_consumer_replay(consumer="broken", event_id=str(first_event.event_id)) is True
    dead.refresh_from_db()
    assert dead.status == "done"
    assert outbox_consumer_replay(consumer="broken", event_id=str(first_event.event_id)) is False
    assert broken.sequences(payment) == [1, 1, 1, 2, 3, 4, 1]


def test_the_replay_task_runs_the_consumer_and_refuses_unknown_names(recorder):
    from core.errors import PermanentJobError

    seen = recorder("seen")
    payment = make_payment("subscription_ach")
    move(payment, "ACHSENT", "CLEARED")
    event = OutboxEvent.objects.get()

    assert outbox_relay.outbox_consumer_replay_task(consumer="seen", event_id=str(event.event_id)) is True
    assert len(seen.calls) == 1
    with pytest.raises(PermanentJobError):
        outbox_relay.outbox_consumer_replay_task(consumer="nobody", event_id=str(event.event_id))


def test_a_permanent_error_is_dead_lettered_at_once(registry):
    from core.errors import PermanentJobError

    def refuse(envelope):
        raise PermanentJobError("cannot ever work")

    outbox_relay.register_consumer("refuser", refuse)
    payment = make_payment("subscription_ach")
    move(payment, "ACHSENT", "CLEARED")

    stats = outbox_relay_run()

    assert (stats.dead_lettered, stats.published) == (1, 1)
    assert OutboxConsumption.objects.get().status == "dead"
    assert DeadLetter.objects.get().attempts == 1


def test_a_consumers_database_effect_rolls_back_with_its_failure(registry):
    from blocklist.models import BlocklistRecord
    from blocklist.services import blocklist_block

    def block_then_fail(envelope):
        blocklist_block(user_id=envelope["data"]["user_id"], reason="test", actor="test")
        raise RuntimeError("after the effect")

    outbox_relay.register_consumer("half", block_then_fail)
    payment = make_payment("subscription_ach")
    move(payment, "ACHSENT", "CLEARED")

    outbox_relay_run()

    assert BlocklistRecord.objects.count() == 0  # the savepoint took the effect back with it
    assert OutboxConsumption.objects.get().status == "failing"
    assert pending() == 1


def test_registering_another_handler_under_a_taken_name_fails(registry):
    def one(envelope):
        pass

    def two(envelope):
        pass

    outbox_relay.register_consumer("x", one, {"A"})
    assert outbox_relay.register_consumer("x", one, {"A"}).handler is one  # same registration: no-op
    with pytest.raises(ValueError):
        outbox_relay.register_consumer("x", two)
    with pytest.raises(ValueError):
        outbox_relay.register_consumer("x", one, {"B"})


def test_the_payments_consumers_are_registered_at_startup():
    names = list(outbox_relay._CONSUMERS)
    assert names.index("payments.blocklist_auto_block") < names.index("payments.transaction_service_notifier")
    assert outbox_relay.consumer_get("payments.blocklist_auto_block").types == {
        "SUBSCRIPTION_RETURNED", "FLOAT_DEBIT_RETURNED"}


# --- Kick after commit, job, task, schedule -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_commit_kicks_one_relay_run_per_burst_and_a_rollback_none(registry):
    drain("default")
    payment = make_payment("subscription_ach")
    move(payment, "ACHSENT")
    with pytest.raises(RuntimeError), transaction.atomic():
        payment_apply_status(payment_id=payment.pk, to_status="CLEARED", source="webhook")
        raise RuntimeError("rolled back")
    assert drain("default") == []

    move(payment, "CLEARED", "SENT", "COMPLETED")  # a burst of three commits

    messages = drain("default")
    assert [headers["task"] for headers, _ in messages] == ["core.outbox_relay"]
    assert messages[0][0]["eta"] is not None  # trailing edge: it runs after the burst window


def test_run_job_outbox_relay(recorder, capsys):
    recorder("seen")
    subscription_with_events()

    call_command("run_job", "outbox_relay", "--batch-size", "10")

    out = json.loads(capsys.readouterr().out)
    assert out["job"] == "outbox_relay" and out["result"]["published"] == 4
    assert pending() == 0


def test_the_task_and_schedules_are_registered():
    from config.celery import app
    from core.schedules import all_schedules
    from core.tasks import route_job

    specs = {s.name: s for s in all_schedules()}
    assert specs["outbox relay"].task == "core.outbox_relay" and specs["outbox relay"].every_seconds == 60
    assert specs["outbox push deliveries"].task == "core.outbox_push"
    for name in ("core.outbox_relay", "core.outbox_consumer_replay", "core.outbox_push", "core.outbox_push_retry"):
        task = app.tasks[name]
        assert route_job(name, (), {}, {}, task=task) == {"queue": "default"}


def test_the_task_runs_the_relay(recorder):
    seen = recorder("seen")
    subscription_with_events()
    result = outbox_relay.outbox_relay_task.apply().get()
    assert result["published"] == 4 and len(seen.calls) == 4
