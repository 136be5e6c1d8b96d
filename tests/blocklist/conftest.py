"""Fixtures of the blocklist tests: clients per role with a known key name, the removal queue of the broker."""

import pytest
from rest_framework.test import APIClient

from blocklist.models import BlocklistRecord
from core.models import AuditEntry
from tests.broker import drain as drain_queue

REMOVAL_QUEUE = "blocklist-remove"


def url(user_id: str = "user-1") -> str:
    return f"/api/v1/users/{user_id}/blocklist"


def history_url(user_id: str = "user-1") -> str:
    return f"/api/v1/users/{user_id}/blocklist/history"


def counts() -> tuple[int, int]:
    """(blocklist records, audit entries): a refused request changes neither."""
    return BlocklistRecord.objects.count(), AuditEntry.objects.count()


def statuses(user_id: str) -> list[str]:
    """The user's records' statuses, oldest first."""
    return list(BlocklistRecord.objects.filter(user_id=user_id).order_by("created_at", "id")
                .values_list("status", flat=True))


@pytest.fixture
def named_client(make_api_key):
    """An APIClient whose API key has ``role`` and ``name`` (the actor the records must show)."""

    def _client(role: str, name: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=make_api_key(role, name=name))
        return client

    return _client


@pytest.fixture
def jwt_client(make_jwt):
    def _client(sub: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_jwt(sub)}")
        return client

    return _client


def drain(queue: str = REMOVAL_QUEUE) -> list[tuple[dict, object]]:
    """Read and ack every message on ``queue`` (default: the blocklist-remove queue)."""
    return drain_queue(queue)


@pytest.fixture
def removal_queue():
    """The blocklist-remove queue, emptied first; call the fixture's value to drain what the test sent."""
    drain()
    return drain
