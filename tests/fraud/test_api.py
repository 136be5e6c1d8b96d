"""Fraud API (SPEC §10): POST /fraud/checks and /fraud/results, service role only."""

import json

import pytest
from django.db import connection
from rest_framework.test import APIClient

from bank_accounts.services import bank_account_save
from fraud.models import FraudCheck, FraudResult
from tests.core.test_errors import assert_error
from tests.fraud.conftest import ACCOUNT, CHECKS_URL, EXP, INSTALL, LAST4, RESULTS_URL, ROUTING, check, counts

pytestmark = pytest.mark.django_db

PAN = "4111111111111111"
CHECK_BODY = {"user_id": "u-1", "install_id": INSTALL, "routing_number": ROUTING, "account_number": ACCOUNT,
              "card_last4": LAST4, "card_exp": EXP}
RESULT_BODY = {"user_id": "u-1", "verdict": "fraudulent", "source": "sift", "score": 0.97, "flags": ["velocity"],
               "details": {"model": "v3"}}
ENDPOINTS = [(CHECKS_URL, CHECK_BODY), (RESULTS_URL, RESULT_BODY)]


@pytest.fixture
def service(client_as) -> APIClient:
    return client_as("service")


def post(client, url, body):
    return client.post(url, body, format="json")


# --- roles ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "body"), ENDPOINTS, ids=["checks", "results"])
def test_the_service_role_is_allowed(service, url, body):
    assert post(service, url, body).status_code == 201


@pytest.mark.parametrize(("url", "body"), ENDPOINTS, ids=["checks", "results"])
@pytest.mark.parametrize("role", ["support", "admin"])
def test_other_roles_are_refused(client_as, url, body, role):
    assert_error(post(client_as(role), url, body), 403, "permission_denied")
    assert counts() == (0, 0)


@pytest.mark.parametrize(("url", "body"), ENDPOINTS, ids=["checks", "results"])
@pytest.mark.parametrize("sub", ["u-1", "u-2"], ids=["own-user", "other-user"])
def test_end_user_tokens_are_refused(make_jwt, url, body, sub):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_jwt(sub)}")
    assert_error(post(client, url, body), 403, "permission_denied")
    assert counts() == (0, 0)


@pytest.mark.parametrize(("url", "body"), ENDPOINTS, ids=["checks", "results"])
def test_no_credentials_is_401(api_client, url, body):
    assert_error(post(api_client, url, body), 401, "not_authenticated")
    assert counts() == (0, 0)


@pytest.mark.parametrize("url", [CHECKS_URL, RESULTS_URL])
def test_get_is_405(service, url):
    assert_error(service.get(url), 405, "method_not_allowed")


# --- checks ---------------------------------------------------------------------------------------------------------

def test_a_check_returns_every_signal_with_evidence_and_the_verdict(service, json_lines):
    bank_account_save(user_id="u-2", account_id="acc-9", routing_number=ROUTING, account_number=ACCOUNT, actor="t")
    response = post(service, CHECKS_URL, CHECK_BODY)
    assert response.status_code == 201
    body = response.json()
    stored = FraudCheck.objects.get()
    assert body["id"] == str(stored.pk) and body["user_id"] == "u-1"
    assert body["verdict"] == "review" and body["fired"] == ["bank_account"]
    assert [s["name"] for s in body["signals"]] == ["user_history", "install_id", "bank_account", "card"]
    bank = body["signals"][2]
    assert bank == {"name": "bank_account", "fired": True, "threshold": 0,
                    "evidence": {"other_user_ids": ["u-2"], "count": 1}}
    assert body["window_hours"] == 24
    assert body["thresholds"] == {"user_history": 0, "install_id": 1, "bank_account": 0, "card": 0}
    assert body["install_id_hash"] == stored.install_id_hash and len(body["install_id_hash"]) == 64
    assert stored.requested_by.startswith("test-service-")
    # Neither the response nor any log line carries a raw input.
    text = response.content.decode() + json.dumps(json_lines())
    for raw in (ACCOUNT, ROUTING, INSTALL):
        assert raw not in text


