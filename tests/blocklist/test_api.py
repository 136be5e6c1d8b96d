"""Blocklist API (SPEC §10): GET status/history (service, support); POST/DELETE (support, admin). No user role."""

import pytest

from blocklist.models import BlocklistRecord
from blocklist.services import blocklist_block, blocklist_unblock
from core.models import AuditEntry
from tests.blocklist.conftest import counts, history_url, statuses, url
from tests.core.test_errors import assert_error

pytestmark = pytest.mark.django_db

READ_ROLES = ("service", "support")
WRITE_ROLES = ("support", "admin")
ALL_ROLES = ("service", "support", "admin")


def _call(client, method: str, path: str, reason: str | None = "why"):
    if method == "get":
        return client.get(path)
    return getattr(client, method)(path, {} if reason is None else {"reason": reason}, format="json")


ENDPOINTS = [("get", url), ("get", history_url), ("post", url), ("delete", url)]


def _allowed(method: str) -> tuple[str, ...]:
    return READ_ROLES if method == "get" else WRITE_ROLES


# --- role matrix --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=["status", "history", "block", "unblock"])
@pytest.mark.parametrize("role", ALL_ROLES)
def test_each_role_is_allowed_or_refused(client_as, method, path, role):
    blocklist_block(user_id="user-1", reason="setup", actor="mx")  # so that DELETE has something to change
    before = counts()
    response = _call(client_as(role), method, path("user-1"))
    if role in _allowed(method):
        assert response.status_code in (200, 201), response.content
    else:
        assert_error(response, 403, "permission_denied")
        assert counts() == before


@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=["status", "history", "block", "unblock"])
@pytest.mark.parametrize("sub", ["user-1", "user-2"], ids=["own-user", "other-user"])
def test_end_user_tokens_are_refused_even_for_their_own_user(jwt_client, method, path, sub):
    blocklist_block(user_id="user-1", reason="setup", actor="mx")
    before = counts()
    assert_error(_call(jwt_client(sub), method, path("user-1")), 403, "permission_denied")
    assert counts() == before
    assert statuses("user-1") == ["BLOCKED"]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=["status", "history", "block", "unblock"])
def test_no_credentials_is_401(api_client, method, path):
    assert_error(_call(api_client, method, path("user-1")), 401, "not_authenticated")
    assert counts() == (0, 0)


@pytest.mark.parametrize("method", ["put", "patch"])
def test_other_methods_are_405(client_as, method):
    assert_error(getattr(client_as("support"), method)(url(), {}, format="json"), 405, "method_not_allowed")


# --- status -------------------------------------------------------------------------------------------------------

def test_a_user_never_blocked_is_notblocked_with_nulls(client_as):
    response = client_as("service").get(url("never-1"))
    assert response.status_code == 200
    assert response.json() == {"user_id": "never-1", "status": "NOTBLOCKED", "reason": None, "source": None,
                               "return_code": None, "since": None}


def test_status_shows_the_newest_record(client_as):
    import uuid

    from blocklist.services import blocklist_block_for_return

    blocklist_block_for_return(user_id="user-1", return_code="AC04", payment_id=uuid.uuid4())
    record = BlocklistRecord.objects.get()
    body = client_as("support").get(url()).json()
    assert body["status"] == "BLOCKED" and body["source"] == "auto" and body["return_code"] == "AC04"
    assert body["since"].startswith(record.created_at.strftime("%Y-%m-%dT%H:%M:%S"))
    assert "AC04" in body["reason"]


def test_a_malformed_user_id_is_422(client_as):
    assert_error(client_as("service").get(url("bad%20id")), 422, "invalid_user_id")
    assert_error(client_as("service").get(history_url("x" * 65)), 422, "invalid_user_id")
    assert_error(client_as("support").post(url("bad%20id"), {"reason": "r"}, format="json"), 422, "invalid_user_id")
    assert counts() == (0, 0)


# --- block --------------------------------------------------------------------------------------------------------

