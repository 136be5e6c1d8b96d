"""The refunds API (SPEC §10): roles, idempotency, the body's rules, the support identity, the user's list."""

import pytest

from core.models import IdempotencyKey
from refunds.models import Refund
from tests.refunds.conftest import (
    OTHER_USER,
    USER,
    new_key,
    post_refund,
    refund_body,
    refund_calls,
    snapshot,
    usio_calls,
)

pytestmark = pytest.mark.django_db

LIST_URL = f"/api/v1/users/{USER}/refunds"


# --- roles ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("role", "status"), [("support", 201), ("admin", 201), ("service", 403), ("user", 403),
                                              ("other_user", 403), ("none", 401)])
def test_create_roles(sandbox, caller, debit_card, role, status):
    debit_card()
    response = post_refund(caller(role), refund_body(account_type="debit"))
    assert response.status_code == status, response.content
    if status != 201:
        assert Refund.objects.count() == 0 and usio_calls(sandbox) == []
        assert response.json()["error"]["code"] == ("not_authenticated" if role == "none" else "permission_denied")


@pytest.mark.parametrize(("role", "status"), [("service", 200), ("support", 200), ("admin", 403), ("user", 403),
                                              ("other_user", 403), ("none", 401)])
def test_list_roles(caller, role, status):
    response = caller(role).get(LIST_URL)
    assert response.status_code == status, response.content


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_other_methods_on_create_are_not_allowed(caller, method):
    assert getattr(caller("support"), method)("/api/v1/refunds").status_code == 405


# --- idempotency ----------------------------------------------------------------------------------------------------
def test_same_key_same_body_replays_without_a_second_refund(sandbox, support, card_payment):
    payment = card_payment()
    body = refund_body(payment_id=str(payment.pk))
    key = new_key()
    first = post_refund(support, body, key=key)
    again = post_refund(support, body, key=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    assert Refund.objects.count() == 1
    assert len(refund_calls(sandbox)) == 1


def test_same_key_other_body_is_422(sandbox, support, card_payment):
    payment = card_payment()
    key = new_key()
    post_refund(support, refund_body(payment_id=str(payment.pk)), key=key)
    response = post_refund(support, refund_body(payment_id=str(payment.pk), amount="11.00"), key=key)
    assert (response.status_code, response.json()["error"]["code"]) == (422, "idempotency_key_reused")
    assert Refund.objects.count() == 1 and len(refund_calls(sandbox)) == 1


def test_keys_are_scoped_per_api_client(sandbox, caller, card_payment):
    payment = card_payment()
    key = new_key()
    body = refund_body(payment_id=str(payment.pk))
    assert post_refund(caller("support"), body, key=key).status_code == 201
    assert post_refund(caller("admin"), body, key=key).status_code == 201  # another client: another refund
    assert Refund.objects.count() == 2


@pytest.mark.parametrize(("key", "code"), [(None, "idempotency_key_missing"), ("", "idempotency_key_invalid"),
                                           ("k" * 256, "idempotency_key_invalid")])
def test_idempotency_key_is_required(sandbox, support, debit_card, key, code):
    debit_card()
    response = post_refund(support, refund_body(account_type="debit"), key=key)
    assert (response.status_code, response.json()["error"]["code"]) == (400, code)
    assert Refund.objects.count() == 0 and usio_calls(sandbox) == []


# --- the body -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["support_name", "support_email", "support_last_ip", "status",
                                   "refund_confirmation_id", "amout"])
def test_unknown_fields_are_400_and_the_identity_never_comes_from_the_body(sandbox, support, debit_card, field):
    debit_card()
    before = snapshot()
    response = post_refund(support, refund_body(account_type="debit", **{field: "x"}))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error" and field in error["details"]
    assert snapshot() == before and usio_calls(sandbox) == []
    assert IdempotencyKey.objects.count() == 0


@pytest.mark.parametrize("field", ["description", "user_id", "amount"])
@pytest.mark.parametrize("value", ["missing", "", "   "])
def test_required_fields(sandbox, support, debit_card, field, value):
    debit_card()
    body = refund_body(account_type="debit")
    if value == "missing":
        del body[field]
    else:
        body[field] = value
    before = snapshot()
    response = post_refund(support, body)
    assert response.status_code in (400, 422), response.content
    error = response.json()["error"]
    if field == "amount" and value != "missing":
        assert error["code"] == "invalid_amount"
    elif field == "user_id" and value == "   ":
        assert error["code"] == "validation_error"  # blank after trimming
    else:
        assert error["code"] == "validation_error" and field in error["details"]
    assert snapshot() == before and usio_calls(sandbox) == []