def test_a_clear_check(service):
    body = post(service, CHECKS_URL, {"user_id": "u-1"}).json()
    assert (body["verdict"], body["fired"]) == ("clear", [])
    assert body["install_id_hash"] is None and body["account_routing_hash"] is None


def test_null_inputs_are_absent_inputs(service):
    body = post(service, CHECKS_URL, {"user_id": "u-1", "install_id": None, "hashed_card_number": None}).json()
    assert [s["name"] for s in body["signals"]] == ["user_history"]


def test_an_account_number_that_happens_to_pass_luhn_is_an_account_number(service):
    """account_number is 4-17 digits; a 16-digit one may pass Luhn and is still accepted in that field."""
    response = post(service, CHECKS_URL, {"user_id": "u-1", "routing_number": ROUTING, "account_number": PAN})
    assert response.status_code == 201
    assert PAN not in response.content.decode()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": 7}, "user_id"),
        ({"routing_number": 21000021, "account_number": ACCOUNT}, "routing_number"),
        ({"install_id": ["a"]}, "install_id"),
        ({"card_last4": 4242, "card_exp": EXP}, "card_last4"),
        ({"install_id": ""}, "install_id"),
        ({"bank_account": "x"}, "bank_account"),
        ({"ip_address": "10.0.0.1"}, "ip_address"),
    ],
)
def test_bad_types_and_unknown_fields_are_400(service, body, field):
    error = assert_error(post(service, CHECKS_URL, {"user_id": "u-1", **body}), 400, "validation_error")
    assert field in error["details"]
    assert counts() == (0, 0)


def test_missing_user_id_is_400(service):
    assert_error(post(service, CHECKS_URL, {"install_id": INSTALL}), 400, "validation_error")
    assert counts() == (0, 0)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"user_id": "bad id"}, "invalid_user_id"),
        ({"user_id": "u-1", "routing_number": "021000022", "account_number": ACCOUNT}, "invalid_routing_number"),
        ({"user_id": "u-1", "routing_number": ROUTING, "account_number": "12"}, "invalid_account_number"),
        ({"user_id": "u-1", "routing_number": ROUTING}, "incomplete_bank_account"),
        ({"user_id": "u-1", "card_last4": LAST4, "card_exp": "2031-11"}, "invalid_card_exp"),
        ({"user_id": "u-1", "hashed_card_number": "nothex"}, "invalid_hashed_card_number"),
    ],
)
def test_rule_violations_are_422(service, body, code, json_lines):
    response = post(service, CHECKS_URL, body)
    assert_error(response, 422, code)
    assert counts() == (0, 0)
    assert ACCOUNT not in response.content.decode() + json.dumps(json_lines())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"install_id": PAN}, "install_id"),
        ({"card_last4": "4111 1111 1111 1111", "card_exp": EXP}, "card_last4"),
        ({"card_number": PAN}, "card_number"),
        ({"cvv": "123"}, "cvv"),
        ({"card_exp": EXP, "card_last4": LAST4, "CVC": "1234"}, "CVC"),
    ],
)
def test_card_data_anywhere_is_422_and_never_echoed_stored_or_logged(service, body, field, json_lines):
    response = post(service, CHECKS_URL, {"user_id": "u-1", **body})
    error = assert_error(response, 422, "card_data_not_allowed")
    assert error["details"] == {"field": field}
    assert counts() == (0, 0)
    text = response.content.decode() + json.dumps(json_lines())
    assert PAN not in text and "4111 1111" not in text


def test_a_database_error_is_503_never_clear(service, json_lines):
    table = FraudCheck._meta.db_table
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {quote(table)} RENAME TO {quote(table + '_gone')}")
    try:
        response = post(service, CHECKS_URL, CHECK_BODY)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {quote(table + '_gone')} RENAME TO {quote(table)}")
    error = assert_error(response, 503, "fraud_check_unavailable")
    assert "verdict" not in response.json()
    assert "retry" in error["message"].lower()
    assert counts() == (0, 0)
    lines = json_lines()
    assert any(line.get("message", "").startswith("fraud check failed closed") for line in lines), lines
    assert ACCOUNT not in json.dumps(lines)


