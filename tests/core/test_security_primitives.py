"""Encryption with key rotation (and loud failure), keyed blind indexes, validators, the audit trail."""

import pytest
from cryptography.fernet import Fernet
from django.test import override_settings

from core.audit import audit_record
from core.card_data import find_card_data, looks_like_card_number
from core.encryption import DecryptionError, decrypt, encrypt, is_current, reencrypt
from core.errors import ValidationError
from core.hashing import blind_index
from core.models import AuditEntry
from core.validators import (
    aba_checksum_ok,
    validate_account_number,
    validate_routing_number,
    validate_user_id,
)

OLD, NEW, OTHER = (Fernet.generate_key().decode() for _ in range(3))


def test_encrypt_uses_the_first_key_and_any_key_decrypts():
    with override_settings(FIELD_ENCRYPTION_KEY=[OLD]):
        token = encrypt("123456789")
        assert "123456789" not in token
    with override_settings(FIELD_ENCRYPTION_KEY=[NEW, OLD]):
        assert decrypt(token) == "123456789"
        assert not is_current(token)
        rotated = reencrypt(token)
        assert is_current(rotated) and rotated != token
    with override_settings(FIELD_ENCRYPTION_KEY=[NEW]):
        assert decrypt(rotated) == "123456789"


def test_a_wrong_key_raises_and_never_returns_the_ciphertext():
    with override_settings(FIELD_ENCRYPTION_KEY=[OLD]):
        token = encrypt("123456789")
    with override_settings(FIELD_ENCRYPTION_KEY=[OTHER]), pytest.raises(DecryptionError) as exc:
        decrypt(token)
    assert "123456789" not in str(exc.value) and token not in str(exc.value)
    with override_settings(FIELD_ENCRYPTION_KEY=[OLD]), pytest.raises(DecryptionError):
        decrypt("not-a-fernet-token")


@override_settings(HASH_KEY="k1")
def test_blind_index_is_keyed_and_unambiguous():
    a = blind_index("021000021", "12345")
    assert len(a) == 64 and a == blind_index("021000021", "12345")
    assert a != blind_index("0210000211", "2345")
    with override_settings(HASH_KEY="k2"):
        assert blind_index("021000021", "12345") != a
    import hashlib

    assert a != hashlib.sha256(b"02100002112345").hexdigest()


@override_settings(HASH_KEY="")
def test_blind_index_refuses_without_a_key():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured):
        blind_index("x")


@pytest.mark.parametrize(("routing", "ok"), [("021000021", True), ("011000015", True), ("026009593", True),
                                             ("021000022", False), ("12345678", False), ("02100002a", False)])
def test_aba_checksum(routing, ok):
    assert aba_checksum_ok(routing) is ok


@pytest.mark.parametrize("bad", ["021000022", "12345678", "0210000210", 21000021, "", None])
def test_invalid_routing_numbers_are_refused_without_echo(bad):
    with pytest.raises(ValidationError) as exc:
        validate_routing_number(bad)
    assert exc.value.code == "invalid_routing_number"
    assert str(bad) not in exc.value.message or bad in ("", None)


@pytest.mark.parametrize("bad", ["123", "123456789012345678", "12a4", 12345, " 1234"])
def test_invalid_account_numbers(bad):
    with pytest.raises(ValidationError) as exc:
        validate_account_number(bad)
    assert exc.value.code == "invalid_account_number"


@pytest.mark.parametrize(("user_id", "ok"), [("3f2b8c1e-1234", True), ("u" * 64, True), ("u" * 65, False),
                                             ("a b", False), ("", False), ("x/../y", False)])
def test_user_ids(user_id, ok):
    if ok:
        assert validate_user_id(user_id) == user_id
    else:
        with pytest.raises(ValidationError):
            validate_user_id(user_id)


@pytest.mark.parametrize(("text", "found"), [
    ("4111111111111111", True), ("4111 1111 1111 1111", True), ("4111-1111-1111-1111", True),
    ("card 5555555555554444 here", True), ("4111111111111112", False), ("123456789", False),
    ("2026-11-21T10:00:00", False), ("123456789012345", False),
])
def test_pan_detection(text, found):
    assert looks_like_card_number(text) is found


def test_find_card_data_anywhere_in_a_body():
    assert find_card_data({"a": {"b": ["x", "4111111111111111"]}}) == "a.b[1]"
    assert find_card_data({"card": {"CVV": "123"}}) == "card.CVV"
    assert find_card_data({"n": 4111111111111111}) == "n"
    assert find_card_data({"card_exp": "122030", "last4": "1111", "ok": True}) is None


@pytest.mark.django_db
def test_audit_requires_a_reason_and_redacts_changes():
    with pytest.raises(ValidationError):
        audit_record(actor="mx", action="x", target_type="card", target_id="1", reason="  ")
    assert AuditEntry.objects.count() == 0
    entry = audit_record(actor="mx", action="card.override", target_type="card", target_id="1", reason="customer",
                         user_id="u-1", changes={"is_valid": True, "token": "tok-secret"})
    assert entry.changes == {"is_valid": True, "token": "[REDACTED]"}


@pytest.mark.parametrize("digits", ["\uff10\uff12\uff11\uff10\uff10\uff10\uff10\uff12\uff11", "٠٢١٠٠٠٠٢١"])
def test_non_ascii_digits_are_not_bank_numbers(digits):
    with pytest.raises(ValidationError):
        validate_routing_number(digits)
    with pytest.raises(ValidationError):
        validate_account_number(digits)


def test_uuids_are_never_card_numbers():
    import uuid

    assert not any(looks_like_card_number(str(uuid.uuid4())) for _ in range(20000))
    digit_uuid = "41111111-1111-1111-1111-111111111111"
    assert not looks_like_card_number(digit_uuid)
    assert looks_like_card_number(f"{digit_uuid} and 4111111111111111")
