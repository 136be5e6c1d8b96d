"""Every 4xx/5xx is {"error": {"code", "message", "details"}} and bad input never produces a 500."""

import pytest
from django.conf import settings
from django.test import override_settings

from core.models import ApiKey

pytestmark = pytest.mark.django_db


def assert_error(response, status: int, code: str):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert "Traceback" not in response.content.decode()
    return body["error"]


def test_unknown_url_is_json_404(client_as):
    assert_error(client_as("service").get("/api/v1/nope"), 404, "not_found")


def test_unknown_url_without_credentials_is_json_404(api_client):
    assert_error(api_client.get("/no/such/page"), 404, "not_found")


def test_wrong_method_is_json_405(client_as):
    assert_error(client_as("service").delete("/api/v1/auth/whoami"), 405, "method_not_allowed")


ECHO = "/test/echo"
with_test_urls = override_settings(ROOT_URLCONF="tests.core.urls")


@with_test_urls
def test_valid_request_reaches_the_view(client_as):
    response = client_as("service").post(ECHO, {"amount": "12.50"}, format="json")
    assert response.status_code == 201
    assert response.json() == {"amount": "12.50"}


@with_test_urls
def test_malformed_json_is_400(client_as):
    response = client_as("service").post(ECHO, data='{"amount": ', content_type="application/json")
    assert_error(response, 400, "malformed_request")


@with_test_urls
def test_wrong_content_type_is_415(client_as):
    response = client_as("service").post(ECHO, data="amount=1", content_type="application/x-www-form-urlencoded")
    assert_error(response, 415, "unsupported_media_type")


@with_test_urls
def test_unknown_field_is_400_with_field_details(client_as):
    response = client_as("service").post(ECHO, {"amount": "1.00", "amout": "2"}, format="json")
    error = assert_error(response, 400, "validation_error")
    assert error["details"] == {"amout": ["Unknown field."]}


@with_test_urls
def test_invalid_field_value_is_400(client_as):
    response = client_as("service").post(ECHO, {"amount": "1.234"}, format="json")
    error = assert_error(response, 400, "validation_error")
    assert list(error["details"]) == ["amount"]


@with_test_urls
@pytest.mark.parametrize("body", ["[]", "null", '"text"', "123"])
def test_non_object_json_is_400(client_as, body):
    response = client_as("service").post(ECHO, data=body, content_type="application/json")
    assert_error(response, 400, "validation_error")


@with_test_urls
def test_service_error_keeps_code_status_and_details(client_as):
    error = assert_error(client_as("service").get("/test/conflict"), 409, "in_progress")
    assert error == {"code": "in_progress", "message": "Already in progress.", "details": {"retry_after": 1}}


@with_test_urls
def test_database_outage_is_503_without_leaking_the_driver_message(client_as):
    response = client_as("service").get("/test/db-down")
    assert_error(response, 503, "service_unavailable")
    assert "hunter2" not in response.content.decode()


@with_test_urls
def test_unexpected_exception_is_generic_500(client_as):
    response = client_as("service").get("/test/broken")
    error = assert_error(response, 500, "internal_error")
    assert error["message"] == "An internal error occurred."
    assert "123456789012" not in response.content.decode()


@with_test_urls
@override_settings(
    REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"principal": "2/min"}}
)
def test_throttled_is_429_with_retry_after(client_as):
    from django.core.cache import cache

    cache.clear()
    client = client_as("service")
    assert client.get("/api/v1/auth/whoami").status_code == 200
    assert client.get("/api/v1/auth/whoami").status_code == 200
    response = client.get("/api/v1/auth/whoami")
    error = assert_error(response, 429, "throttled")
    assert error["details"]["retry_after_seconds"] > 0
    assert int(response["Retry-After"]) > 0
    cache.clear()


def test_missing_credentials_is_401_with_www_authenticate(api_client):
    error = assert_error(api_client.get("/api/v1/auth/whoami"), 401, "not_authenticated")
    assert error["details"] == {}


def test_wrong_api_key_is_401(api_client):
    api_client.credentials(HTTP_X_API_KEY="psk_deadbeef_not-a-real-key")
    response = api_client.get("/api/v1/auth/whoami")
    assert_error(response, 401, "authentication_failed")
    assert "psk_deadbeef" not in response.content.decode()


@override_settings(MAX_REQUEST_BODY_BYTES=1000)
def test_oversized_body_is_413_before_parsing(client_as):
    client = client_as("service")
    keys_before = ApiKey.objects.count()
    response = client.post("/api/v1/auth/whoami", data="x" * 1001, content_type="application/json")
    error = assert_error(response, 413, "payload_too_large")
    assert error["details"] == {"max_bytes": 1000}
    assert ApiKey.objects.count() == keys_before


def test_bad_content_length_is_400(client_as):
    client = client_as("service")
    response = client.generic("POST", "/api/v1/auth/whoami", data=b"{}", content_type="application/json",
                              CONTENT_LENGTH="abc")
    assert_error(response, 400, "bad_request")


def test_request_id_header_echoed_when_safe_and_replaced_when_not(client_as):
    client = client_as("service")
    ok = client.get("/api/v1/auth/whoami", HTTP_X_REQUEST_ID="abc-123")
    assert ok["X-Request-ID"] == "abc-123"
    unsafe = client.get("/api/v1/auth/whoami", HTTP_X_REQUEST_ID="bad id\nwith newline")
    assert unsafe["X-Request-ID"] != "bad id\nwith newline"
    assert len(unsafe["X-Request-ID"]) == 32
    missing = client.get("/healthz")
    assert len(missing["X-Request-ID"]) == 32


def test_error_responses_carry_request_id(api_client):
    response = api_client.get("/api/v1/auth/whoami", HTTP_X_REQUEST_ID="req-401")
    assert response.status_code == 401
    assert response["X-Request-ID"] == "req-401"
