"""End-user JWTs: the cases tests/core/test_auth.py does not cover yet, against real endpoints.

Already covered there (on /auth/whoami): expired, wrong issuer, wrong audience, forged (another secret), empty
``sub``, alg ``none``, malformed bearer. Added here: not yet valid (``nbf`` / ``iat`` in the future), each required
claim missing (``sub``, ``exp``, ``iss``, ``aud``), a token signed with another algorithm (HS512 with the right
secret), a stripped signature, and the refusals on a user-scoped endpoint — where another user's
id is 403 and a bad token leaves nothing changed.
"""

from __future__ import annotations

import json
import time

import jwt
import pytest
from django.conf import settings

from tests.security.fuzz_helpers import OTHER_USER, USER, table_counts

pytestmark = pytest.mark.django_db

CARD_URL = f"/api/v1/users/{USER}/debit-card"


def claims(**overrides) -> dict:
    now = int(time.time())
    base = {"sub": USER, "iss": settings.JWT_ISSUER, "aud": settings.JWT_AUDIENCE, "iat": now, "exp": now + 300}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict, *, key: str | None = None, algorithm: str = "HS256") -> str:
    return jwt.encode(payload, key or settings.JWT_SECRET, algorithm=algorithm)


BAD_TOKENS = {
    "not-yet-valid-nbf": lambda: sign(claims(nbf=int(time.time()) + 3600)),
    "issued-in-the-future": lambda: sign(claims(iat=int(time.time()) + 3600)),
    "missing-sub": lambda: sign(claims(sub=None)),
    "missing-exp": lambda: sign(claims(exp=None)),
    "missing-iss": lambda: sign(claims(iss=None)),
    "missing-aud": lambda: sign(claims(aud=None)),
    "other-algorithm-hs512": lambda: sign(claims(), algorithm="HS512"),
    "expired-beyond-leeway": lambda: sign(claims(exp=int(time.time()) - settings.JWT_LEEWAY_SECONDS - 5)),
    "forged-other-secret": lambda: sign(claims(), key="another-secret-of-sufficient-length-0123456789"),
    "alg-none": lambda: jwt.encode(claims(), None, algorithm="none"),
    "signature-stripped": lambda: sign(claims()).rsplit(".", 1)[0] + ".",
}


@pytest.mark.parametrize("name", sorted(BAD_TOKENS))
@pytest.mark.parametrize(("method", "body"), [("GET", None), ("PUT", {"masked_card_number": "4242"})])
def test_bad_token_on_a_user_endpoint_is_401_and_changes_nothing(api_client, name, method, body):
    token = BAD_TOKENS[name]()
    before = table_counts()
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = api_client.generic(method, CARD_URL, data=json.dumps(body or {}),
                                  content_type="application/json")
    assert response.status_code == 401, (name, response.content)
    assert response.json()["error"]["code"] == "authentication_failed"
    assert token not in response.content.decode()
    assert table_counts() == before


def test_a_valid_token_is_accepted_on_the_same_endpoint(api_client):
    """The control of the cases above: the same shape, correctly signed, passes authentication."""
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {sign(claims())}")
    response = api_client.get(CARD_URL)
    assert response.status_code == 404  # authenticated and allowed; the user simply has no card
    assert response.json()["error"]["code"] == "debit_card_not_found"


@pytest.mark.parametrize("url", [f"/api/v1/users/{OTHER_USER}/debit-card", f"/api/v1/users/{OTHER_USER}/payments",
                                 f"/api/v1/users/{OTHER_USER}/debit-card/changeable"])
def test_a_valid_token_for_another_user_id_is_403(api_client, url):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {sign(claims())}")
    before = table_counts()
    response = api_client.get(url)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "not_your_user"
    assert table_counts() == before
