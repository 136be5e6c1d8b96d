"""Cards endpoints: every endpoint x role (allowed, 403, 401, another user's JWT), responses and error codes."""

import pytest
from django.test import override_settings

from cards.models import ChangeType, DebitCard, DebitCardChange
from core.models import AuditEntry
from tests.cards.conftest import CARD_URL, OTHER_USER, USER, card_body, exp_in, save, state

pytestmark = pytest.mark.django_db

CHANGEABLE_URL = f"{CARD_URL}/changeable"
CHANGES_URL = f"{CARD_URL}/changes"
ADMIN_URL = f"/api/v1/admin/users/{USER}/debit-card"
TOGGLE_URL = f"/api/v1/test/users/{USER}/debit-card/toggle-failure"


def _put_body():
    return card_body(masked_card_number="4444", transaction_reference_id="tok_c2",
                     debit_transaction_reference_id="tok_d2")


# (name, method, url, body, allowed roles, success status)
ENDPOINTS = [
    ("get", "get", CARD_URL, None, {"service", "user"}, 200),
    ("put", "put", CARD_URL, "put", {"service", "user"}, 200),
    ("delete", "delete", CARD_URL, None, {"service", "user"}, 204),
    ("changeable", "get", CHANGEABLE_URL, None, {"service", "user"}, 200),
    ("changes", "get", CHANGES_URL, None, {"service", "support"}, 200),
    ("admin_update", "patch", ADMIN_URL, {"reason": "ticket 7", "is_valid": False}, {"support", "admin"}, 200),
    ("toggle_failure", "post", TOGGLE_URL, None, {"service"}, 200),
]
ROLES = ("service", "support", "admin", "user")


def _expected(role: str, allowed: set, status: int) -> tuple[int, str | None]:
    if role in allowed:
        return status, None
    if role == "none":
        return 401, "not_authenticated"
    if role == "other_user" and "user" in allowed:
        return 403, "not_your_user"
    return 403, "permission_denied"


MATRIX = [
    pytest.param(method, url, body, role, *_expected(role, allowed, status), id=f"{name}-{role}")
    for name, method, url, body, allowed, status in ENDPOINTS
    for role in (*ROLES, "none", "other_user")
]


def _call(client, method, url, body):
    if body == "put":
        body = _put_body()
    return getattr(client, method)(url, body, format="json") if body is not None else getattr(client, method)(url)


@pytest.mark.parametrize(("method", "url", "body", "role", "expected", "code"), MATRIX)
def test_role_matrix(caller, method, url, body, role, expected, code):
    save()
    before = state()
    response = _call(caller(role), method, url, body)
    assert response.status_code == expected, response.content
    if code:
        assert response.json()["error"]["code"] == code
        assert state() == before
    elif method == "get":
        assert state() == before
    else:
        assert state() != before


# --- GET ---------------------------------------------------------------------------------------------------------

def test_service_sees_tokens_and_hash(caller):
    card = save()
    body = caller("service").get(CARD_URL).json()
    assert body["transaction_reference_id"] == card.transaction_reference_id
    assert body["debit_transaction_reference_id"] == card.debit_transaction_reference_id
    assert body["hashed_card_number"] == card.hashed_card_number
    assert body["masked_card_number"] == "1111" and body["card_exp"] == card.card_exp and body["is_valid"] is True


def test_user_sees_own_card_without_tokens_or_hash(caller):
    card = save()
    response = caller("user").get(CARD_URL)
    body = response.json()
    assert set(body) == {"user_id", "masked_card_number", "card_exp", "created_on", "is_valid", "invalid_date"}
    for secret in (card.transaction_reference_id, card.debit_transaction_reference_id, card.hashed_card_number):
        assert secret not in response.content.decode()


@pytest.mark.parametrize("role", ["service", "user"])
def test_get_without_card_is_404_in_the_error_format(caller, role):
    response = caller(role).get(CARD_URL)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "debit_card_not_found"


def test_malformed_user_id_is_422(caller):
    response = caller("service").get("/api/v1/users/bad%20id/debit-card")
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_user_id"