# --- results --------------------------------------------------------------------------------------------------------

def test_a_result_is_saved_and_returned(named_service):
    linked = check()
    response = post(named_service, RESULTS_URL, {**RESULT_BODY, "fraud_check_id": str(linked.pk)})
    assert response.status_code == 201
    body = response.json()
    stored = FraudResult.objects.get()
    assert body == {
        "id": str(stored.pk), "user_id": "u-1", "verdict": "fraudulent", "score": "0.9700", "flags": ["velocity"],
        "source": "sift", "details": {"model": "v3"}, "fraud_check_id": str(linked.pk),
        "created_by": "risk-service", "created_at": body["created_at"],
    }
    # A fraudulent result counts in the next check of the user.
    assert post(named_service, CHECKS_URL, {"user_id": "u-1"}).json()["fired"] == ["user_history"]


@pytest.fixture
def named_service(make_api_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=make_api_key("service", name="risk-service"))
    return client


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"unknown": 1}, "unknown"),
        ({"score": "high"}, "score"),
        ({"score": 0.123456}, "score"),
        ({"flags": "velocity"}, "flags"),
        ({"flags": [1, 2]}, "flags"),
        ({"fraud_check_id": "not-a-uuid"}, "fraud_check_id"),
        ({"verdict": 1}, "verdict"),
        ({"source": None}, "source"),
    ],
)
def test_result_bad_types_and_unknown_fields_are_400(service, overrides, field):
    error = assert_error(post(service, RESULTS_URL, {**RESULT_BODY, **overrides}), 400, "validation_error")
    assert field in error["details"]
    assert counts() == (0, 0)


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"verdict": "maybe"}, "invalid_verdict"),
        ({"score": 1.5}, "invalid_score"),
        ({"details": "text"}, "invalid_details"),
        ({"details": {"blob": "x" * 5000}}, "details_too_large"),
        ({"details": {"note": f"acct {ACCOUNT}"}}, "sensitive_data_not_allowed"),
        ({"details": {"pan": PAN}}, "card_data_not_allowed"),
        ({"fraud_check_id": "00000000-0000-0000-0000-000000000001"}, "fraud_check_not_found"),
        ({"user_id": "bad id"}, "invalid_user_id"),
    ],
)
def test_result_rule_violations_are_422(service, overrides, code, json_lines):
    response = post(service, RESULTS_URL, {**RESULT_BODY, **overrides})
    assert_error(response, 422, code)
    assert counts() == (0, 0)
    text = response.content.decode() + json.dumps(json_lines())
    assert ACCOUNT not in text and PAN not in text


DIGIT_UUID = "00000000-0000-0000-0000-000000000001"  # its digits, read as one run, pass the Luhn check


def test_ids_and_hashes_that_happen_to_pass_luhn_are_not_card_data(service):
    from core.card_data import looks_like_card_number

    assert not looks_like_card_number(DIGIT_UUID)  # core.card_data ignores UUID-shaped text
    response = post(service, CHECKS_URL, {"user_id": DIGIT_UUID, "install_id": DIGIT_UUID})
    assert response.status_code == 201, response.content
    made = check("u-1")
    FraudCheck.objects.filter(pk=made.pk).update(id=DIGIT_UUID)  # test setup: a check whose id is digit-heavy
    digit_hash = "1" * 63 + "0"
    body = {**RESULT_BODY, "user_id": "u-1", "fraud_check_id": DIGIT_UUID,
            "details": {"related_payment": DIGIT_UUID, "account_routing_hash": digit_hash}}
    response = post(service, RESULTS_URL, body)
    assert response.status_code == 201, response.content
