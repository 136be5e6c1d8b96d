"""Log lines written while serving a request carry its request id and no sensitive data."""

import json

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db


def test_access_line_has_request_id_method_path_status(client_as, json_lines):
    client = client_as("service")
    client.get("/api/v1/auth/whoami?token=secret-in-query", HTTP_X_REQUEST_ID="req-access-1")
    access = [line for line in json_lines() if line["logger"] == "payments.access"]
    assert len(access) == 1
    line = access[0]
    assert line["request_id"] == "req-access-1"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/api/v1/auth/whoami", 200)
    assert line["duration_ms"] >= 0
    assert "secret-in-query" not in json.dumps(line)


@override_settings(ROOT_URLCONF="tests.core.urls")
def test_error_log_of_a_request_has_its_id_and_no_account_number(client_as, json_lines):
    response = client_as("service").get("/test/broken", HTTP_X_REQUEST_ID="req-broken-1")
    assert response.status_code == 500
    lines = json_lines()
    errors = [line for line in lines if line["level"] == "ERROR"]
    assert errors, lines
    assert all(line["request_id"] == "req-broken-1" for line in lines)
    text = "\n".join(json.dumps(line) for line in lines)
    assert "RuntimeError" in text
    assert "123456789012" not in text
    assert "****9012" in text


def test_django_request_log_of_a_4xx_carries_no_query_string(api_client, json_lines):
    # A fixed request id: a random one is hex and can contain any 4 digits.
    response = api_client.get(
        "/api/v1/auth/whoami?card=4111+1111+1111+1111&acct=739146285017",
        HTTP_X_REQUEST_ID="req-4xx-1",
    )
    assert response.status_code == 401
    lines = [line for line in json_lines() if line["logger"] == "django.request"]
    assert lines, json_lines()
    text = "\n".join(json.dumps(line) for line in json_lines())
    for leaked in ("4111", "739146285017", "card=", "acct="):
        assert leaked not in text.replace("****1111", ""), leaked
    assert lines[0]["request"] == "GET /api/v1/auth/whoami"