@pytest.mark.parametrize(("targets", "code"), [
    ({}, "refund_target_missing"),
    ({"payment_id": "p", "confirmation_id": "U1"}, "refund_target_conflict"),
    ({"payment_id": "p", "account_type": "debit"}, "refund_target_conflict"),
    ({"confirmation_id": "U1", "account_type": "ach", "account_id": "a"}, "refund_target_conflict"),
])
def test_exactly_one_target(sandbox, support, targets, code):
    response = post_refund(support, refund_body(**targets))
    assert (response.status_code, response.json()["error"]["code"]) == (422, code)
    assert Refund.objects.count() == 0 and usio_calls(sandbox) == []


def test_unknown_account_type_is_400(sandbox, support):
    response = post_refund(support, refund_body(account_type="wire"))
    assert response.status_code == 400 and "account_type" in response.json()["error"]["details"]


def test_card_data_in_the_description_is_refused(sandbox, support, debit_card):
    debit_card()
    response = post_refund(support, refund_body(account_type="debit", description="card 4111111111111111"))
    assert (response.status_code, response.json()["error"]["code"]) == (422, "card_data_not_allowed")
    assert Refund.objects.count() == 0


def test_malformed_json_is_400(support):
    response = support.post("/api/v1/refunds", data="{not json", content_type="application/json",
                            HTTP_IDEMPOTENCY_KEY=new_key())
    assert (response.status_code, response.json()["error"]["code"]) == (400, "malformed_request")


def test_invalid_user_id(sandbox, support):
    response = post_refund(support, refund_body(account_type="debit", user_id="bad user!"))
    assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_user_id")


# --- the support identity -------------------------------------------------------------------------------------------
def test_support_identity_is_the_callers(sandbox, make_api_key, debit_card):
    from rest_framework.test import APIClient

    debit_card()
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=make_api_key("admin", name="alice-admin-console"))
    data = post_refund(client, refund_body(account_type="debit"), REMOTE_ADDR="192.0.2.7").json()
    refund = Refund.objects.get()
    assert (data["support_name"], data["support_email"], data["support_last_ip"]) == \
        ("alice-admin-console", "", "192.0.2.7")
    assert (refund.support_name, refund.support_email, refund.support_last_ip) == \
        ("alice-admin-console", "", "192.0.2.7")


def test_a_forwarded_for_header_is_not_trusted(sandbox, support, debit_card):
    debit_card()
    data = post_refund(support, refund_body(account_type="debit"), REMOTE_ADDR="10.0.0.5",
                       HTTP_X_FORWARDED_FOR="203.0.113.9").json()
    assert data["support_last_ip"] == "10.0.0.5"


# --- the list -------------------------------------------------------------------------------------------------------
def test_list_newest_first_only_the_users_with_cursor_pages(sandbox, support, caller, debit_card):
    debit_card()
    debit_card(user_id=OTHER_USER)
    for amount in ("1.00", "2.00", "3.00"):
        post_refund(support, refund_body(account_type="debit", amount=amount))
    post_refund(support, refund_body(account_type="debit", user_id=OTHER_USER))

    service = caller("service")
    first = service.get(LIST_URL, {"page_size": 2}).json()
    assert [r["amount"] for r in first["results"]] == ["3.00", "2.00"]
    second = service.get(first["next"]).json()
    assert [r["amount"] for r in second["results"]] == ["1.00"] and second["next"] is None
    assert all(r["user_id"] == USER for r in first["results"] + second["results"])


def test_list_of_a_user_without_refunds_is_empty(caller):
    response = caller("support").get("/api/v1/users/nobody/refunds")
    assert (response.status_code, response.json()["results"]) == (200, [])


def test_list_with_a_malformed_user_id(caller):
    response = caller("service").get("/api/v1/users/bad%20id/refunds")
    assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_user_id")


def test_the_schema_documents_both_operations(caller):
    schema = caller("service").get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert "post" in schema["paths"]["/api/v1/refunds"]
    assert "get" in schema["paths"]["/api/v1/users/{user_id}/refunds"]
    body = schema["components"]["schemas"]["RefundCreateInputRequest"]["properties"]
    assert not {"support_name", "support_email", "support_last_ip"} & set(body)
