"""Validation rules shared by the domains: identifiers, bank numbers, card data detection.

Each ``validate_*`` raises ``core.errors.ValidationError`` with a precise code and never echoes the value.
"""

from __future__ import annotations

import re
from typing import Any

from core.errors import ValidationError

USER_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
ROUTING_NUMBER = re.compile(r"^\d{9}$", re.ASCII)  # ASCII: "\d" would also accept full-width digits
ACCOUNT_NUMBER = re.compile(r"^\d{4,17}$", re.ASCII)


def validate_user_id(user_id: str) -> str:
    if not isinstance(user_id, str) or not USER_ID.match(user_id):
        raise ValidationError("user_id must be 1-64 characters of letters, digits, '.', '_', ':' or '-'.",
                              code="invalid_user_id")
    return user_id


def aba_checksum_ok(routing_number: str) -> bool:
    """ABA routing number check digit: 3·(d1+d4+d7) + 7·(d2+d5+d8) + (d3+d6+d9) ≡ 0 (mod 10)."""
    if not ROUTING_NUMBER.match(routing_number or ""):
        return False
    d = [int(c) for c in routing_number]
    return (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5] + d[8])) % 10 == 0


def validate_routing_number(value: Any) -> str:
    if not isinstance(value, str) or not ROUTING_NUMBER.match(value):
        raise ValidationError("routing_number must be exactly 9 digits.", code="invalid_routing_number")
    if not aba_checksum_ok(value):
        raise ValidationError("routing_number fails the ABA checksum.", code="invalid_routing_number")
    return value


def validate_account_number(value: Any) -> str:
    if not isinstance(value, str) or not ACCOUNT_NUMBER.match(value):
        raise ValidationError("account_number must be 4 to 17 digits.", code="invalid_account_number")
    return value


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        n = int(char)
        if index % 2 == 1:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0
