"""core.redaction: what gets masked, what is left alone, and that masking is idempotent."""

import pytest

from core.redaction import REDACTED, SENSITIVE_KEYS, is_sensitive_key, redact, redact_text

UUID = "3f2b8c1e-1234-5678-9abc-123456789012"
ALL_DIGIT_UUID = "12345678-1234-5678-1234-123456789012"


# --- digit runs and card numbers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("account 123456789012 debited", "account ****9012 debited"),
        ("routing 021000021", "routing ****0021"),
        ("ends a sentence 123456789012.", "ends a sentence ****9012."),
        ("pan 4111111111111111", "pan ****1111"),
        ("19 digits 1234567890123456789", "19 digits ****6789"),
        ("exactly eight 12345678", "exactly eight ****5678"),
        ('json {"acct": 123456789012}', 'json {"acct": ****9012}'),
        ("card 4111 1111 1111 1111 exp 12/29", "card ****1111 exp 12/29"),
        ("card 4111-1111-1111-1111", "card ****1111"),
        ("amex 3782 822463 10005", "amex ****0005"),
        ("trailing group 4111 1111 1111 1111 2026", "trailing group ****2026"),
    ],
)
def test_account_and_card_numbers_are_masked(text, expected):
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        f"payment {UUID} created",
        f"payment {ALL_DIGIT_UUID} created",
        "settles at 2026-11-21T10:00:00Z",
        "settles at 2026-11-21T10:00:00.123+00:00",
        "amount 1234.56 USD",
        "amount 12345678.90 USD",
        "short numbers 1234567 and 42",
        "order ORD-12345678 and ref abc12345678",
        "20 digits 12345678901234567890",
        "grouped but short 1234 567 890",
        "date 2026-11-21 and time 10:00:00",
    ],
)
def test_non_sensitive_numbers_are_left_intact(text):
    assert redact_text(text) == text


# --- sensitive keys ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("password=hunter2 user=bob", "password=[REDACTED] user=bob"),
        ("Password: hunter2", "Password: [REDACTED]"),
        ('{"password": "hu\\"nter2", "user": "bob"}', '{"password": "[REDACTED]", "user": "bob"}'),
        ("{'api_key': 'abc', 'n': 2}", "{'api_key': '[REDACTED]', 'n': 2}"),
        ('body {\\"client_secret\\": \\"s3\\"}', 'body {\\"client_secret\\": \\"[REDACTED]\\"}'),
        ("X-Api-Key: abc123", "X-Api-Key: [REDACTED]"),
        ("apikey=abc api-key=def", "apikey=[REDACTED] api-key=[REDACTED]"),
        ("accountNumber=99 routing_number=021000021", "accountNumber=[REDACTED] routing_number=[REDACTED]"),
        ("cvv=123 cvc: 456 cvv2=789", "cvv=[REDACTED] cvc: [REDACTED] cvv2=[REDACTED]"),
        (
            "card_number=4111 cardNumber=4111 card_pan=4111 PAN=4111",
            "card_number=[REDACTED] cardNumber=[REDACTED] card_pan=[REDACTED] PAN=[REDACTED]",
        ),
        (
            "private_key=xyz signature=abc login=alice",
            "private_key=[REDACTED] signature=[REDACTED] login=[REDACTED]",
        ),
        ("GET /cb?token=abc&page=2", "GET /cb?token=[REDACTED]&page=2"),
        ('signature="abc def"', 'signature="[REDACTED]"'),
        ("db_password=[hunter2]", "db_password=[REDACTED]"),
        ("passwd=x access_token=y", "passwd=[REDACTED] access_token=[REDACTED]"),
    ],
)
def test_values_of_sensitive_keys_are_redacted(text, expected):
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text", ["company=Acme", "expand=true", "span=3", "Login failed for alice", "user=bob page=2"]
)
def test_keys_that_only_resemble_sensitive_ones_are_left_alone(text):
    assert redact_text(text) == text


# --- credentials -------------------------------------------------------------------------------


def test_authorization_header_value_is_redacted_including_the_scheme():
    assert redact_text("Authorization: Bearer abc.def") == "Authorization: [REDACTED]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sent Bearer abc.def upstream", "sent Bearer [REDACTED] upstream"),
        ("sent bearer abc.def", "sent bearer [REDACTED]"),
        ("creds Basic dXNlcjpwYXNz", "creds Basic [REDACTED]"),
    ],
)
def test_bearer_and_basic_credentials_are_redacted(text, expected):
    assert redact_text(text) == expected