# --- PUT ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["service", "user"])
def test_put_creates_201_then_replaces_200(caller, role):
    client = caller(role)
    created = client.put(CARD_URL, card_body(), format="json")
    assert created.status_code == 201, created.content
    assert created.json()["masked_card_number"] == "1111"
    replaced = client.put(CARD_URL, _put_body(), format="json")
    assert replaced.status_code == 200 and replaced.json()["masked_card_number"] == "4444"
    assert DebitCard.objects.get().masked_card_number == "4444"
    actors = set(DebitCardChange.objects.values_list("actor", flat=True))
    assert len(actors) == 1 and actors.pop().startswith(f"{role}:")
    again = client.put(CARD_URL, _put_body(), format="json")
    assert again.status_code == 200 and DebitCardChange.objects.count() == 2


def test_put_response_for_user_has_no_tokens(caller):
    response = caller("user").put(CARD_URL, card_body(), format="json")
    assert response.status_code == 201
    assert "transaction_reference_id" not in response.json()
    assert "tok_" not in response.content.decode()


@pytest.mark.parametrize(("override", "status", "code"), [
    ({"masked_card_number": "123"}, 422, "invalid_masked_card_number"),
    ({"card_exp": "13" + exp_in()[2:]}, 422, "invalid_card_exp"),
    ({"card_exp": "12/2030"}, 422, "invalid_card_exp"),
    ({"card_exp": "012000"}, 422, "card_expired"),
    ({"transaction_reference_id": ""}, 422, "token_empty"),
    ({"debit_transaction_reference_id": "d" * 65}, 422, "token_too_long"),
    ({"debit_transaction_reference_id": "has space"}, 422, "token_malformed"),
    ({"transaction_reference_id": None}, 400, "validation_error"),
    ({"card_exp": int(exp_in(-1))}, 422, "card_expired"),  # a JSON number is read as text
    ({"unknown": "x"}, 400, "validation_error"),
])
def test_put_bad_input_is_a_precise_4xx_and_writes_nothing(caller, override, status, code):
    save()
    before = state()
    response = caller("service").put(CARD_URL, card_body(**override), format="json")
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert state() == before


@pytest.mark.parametrize("missing", ["masked_card_number", "card_exp", "transaction_reference_id",
                                     "debit_transaction_reference_id"])
def test_put_missing_field_is_400(caller, missing):
    body = card_body()
    del body[missing]
    response = caller("service").put(CARD_URL, body, format="json")
    assert response.status_code == 400
    assert missing in response.json()["error"]["details"]
    assert not DebitCard.objects.exists()


def test_put_refused_after_max_changes_is_409_with_reason(caller):
    client = caller("user")
    for last4 in ("1111", "2222", "3333"):
        assert client.put(CARD_URL, card_body(masked_card_number=last4), format="json").status_code in (200, 201)
    before = state()
    response = client.put(CARD_URL, card_body(masked_card_number="4444"), format="json")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "debit_card_not_changeable" and error["details"]["reason"] == "max_changes_reached"
    assert state() == before


