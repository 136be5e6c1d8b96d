"""API keys (hashed, with roles), end-user JWTs, and the per-role checks."""

import pytest
from django.core.management import call_command
from django.urls import path
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from core.auth.api_keys import api_key_create, api_key_revoke, hash_api_key
from core.auth.permissions import require_roles
from core.errors import ValidationError
from core.models import ApiKey

pytestmark = pytest.mark.django_db
WHOAMI = "/api/v1/auth/whoami"


def test_api_key_is_stored_hashed_and_authenticates_with_its_role(api_client):
    key, raw = api_key_create(name="float-service", role="support")
    assert raw.startswith("psk_")
    stored = ApiKey.objects.get(pk=key.pk)
    assert stored.key_hash == hash_api_key(raw)
    assert raw not in {stored.key_hash, stored.prefix, stored.name}
    api_client.credentials(HTTP_X_API_KEY=raw)
    response = api_client.get(WHOAMI)
    assert response.status_code == 200
    assert response.json() == {"role": "support", "name": "float-service", "user_id": None}
    assert ApiKey.objects.get(pk=key.pk).last_used_at is not None


def test_revoked_key_is_refused(api_client):
    key, raw = api_key_create(name="old", role="service")
    api_key_revoke(key=key)
    api_client.credentials(HTTP_X_API_KEY=raw)
    assert api_client.get(WHOAMI).status_code == 401


def test_api_key_with_unknown_role_or_duplicate_name_is_refused():
    with pytest.raises(ValidationError) as exc:
        api_key_create(name="x", role="root")
    assert exc.value.code == "invalid_role"
    api_key_create(name="dup", role="service")
    with pytest.raises(ValidationError) as exc:
        api_key_create(name="dup", role="admin")
    assert exc.value.code == "duplicate_name"
    assert ApiKey.objects.filter(name="dup").count() == 1
    assert ApiKey.objects.get(name="dup").role == "service"


def test_create_api_key_command_prints_the_key_once(capsys):
    call_command("create_api_key", "--name", "subscription-service", "--role", "service")
    out = capsys.readouterr()
    raw = out.out.strip()
    key = ApiKey.objects.get(name="subscription-service")
    assert key.role == "service"
    assert key.key_hash == hash_api_key(raw)
    assert "not shown again" in out.err


def test_jwt_maps_to_user_role(api_client, make_jwt):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_jwt('u-42')}")
    response = api_client.get(WHOAMI)
    assert response.status_code == 200
    assert response.json() == {"role": "user", "name": "u-42", "user_id": "u-42"}


@pytest.mark.parametrize(
    ("claims", "secret"),
    [
        ({"exp": 1}, None),  # expired long ago
        ({"iss": "https://evil.example"}, None),
        ({"aud": "another-service"}, None),
        ({}, "forged-with-another-secret-0123456789"),
        ({"sub": ""}, None),
    ],
    ids=["expired", "wrong-issuer", "wrong-audience", "forged", "empty-subject"],
)
def test_bad_jwts_are_401(api_client, make_jwt, claims, secret):
    claims = dict(claims)
    token = make_jwt(claims.pop("sub", "u-1"), secret=secret, **claims)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = api_client.get(WHOAMI)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert token not in response.content.decode()


@pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Bearer not-a-jwt", "Bearer \u00e9t\u00e9"])
def test_malformed_bearer_is_401(api_client, header):
    response = api_client.get(WHOAMI, HTTP_AUTHORIZATION=header.encode("utf-8").decode("latin-1"))
    assert response.status_code == 401


def test_alg_none_token_is_refused(api_client, make_jwt):
    import jwt as pyjwt

    token = pyjwt.encode({"sub": "u-1", "iss": "x", "aud": "y", "exp": 9999999999}, None, algorithm="none")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api_client.get(WHOAMI).status_code == 401


class _OwnDataView(APIView):
    permission_classes = [require_roles("service", "user")]

    def get(self, request, user_id):
        return Response({"user_id": user_id})


class _SupportOnlyView(APIView):
    permission_classes = [require_roles("support", "admin")]

    def get(self, request):
        return Response({"ok": True})


urlpatterns = [
    path("users/<str:user_id>/thing", _OwnDataView.as_view()),
    path("support-only", _SupportOnlyView.as_view()),
]


@pytest.mark.urls(__name__)
def test_user_may_only_touch_own_user_id(api_client, make_jwt):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_jwt('u-1')}")
    assert api_client.get("/users/u-1/thing").status_code == 200
    other = api_client.get("/users/u-2/thing")
    assert other.status_code == 403
    assert other.json()["error"]["code"] == "not_your_user"


@pytest.mark.urls(__name__)
@pytest.mark.parametrize(
    ("role", "own", "support_only"),
    [("service", 200, 403), ("support", 403, 200), ("admin", 403, 200)],
)
def test_roles_matrix(client_as, role, own, support_only):
    client = client_as(role)
    assert client.get("/users/anyone/thing").status_code == own
    assert client.get("/support-only").status_code == support_only


def test_require_roles_rejects_unknown_roles():
    with pytest.raises(ValueError):
        require_roles("superuser")


def test_request_factory_principal_is_not_anonymous(make_api_key):
    # DRF's request.user is our Principal, never Django's AnonymousUser, once authenticated.
    from core.auth.authentication import ApiKeyAuthentication

    request = APIRequestFactory().get("/", HTTP_X_API_KEY=make_api_key("admin"))
    principal, key = ApiKeyAuthentication().authenticate(request)
    assert principal.role == "admin"
    assert principal.client_id == f"key:{key.pk}"
    assert principal.is_authenticated
