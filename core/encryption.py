"""Encrypted model fields: django-encrypted-model-fields with its flaws closed (SPEC §9).

The library's field, on a value it cannot decrypt (a wrong or missing key), silently returns the ciphertext as
if it were the data, and builds its key ring once at import. ``EncryptedCharField`` here:

- decrypts only values read from the database, and **raises** ``DecryptionError`` when no key fits;
- treats values assigned in Python as plaintext (never "tries" to decrypt them);
- reads ``FIELD_ENCRYPTION_KEY`` (a list: the first key encrypts, every key decrypts) when it is used, so a key
  rotation or a test's settings take effect without a restart.

The ciphertext is Fernet (AES-128-CBC + HMAC-SHA256), as the library writes it, so existing rows stay readable.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from encrypted_model_fields import fields as library


class DecryptionError(Exception):
    """A stored value could not be decrypted with any configured key. Never returned as data."""


@lru_cache(maxsize=8)
def _key_ring(keys: tuple[str, ...]) -> tuple[MultiFernet, Fernet]:
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY is empty")
    try:
        fernets = [Fernet(key) for key in keys]
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY holds a key that is not a Fernet key") from exc
    return MultiFernet(fernets), fernets[0]


def _configured_keys() -> tuple[str, ...]:
    keys = settings.FIELD_ENCRYPTION_KEY
    return tuple(keys) if isinstance(keys, (list, tuple)) else (keys,)


def encrypt(plaintext: str) -> str:
    """Encrypt under the first configured key."""
    ring, _ = _key_ring(_configured_keys())
    return ring.encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(ciphertext: str) -> str:
    """Decrypt with any configured key; ``DecryptionError`` if none fits (the message holds no data)."""
    ring, _ = _key_ring(_configured_keys())
    try:
        return ring.decrypt(ciphertext.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError, ValueError) as exc:
        raise DecryptionError("stored value cannot be decrypted with the configured keys") from exc


def is_current(ciphertext: str) -> bool:
    """True when ``ciphertext`` is already encrypted under the first (current) key."""
    _, current = _key_ring(_configured_keys())
    try:
        current.decrypt(ciphertext.encode("ascii"))
    except (InvalidToken, ValueError):
        return False
    return True


def reencrypt(ciphertext: str) -> str:
    """The same plaintext under the first key (for rotation); ``DecryptionError`` if no key fits."""
    return encrypt(decrypt(ciphertext))


class EncryptedCharField(library.EncryptedCharField):
    """A CharField stored encrypted; see the module docstring for how it differs from the library's."""

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        return decrypt(value)

    def to_python(self, value):
        # Values in Python are plaintext: skip the library's "try to decrypt, else pass through".
        return models.CharField.to_python(self, value)

    def get_db_prep_save(self, value, connection):
        if hasattr(value, "resolve_expression"):
            # An expression (F(), Value(), a subquery) is SQL, not plaintext: encrypting its repr would store
            # garbage. Whoever writes an expression writes ciphertext (or refuses to).
            return value
        value = models.CharField.get_db_prep_save(self, value, connection)
        if value is None:
            return None
        return encrypt(str(value))
