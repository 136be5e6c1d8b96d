"""Blind indexes: keyed HMAC-SHA256 with ``HASH_KEY`` (SPEC §9), never a plain hash of an account or card.

A plain SHA-256 of a 9-digit routing number plus a short account number can be brute-forced in minutes; a keyed
HMAC cannot without the key, which lives apart from the encryption key.
"""

import hashlib
import hmac

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_SEPARATOR = "\x1f"  # unit separator: ("12", "345") and ("123", "45") must not collide


def blind_index(*parts: str) -> str:
    """Hex HMAC-SHA256 of the parts (joined unambiguously) under ``HASH_KEY``."""
    if not settings.HASH_KEY:
        raise ImproperlyConfigured("HASH_KEY is not set")
    message = _SEPARATOR.join(str(part) for part in parts).encode("utf-8")
    return hmac.new(settings.HASH_KEY.encode("utf-8"), message, hashlib.sha256).hexdigest()
