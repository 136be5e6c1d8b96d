"""API key services: create, verify, revoke. Keys are shown once and stored as SHA-256 hashes.

A key is ``psk_<8-char prefix>_<43-char secret>`` (256 bits of randomness). A fast hash is right
for random high-entropy keys (unlike passwords); the prefix lets operators recognise a key without
storing it.
"""

import hashlib
import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from core.errors import ValidationError
from core.models import ApiKey, Role

KEY_PREFIX = "psk_"
# last_used_at is refreshed at most this often, so that reads do not become writes.
LAST_USED_RESOLUTION = timedelta(minutes=5)


def hash_api_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_create(*, name: str, role: str, raw_key: str | None = None) -> tuple[ApiKey, str]:
    """Create an API key with ``role``; returns the row and the raw key (never stored).

    ``raw_key`` is only for the local demo key; production keys are always generated.
    """
    if role not in Role.values:
        raise ValidationError(f"Unknown role {role!r}.", code="invalid_role", details={"roles": Role.values})
    name = name.strip()
    if not name:
        raise ValidationError("A key needs a name.", code="invalid_name")
    if raw_key is None:
        raw_key = f"{KEY_PREFIX}{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        if ApiKey.objects.filter(name=name).exists():
            raise ValidationError(f"An API key named {name!r} already exists.", code="duplicate_name")
        key = ApiKey.objects.create(
            name=name, role=role, prefix=raw_key[: len(KEY_PREFIX) + 8], key_hash=hash_api_key(raw_key)
        )
    return key, raw_key


def api_key_verify(raw_key: str) -> ApiKey | None:
    """The active key matching ``raw_key``, or None. Touches ``last_used_at`` at most every 5 minutes."""
    if not raw_key.startswith(KEY_PREFIX) or len(raw_key) > 200:
        return None
    key = ApiKey.objects.filter(key_hash=hash_api_key(raw_key), revoked_at__isnull=True).first()
    if key is None:
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


def api_key_revoke(*, key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
