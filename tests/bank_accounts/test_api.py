"""Bank account API: roles, shapes (last 4 only), status codes, bad input (nothing written), no numbers leaked."""

import json

import pytest

from bank_accounts.models import BankAccount
from bank_accounts.services import bank_account_hash
from tests.bank_accounts.conftest import ACCOUNT, ACCOUNT_2, ROUTING, ROUTING_2, SHORT_ACCOUNT, counts, save, url

pytestmark = pytest.mark.django_db
LOOKUP = "/api/v1/bank-accounts/lookup"
BODY = {"account_number": ACCOUNT, "routing_number": ROUTING}
FIELDS = {"user_id", "account_id", "last4", "account_type", "prenote_status", "account_routing_hash",
          "entry_timestamp", "created_at", "updated_at"}


def _call(client, method: str, path: str, body=None):
    if body is None:
        return getattr(client, method)(path)
    return getattr(client, method)(path, body, format="json")


def _assert_no_numbers(text: str, *numbers: str) -> None:
    for number in numbers or (ACCOUNT, ACCOUNT_2, SHORT_ACCOUNT, ROUTING, ROUTING_2):
        assert number not in text


# --- roles ------------------------------------------------------------------------------------------------------

ENDPOINTS = [
    ("get", url("user-1", "acc-1"), None),
    ("put", url("user-1", "acc-1"), BODY),
    ("delete", url("user-1", "acc-1"), None),
    ("post", LOOKUP, {"account_routing_hash": "a" * 64}),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_the_service_role_is_allowed(service, method, path, body):
    save()
    response = _call(service, method, path, body)
    assert response.status_code in (200, 204), response.content


@pytest.mark.parametrize("role", ["support", "admin"])
@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_other_api_key_roles_are_refused(client_as, role, method, path, body):
    save(account_type="savings")
    before = list(BankAccount.objects.values())
    response = _call(client_as(role), method, path, body)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert list(BankAccount.objects.values()) == before and counts() == (1, 1)


@pytest.mark.parametrize("sub", ["user-1", "user-2"])  # the account's own user too: the endpoints are service-only
@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_end_users_are_refused(api_client, make_jwt, sub, method, path, body):
    save(account_type="savings")
    before = list(BankAccount.objects.values())
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_jwt(sub)}")
    response = _call(api_client, method, path, body)
    assert response.status_code == 403
    assert response.json()["error"]["code"] in ("permission_denied", "not_your_user")
    assert list(BankAccount.objects.values()) == before and counts() == (1, 1)


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_no_credentials_is_401(api_client, method, path, body):
    save()
    response = _call(api_client, method, path, body)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert counts() == (1, 1)


# --- GET / PUT / DELETE -----------------------------------------------------------------------------------------


