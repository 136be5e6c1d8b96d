"""Masking of secrets and account data in anything that is about to be logged.

``redact(value)`` returns a safe copy of ``value``: strings go through ``redact_text``; dicts, lists
and tuples are copied recursively; any other type is returned unchanged. In a dict, the value of a
*sensitive key* (see below) is replaced by ``"[REDACTED]"`` whatever its type.

``redact_text(text)`` applies these rules, in this order, wherever they match inside the string:

1. **JWTs** -- ``eyJ<b64url>.eyJ<b64url>.<b64url>`` becomes ``[REDACTED_JWT]``.
2. **Sensitive key/value pairs** -- ``key=value``, ``key: value``, ``"key": "value"``,
   ``'key': 'value'`` (and ``\\"key\\": \\"value\\"`` inside escaped JSON): the value becomes
   ``[REDACTED]``, quotes are kept. A key is sensitive if its name, case-insensitively, contains
   one of ``SENSITIVE_KEYS``, where ``_`` / ``-`` inside an entry are optional (``api_key`` also
   matches ``apikey``, ``api-key``, ``X-Api-Key``, ``accountNumber``...). The short entries (``pan``,
   ``cvv``, ``cvc``) must not touch another letter (``card_pan``, ``cvv2`` match; ``company``,
   ``expand`` do not). An unquoted value runs to the next whitespace or ``, ; & " ' { } < >``; an
   optional auth scheme (``Bearer``, ``Basic``, ``Token``, ``Digest``) is part of the value, so
   ``Authorization: Bearer abc`` becomes ``Authorization: [REDACTED]``.
3. **HTTP credentials** -- ``Bearer <credential>`` / ``Basic <credential>`` (scheme matched
   case-insensitively, kept as written) becomes ``Bearer [REDACTED]`` / ``Basic [REDACTED]``.
4. **Our API keys** -- ``psk_`` followed by word characters, dots and dashes becomes
   ``psk_[REDACTED]`` (a trailing sentence dot is left alone).
5. **Card numbers written in groups** -- a 4-digit group followed by 2 to 4 further groups of 3-6
   digits, separated by single spaces or dashes, at least 12 digits in all (``4111 1111 1111 1111``,
   ``4111-1111-1111-1111``, Amex ``3782 822463 10005``) becomes ``****`` + the last 4 digits (a
   number group that follows a PAN is swallowed with it rather than letting the PAN through).
   ISO dates (``2026-11-21``) and UUIDs do not qualify (2-digit groups, hex, or preceded by ``-``).
6. **Long digit runs** -- 8-19 consecutive ASCII digits (account, routing and card numbers)
   become ``****`` + the last 4 digits, unless the run is part of a larger token: touching a
   letter, digit, ``_`` or ``-`` on either side (UUID segments, ``ORD-12345678``, ``abc12345678``),
   or the integer/fraction part of a decimal number (``12345678.90``). Shorter numbers, decimal
   amounts and ISO timestamps are left intact. Note: 10- and 13-digit Unix timestamps and
   ``YYYYMMDD`` dates standing alone are digit runs too and are masked.

All rules are idempotent: ``redact_text(redact_text(s)) == redact_text(s)``. The module imports
nothing from Django, so it is usable anywhere (logging filters, Celery, scripts).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

__all__ = [
    "REDACTED",
    "SENSITIVE_KEYS",
    "is_sensitive_key",
    "redact",
    "redact_text",
]

#: Key names (matched case-insensitively, as substrings) whose values are secrets or account data.
#: ``_``/``-`` inside an entry are optional when matching; entries of 3 letters or fewer must not be
#: adjacent to another letter. Reuse this tuple rather than keeping a second list elsewhere.
SENSITIVE_KEYS: tuple[str, ...] = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "authorization",
    "account_number",
    "accountnumber",
    "routing_number",
    "routingnumber",
    "cvv",
    "cvc",
    "card_number",
    "cardnumber",
    "pan",
    "private_key",
    "signature",
    "login",
)

REDACTED = "[REDACTED]"
REDACTED_JWT = "[REDACTED_JWT]"

# Nested containers deeper than this (or cyclic ones) are replaced rather than walked.
_MAX_DEPTH = 32
_TOO_DEEP = "[REDACTED: nested too deep]"


def _key_fragment(name: str) -> str:
    """Regex for one SENSITIVE_KEYS entry: separators optional, short names letter-bounded."""
    parts = [re.escape(part) for part in re.split(r"[_-]", name.lower()) if part]
    fragment = "[_-]?".join(parts)
    if len(name) <= 3:
        fragment = rf"(?<![a-z]){fragment}(?![a-z])"
    return fragment


# Deduplicated (``api_key``/``apikey``/``api-key`` collapse to one alternative), longest first.
# The leading look-ahead on the possible first letters lets the engine reject most positions cheaply.
_FIRST_LETTERS = "".join(sorted({name[0].lower() for name in SENSITIVE_KEYS}))
_FRAGMENTS = {_key_fragment(name): name for name in SENSITIVE_KEYS}
# Drop alternatives made redundant by another one (``apikey`` is covered by ``api[_-]?key``).
_FRAGMENTS = {
    fragment: name
    for fragment, name in _FRAGMENTS.items()
    if not any(other != fragment and re.fullmatch(other, name, re.IGNORECASE) for other in _FRAGMENTS)
}
_KEY_ALTERNATION = f"(?=[{_FIRST_LETTERS}])(?:" + "|".join(sorted(_FRAGMENTS, key=len, reverse=True)) + ")"
_SENSITIVE_NAME_RE = re.compile(_KEY_ALTERNATION, re.IGNORECASE)
# Cheap pre-check: every sensitive name contains the first part of its entry (lower-cased), so text
# that contains none of these stems cannot match the (comparatively slow) key rules.
_STEMS = {re.split(r"[_-]", name.lower())[0] for name in SENSITIVE_KEYS}
_NAME_STEMS: tuple[str, ...] = tuple(sorted(s for s in _STEMS if not any(o != s and o in s for o in _STEMS)))
# The same pre-check as one search (a log line checks each of its names and its message).
_NAME_STEMS_RE = re.compile("|".join(re.escape(stem) for stem in _NAME_STEMS))

_JWT_RE = re.compile(r"\beyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

_KEY_VALUE_RE = re.compile(
    r"""
    (?P<prefix>
        (?P<kq>\\?["'])?                      # optional opening quote of the key
        (?<![\w.-])                           # key starts a token
        [\w.-]*?(?:SENSITIVE_NAME)[\w.-]*     # key containing a sensitive name
        (?(kq)(?P=kq))                         # matching closing quote
        \s*[:=]\s*
    )
    (?:
        (?P<vq>\\")(?:(?!\\").)*\\"            # \"escaped JSON string\"
      | (?P<vq2>")(?:[^"\\\n]|\\.)*"           # "double quoted"
      | (?P<vq3>')(?:[^'\\\n]|\\.)*'           # 'single quoted'
      | (?:(?:bearer|basic|token|digest)\s+)?  # optional auth scheme, then
        [^\s,;&"'{}<>]+                        # an unquoted value
    )
    """.replace("SENSITIVE_NAME", _KEY_ALTERNATION),
    re.IGNORECASE | re.VERBOSE,
)

_AUTH_SCHEME_RE = re.compile(r"\b(?P<scheme>bearer|basic)\s+(?!\[REDACTED\])[^\s,;&\"'{}<>]+", re.IGNORECASE)

_API_KEY_RE = re.compile(r"(?<![A-Za-z0-9])psk_[\w-](?:[\w.-]*[\w-])?")

# Grouped card numbers: 4 digits, then 2-4 groups of 3-6 digits joined by one space or dash, or by their
# URL-encoded forms ("+", "%20") as they appear in a logged query string.
_PAN_GROUPS_RE = re.compile(r"(?<![\w.-])[0-9]{4}(?:(?:[ +-]|%20)[0-9]{3,6}){2,4}(?![\w-])(?!\.[0-9])")

# 8-19 digits not touching a word character or '-', and not part of a decimal number.
_DIGIT_RUN_RE = re.compile(r"(?<![\w-])(?<![0-9]\.)[0-9]{8,19}(?![\w-])(?!\.[0-9])")

_NON_DIGIT_RE = re.compile(r"[^0-9]")
# Any 4-digit run: the PAN rule needs one (its first group) and the digit-run rule needs more.
_HAS_4_DIGITS_RE = re.compile(r"[0-9]{4}")


def _mask_key_value(match: re.Match[str]) -> str:
    quote = match.group("vq") or match.group("vq2") or match.group("vq3") or ""
    return f"{match.group('prefix')}{quote}{REDACTED}{quote}"


def _mask_auth(match: re.Match[str]) -> str:
    return f"{match.group('scheme')} {REDACTED}"


def _mask_pan_groups(match: re.Match[str]) -> str:
    digits = _NON_DIGIT_RE.sub("", match.group(0))
    if len(digits) < 12:
        return match.group(0)
    return "****" + digits[-4:]


def _mask_digits(match: re.Match[str]) -> str:
    return "****" + match.group(0)[-4:]


def _may_contain_sensitive_name(lowered: str) -> bool:
    """True if ``lowered`` contains one of ``_NAME_STEMS``."""
    return _NAME_STEMS_RE.search(lowered) is not None


def is_sensitive_key(name: object) -> bool:
    """True if ``name`` (a dict key or log ``extra`` name) matches one of ``SENSITIVE_KEYS``."""
    return isinstance(name, str) and _is_sensitive_name(name)


@lru_cache(maxsize=4096)
def _is_sensitive_name(name: str) -> bool:
    """Memoised: a pure function of the name, and the same few names (``payment_id``, ``user_id``…) come with every
    log line. Bounded, so names from logged data cannot grow it without limit."""
    return _may_contain_sensitive_name(name.lower()) and _SENSITIVE_NAME_RE.search(name) is not None


def redact_text(text: str) -> str:
    """Return ``text`` with secrets and account numbers masked (rules in the module docstring)."""
    if not text:
        return text
    lowered = text.lower()
    if "eyj" in lowered:
        text = _JWT_RE.sub(REDACTED_JWT, text)
    if ("=" in text or ":" in text) and _may_contain_sensitive_name(lowered):
        text = _KEY_VALUE_RE.sub(_mask_key_value, text)
    if "bearer" in lowered or "basic" in lowered:
        text = _AUTH_SCHEME_RE.sub(_mask_auth, text)
    if "psk_" in text:
        text = _API_KEY_RE.sub("psk_" + REDACTED, text)
    if _HAS_4_DIGITS_RE.search(text):  # both digit rules need a 4-digit run
        text = _PAN_GROUPS_RE.sub(_mask_pan_groups, text)
        text = _DIGIT_RUN_RE.sub(_mask_digits, text)
    return text


def redact(value: Any, _depth: int = 0) -> Any:
    """Return a redacted copy of ``value``.

    ``str`` -> ``redact_text(value)``; ``dict`` -> new dict in which the values of sensitive keys
    are ``"[REDACTED]"`` and other values are redacted recursively; ``list``/``tuple`` -> new
    list/tuple of redacted items; an ``int`` of 8-19 digits (an account or card number passed as a
    number) -> its masked text, like a digit run in a string; anything else is returned unchanged.
    Containers nested deeper
    than 32 levels (e.g. cyclic ones) are replaced by a placeholder string.
    """
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict | list | tuple):
        if _depth >= _MAX_DEPTH:
            return _TOO_DEEP
        if isinstance(value, dict):
            return {
                key: REDACTED if is_sensitive_key(key) else redact(item, _depth + 1)
                for key, item in value.items()
            }
        items = [redact(item, _depth + 1) for item in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, int) and not isinstance(value, bool) and 8 <= len(str(abs(value))) <= 19:
        return redact_text(str(value))
    return value
