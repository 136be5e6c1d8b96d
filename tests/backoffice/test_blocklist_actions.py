"""Back office (issue 8): block / unblock a user with a reason, by the support and admin groups only."""

import pytest

from blocklist.models import BlocklistRecord
from blocklist.services import blocklist_block
from core.models import AuditEntry
from tests.backoffice.conftest import login

pytestmark = pytest.mark.django_db

BLOCK = "/admin/blocklist/blocklistrecord/block/"
UNBLOCK = "/admin/blocklist/blocklistrecord/unblock/"
CHANGELIST = "/admin/blocklist/blocklistrecord/"


@pytest.fixture
def support(client):
    return login(client, "mx-sam", "support")


@pytest.fixture
def admin_user(client):
    return login(client, "ops-ada", "admin")


def state() -> tuple:
    return (list(BlocklistRecord.objects.order_by("pk").values()), list(AuditEntry.objects.order_by("pk").values()))


def test_support_sees_the_form_prefilled_with_the_current_state(support):
    blocklist_block(user_id="u-1", reason="earlier fraud", actor="someone")
    page = support.get(UNBLOCK, {"user_id": "u-1"})
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="id_user_id"' in html and 'value="u-1"' in html
    assert 'id="id_reason"' in html and 'name="_confirm"' in html and 'type="submit"' in html
    assert "BLOCKED" in html and "earlier fraud" in html
    assert "csrfmiddlewaretoken" in html


def test_support_blocks_a_user_with_one_audit_entry(support):
    response = support.post(BLOCK, {"user_id": "u-1", "reason": "fraud ring", "_confirm": "Block"})
    assert response.status_code == 302, response.content.decode()[:2000]
    record = BlocklistRecord.objects.get()
    assert (record.user_id, record.status, record.source, record.actor, record.reason) == (
        "u-1", "BLOCKED", "manual", "mx-sam", "fraud ring")
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.action, entry.reason, entry.user_id, entry.target_id) == (
        "mx-sam", "blocklist.block", "fraud ring", "u-1", str(record.pk))
    assert entry.at is not None
    followed = support.get(response["Location"], follow=True)
    assert "User u-1 blocked." in followed.content.decode()


def test_admin_unblocks_a_blocked_user_with_one_audit_entry(admin_user):
    blocklist_block(user_id="u-1", reason="fraud", actor="auto")
    before_entries = AuditEntry.objects.count()
    response = admin_user.post(UNBLOCK, {"user_id": "u-1", "reason": "documents checked", "_confirm": "Unblock"})
    assert response.status_code == 302
    assert list(BlocklistRecord.objects.order_by("created_at", "id").values_list("status", "actor")) == [
        ("BLOCKED", "auto"), ("NOTBLOCKED", "ops-ada")]
    assert AuditEntry.objects.count() == before_entries + 1
    entry = AuditEntry.objects.order_by("-id").first()
    assert (entry.actor, entry.action, entry.reason) == ("ops-ada", "blocklist.unblock", "documents checked")


@pytest.mark.parametrize(("url", "data", "message"), [
    (BLOCK, {"user_id": "u-1", "reason": "again"}, "This user is already blocked."),
    (UNBLOCK, {"user_id": "u-2", "reason": "x"}, "This user is not blocked."),
    (BLOCK, {"user_id": "u-3", "reason": ""}, "A reason is required."),
    (BLOCK, {"user_id": "u-3", "reason": "   "}, "A reason is required."),
    (BLOCK, {"user_id": "u-3"}, "A reason is required."),
    (BLOCK, {"user_id": "bad id!", "reason": "x"}, "user_id must be 1-64 characters"),
    (BLOCK, {"user_id": "", "reason": "x"}, "This field is required."),
    (BLOCK, {"user_id": "u-3", "reason": "x" * 2001}, "at most 2000 characters"),
])
def test_invalid_or_pointless_requests_show_the_form_again_and_change_nothing(support, url, data, message):
    blocklist_block(user_id="u-1", reason="fraud", actor="mx")
    before = state()
    response = support.post(url, {**data, "_confirm": "1"})
    assert response.status_code == 200
    html = response.content.decode()
    assert message in html and 'class="errorlist' in html
    assert state() == before


@pytest.mark.parametrize("who", ["no-group", "view-only"])
@pytest.mark.parametrize("url", [BLOCK, UNBLOCK])
def test_staff_without_the_permission_get_403_and_a_tampered_post_changes_nothing(client, who, url):
    blocklist_block(user_id="u-1", reason="fraud", actor="mx")
    if who == "no-group":
        login(client, "staff-nobody")
    else:
        login(client, "viewer", None, "view_blocklistrecord")
    before = state()
    assert client.get(url, {"user_id": "u-1"}).status_code == 403
    assert client.post(url, {"user_id": "u-1", "reason": "tampered"}).status_code == 403
    assert client.post(url, {"user_id": "u-9", "reason": "tampered"}).status_code == 403
    assert state() == before


def test_the_add_page_leads_to_the_block_form(support):
    response = support.get(CHANGELIST + "add/", {"user_id": "u-7"})
    assert response.status_code == 302
    assert response["Location"] == BLOCK + "?user_id=u-7"
    changelist = support.get(CHANGELIST).content.decode()
    assert 'id="block-user-link"' in changelist and 'id="unblock-user-link"' in changelist


def test_a_view_only_user_sees_no_block_links(client):
    login(client, "viewer", None, "view_blocklistrecord")
    blocklist_block(user_id="u-1", reason="fraud", actor="mx")
    html = client.get(CHANGELIST).content.decode()
    assert "u-1" in html and "block-user-link" not in html
    assert client.get(CHANGELIST + "add/").status_code == 403


def test_records_stay_append_only(support):
    record = blocklist_block(user_id="u-1", reason="fraud", actor="mx").record
    before = state()
    page = support.get(f"{CHANGELIST}{record.pk}/change/")
    assert page.status_code == 200 and 'id="unblock-user-link"' in page.content.decode()
    assert support.post(f"{CHANGELIST}{record.pk}/change/", {"status": "NOTBLOCKED", "reason": "x"}).status_code == 403
    assert support.post(f"{CHANGELIST}{record.pk}/delete/", {"post": "yes"}).status_code == 403
    assert state() == before


def test_the_log_is_searchable_by_user_id(support):
    blocklist_block(user_id="u-find", reason="fraud", actor="mx")
    blocklist_block(user_id="u-other", reason="fraud", actor="mx")
    html = support.get(CHANGELIST, {"q": "u-find"}).content.decode()
    assert "u-find" in html and "u-other" not in html
