"""Request-size and rate limits on the API and the JPM webhook.

Already covered elsewhere: 413 on ``/auth/whoami`` (tests/core/test_errors.py), the webhook's own
``JPM_WEBHOOK_MAX_BYTES`` 413 and its per-address 429 (tests/syncing/test_jpm_webhook_intake.py), a 429 with
Retry-After for one key. Added here:
- ``MAX_REQUEST_BODY_BYTES`` → 413 on a write endpoint (POST /payments) and on the webhook (the global limit also
  guards it when lower than the webhook's own), before authentication, nothing stored;
- the API rate limit is per key: key A gets 429 with Retry-After (and a throttled write stores nothing) while key B
  and an end user are still served; per end user: user A throttled, user B served.
"""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import override_settings

from tests.security.fuzz_helpers import OTHER_USER, USER, table_counts
from tests.syncing.conftest_jpm_webhook import callback, message, signed_headers

pytestmark = pytest.mark.django_db

PAYMENT = {"user_id": USER, "purpose": "float", "payment_method": "pinless", "payment_type": "debit",
           "amount": "1.00"}


@pytest.fixture
def fresh_rate_limits():
    cache.clear()
    yield
    cache.clear()


@pytest.mark.parametrize("credentials", ["service", "none"])
@override_settings(MAX_REQUEST_BODY_BYTES=2000)
def test_api_body_over_the_limit_is_413_and_stores_nothing(client_as, api_client, credentials):
    client = client_as("service") if credentials == "service" else api_client
    body = json.dumps({**PAYMENT, "first_name": "x" * 2100})
    before = table_counts()
    response = client.generic("POST", "/api/v1/payments", data=body, content_type="application/json",
                              HTTP_IDEMPOTENCY_KEY="limits-413")
    assert response.status_code == 413
    assert response.json()["error"] == {"code": "payload_too_large", "message": "The request body is too large.",
                                        "details": {"max_bytes": 2000}}
    assert table_counts() == before
    just_under = json.dumps({**PAYMENT, "first_name": "x"}).encode()
    assert len(just_under) < 2000
    assert client.generic("POST", "/api/v1/payments", data=just_under, content_type="application/json",
                          HTTP_IDEMPOTENCY_KEY="limits-ok").status_code != 413  # the limit, not any body


@override_settings(MAX_REQUEST_BODY_BYTES=2000, JPM_WEBHOOK_MAX_BYTES=64 * 1024)
def test_webhook_body_over_the_global_limit_is_413_even_when_signed(api_client):
    body = message(*(callback(f"{i:032x}", "PENDING") for i in range(20)))
    assert 2000 < len(body) < 64 * 1024
    before = table_counts()
    for headers in (signed_headers(body), {}):
        response = api_client.generic("POST", "/webhooks/jpm", data=body, content_type="application/json",
                                      **headers)
        assert response.status_code == 413, response.content
        assert response.json()["error"]["code"] == "payload_too_large"
    assert table_counts() == before


@override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK,
                                   "DEFAULT_THROTTLE_RATES": {"principal": "3/min"}})
def test_api_rate_limit_is_per_key(client_as, make_jwt, api_client, fresh_rate_limits):
    key_a, key_b = client_as("service"), client_as("service")
    for _ in range(3):
        assert key_a.get("/api/v1/auth/whoami").status_code == 200
    throttled = key_a.get("/api/v1/auth/whoami")
    assert throttled.status_code == 429
    assert throttled.json()["error"]["code"] == "throttled"
    assert int(throttled["Retry-After"]) > 0
    before = table_counts()
    write = key_a.post("/api/v1/payments", PAYMENT, format="json", HTTP_IDEMPOTENCY_KEY="limits-429")
    assert write.status_code == 429 and table_counts() == before  # a throttled write stores nothing
    assert key_b.get("/api/v1/auth/whoami").status_code == 200  # another key still has its budget
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_jwt(USER)}")
    assert api_client.get("/api/v1/auth/whoami").status_code == 200


@override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK,
                                   "DEFAULT_THROTTLE_RATES": {"principal": "2/min"}})
def test_api_rate_limit_is_per_end_user(make_jwt, api_client, fresh_rate_limits):
    from rest_framework.test import APIClient

    user_a, user_b = api_client, APIClient()
    user_a.credentials(HTTP_AUTHORIZATION=f"Bearer {make_jwt(USER)}")
    user_b.credentials(HTTP_AUTHORIZATION=f"Bearer {make_jwt(OTHER_USER)}")
    assert [user_a.get("/api/v1/auth/whoami").status_code for _ in range(3)] == [200, 200, 429]
    # a fresh token of the same user does not reset the budget
    user_a.credentials(HTTP_AUTHORIZATION=f"Bearer {make_jwt(USER, iat=1)}")
    assert user_a.get("/api/v1/auth/whoami").status_code == 429
    assert user_b.get("/api/v1/auth/whoami").status_code == 200
