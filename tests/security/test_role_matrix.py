"""Role matrix (SPEC §10): every API operation x {service, support, admin, user JWT (own id), user JWT (other id)}
is allowed (anything but 401/403) or refused with 403, exactly as SPEC §10's table says.

The operations are enumerated from the OpenAPI schema, and the schema is checked against the URL resolver, so an
endpoint added later without a row in ``EXPECTED`` fails ``test_expected_table_covers_every_endpoint``.
A refused request changes nothing: the row count of every table is the same before and after it.
"""

from __future__ import annotations

import json
import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.generators import SchemaGenerator

from tests.security.fuzz_helpers import ACCOUNT, ACCOUNT_ID, OTHER_USER, ROUTING, USER, table_counts

pytestmark = pytest.mark.django_db

SERVICE, SUPPORT, ADMIN, USER_OWN, USER_OTHER = "service", "support", "admin", "user_own", "user_other"
ROLES = (SERVICE, SUPPORT, ADMIN, USER_OWN, USER_OTHER)
OWN = "user(own)"  # SPEC's "user(own)": the end user for its own user id only
SIGNATURE = "jpm-signature"  # no role: JPM's signature or mTLS only (any API key / JWT → 401)

# SPEC §10's endpoint table, one row per method. `/api/v1/auth/whoami` is not in SPEC's table: it is the
# credentials' self-check, open to every authenticated caller (each gets its own principal back).
EXPECTED: dict[tuple[str, str], set[str] | str] = {
    ("POST", "/api/v1/payments"): {SERVICE, OWN},
    ("GET", "/api/v1/users/{user_id}/payments"): {SERVICE, SUPPORT, OWN},
    ("GET", "/api/v1/payments/{confirmation_id}"): {SERVICE, SUPPORT, OWN},
    ("POST", "/api/v1/prenotes"): {SERVICE},
    ("GET", "/api/v1/users/{user_id}/debit-card"): {SERVICE, OWN},
    ("PUT", "/api/v1/users/{user_id}/debit-card"): {SERVICE, OWN},
    ("DELETE", "/api/v1/users/{user_id}/debit-card"): {SERVICE, OWN},
    ("GET", "/api/v1/users/{user_id}/debit-card/changeable"): {SERVICE, OWN},
    ("GET", "/api/v1/users/{user_id}/debit-card/changes"): {SERVICE, SUPPORT},
    ("PATCH", "/api/v1/admin/users/{user_id}/debit-card"): {SUPPORT, ADMIN},
    ("POST", "/api/v1/test/users/{user_id}/debit-card/toggle-failure"): {SERVICE},
    ("GET", "/api/v1/users/{user_id}/bank-accounts/{account_id}"): {SERVICE},
    ("PUT", "/api/v1/users/{user_id}/bank-accounts/{account_id}"): {SERVICE},
    ("DELETE", "/api/v1/users/{user_id}/bank-accounts/{account_id}"): {SERVICE},
    ("POST", "/api/v1/bank-accounts/lookup"): {SERVICE},
    ("POST", "/api/v1/fraud/checks"): {SERVICE},
    ("POST", "/api/v1/fraud/results"): {SERVICE},
    ("POST", "/api/v1/refunds"): {SUPPORT, ADMIN},
    ("GET", "/api/v1/users/{user_id}/refunds"): {SERVICE, SUPPORT},
    ("GET", "/api/v1/users/{user_id}/blocklist"): {SERVICE, SUPPORT},
    ("GET", "/api/v1/users/{user_id}/blocklist/history"): {SERVICE, SUPPORT},
    ("POST", "/api/v1/users/{user_id}/blocklist"): {SUPPORT, ADMIN},
    ("DELETE", "/api/v1/users/{user_id}/blocklist"): {SUPPORT, ADMIN},
    ("GET", "/api/v1/events"): {SERVICE},
    ("POST", "/webhooks/jpm"): SIGNATURE,
    ("GET", "/api/v1/auth/whoami"): {SERVICE, SUPPORT, ADMIN, USER_OWN, USER_OTHER},
}
# Not role-protected API endpoints (SPEC §10 "none" / "OpenAPI 3 and its UI"); the back office (/admin/) is
# session-based and has its own matrix (tests/backoffice/test_permissions_matrix.py).
UNPROTECTED_PREFIXES = ("/api/schema/", "/api/docs/")


def expected_status(rule: set[str] | str, role: str) -> str:
    """``allowed``, ``403`` or ``401`` for ``role`` under a row of ``EXPECTED``."""
    if rule == SIGNATURE:
        return "401"
    if role in rule:
        return "allowed"
    if role == USER_OWN and OWN in rule:
        return "allowed"
    return "403"


def schema_operations() -> set[tuple[str, str]]:
    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    return {(method.upper(), path) for path, item in paths.items() for method in item
            if method in ("get", "post", "put", "patch", "delete")}