def test_jwt_is_redacted():
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJl-_x"
    out = redact_text(f"token was {jwt} (expired)")
    assert out == "token was [REDACTED_JWT] (expired)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key psk_live_ab12.cd-34 used", "key psk_[REDACTED] used"),
        ("key psk_live_ab12.", "key psk_[REDACTED]."),
    ],
)
def test_our_api_keys_are_redacted(text, expected):
    assert redact_text(text) == expected


# --- structures --------------------------------------------------------------------------------


def test_redact_walks_dicts_lists_and_tuples_and_masks_sensitive_keys_whatever_the_type():
    value = {
        "payment": {"meta": {"token": {"nested": "whole value goes"}}, "note": "acct 123456789012"},
        "items": ["pan 4111 1111 1111 1111", ("password=x", 5)],
        "CVV": 123,
        "amount": 1234.56,
    }
    out = redact(value)
    assert out == {
        "payment": {"meta": {"token": REDACTED}, "note": "acct ****9012"},
        "items": ["pan ****1111", ("password=[REDACTED]", 5)],
        "CVV": REDACTED,
        "amount": 1234.56,
    }
    assert isinstance(out["items"][1], tuple)
    assert value["payment"]["note"] == "acct 123456789012", "the input must not be modified"


@pytest.mark.parametrize("value", [None, 42, 1234567, True, 1234.56, b"123456789012", object()])
def test_redact_returns_other_types_unchanged(value):
    assert redact(value) is value


@pytest.mark.parametrize(("value", "expected"), [(123456789012, "****9012"), (4111111111111111, "****1111"),
                                                 (21000021, "****0021")])
def test_redact_masks_account_sized_integers(value, expected):
    assert redact({"acct": value, "nested": [value]}) == {"acct": expected, "nested": [expected]}


def test_redact_survives_cyclic_structures():
    cyclic: dict = {"note": "acct 123456789012"}
    cyclic["self"] = cyclic
    out = redact(cyclic)
    assert out["note"] == "acct ****9012"
    assert "123456789012" not in repr(out)


def test_sensitive_keys_is_one_reusable_tuple():
    assert isinstance(SENSITIVE_KEYS, tuple)
    for name in SENSITIVE_KEYS:
        assert is_sensitive_key(name), name
        assert is_sensitive_key(name.upper()), name
    assert not is_sensitive_key("amount")
    assert not is_sensitive_key(42)


# --- idempotency -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "acct 123456789012, pan 4111 1111 1111 1111, Authorization: Bearer abc.def",
        '{"password": "x", "token": "eyJa.eyJb.c", "api_key": psk_live_1}',
        "Bearer abc psk_x.y eyJhbGciOi.eyJzdWIiOi.sig password=[REDACTED]",
        f"{UUID} 2026-11-21T10:00:00Z 1234.56",
    ],
)
def test_redact_text_is_idempotent(text):
    once = redact_text(text)
    assert once != text or text.startswith(UUID)
    assert redact_text(once) == once


@pytest.mark.parametrize(("text", "expected"), [
    ("GET /x?q=4111+1111+1111+1111", "GET /x?q=****1111"),
    ("GET /x?q=4111%201111%201111%201111&a=1", "GET /x?q=****1111&a=1"),
])
def test_url_encoded_card_numbers_are_masked(text, expected):
    assert redact_text(text) == expected


@pytest.mark.parametrize("entry", SENSITIVE_KEYS)
def test_every_sensitive_name_is_recognised_however_written_and_however_often(entry):
    """The names of log records are checked once per process and name (memoised): the answer is the rule's."""
    camel = "".join(part.capitalize() for part in entry.replace("-", "_").split("_"))
    for name in (entry, entry.upper(), f"x_{entry}", camel, f"X-{camel}-Id"):
        assert is_sensitive_key(name) and is_sensitive_key(name), name
        assert redact({name: "value"}) == {name: REDACTED}


@pytest.mark.parametrize("key", [1, None, 1.5, ("token",), b"token", frozenset({"password"})])
def test_keys_that_are_not_strings_are_never_sensitive(key):
    assert is_sensitive_key(key) is False and is_sensitive_key(key) is False
    assert redact({key: "v"}) == {key: "v"}
