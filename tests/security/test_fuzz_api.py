"""Schemathesis over the whole OpenAPI schema (``/api/schema/``), in-process through the WSGI app, once per role.

For every operation of the schema (none excluded: the JPM webhook is fuzzed too, authenticated the way the proxy
authenticates JPM over mTLS, because a generated body cannot carry a valid HMAC of itself), hypothesis generates
valid (positive) and invalid (negative) requests; each response must:
- not be a 5xx (``not_a_server_error``),
- match the documented schema for its status, errors in the ``{"error": {...}}`` envelope
  (``response_schema_conformance``),
- have a documented status code (``status_code_conformance``).
Deterministic (``derandomize``, no example database) and bounded (``MAX_EXAMPLES`` per operation and mode).
Payment submissions reach the processors of the sandbox. The end-user role sends its own user id in the path
and body (another user's id is the role matrix's business: ``test_role_matrix.py``).
"""

from __future__ import annotations

from collections import Counter
from functools import cache

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import override_settings
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup  # a BaseExceptionGroup
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from core.auth.api_keys import api_key_create
from tests.security.fuzz_helpers import ACCOUNT, ACCOUNT_ID, ROUTING, USER

pytestmark = pytest.mark.django_db

MAX_EXAMPLES = 25
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
ROLES = ("service", "support", "admin", "user")
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]
MTLS_HEADER, MTLS_VALUE = "X-Client-Verify", "SUCCESS"
AUTH_HEADERS = {"x-api-key", "authorization", MTLS_HEADER.lower()}
STATS: dict[str, Counter] = {}


@cache
def load_schema():
    return schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


def operations():
    return [result.ok() for result in load_schema().get_all_operations()]


@pytest.fixture
def world(sandbox, bank_account_for_fuzz, debit_card_for_fuzz):
    """The user's bank account and debit card exist, so that some generated submissions go through.

    Requests reach the bare WSGI app: as Django's test client does, the start and end of a request must not close
    the test's database connection (its transaction holds the test data)."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    try:
        yield sandbox
    finally:
        for signal in (request_started, request_finished):
            signal.connect(close_old_connections)


@pytest.fixture
def bank_account_for_fuzz(db):
    from bank_accounts.services import bank_account_save

    return bank_account_save(user_id=USER, account_id=ACCOUNT_ID, account_number=ACCOUNT, routing_number=ROUTING,
                             account_type=None, actor="service:test").account


@pytest.fixture
def debit_card_for_fuzz(db):
    from datetime import date

    from cards.services import card_save

    return card_save(user_id=USER, masked_card_number="4242", card_exp=f"12{date.today().year + 2}",
                     transaction_reference_id="tok_credit_fuzz", debit_transaction_reference_id="tok_debit_fuzz",
                     actor="service:test")[0]


def credentials(role: str, make_jwt) -> dict:
    if role == "user":
        return {"Authorization": f"Bearer {make_jwt(USER, exp=2**31 - 1)}"}
    _, raw = api_key_create(name=f"fuzz-{role}", role=role)
    return {"X-API-Key": raw}


def pin_own_user(case) -> None:
    """The end user acts on its own data: its id in the path and in a body's ``user_id``."""
    if case.path_parameters and "user_id" in case.path_parameters:
        case.path_parameters["user_id"] = USER
    if isinstance(case.body, dict) and "user_id" in case.body:
        case.body["user_id"] = USER


def fuzz(operation, mode: GenerationMode, *, role: str, headers: dict, stats: Counter) -> str | None:
    """Run ``MAX_EXAMPLES`` generated requests of ``mode`` against ``operation``; the failure found, if any."""

    @settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        # The schema's security schemes make schemathesis generate X-API-Key / Authorization values: replaced by
        # the role's real credentials.
        for name in [h for h in (case.headers or {}) if h.lower() in AUTH_HEADERS]:
            del case.headers[name]
        if role == "user":
            pin_own_user(case)
        response = case.call(headers=headers)
        stats["requests"] += 1
        stats[f"{response.status_code // 100}xx"] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)

    try:
        run()
    except (Exception, FailureGroup) as exc:  # FailureGroup is a BaseExceptionGroup
        return f"{operation.label} [{mode.value}]: {str(exc)[:1500]}"
    return None


@override_settings(JPM_WEBHOOK_MTLS_HEADER=MTLS_HEADER, JPM_WEBHOOK_MTLS_VALUE=MTLS_VALUE,
                   JPM_WEBHOOK_THROTTLE_RATE="100000/min")
@pytest.mark.parametrize("role", ROLES)
def test_every_operation_answers_within_its_schema(role, world, make_jwt):
    from django.core.cache import cache as django_cache

    django_cache.clear()  # a fresh API rate-limit budget
    role_headers = credentials(role, make_jwt)
    stats = STATS.setdefault(role, Counter())
    ops = operations()
    assert len(ops) >= 26, [op.label for op in ops]  # the whole schema, nothing filtered out
    failures = []
    for operation in ops:
        # JPM has no API key: authenticated as mTLS terminated at the proxy (SPEC §10)
        headers = {MTLS_HEADER: MTLS_VALUE} if operation.path == "/webhooks/jpm" else role_headers
        for mode in MODES:
            failure = fuzz(operation, mode, role=role, headers=headers, stats=stats)
            if failure:
                failures.append(failure)
    stats["operations"] = len(ops)
    stats["processor_requests"] = len(world.requests())
    print(f"fuzz {role}: {dict(stats)}")
    assert not failures, f"{len(failures)} failures:\n" + "\n\n".join(failures)
    assert stats["2xx"] > 0 and stats["4xx"] > 0  # the credentials worked and bad input was refused


# --- regressions: inputs the fuzz found answered with an undocumented status (schema annotations fixed) -----------
REGRESSIONS = [
    # invalid cursor → 404 `not_found`, was undocumented on these two list endpoints
    ("GET", "/api/v1/users/{user_id}/blocklist/history", {"query": {"cursor": "\u0083K\u00f9D"}}, 404),
    ("GET", "/api/v1/users/{user_id}/debit-card/changes", {"query": {"cursor": "\u0083K\u00f9D"}}, 404),
    # unknown field / not JSON → 400 `validation_error` / `malformed_request`, was undocumented
    # PostgreSQL only: an offset beyond ±15:59 reached the database → 500 (DataError); now normalised to UTC
    ("GET", "/api/v1/users/{user_id}/payments",
     {"query": {"submitted_before": "0549-06-15T03:13:27-18:47", "submitted_after": "1763-06-21T13:57:53-12:21"}},
     200),
    ("GET", "/api/v1/users/{user_id}/payments", {"query": {"submitted_after": "0001-01-01T00:00:00+05:00"}}, 400),
    ("POST", "/api/v1/users/{user_id}/blocklist", {"body": {"\u00cb": {"score__gte": [None]}, "allow_blank": {}}},
     400),
]


@pytest.mark.parametrize(("method", "path", "parts", "status"), REGRESSIONS,
                         ids=[f"{m} {p}" for m, p, *_ in REGRESSIONS])
def test_fuzz_findings_are_documented(method, path, parts, status, world):
    _, raw = api_key_create(name="fuzz-regression", role="support")
    headers = {"X-API-Key": raw}
    case = load_schema()[path][method].Case(path_parameters={"user_id": USER}, **parts)
    response = case.call(headers=headers)
    assert response.status_code == status, response.text
    assert ("error" in response.json()) is (status >= 400)
    case.validate_response(response, checks=CHECKS, headers=headers)
