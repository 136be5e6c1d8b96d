"""Production settings, in subprocesses (the test settings of this process stay untouched).

Already covered by tests/core/test_settings.py: ``check --deploy --fail-level WARNING`` clean, refusal to start
without each required secret, DEBUG off. Added here: the test-only endpoint
(``POST /api/v1/test/users/<id>/debit-card/toggle-failure``) is 404 with production settings for every
authenticated caller — including the ``service`` key it serves in other environments — and 401 without credentials;
with the test settings the same request reaches the view (the control).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.core.test_settings import ROOT, _env, _prod_env

URL = "/api/v1/test/users/sec-user-1/debit-card/toggle-failure"
JWT_SECRET = "prod-jwt-secret-for-the-subprocess-0123456789abcdef"

PROBE = textwrap.dedent(f"""
    import json, time
    import django
    django.setup()
    import jwt
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from cards.models import DebitCard, DebitCardChange
    from core.models import ApiKey
    from core.auth.api_keys import api_key_create

    with connection.schema_editor() as editor:  # the tables of authentication and cards, in a scratch database
        for model in (ApiKey, DebitCard, DebitCardChange):
            editor.create_model(model)
    answers = {{"environment": settings.ENVIRONMENT}}
    client = Client(HTTP_HOST="localhost")
    token = jwt.encode({{"sub": "sec-user-1", "iss": settings.JWT_ISSUER, "aud": settings.JWT_AUDIENCE,
                        "exp": int(time.time()) + 300}}, settings.JWT_SECRET, algorithm="HS256")
    callers = {{"none": {{}}, "user": {{"HTTP_AUTHORIZATION": "Bearer " + token}}}}
    for role in ("service", "support", "admin"):
        callers[role] = {{"HTTP_X_API_KEY": api_key_create(name="probe-" + role, role=role)[1]}}
    for name, headers in callers.items():
        response = client.post("{URL}", data="", content_type="application/json", secure=True, **headers)
        answers[name] = [response.status_code, response.json()["error"]["code"] if response.status_code >= 400
                         else None]
    print(json.dumps(answers))
""")


def probe(env: dict) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_test_only_endpoint_is_404_with_production_settings(tmp_path):
    env = {**_prod_env(), "DATABASE_URL": f"sqlite:///{tmp_path / 'prod-probe.sqlite3'}", "JWT_SECRET": JWT_SECRET,
           "ALLOWED_HOSTS": "localhost"}
    answers = probe(env)
    assert answers == {"environment": "prod", "none": [401, "not_authenticated"], "user": [404, "not_found"],
                       "service": [404, "not_found"], "support": [404, "not_found"], "admin": [404, "not_found"]}


def test_the_same_probe_reaches_the_endpoint_with_test_settings(tmp_path):
    """The control: outside prod the service key reaches the view (404 `debit_card_not_found`: no card), the other
    roles get 403."""
    env = _env(DJANGO_SETTINGS_MODULE="config.settings.test", DATABASE_URL=f"sqlite:///{tmp_path / 'probe.sqlite3'}",
               JWT_SECRET=JWT_SECRET, ALLOWED_HOSTS="localhost", CELERY_BROKER_URL="memory://")
    answers = probe(env)
    assert answers == {"environment": "test", "none": [401, "not_authenticated"], "user": [403, "permission_denied"],
                       "service": [404, "debit_card_not_found"], "support": [403, "permission_denied"],
                       "admin": [403, "permission_denied"]}
