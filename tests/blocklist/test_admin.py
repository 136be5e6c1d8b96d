"""The blocklist back office: records are read-only; the add form blocks/unblocks through the services."""

import pytest
from django.contrib.auth import get_user_model

from blocklist.models import BlocklistRecord
from blocklist.services import blocklist_block
from core.models import AuditEntry
from tests.blocklist.conftest import counts, statuses

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/blocklist/blocklistrecord/"
ADD = CHANGELIST + "add/"


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_superuser("mx-dana", "dana@example.com", "a-long-password-123")
    client.force_login(user)
    return client


def test_the_add_form_blocks_through_the_service_with_the_staff_user_as_actor(staff):
    response = staff.post(ADD, {"user_id": "u-1", "status": "BLOCKED", "reason": "fraud ring"})
    assert response.status_code == 302, response.content[:2000]
    record = BlocklistRecord.objects.get()
    assert (record.user_id, record.status, record.source, record.actor, record.reason) == (
        "u-1", "BLOCKED", "manual", "mx-dana", "fraud ring")
    assert AuditEntry.objects.get().actor == "mx-dana"


def test_the_add_form_unblocks(staff):
    blocklist_block(user_id="u-1", reason="fraud", actor="mx")
    response = staff.post(ADD, {"user_id": "u-1", "status": "NOTBLOCKED", "reason": "cleared"})
    assert response.status_code == 302
    assert statuses("u-1") == ["BLOCKED", "NOTBLOCKED"]
    assert BlocklistRecord.objects.order_by("-id").first().actor == "mx-dana"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"user_id": "u-1", "status": "BLOCKED", "reason": "again"}, "already blocked"),
        ({"user_id": "u-2", "status": "NOTBLOCKED", "reason": "x"}, "not blocked"),
        ({"user_id": "bad id", "status": "BLOCKED", "reason": "x"}, "user_id must be"),
        ({"user_id": "u-3", "status": "BLOCKED", "reason": ""}, "This field is required"),
        ({"user_id": "u-3", "status": "MAYBE", "reason": "x"}, "Select a valid choice"),
    ],
)
def test_the_add_form_refuses_what_would_not_change_anything_or_is_invalid(staff, data, message):
    blocklist_block(user_id="u-1", reason="fraud", actor="mx")
    before = counts()
    response = staff.post(ADD, data)
    assert response.status_code == 200  # the form again, with the error
    assert message in response.content.decode()
    assert counts() == before


def test_records_cannot_be_changed_or_deleted(staff):
    record = blocklist_block(user_id="u-1", reason="fraud", actor="mx").record
    change_url = f"{CHANGELIST}{record.pk}/change/"
    page = staff.get(change_url)
    assert page.status_code == 200  # viewable
    assert staff.post(change_url, {"user_id": "u-1", "status": "NOTBLOCKED", "reason": "x"}).status_code == 403
    assert staff.post(f"{CHANGELIST}{record.pk}/delete/", {"post": "yes"}).status_code == 403
    assert staff.post(CHANGELIST, {"action": "delete_selected", "_selected_action": [record.pk]}).status_code in (
        200, 302)
    assert list(BlocklistRecord.objects.values_list("status", flat=True)) == ["BLOCKED"]


def test_the_changelist_searches_by_user_id(staff):
    blocklist_block(user_id="u-find", reason="fraud", actor="mx")
    blocklist_block(user_id="u-other", reason="fraud", actor="mx")
    page = staff.get(CHANGELIST, {"q": "u-find"}).content.decode()
    assert "u-find" in page and "u-other" not in page