def resolver_routes(patterns=None, prefix: str = "/") -> set[str]:
    """Every URL pattern of the URL conf as an OpenAPI path template (``<str:user_id>`` → ``{user_id}``)."""
    routes = set()
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        route = prefix + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(entry.pattern))
        if isinstance(entry, URLResolver):
            routes |= resolver_routes(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            routes.add(route)
    return routes


def test_expected_table_covers_every_endpoint():
    operations = schema_operations()
    assert set(EXPECTED) == operations, {
        "in the schema, missing from EXPECTED": sorted(operations - set(EXPECTED)),
        "in EXPECTED, not in the schema": sorted(set(EXPECTED) - operations),
    }
    api_routes = {r for r in resolver_routes() if r.startswith(("/api/", "/webhooks/"))
                  and not r.startswith(UNPROTECTED_PREFIXES)}
    assert api_routes == {path for _, path in operations}, "every API URL is in the schema"


@pytest.fixture
def world(sandbox, make_api_key, make_jwt):
    """USER has a bank account, a debit card and a settled-looking ACH payment (submitted through the API)."""
    from datetime import date

    from bank_accounts.services import bank_account_save
    from cards.services import card_save
    from payments.models import Payment

    bank_account_save(user_id=USER, account_id=ACCOUNT_ID, account_number=ACCOUNT, routing_number=ROUTING,
                      account_type=None, actor="service:test")
    card_save(user_id=USER, masked_card_number="4242", card_exp=f"12{date.today().year + 2}",
              transaction_reference_id="tok_credit_matrix", debit_transaction_reference_id="tok_debit_matrix",
              actor="service:test")
    headers = {
        SERVICE: {"HTTP_X_API_KEY": make_api_key("service")},
        SUPPORT: {"HTTP_X_API_KEY": make_api_key("support")},
        ADMIN: {"HTTP_X_API_KEY": make_api_key("admin")},
        USER_OWN: {"HTTP_AUTHORIZATION": f"Bearer {make_jwt(USER)}"},
        USER_OTHER: {"HTTP_AUTHORIZATION": f"Bearer {make_jwt(OTHER_USER)}"},
    }
    from rest_framework.test import APIClient

    response = APIClient().post("/api/v1/payments", payment_body(), format="json",
                                HTTP_IDEMPOTENCY_KEY="matrix-setup", **headers[SERVICE])
    assert response.status_code == 201, response.content
    return {"headers": headers, "payment": Payment.objects.get(pk=response.json()["id"])}


def payment_body() -> dict:
    return {"user_id": USER, "purpose": "float", "payment_method": "ach", "payment_type": "debit",
            "amount": "1.00", "account_id": ACCOUNT_ID}


BODIES = {
    ("POST", "/api/v1/payments"): payment_body,
    ("POST", "/api/v1/refunds"): lambda: {"user_id": USER, "amount": "1.00", "reason": "matrix"},
    ("POST", "/api/v1/users/{user_id}/blocklist"): lambda: {"reason": "matrix"},
    ("PATCH", "/api/v1/admin/users/{user_id}/debit-card"): lambda: {"reason": "matrix"},
}


def request(client, method: str, path: str, world, headers: dict, key: str):
    url = (path.replace("{user_id}", USER).replace("{account_id}", ACCOUNT_ID)
           .replace("{confirmation_id}", str(world["payment"].pk)))
    body = BODIES.get((method, path), dict)()
    return client.generic(method, url, data=json.dumps(body), content_type="application/json",
                          HTTP_IDEMPOTENCY_KEY=key, **headers)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_against_each_endpoint(role, world, api_client):
    """Refused operations first (on the untouched data: nothing may change), then the allowed ones."""
    from django.core.cache import cache

    cache.clear()
    headers = world["headers"][role]
    rows = sorted(EXPECTED.items(), key=lambda item: expected_status(item[1], role) == "allowed")
    mismatches, checked = [], 0
    for n, ((method, path), rule) in enumerate(rows):
        expected = expected_status(rule, role)
        before = table_counts() if expected != "allowed" else None
        response = request(api_client, method, path, world, headers, key=f"matrix-{role}-{n}")
        checked += 1
        got = response.status_code
        if expected == "allowed":
            if got in (401, 403):
                mismatches.append(f"{method} {path}: expected allowed, got {got} {response.content[:200]}")
            continue
        if str(got) != expected:
            mismatches.append(f"{method} {path}: expected {expected}, got {got} {response.content[:200]}")
            continue
        assert response.json()["error"]["code"]  # the error envelope
        after = table_counts()
        if after != before:
            changed = {t: (before.get(t), after.get(t)) for t in after if before.get(t) != after.get(t)}
            mismatches.append(f"{method} {path}: refused with {got} but rows changed: {changed}")
    print(f"role matrix {role}: {checked} endpoints checked")
    assert checked == len(EXPECTED)
    assert not mismatches, "\n".join(mismatches)
