"""Back office (issue 8): replay a dead letter and re-deliver an event, each with a reason, by the admin group only."""

import pytest
from django.utils import timezone

from blocklist.selectors import blocklist_is_blocked
from core.models import (
    AuditEntry,
    DeadLetter,
    OutboxConsumption,
    OutboxConsumptionStatus,
    OutboxEvent,
    PushDelivery,
    PushDeliveryStatus,
)
from core.outbox_push import push_subscription_create
from core.outbox_relay import CONSUMER_REPLAY_TASK, outbox_consumer_replay
from payments.consumers import BLOCKLIST_CONSUMER
from tests.backoffice.conftest import login
from tests.broker import drain
from tests.outbox.conftest import make_payment, move

pytestmark = pytest.mark.django_db

ACCOUNT_NUMBER = "987654321012"
CHANGELIST = "/admin/core/deadletter/"


def sent(task_name: str) -> list[tuple[dict, object]]:
    return [(headers, payload) for headers, payload in drain("default") if headers["task"] == task_name]


# --- Dead letters -----------------------------------------------------------------------------------------------


@pytest.fixture
def letter() -> DeadLetter:
    return DeadLetter.objects.create(
        task_name="tests.backoffice_probe", task_id="t-42", queue="default", args=["pay-1"],
        kwargs={"n": 1, "account_number": ACCOUNT_NUMBER}, last_error="RuntimeError: usio said no",
        raw_answer={"status": 500, "body": {"message": "upstream exploded"}}, attempts=5,
    )


def replay_url(letter) -> str:
    return f"/admin/core/deadletter/{letter.pk}/replay/"


def dl_state() -> tuple:
    return (list(DeadLetter.objects.order_by("pk").values()), list(AuditEntry.objects.order_by("pk").values()))


def test_admin_sees_the_confirm_page_with_redacted_arguments(client, letter):
    login(client, "ops-ada", "admin")
    page = client.get(replay_url(letter))
    assert page.status_code == 200
    html = page.content.decode()
    for shown in ("tests.backoffice_probe", "pay-1", "usio said no", "upstream exploded", "[REDACTED]"):
        assert shown in html, shown
    assert ACCOUNT_NUMBER not in html
    assert 'id="id_reason"' in html and 'name="_confirm"' in html


