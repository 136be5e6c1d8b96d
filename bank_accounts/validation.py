"""Validation of the bank account key and numbers. Errors carry a code and never echo the value."""

from __future__ import annotations

import re

from bank_accounts.models import AccountType
from core.errors import ValidationError
from core.validators import validate_account_number, validate_routing_number, validate_user_id

ACCOUNT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
ACCOUNT_ROUTING_HASH = re.compile(r"^[0-9a-f]{64}$")


def validate_account_id(account_id) -> str:
    """A Plaid account id: 1-64 characters of letters, digits, '.', '_' or '-' (422 ``invalid_account_id``)."""
    if not isinstance(account_id, str) or not ACCOUNT_ID.match(account_id):
        raise ValidationError("account_id must be 1-64 characters of letters, digits, '.', '_' or '-'.",
                              code="invalid_account_id")
    return account_id


def validate_account_key(*, user_id, account_id) -> None:
    """422 ``invalid_user_id`` / ``invalid_account_id`` for a malformed key."""
    validate_user_id(user_id)
    validate_account_id(account_id)


def _digits_reason(value, *, low: int, high: int) -> str | None:
    """Why ``value`` is not a digit string of the right length: ``type``, ``non_digit``, ``length`` or None."""
    if not isinstance(value, str):
        return "type"
    if not value.isascii() or not value.isdigit():
        return "non_digit"
    if not low <= len(value) <= high:
        return "length"
    return None


def validate_routing(value) -> str:
    """9 ASCII digits passing the ABA checksum: 422 ``invalid_routing_number`` with ``details.reason`` one of
    ``type``, ``non_digit``, ``length``, ``checksum``."""
    reason = _digits_reason(value, low=9, high=9)
    if reason:
        # Checked here first: core's ``\d`` also matches non-ASCII digits (full-width, Arabic-Indic...).
        raise ValidationError("routing_number must be exactly 9 digits.", code="invalid_routing_number",
                              details={"field": "routing_number", "reason": reason})
    try:
        return validate_routing_number(value)  # the ABA checksum
    except ValidationError as exc:
        exc.details = {"field": "routing_number", "reason": "checksum"}
        raise


def validate_account(value) -> str:
    """4-17 ASCII digits: 422 ``invalid_account_number`` with ``details.reason`` ``type``, ``non_digit`` or
    ``length``."""
    reason = _digits_reason(value, low=4, high=17)
    if reason:
        raise ValidationError("account_number must be 4 to 17 digits.", code="invalid_account_number",
                              details={"field": "account_number", "reason": reason})
    return validate_account_number(value)


def validate_account_type(value) -> str:
    if value not in AccountType.values:
        raise ValidationError(f"account_type must be one of {', '.join(AccountType.values)}.",
                              code="invalid_account_type", details={"allowed": AccountType.values})
    return value


def validate_account_routing_hash(value) -> str:
    """64 hexadecimal characters (either case; returned lower case): 422 ``invalid_account_routing_hash``."""
    if not isinstance(value, str) or not ACCOUNT_ROUTING_HASH.match(value.lower()):
        raise ValidationError("account_routing_hash must be 64 hexadecimal characters.",
                              code="invalid_account_routing_hash")
    return value.lower()
