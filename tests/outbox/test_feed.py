"""The pull feed ``GET /api/v1/events?after=<cursor>&limit=`` (SPEC §4, §10): service role only, published events in
publication order behind an opaque cursor, at least once."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from core.models import OutboxEvent
from core.outbox import outbox_envelope
from core.outbox_relay import outbox_relay_run
from tests.outbox.conftest import make_payment, move, subscription_with_events

pytestmark = pytest.mark.django_db

URL = "/api/v1/events"


@pytest.fixture
def service(client_as) -> APIClient:
    return client_as("service")


def read_all(client: APIClient, after: str | None = None, limit: int = 2) -> tuple[list[dict], str | None, int]:
    """Follow next_cursor until has_more is false: (events, last cursor, pages)."""
    events, pages = [], 0
    while True:
        params = {"limit": limit, **({"after": after} if after else {})}
        response = client.get(URL, params)
        assert response.status_code == 200, response.json()
        body = response.json()
        events += body["events"]
        after, pages = body["next_cursor"], pages + 1
        if not body["has_more"]:
            return events, after, pages


@pytest.mark.parametrize(("role", "status"), [("service", 200), ("support", 403), ("admin", 403)])
def test_only_the_service_role_reads_the_feed(client_as, role, status):
    response = client_as(role).get(URL)
    assert response.status_code == status
    if status == 403:
        assert response.json()["error"]["code"] == "permission_denied"


def test_an_end_user_gets_403_and_no_credentials_401(make_jwt):
    user = APIClient()
    user.credentials(HTTP_AUTHORIZATION=f"Bearer {make_jwt('user-1')}")
    assert user.get(URL).status_code == 403
    assert APIClient().get(URL).status_code == 401


def test_the_feed_lists_published_events_in_order_behind_a_cursor(service):
    payments = [subscription_with_events() for _ in range(2)]  # 8 events
    assert service.get(URL).json() == {"events": [], "next_cursor": None, "has_more": False}  # none published yet

    outbox_relay_run()
    events, cursor, pages = read_all(service, limit=3)

    assert pages == 3 and len(events) == 8
    assert [e["id"] for e in events] == [str(e.event_id) for e in OutboxEvent.objects.order_by("feed_entry__position")]
    for payment in payments:
        assert [e["sequence"] for e in events if e["data"]["id"] == str(payment.pk)] == [1, 2, 3, 4]
    assert events[0] == outbox_envelope(OutboxEvent.objects.get(event_id=events[0]["id"]))

    # Nothing new: the same cursor comes back; poll with it later.
    assert service.get(URL, {"after": cursor}).json() == {"events": [], "next_cursor": cursor, "has_more": False}

    # New events appear after the cursor once the relay has published them, and only then.
    late = make_payment("subscription_ach")
    move(late, "ACHSENT", "CLEARED")
    assert service.get(URL, {"after": cursor}).json()["events"] == []
    outbox_relay_run()
    body = service.get(URL, {"after": cursor}).json()
    assert [e["type"] for e in body["events"]] == ["SUBSCRIPTION_CLEARED"] and body["next_cursor"] != cursor

    # At least once: an older cursor reads events again (clients de-duplicate on id).
    again, _, _ = read_all(service, limit=500)
    assert len(again) == 9 and len({e["id"] for e in again}) == 9


def test_the_default_page_is_100_and_limit_is_bounded(service):
    for _ in range(26):
        subscription_with_events()  # 104 events
    outbox_relay_run()
    body = service.get(URL).json()
    assert len(body["events"]) == 100 and body["has_more"] is True
    body = service.get(URL, {"limit": 500}).json()
    assert len(body["events"]) == 104 and body["has_more"] is False


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"after": "nonsense"}, "invalid_cursor"),
        ({"after": "ZjE6LTE"}, "invalid_cursor"),  # "f1:-1"
        ({"after": "eDE6MTA"}, "invalid_cursor"),  # "x1:10"
        ({"limit": 0}, "validation_error"),
        ({"limit": 501}, "validation_error"),
        ({"limit": "ten"}, "validation_error"),
        ({"cursor": "abc"}, "validation_error"),  # unknown parameter
    ],
)
def test_bad_parameters_are_400_with_a_code(service, params, code):
    response = service.get(URL, params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