def test_put_creates_then_updates_and_get_returns_last4_only(service):
    created = service.put(url(), {**BODY, "account_type": "savings"}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert set(body) == FIELDS
    assert body["last4"] == ACCOUNT[-4:] and body["account_type"] == "savings" and body["prenote_status"] == "none"
    assert body["account_routing_hash"] == bank_account_hash(routing_number=ROUTING, account_number=ACCOUNT)

    again = service.put(url(), BODY, format="json")
    assert again.status_code == 200 and again.json() == body  # unchanged: same numbers, type omitted

    updated = service.put(url(), {"account_number": ACCOUNT_2, "routing_number": ROUTING_2}, format="json")
    assert updated.status_code == 200
    assert updated.json()["last4"] == ACCOUNT_2[-4:] and updated.json()["account_type"] == "savings"

    got = service.get(url())
    assert got.status_code == 200 and got.json() == updated.json()
    for response in (created, again, updated, got):
        _assert_no_numbers(response.content.decode())
    assert counts() == (1, 2)


def test_get_and_delete_of_an_unknown_account_are_404(service):
    save()
    for method, path in (("get", url("user-1", "acc-2")), ("get", url("user-9", "acc-1")),
                         ("delete", url("user-1", "acc-2"))):
        response = getattr(service, method)(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "bank_account_not_found"
    assert counts() == (1, 1)


def test_delete_then_get_is_404(service):
    save()
    assert service.delete(url()).status_code == 204
    assert service.get(url()).status_code == 404
    assert service.delete(url()).status_code == 404
    assert counts() == (0, 2)


@pytest.mark.parametrize(("body", "status", "code", "reason"), [
    ({**BODY, "routing_number": "02600959"}, 422, "invalid_routing_number", "length"),
    ({**BODY, "routing_number": "02600959x"}, 422, "invalid_routing_number", "non_digit"),
    ({**BODY, "routing_number": "026009594"}, 422, "invalid_routing_number", "checksum"),
    ({**BODY, "routing_number": " 026009593"}, 422, "invalid_routing_number", "non_digit"),
    ({**BODY, "account_number": "123"}, 422, "invalid_account_number", "length"),
    ({**BODY, "account_number": "1" * 18}, 422, "invalid_account_number", "length"),
    ({**BODY, "account_number": "7391-4628"}, 422, "invalid_account_number", "non_digit"),
    ({**BODY, "account_number": ""}, 422, "invalid_account_number", "non_digit"),
    ({**BODY, "routing_number": 26009593}, 400, "validation_error", None),  # a JSON number loses the leading 0
    ({**BODY, "account_number": None}, 400, "validation_error", None),
    ({**BODY, "account_type": "loan"}, 400, "validation_error", None),
    ({**BODY, "cvv": "123"}, 400, "validation_error", None),  # unknown field
    ({"account_number": ACCOUNT}, 400, "validation_error", None),
    ([], 400, "validation_error", None),
])
def test_bad_put_bodies_get_precise_errors_and_write_nothing(service, body, status, code, reason):
    save(user_id="user-1", account_id="acc-1")
    before = list(BankAccount.objects.values())
    response = service.put(url("user-1", "acc-1"), body, format="json")
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    if reason:
        assert error["details"]["reason"] == reason
    assert list(BankAccount.objects.values()) == before and counts() == (1, 1)
    _assert_no_numbers(response.content.decode(), ACCOUNT, ROUTING)


def test_malformed_json_is_400_and_writes_nothing(service):
    response = service.generic("PUT", url(), "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"
    assert counts() == (0, 0)


@pytest.mark.parametrize(("user_id", "account_id", "code"), [
    ("u" * 65, "acc-1", "invalid_user_id"),
    ("user-1", "a" * 65, "invalid_account_id"),
    ("user-1", "acc%20one", "invalid_account_id"),
])
def test_malformed_ids_in_the_path_are_422(service, user_id, account_id, code):
    for method, body in (("put", BODY), ("get", None), ("delete", None)):
        response = _call(service, method, url(user_id, account_id), body)
        assert response.status_code == 422, (method, response.content)
        assert response.json()["error"]["code"] == code
    assert counts() == (0, 0)


# --- lookup -----------------------------------------------------------------------------------------------------


def test_lookup_by_numbers_and_by_hash(service):
    save(user_id="u-2", account_id="x")
    save(user_id="u-1", account_id="y")
    digest = bank_account_hash(routing_number=ROUTING, account_number=ACCOUNT)
    expected = {"exists": True, "user_ids": ["u-1", "u-2"]}
    by_numbers = service.post(LOOKUP, BODY, format="json")
    assert by_numbers.status_code == 200 and by_numbers.json() == expected
    by_hash = service.post(LOOKUP, {"account_routing_hash": digest}, format="json")
    assert by_hash.status_code == 200 and by_hash.json() == expected
    none = service.post(LOOKUP, {"account_number": ACCOUNT_2, "routing_number": ROUTING_2}, format="json")
    assert none.json() == {"exists": False, "user_ids": []}
    _assert_no_numbers(by_numbers.content.decode() + by_hash.content.decode())


@pytest.mark.parametrize(("body", "status", "code"), [
    ({}, 400, "invalid_lookup_request"),
    ({"routing_number": ROUTING}, 400, "invalid_lookup_request"),
    ({"account_number": ACCOUNT}, 400, "invalid_lookup_request"),
    ({**BODY, "account_routing_hash": "a" * 64}, 400, "invalid_lookup_request"),
    ({**BODY, "user_id": "u-1"}, 400, "validation_error"),
    ({"routing_number": "026009594", "account_number": ACCOUNT}, 422, "invalid_routing_number"),
    ({"routing_number": ROUTING, "account_number": "12a4"}, 422, "invalid_account_number"),
    ({"account_routing_hash": "xyz"}, 422, "invalid_account_routing_hash"),
    ({"account_routing_hash": 12}, 400, "validation_error"),
])
def test_bad_lookups(service, body, status, code):
    response = service.post(LOOKUP, body, format="json")
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    _assert_no_numbers(response.content.decode(), ACCOUNT, ROUTING)


# --- logs -------------------------------------------------------------------------------------------------------


def test_numbers_never_reach_the_logs_or_responses(service, json_lines):
    bodies = []
    for number in (ACCOUNT, SHORT_ACCOUNT):
        bodies.append(service.put(url("user-1", f"acc-{number[:2]}"), {"account_number": number,
                                                                       "routing_number": ROUTING}, format="json"))
        bodies.append(service.put(url("user-1", f"acc-{number[:2]}"), {"account_number": number,
                                                                       "routing_number": "026009594"}, format="json"))
        bodies.append(service.put(url("user-1", "x"), {"account_number": number + "x",
                                                       "routing_number": ROUTING}, format="json"))
        bodies.append(service.post(LOOKUP, {"account_number": number, "routing_number": ROUTING}, format="json"))
        bodies.append(service.get(url("user-1", f"acc-{number[:2]}")))
    bodies.append(service.delete(url("user-1", f"acc-{SHORT_ACCOUNT[:2]}")))
    assert [b.status_code for b in bodies] == [201, 422, 422, 200, 200] * 2 + [204]
    lines = json_lines()
    assert any(line["message"] == "bank account saved" for line in lines)  # the capture works
    text = json.dumps(lines) + "".join(b.content.decode() for b in bodies)
    _assert_no_numbers(text, ACCOUNT, SHORT_ACCOUNT, ROUTING)
