"""No card number or CVV is ever accepted, stored, logged or echoed (SPEC §2.2): 422 ``card_data_not_allowed``."""

import json

import pytest

from core.card_data import find_card_data, is_cvv_key, looks_like_card_number
from tests.cards.conftest import CARD_URL, PAN, USER, card_body, save, state

pytestmark = pytest.mark.django_db

ADMIN_URL = f"/api/v1/admin/users/{USER}/debit-card"
TOGGLE_URL = f"/api/v1/test/users/{USER}/debit-card/toggle-failure"
AMEX = "378282246310005"
MASTERCARD = "5555555555554444"
SPACED = "4111 1111 1111 1111"
DASHED = "5555-5555-5555-4444"


def _assert_refused(response, before, *secrets, field=None, location="body"):
    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert error["code"] == "card_data_not_allowed"
    assert error["details"]["location"] == location
    if field is not None:
        assert error["details"]["field"] == field
    text = response.content.decode()
    for secret in secrets:
        assert secret not in text
        assert secret.replace(" ", "").replace("-", "") not in text
    assert state() == before


def _assert_not_logged(json_lines, raw_logs, *secrets):
    lines = json.dumps(json_lines())
    raw = raw_logs()
    assert "card data refused on a card endpoint" in raw
    for secret in secrets:
        digits = secret.replace(" ", "").replace("-", "")
        for text in (lines, raw):
            for form in (secret, digits, digits[:12], secret.replace(" ", "+"), secret.replace(" ", "%20")):
                assert form not in text  # nor a prefix of it, nor its URL-encoded forms


@pytest.mark.parametrize(("body", "field", "secret"), [
    (card_body(masked_card_number=PAN), "masked_card_number", PAN),
    (card_body(transaction_reference_id=SPACED), "transaction_reference_id", SPACED),
    (card_body(debit_transaction_reference_id=DASHED), "debit_transaction_reference_id", DASHED),
    ({**card_body(), "meta": {"source": {"raw": [1, {"pan": AMEX}]}}}, "meta.source.raw[1].pan", AMEX),
    ({**card_body(), "card": {"number": int(MASTERCARD)}}, "card.number", MASTERCARD),
    ({**card_body(), "note": f"my card is {SPACED} thanks"}, "note", SPACED),
    ({**card_body(), "cvv": "123"}, "cvv", "zzz"),
    ({**card_body(), "card": {"securityCode": "123"}}, "card.securityCode", "zzz"),
    ({**card_body(), "CVC2": 123}, "CVC2", "zzz"),
    ({**card_body(), PAN: "x"}, "*", PAN),
])
def test_put_with_card_data_is_refused_stores_nothing_logs_nothing(
    caller, json_lines, raw_logs, body, field, secret
):
    save()
    before = state()
    response = caller("service").put(CARD_URL, body, format="json")
    _assert_refused(response, before, secret, field=field)
    if secret != "zzz":
        _assert_not_logged(json_lines, raw_logs, secret)


def test_pan_as_a_json_number_with_fraction_is_refused(caller):
    before = state()
    raw = json.dumps(card_body()).replace('"1111"', "4111111111111111.0")
    response = caller("service").put(CARD_URL, raw, content_type="application/json")
    _assert_refused(response, before, PAN, field="masked_card_number")


def test_a_bare_pan_body_is_refused(caller):
    before = state()
    response = caller("user").put(CARD_URL, PAN, content_type="application/json")
    _assert_refused(response, before, PAN, field="(body)")


@pytest.mark.parametrize(("method", "url", "body"), [
    ("put", CARD_URL, card_body(masked_card_number=PAN)),
    ("delete", CARD_URL, {"card_number": PAN}),
    ("patch", ADMIN_URL, {"reason": f"customer said {PAN}", "is_valid": True}),
    ("post", TOGGLE_URL, {"cvv": "123"}),
])
def test_every_card_endpoint_with_a_body_is_guarded(caller, json_lines, raw_logs, method, url, body):
    save()
    before = state()
    role = {"patch": "support"}.get(method, "service")
    response = getattr(caller(role), method)(url, body, format="json")
    _assert_refused(response, before, PAN)
    _assert_not_logged(json_lines, raw_logs, PAN)


@pytest.mark.parametrize("url", [CARD_URL, f"{CARD_URL}/changeable", f"{CARD_URL}/changes"])
@pytest.mark.parametrize("query", [{"pan": PAN}, {"q": SPACED}, {"cvv": "123"}, {PAN: "1"}])
def test_query_strings_are_guarded(caller, json_lines, raw_logs, url, query):
    save()
    before = state()
    role = "support" if url.endswith("/changes") else "service"
    response = caller(role).get(url, query)
    _assert_refused(response, before, PAN, SPACED, location="query")
    _assert_not_logged(json_lines, raw_logs, PAN)


def test_a_body_is_only_read_after_authentication(caller, json_lines, raw_logs):
    before = state()
    response = caller("none").put(CARD_URL, card_body(masked_card_number=PAN), format="json")
    assert response.status_code == 401 and PAN not in response.content.decode()
    assert state() == before
    assert PAN not in json.dumps(json_lines()) and PAN not in raw_logs()


@pytest.mark.parametrize("role", ["none", "support", "other_user"])
def test_a_query_string_is_refused_before_authentication(caller, json_lines, raw_logs, role):
    """Django logs the query string of every 4xx; a PAN there is refused first, whoever asks."""
    response = caller(role).get(CARD_URL, {"q": SPACED})
    _assert_refused(response, state(), SPACED, location="query")
    _assert_not_logged(json_lines, raw_logs, SPACED)


def test_harmless_numbers_pass(caller):
    body = card_body(transaction_reference_id="tok_a4111111111111111b", debit_transaction_reference_id="1234567890123")
    response = caller("service").put(CARD_URL, body, format="json")
    assert response.status_code == 201, response.content  # 13 digits failing Luhn; digits inside a token


@pytest.mark.parametrize(("text", "found"), [
    (PAN, True), (SPACED, True), (DASHED, True), (AMEX, True), ("4111111111111112", False),
    ("411111111111", False), ("41111111111111111111", False), ("tok_4111111111111111", True),
    ("a4111111111111111", False), (f"x {PAN} y", True), ("2026-11-21", False),
])
def test_looks_like_pan(text, found):
    assert looks_like_card_number(text) is found


@pytest.mark.parametrize(("key", "found"), [
    ("cvv", True), ("CVV2", True), ("card_cvc", True), ("securityCode", True), ("cid", True), ("card-code", True),
    ("card_verification_value", True), ("reason", False), ("card_exp", False), ("decided", False),
])
def test_cvv_keys(key, found):
    assert is_cvv_key(key) is found


def test_find_card_data_path_handles_any_depth_and_types():
    assert find_card_data({"a": [{"b": [None, True, 1.5, {"c": float(PAN)}]}]}) == "a[0].b[3].c"
    assert find_card_data({"a": {"b": "fine", "n": 12}}) is None
    deep: dict = {}
    node = deep
    for _ in range(100):
        node["x"] = {}
        node = node["x"]
    assert find_card_data(deep) is not None  # refused rather than left unread