def test_block_appends_a_manual_record_with_the_key_name_as_actor(named_client):
    response = named_client("support", "mx-alice").post(url(), {"reason": "chargeback fraud"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert (body["user_id"], body["status"], body["reason"], body["source"], body["return_code"]) == (
        "user-1", "BLOCKED", "chargeback fraud", "manual", None)
    record = BlocklistRecord.objects.get()
    assert (record.actor, record.source, record.status) == ("mx-alice", "manual", "BLOCKED")
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.action, entry.reason, entry.user_id) == (
        "mx-alice", "blocklist.block", "chargeback fraud", "user-1")


def test_blocking_twice_answers_200_and_appends_nothing(client_as):
    client = client_as("admin")
    assert client.post(url(), {"reason": "first"}, format="json").status_code == 201
    before = counts()
    response = client.post(url(), {"reason": "second"}, format="json")
    assert response.status_code == 200
    assert response.json()["reason"] == "first"
    assert counts() == before


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 422, "reason_required"),
        ({"reason": ""}, 422, "reason_required"),
        ({"reason": "   "}, 422, "reason_required"),
        ({"reason": "x" * 2001}, 422, "reason_too_long"),
        ({"reason": ["a"]}, 400, "validation_error"),
        ({"reason": {"a": 1}}, 400, "validation_error"),
        ({"reason": "ok", "source": "auto"}, 400, "validation_error"),
        ({"reason": "ok", "status": "NOTBLOCKED"}, 400, "validation_error"),
    ],
)
def test_block_refuses_bad_bodies_and_writes_nothing(client_as, body, status, code):
    error = assert_error(client_as("support").post(url(), body, format="json"), status, code)
    if status == 400 and len(body) > 1:
        assert set(error["details"]) == set(body) - {"reason"}  # the unknown field is named
    assert counts() == (0, 0)


def test_block_with_malformed_json_is_400(client_as):
    response = client_as("support").post(url(), data='{"reason": ', content_type="application/json")
    assert_error(response, 400, "malformed_request")
    assert counts() == (0, 0)


# --- unblock ------------------------------------------------------------------------------------------------------

def test_unblock_with_a_body_reason(named_client):
    blocklist_block(user_id="user-1", reason="fraud", actor="mx")
    response = named_client("admin", "mx-bob").delete(url(), {"reason": "identity verified"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["reason"], body["source"]) == ("NOTBLOCKED", "identity verified", "manual")
    record = BlocklistRecord.objects.order_by("-id").first()
    assert (record.actor, record.status) == ("mx-bob", "NOTBLOCKED")
    assert AuditEntry.objects.filter(action="blocklist.unblock", actor="mx-bob").count() == 1


def test_unblock_with_the_reason_in_the_query_string(client_as):
    blocklist_block(user_id="user-1", reason="fraud", actor="mx")
    response = client_as("support").delete(url() + "?reason=called%20the%20bank")
    assert response.status_code == 200
    assert response.json()["reason"] == "called the bank"
    assert statuses("user-1") == ["BLOCKED", "NOTBLOCKED"]


def test_a_body_reason_wins_over_the_query_string(client_as):
    blocklist_block(user_id="user-1", reason="fraud", actor="mx")
    response = client_as("support").delete(url() + "?reason=query", {"reason": "body"}, format="json")
    assert response.json()["reason"] == "body"


@pytest.mark.parametrize("path", [url(), url() + "?reason=", url() + "?reason=%20%20"])
def test_unblock_without_a_reason_is_422_and_the_user_stays_blocked(client_as, path):
    blocklist_block(user_id="user-1", reason="fraud", actor="mx")
    before = counts()
    assert_error(client_as("support").delete(path), 422, "reason_required")
    assert counts() == before
    assert statuses("user-1") == ["BLOCKED"]


def test_unblock_with_an_unknown_field_is_400(client_as):
    blocklist_block(user_id="user-1", reason="fraud", actor="mx")
    before = counts()
    assert_error(client_as("support").delete(url(), {"reason": "r", "force": True}, format="json"), 400,
                 "validation_error")
    assert counts() == before


def test_unblocking_a_user_who_is_not_blocked_changes_nothing(client_as):
    response = client_as("support").delete(url("never-1"), {"reason": "just in case"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "NOTBLOCKED" and response.json()["since"] is None
    assert counts() == (0, 0)


# --- history ------------------------------------------------------------------------------------------------------

def test_history_is_newest_first_and_cursor_paginated(client_as):
    for n in range(5):
        blocklist_block(user_id="user-1", reason=f"block {n}", actor="mx")
        blocklist_unblock(user_id="user-1", reason=f"unblock {n}", actor="mx", source="manual")
    blocklist_block(user_id="user-2", reason="someone else", actor="mx")
    client = client_as("service")
    reasons, page = [], client.get(history_url() + "?page_size=3")
    while True:
        assert page.status_code == 200
        body = page.json()
        assert len(body["results"]) <= 3
        reasons += [r["reason"] for r in body["results"]]
        if not body["next"]:
            break
        page = client.get(body["next"])
    expected = [f"{kind} {n}" for n in reversed(range(5)) for kind in ("unblock", "block")]
    assert reasons == expected
    first = client.get(history_url()).json()["results"][0]
    assert set(first) == {"id", "user_id", "status", "reason", "source", "return_code", "payment_id", "actor",
                          "created_at"}
    assert first["user_id"] == "user-1" and first["status"] == "NOTBLOCKED"


def test_history_of_a_user_never_blocked_is_empty(client_as):
    body = client_as("support").get(history_url("never-1")).json()
    assert body["results"] == [] and body["next"] is None
