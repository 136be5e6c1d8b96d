"""Card data detection (SPEC §2.2): raw card numbers (PANs) and CVVs are never accepted, stored or logged.

A card number is 13-19 digits, optionally grouped by single spaces or dashes, that pass the Luhn check, in a
string, a JSON number or a key. The digits must not touch a letter or digit on either side (a digit run inside an
opaque alphanumeric token such as a Usio token is not a card number, while ``tok_4111111111111111`` or a PAN in free
text still is), and UUID-shaped substrings are ignored (user ids are UUIDs; about 1 in 400 random UUIDs would
otherwise read as a Luhn-valid number across its dashes). A CVV-ish key is any key whose letters contain
cvv/cvc/cvn/cvd, "security code", "card code" or "card verification", or equals cid/csc.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

from core.validators import luhn_ok

_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_CVV_FRAGMENTS = ("cvv", "cvc", "cvn", "cvd", "securitycode", "cardcode", "cardverification")
_CVV_EXACT = frozenset({"cid", "csc", "cav2", "cvc2", "cvv2"})
_MAX_DEPTH = 64
# 13-19 digits, optionally grouped by one space or dash, not touching a letter or digit.
_PAN_CANDIDATE = re.compile(r"(?<![A-Za-z0-9])(?:[0-9][ -]?){12,18}[0-9](?![A-Za-z0-9])")


def looks_like_card_number(text: str) -> bool:
    """True when ``text`` holds 13-19 digits (optionally grouped) that pass the Luhn check, not part of a
    longer alphanumeric token or a UUID."""
    for match in _PAN_CANDIDATE.finditer(_UUID.sub(" ", text)):
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            return True
    return False


def is_cvv_key(key: str) -> bool:
    letters = re.sub(r"[^a-z0-9]", "", key.lower())
    return letters in _CVV_EXACT or any(fragment in letters for fragment in _CVV_FRAGMENTS)


def _scalar_is_card_number(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, str):
        return looks_like_card_number(value)
    if isinstance(value, int):
        return looks_like_card_number(str(abs(value)))
    if isinstance(value, float):
        # A PAN sent as a JSON number with a fraction or exponent (4111111111111111.0, 4.111111111111111e15).
        return math.isfinite(value) and value.is_integer() and looks_like_card_number(str(int(abs(value))))
    if isinstance(value, Decimal):
        return value.is_finite() and looks_like_card_number(format(abs(value).to_integral_value(), "f"))
    return False


def _segment(key: Any) -> str:
    text = str(key)
    return "*" if looks_like_card_number(text) else text


def find_card_data(value: Any, path: tuple[str, ...] = (), _depth: int = 0) -> str | None:
    """The path (``a.b[0].c``) of the first key or value holding card data, ``(body)`` for a bare value; else
    None. Keys that look like card numbers are shown as ``*``."""
    if _depth > _MAX_DEPTH:  # deeper than any real request; refuse rather than leave part of it unread
        return _join(path) or "(body)"
    if isinstance(value, dict):
        for key, item in value.items():
            here = (*path, _segment(key))
            if is_cvv_key(str(key)) or looks_like_card_number(str(key)):
                return _join(here)
            found = find_card_data(item, here, _depth + 1)
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = find_card_data(item, (*path, f"[{index}]"), _depth + 1)
            if found:
                return found
        return None
    if _scalar_is_card_number(value):
        return _join(path) or "(body)"
    return None


def _join(path: tuple[str, ...]) -> str:
    text = ""
    for part in path:
        text += part if part.startswith("[") or not text else f".{part}"
    return text


