"""Shared fixtures: API clients per role, end-user JWTs, captured JSON log lines, the sandbox."""

import io
import json
import logging
import time

import jwt
import pytest
from django.conf import settings
from rest_framework.test import APIClient

from core.auth.api_keys import api_key_create
from core.logging import JsonFormatter, RedactionFilter, RequestIdFilter

pytest_plugins = ["tests.log_audit"]


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def make_api_key(db):
    """Create an API key with a role; returns the raw key."""
    counter = iter(range(1_000_000))

    def _make(role: str = "service", name: str | None = None) -> str:
        _, raw = api_key_create(name=name or f"test-{role}-{next(counter)}", role=role)
        from tests import log_audit  # imported as a plugin first (pytest_plugins), for its assertion rewriting

        log_audit.remember(raw, "API key")
        return raw

    return _make


@pytest.fixture
def client_as(make_api_key):
    """An APIClient authenticated with a fresh API key of ``role``."""

    def _client(role: str = "service") -> APIClient:
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=make_api_key(role))
        return client

    return _client


@pytest.fixture
def make_jwt():
    """Sign an end-user token the way the identity provider would (HS256 with the configured secret)."""

    def _make(sub: str = "user-1", *, secret: str | None = None, **claims) -> str:
        now = int(time.time())
        payload = {
            "sub": sub,
            "iss": settings.JWT_ISSUER,
            "aud": settings.JWT_AUDIENCE,
            "iat": now,
            "exp": now + 300,
            **claims,
        }
        token = jwt.encode(payload, secret or settings.JWT_SECRET, algorithm="HS256")
        from tests import log_audit

        log_audit.remember(token, "JWT")
        return token

    return _make


@pytest.fixture
def json_lines():
    """The root logger's output, at INFO, through the project's own filters and formatter, as parsed lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactionFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


from tests.integrations.keepalive_proxy import keepalive_url, proxy  # noqa: E402,F401  (fixtures)
from tests.sandbox_fixtures import sandbox, sandbox_server  # noqa: E402,F401  (fixtures)


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Every test starts with an empty cache: rate-limit counters, kick flags and pauses are per test."""
    from django.core.cache import cache

    cache.clear()
