"""DRF authentication classes: ``X-API-Key`` for services, ``Authorization: Bearer <JWT>`` for users."""

import jwt
from django.conf import settings
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from core.auth.api_keys import api_key_verify
from core.auth.principal import ROLE_USER, Principal

API_KEY_HEADER = "X-API-Key"


class ApiKeyAuthentication(BaseAuthentication):
    """A service client's key in ``X-API-Key``. A present but wrong key is a 401, never anonymous."""

    def authenticate(self, request):
        raw_key = request.headers.get(API_KEY_HEADER)
        if raw_key is None:
            return None
        key = api_key_verify(raw_key.strip())
        if key is None:
            raise AuthenticationFailed("Invalid or revoked API key.")
        return Principal(role=key.role, name=key.name, client_id=f"key:{key.pk}"), key

    def authenticate_header(self, request):
        return f'{API_KEY_HEADER} realm="payments", Bearer realm="payments"'


class JwtAuthentication(BaseAuthentication):
    """An end user's JWT (issuer, audience and key from settings) → the ``user`` role for ``sub``.

    HS256 verifies with ``JWT_SECRET``; RS256 with ``JWT_PUBLIC_KEY``. Without a configured key every
    token is refused (fail closed). ``exp``, ``iss``, ``aud`` and ``sub`` are required.
    """

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != b"bearer":
            return None
        if len(header) != 2:
            raise AuthenticationFailed("Malformed Authorization header.")
        try:
            token = header[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise AuthenticationFailed("Malformed bearer token.") from exc
        claims = decode_user_token(token)
        subject = str(claims["sub"])
        return Principal(role=ROLE_USER, name=subject, client_id=f"user:{subject}", user_id=subject), claims

    def authenticate_header(self, request):
        return 'Bearer realm="payments"'


def _verification_key() -> str:
    if settings.JWT_ALGORITHM.startswith("HS"):
        return settings.JWT_SECRET
    return settings.JWT_PUBLIC_KEY


def decode_user_token(token: str) -> dict:
    """Verify ``token`` and return its claims; any failure is a 401 that reveals nothing of the token."""
    key = _verification_key()
    if not key:
        raise AuthenticationFailed("End-user tokens are not accepted by this deployment.")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[settings.JWT_ALGORITHM],
            audience=settings.JWT_AUDIENCE,
            issuer=settings.JWT_ISSUER,
            leeway=settings.JWT_LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthenticationFailed("The token has expired.") from exc
    except jwt.PyJWTError as exc:
        raise AuthenticationFailed("The token is invalid.") from exc
    if not str(claims.get("sub", "")).strip():
        raise AuthenticationFailed("The token has no subject.")
    return claims