def test_user_cannot_put_another_users_card(caller):
    response = caller("user").put(f"/api/v1/users/{OTHER_USER}/debit-card", card_body(), format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "not_your_user"
    assert not DebitCard.objects.exists()


def test_put_that_is_not_json_is_415(caller):
    response = caller("service").put(CARD_URL, "masked_card_number=1111",
                                     content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415 and not DebitCard.objects.exists()


# --- DELETE ------------------------------------------------------------------------------------------------------

def test_delete_then_get_is_404_and_history_kept(caller):
    save()
    client = caller("user")
    assert client.delete(CARD_URL).status_code == 204
    assert client.get(CARD_URL).status_code == 404
    assert client.delete(CARD_URL).json()["error"]["code"] == "debit_card_not_found"
    assert DebitCardChange.objects.filter(change_type=ChangeType.DELETED).count() == 1


# --- changeable, changes -----------------------------------------------------------------------------------------

def test_changeable_answers_with_reason(caller):
    client = caller("user")
    assert client.get(CHANGEABLE_URL).json() == {"changeable": True, "reason": None}
    for last4 in ("1111", "2222", "3333"):
        save(masked_card_number=last4)
    assert client.get(CHANGEABLE_URL).json() == {"changeable": False, "reason": "max_changes_reached"}


def test_changes_are_listed_newest_first_cursor_paginated_without_tokens(caller):
    for last4 in ("1111", "2222", "3333"):
        save(masked_card_number=last4, transaction_reference_id=f"tok_secret_{last4}")
    client = caller("support")
    first = client.get(CHANGES_URL, {"page_size": 2})
    assert first.status_code == 200
    page = first.json()
    assert [c["new_masked_card_number"] for c in page["results"]] == ["3333", "2222"]
    assert page["results"][0]["change_type"] == "replaced" and page["results"][0]["old_masked_card_number"] == "2222"
    assert "tok_secret" not in first.content.decode()
    second = client.get(page["next"]).json()
    assert [c["new_masked_card_number"] for c in second["results"]] == ["1111"]
    assert second["next"] is None


def test_changes_of_a_user_without_history_is_an_empty_list(caller):
    body = caller("service").get(CHANGES_URL).json()
    assert body["results"] == [] and body["next"] is None


# --- admin update ------------------------------------------------------------------------------------------------

def test_admin_update_is_audited_with_the_api_key_name(caller, make_api_key):
    from rest_framework.test import APIClient

    save(transaction_reference_id="tok_old_credit")
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=make_api_key("support", name="mx-desk"))
    response = client.patch(ADMIN_URL, {"reason": "token rotated by Usio", "transaction_reference_id": "tok_new_cred",
                                        "card_exp": exp_in(3)}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["transaction_reference_id"] == "tok_new_cred"
    entry = AuditEntry.objects.get()
    assert entry.actor == "mx-desk" and entry.reason == "token rotated by Usio" and entry.user_id == USER
    assert "tok_new_cred" not in str(entry.changes) and "tok_old_credit" not in str(entry.changes)
    assert DebitCardChange.objects.filter(change_type=ChangeType.ADMIN_UPDATED, actor="mx-desk").count() == 1


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"is_valid": True}, 400, "validation_error"),
    ({"reason": "", "is_valid": True}, 422, "reason_required"),
    ({"reason": "why"}, 422, "nothing_to_update"),
    ({"reason": "why", "card_exp": "002030"}, 422, "invalid_card_exp"),
    ({"reason": "why", "debit_transaction_reference_id": ""}, 422, "token_empty"),
    ({"reason": "why", "is_valid": "maybe"}, 400, "validation_error"),
    ({"reason": "why", "user_id": "other"}, 400, "validation_error"),
])
def test_admin_update_bad_input_writes_nothing(caller, body, status, code):
    save()
    before = state()
    response = caller("admin").patch(ADMIN_URL, body, format="json")
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert state() == before


def test_admin_update_without_card_is_404(caller):
    response = caller("support").patch(ADMIN_URL, {"reason": "why", "is_valid": True}, format="json")
    assert response.status_code == 404 and response.json()["error"]["code"] == "debit_card_not_found"
    assert not AuditEntry.objects.exists()


# --- toggle failure ----------------------------------------------------------------------------------------------

def test_toggle_failure_flips_and_returns_the_card(caller):
    save()
    client = caller("service")
    assert client.post(TOGGLE_URL).json()["force_failure"] is True
    assert client.post(TOGGLE_URL).json()["force_failure"] is False


def test_toggle_failure_without_card_is_404(caller):
    response = caller("service").post(TOGGLE_URL)
    assert response.status_code == 404 and response.json()["error"]["code"] == "debit_card_not_found"


@override_settings(ENVIRONMENT="prod")
@pytest.mark.parametrize("role", ["service", "support", "admin", "user"])
def test_toggle_failure_is_404_in_prod_for_every_caller(caller, role):
    save()
    before = state()
    response = caller(role).post(TOGGLE_URL)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert state() == before


@override_settings(ENVIRONMENT="prod")
def test_toggle_failure_in_prod_still_requires_credentials(caller):
    save()
    response = caller("none").post(TOGGLE_URL)
    assert response.status_code == 401 and response.json()["error"]["code"] == "not_authenticated"
    assert DebitCard.objects.get().force_failure is False
