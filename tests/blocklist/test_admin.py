"""The blocklist back office: records are read-only (blocking and unblocking: tests/backoffice)."""

import pytest
from django.contrib.auth import get_user_model

from blocklist.models import BlocklistRecord
from blocklist.services import blocklist_block

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/blocklist/blocklistrecord/"


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_superuser("mx-dana", "dana@example.com", "a-long-password-123")
    client.force_login(user)
    return client


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
