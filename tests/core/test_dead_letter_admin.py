"""Dead letters in the admin: listed, read-only, and replayed onto the real broker by the action."""

import pytest
from django.contrib.auth import get_user_model

from core.models import AuditEntry, DeadLetter
from tests.broker import drain

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/core/deadletter/"


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "ops-password-123")
    client.force_login(user)
    return client


@pytest.fixture
def letter():
    return DeadLetter.objects.create(
        task_name="tests.replay_probe", task_id="t-1", queue="default", args=["abc"], kwargs={"n": 1},
        last_error="RuntimeError: boom", attempts=3,
    )


def test_changelist_shows_dead_letters(admin_client, letter):
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    assert "tests.replay_probe" in response.content.decode()


def test_dead_letters_cannot_be_added_or_edited(admin_client, letter):
    assert admin_client.get(CHANGELIST + "add/").status_code == 403
    admin_client.post(f"{CHANGELIST}{letter.pk}/change/", {"attempts": 99})
    letter.refresh_from_db()
    assert letter.attempts == 3


def test_replay_action_enqueues_the_job_on_its_queue_and_records_who(admin_client, letter,
                                                                      django_capture_on_commit_callbacks):
    drain("default")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(CHANGELIST, {"action": "replay", "_selected_action": [letter.pk],
                                                  "reason": "after outage", "_confirm": "Replay"})
    assert response.status_code == 302
    letter.refresh_from_db()
    assert (letter.replay_count, letter.replayed_by) == (1, "ops")
    assert letter.replayed_at is not None
    messages = drain("default")
    assert len(messages) == 1
    headers, payload = messages[0]
    assert headers["task"] == "tests.replay_probe"
    assert payload[0] == ["abc"] and payload[1] == {"n": 1}
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor, entry.reason) == ("dead_letter.replay", "ops", "after outage")


def test_staff_without_permission_cannot_see_dead_letters(client, letter):
    user = get_user_model().objects.create_user("nobody", "n@example.com", "nobody-password-1", is_staff=True)
    client.force_login(user)
    assert client.get(CHANGELIST).status_code == 403
    response = client.post(CHANGELIST, {"action": "replay", "_selected_action": [letter.pk]})
    assert response.status_code == 403
    letter.refresh_from_db()
    assert letter.replay_count == 0 and letter.replayed_at is None


def test_view_only_staff_cannot_replay(client, letter):
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user("viewer", "v@example.com", "viewer-password-1", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_deadletter"))
    client.force_login(user)
    page = client.get(CHANGELIST)
    assert page.status_code == 200
    assert 'value="replay"' not in page.content.decode()
    client.post(CHANGELIST, {"action": "replay", "_selected_action": [letter.pk]})
    letter.refresh_from_db()
    assert letter.replay_count == 0 and letter.replayed_at is None