def test_admin_replays_a_dead_letter_with_a_reason(client, letter, django_capture_on_commit_callbacks):
    login(client, "ops-ada", "admin")
    drain("default")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(replay_url(letter), {"reason": "usio back up", "_confirm": "Replay"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert response["Location"] == f"/admin/core/deadletter/{letter.pk}/change/"
    letter.refresh_from_db()
    assert (letter.replay_count, letter.replayed_by) == (1, "ops-ada") and letter.replayed_at is not None
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.action, entry.reason, entry.target_type, entry.target_id) == (
        "ops-ada", "dead_letter.replay", "usio back up", "dead_letter", str(letter.pk))
    messages = sent("tests.backoffice_probe")
    assert len(messages) == 1
    assert messages[0][1][0] == ["pay-1"]


@pytest.mark.parametrize("reason", ["", "   "])
def test_a_replay_without_a_reason_is_refused_and_sends_nothing(client, letter, reason,
                                                                 django_capture_on_commit_callbacks):
    login(client, "ops-ada", "admin")
    drain("default")
    before = dl_state()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(replay_url(letter), {"reason": reason, "_confirm": "Replay"})
    assert response.status_code == 200
    assert "A reason is required." in response.content.decode()
    assert dl_state() == before
    assert sent("tests.backoffice_probe") == []


@pytest.mark.parametrize("group", ["support", None])
def test_support_and_staff_without_a_group_cannot_replay(client, letter, group):
    login(client, "someone", group)
    before = dl_state()
    assert client.get(replay_url(letter)).status_code == 403
    assert client.post(replay_url(letter), {"reason": "tampered"}).status_code == 403
    assert client.post(CHANGELIST, {"action": "replay", "_selected_action": [letter.pk], "reason": "tampered",
                                     "_confirm": "1"}).status_code in (200, 302, 403)
    assert dl_state() == before


def test_the_list_action_asks_for_a_reason_then_replays_each_with_its_own_audit_entry(
        client, letter, django_capture_on_commit_callbacks):
    other = DeadLetter.objects.create(task_name="tests.backoffice_probe", task_id="t-43", queue="default",
                                      args=["pay-2"], kwargs={}, last_error="boom", attempts=5)
    login(client, "ops-ada", "admin")
    drain("default")
    before = dl_state()
    selection = {"action": "replay", "_selected_action": [letter.pk, other.pk]}
    page = client.post(CHANGELIST, selection)
    assert page.status_code == 200 and 'id="id_reason"' in page.content.decode()
    missing = client.post(CHANGELIST, {**selection, "reason": "", "_confirm": "Replay"})
    assert missing.status_code == 200 and "A reason is required." in missing.content.decode()
    assert dl_state() == before

    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(CHANGELIST, {**selection, "reason": "broker outage over", "_confirm": "Replay"})
    assert done.status_code == 302
    assert sorted(DeadLetter.objects.values_list("replay_count", flat=True)) == [1, 1]
    assert sorted(AuditEntry.objects.values_list("action", "target_id")) == sorted(
        [("dead_letter.replay", str(letter.pk)), ("dead_letter.replay", str(other.pk))])
    assert len(sent("tests.backoffice_probe")) == 2


# --- Event re-delivery --------------------------------------------------------------------------------------------


@pytest.fixture
def event() -> OutboxEvent:
    """A SUBSCRIPTION_RETURNED (R02, blocking) event nobody has handled yet."""
    payment = make_payment("subscription_ach", user_id="u-returned")
    move(payment, "ACHSENT", ("FAILED", {"failure": "returned", "return_code": "R02", "source": "usio_sync"}))
    return OutboxEvent.objects.get(aggregate_id=str(payment.pk), type="SUBSCRIPTION_RETURNED")


@pytest.fixture
def subscription():
    return push_subscription_create(name="ledger", url="https://ledger.example.com/hooks",
                                    secret="whsec-backoffice-0123456789", actor="test")


def redeliver_url(event) -> str:
    return f"/admin/core/outboxevent/{event.pk}/redeliver/"


def ev_state() -> tuple:
    return (list(OutboxConsumption.objects.order_by("pk").values()), list(PushDelivery.objects.order_by("pk").values()),
            list(AuditEntry.objects.order_by("pk").values()))


def test_admin_redelivers_to_a_consumer_and_the_queued_replay_does_the_work(
        client, event, django_capture_on_commit_callbacks):
    login(client, "ops-ada", "admin")
    page = client.get(redeliver_url(event))
    assert page.status_code == 200
    html = page.content.decode()
    assert "SUBSCRIPTION_RETURNED" in html and f'value="consumer:{BLOCKLIST_CONSUMER}"' in html
    assert 'id="id_reason"' in html and 'name="_confirm"' in html
    drain("default")
    before_audit = AuditEntry.objects.count()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(redeliver_url(event), {"targets": [f"consumer:{BLOCKLIST_CONSUMER}"],
                                                      "reason": "consumer was down", "_confirm": "1"})
    assert response.status_code == 302, response.content.decode()[:3000]
    assert AuditEntry.objects.count() == before_audit + 1
    entry = AuditEntry.objects.order_by("-id").first()
    assert (entry.actor, entry.action, entry.reason, entry.target_id, entry.user_id) == (
        "ops-ada", "event.redeliver", "consumer was down", str(event.event_id), "u-returned")
    assert entry.changes["consumers"] == [BLOCKLIST_CONSUMER]
    messages = sent(CONSUMER_REPLAY_TASK)
    assert len(messages) == 1
    kwargs = messages[0][1][1]
    assert kwargs == {"consumer": BLOCKLIST_CONSUMER, "event_id": str(event.event_id)}

    assert not blocklist_is_blocked(user_id="u-returned")
    assert outbox_consumer_replay(**kwargs) is True  # what the queued job runs
    assert blocklist_is_blocked(user_id="u-returned")
    assert OutboxConsumption.objects.get(consumer=BLOCKLIST_CONSUMER).status == OutboxConsumptionStatus.DONE


@pytest.mark.parametrize("previous", [None, PushDeliveryStatus.DELIVERED, PushDeliveryStatus.DEAD])
def test_admin_redelivers_to_a_push_subscription(client, event, subscription, previous,
                                                 django_capture_on_commit_callbacks):
    if previous is not None:
        PushDelivery.objects.create(
            subscription=subscription, event=event, status=previous, attempts=6, next_attempt_at=timezone.now(),
            delivered_at=timezone.now() if previous == PushDeliveryStatus.DELIVERED else None, last_error="HTTP 500")
    login(client, "ops-ada", "admin")
    before_audit = AuditEntry.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(redeliver_url(event), {"targets": [f"subscription:{subscription.pk}"],
                                                      "reason": "ledger lost it"})
    assert response.status_code == 302, response.content.decode()[:3000]
    delivery = PushDelivery.objects.get(subscription=subscription, event=event)
    assert (delivery.status, delivery.attempts, delivery.delivered_at) == (PushDeliveryStatus.PENDING, 0, None)
    assert delivery.next_attempt_at <= timezone.now()
    assert AuditEntry.objects.count() == before_audit + 1
    entry = AuditEntry.objects.order_by("-id").first()
    assert entry.action == "event.redeliver"
    assert entry.changes["subscriptions"] == [{"name": "ledger", "previous_status": previous}]


def test_a_consumer_that_already_handled_the_event_is_not_offered_and_a_tampered_choice_is_refused(client, event):
    OutboxConsumption.objects.create(consumer=BLOCKLIST_CONSUMER, event_id=event.event_id,
                                     status=OutboxConsumptionStatus.DONE)
    login(client, "ops-ada", "admin")
    html = client.get(redeliver_url(event)).content.decode()
    assert f'value="consumer:{BLOCKLIST_CONSUMER}"' not in html and "already handled" in html
    before = ev_state()
    response = client.post(redeliver_url(event), {"targets": [f"consumer:{BLOCKLIST_CONSUMER}"], "reason": "x"})
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert ev_state() == before


@pytest.mark.parametrize(("data", "error"), [
    ({"reason": "no target"}, "Choose at least one consumer or subscription."),
    ({"targets": [f"consumer:{BLOCKLIST_CONSUMER}"], "reason": ""}, "A reason is required."),
    ({"targets": ["consumer:payments.no_such_consumer"], "reason": "x"}, "Select a valid choice"),
    ({"targets": ["subscription:999999"], "reason": "x"}, "Select a valid choice"),
])
def test_invalid_redeliveries_show_the_form_again_and_change_nothing(client, event, subscription, data, error,
                                                                     django_capture_on_commit_callbacks):
    login(client, "ops-ada", "admin")
    drain("default")
    before = ev_state()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(redeliver_url(event), {**data, "_confirm": "1"})
    assert response.status_code == 200
    assert error in response.content.decode()
    assert ev_state() == before
    assert sent(CONSUMER_REPLAY_TASK) == []


@pytest.mark.parametrize("group", ["support", None])
def test_support_and_staff_without_a_group_cannot_redeliver(client, event, subscription, group):
    login(client, "someone", group)
    before = ev_state()
    assert client.get(redeliver_url(event)).status_code == 403
    response = client.post(redeliver_url(event), {"targets": [f"consumer:{BLOCKLIST_CONSUMER}",
                                                              f"subscription:{subscription.pk}"], "reason": "tampered"})
    assert response.status_code == 403
    assert ev_state() == before


def test_the_service_refuses_a_handled_consumer_even_past_the_form(event):
    """The rule lives in the service: a race between the page and the click is refused with its error code."""
    from core.backoffice import event_redeliver
    from core.errors import ValidationError

    OutboxConsumption.objects.create(consumer=BLOCKLIST_CONSUMER, event_id=event.event_id,
                                     status=OutboxConsumptionStatus.DONE)
    before = ev_state()
    with pytest.raises(ValidationError) as refused:
        event_redeliver(event_id=event.event_id, consumers=[BLOCKLIST_CONSUMER], actor="ops", reason="x")
    assert refused.value.code == "event_already_handled"
    assert ev_state() == before
