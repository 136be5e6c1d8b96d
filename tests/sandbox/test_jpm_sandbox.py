"""The fake JPM over raw HTTP: its token endpoint, validation, idempotency, status timeline, callbacks and their
delivery (to a receiver started by the test), and its control routes."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from jwt.api_jws import PyJWS

from integrations.jpm import clear_token_cache, jpm_client, parse_callback_message
from tests.sandbox_fixtures import WEBHOOK_SECRET

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    clear_token_cache()
    yield
    clear_token_cache()


# --- helpers ----------------------------------------------------------------------------------------------------
def _private_key(sandbox) -> bytes:
    return (Path(sandbox.keys_dir) / "jpm-client-key.pem").read_bytes()


def _assertion(sandbox, *, key: bytes | None = None, **claims) -> str:
    now = int(time.time())
    payload = {"iss": settings.JPM_CLIENT_ID, "sub": settings.JPM_CLIENT_ID, "aud": f"{sandbox.url}/jpm/oauth2/token",
               "jti": uuid.uuid4().hex, "iat": now, "exp": now + 300, **claims}
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key or _private_key(sandbox), algorithm="RS256")


def _token_request(sandbox, assertion: str | None = None, **form) -> requests.Response:
    data = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion if assertion is not None else _assertion(sandbox), **form}
    return requests.post(f"{sandbox.url}/jpm/oauth2/token", data={k: v for k, v in data.items() if v is not None},
                         timeout=5)


def _token(sandbox) -> str:
    response = _token_request(sandbox)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def _body(end_to_end_id: str = "raw-1", *, account: str = "123456780", **overrides) -> dict:
    payments = {
        "requestedExecutionDate": "2026-11-23",
        "paymentIdentifiers": {"endToEndId": end_to_end_id},
        "paymentCurrency": "USD",
        "paymentAmount": 10.5,
        "paymentType": "ACH.TRF",
        "transferType": "DEBIT",
        "debtor": {"debtorName": "Jane Doe", "debtorAccount": {"accountId": account, "accountType": "CHECKING"}},
        "debtorAgent": {"financialInstitutionId": {"clearingSystemId": {"id": "011000015", "idType": "USABA"}}},
        "creditor": {"creditorName": "Us", "creditorAccount": {"accountId": "000000010962009",
                                                               "accountType": "CHECKING"}},
        "creditorAgent": {"financialInstitutionId": {"clearingSystemId": {"id": "021000021", "idType": "USABA"}}},
    }
    payments.update(overrides)
    return {"payments": payments}


def _post_payment(sandbox, token: str, body=None, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    if body is not None:
        kwargs["json"] = body
    return requests.post(f"{sandbox.url}/jpm/tsapi/v1/payments", headers=headers, timeout=5, **kwargs)


def _get(sandbox, token: str, path: str, **params) -> requests.Response:
    return requests.get(f"{sandbox.url}/jpm/{path}", headers={"Authorization": f"Bearer {token}"}, params=params,
                        timeout=5)


def _ledger(sandbox) -> list[dict]:
    return sandbox.control("GET", "jpm/ledger")["ledger"]


def _codes(response: requests.Response) -> list[str]:
    return [d["errorCode"] for d in response.json()["errors"]["errorDetails"]]


def _callbacks(sandbox) -> dict:
    return sandbox.control("GET", "jpm/callbacks")


# --- token endpoint ---------------------------------------------------------------------------------------------
def test_a_valid_assertion_gets_a_bearer_token(sandbox):
    response = _token_request(sandbox)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert len(body["access_token"]) >= 32
    [logged] = sandbox.requests("jpm", "jpm.token")
    assert logged["body"]["client_assertion"] == "[REDACTED]"


def test_the_audience_may_name_any_host_but_must_be_the_token_path(sandbox):
    assert _token_request(sandbox, _assertion(sandbox, aud="https://jpm.example.com/jpm/oauth2/token")).ok
    refused = _token_request(sandbox, _assertion(sandbox, aud=f"{sandbox.url}/jpm/tsapi/v1/payments"))
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_client")


@pytest.mark.parametrize(("claims", "form"), [
    ({"iss": "someone-else"}, {}),
    ({"sub": "someone-else"}, {}),
    ({"exp": int(time.time()) - 10}, {}),
    ({"jti": None}, {}),
    ({}, {"client_id": "someone-else"}),
])
def test_bad_assertions_are_refused(sandbox, claims, form):
    response = _token_request(sandbox, _assertion(sandbox, **claims), **form)
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
    assert "access_token" not in response.json()


def test_an_assertion_signed_with_another_key_is_refused(sandbox):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    response = _token_request(sandbox, _assertion(sandbox, key=other))
    assert response.status_code == 401


def test_an_assertion_cannot_be_replayed(sandbox):
    assertion = _assertion(sandbox)
    assert _token_request(sandbox, assertion).status_code == 200
    replay = _token_request(sandbox, assertion)
    assert (replay.status_code, replay.json()["error"]) == (401, "invalid_client")
    assert "already used" in replay.json()["error_description"]


@pytest.mark.parametrize(("form", "error"), [
    ({"grant_type": "password"}, "unsupported_grant_type"),
    ({"client_assertion_type": "urn:other"}, "invalid_request"),
    ({"client_assertion": ""}, "invalid_request"),
])
def test_malformed_token_requests_are_400(sandbox, form, error):
    response = _token_request(sandbox, **form)
    assert (response.status_code, response.json()["error"]) == (400, error)


def test_api_calls_need_a_valid_token(sandbox):
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"}):
        response = requests.post(f"{sandbox.url}/jpm/tsapi/v1/payments", json=_body(), headers=headers, timeout=5)
        assert response.status_code == 401
        assert _codes(response) == ["GCA-100"]
    assert _ledger(sandbox) == []


def test_tokens_expire_after_the_configured_ttl(sandbox):
    assert sandbox.control("PUT", "jpm/token-ttl", {"seconds": 1}) == {"seconds": 1}
    response = _token_request(sandbox)
    assert response.json()["expires_in"] == 1
    token = response.json()["access_token"]
    assert _get(sandbox, token, "tsapi/v3/payment/x").status_code == 404
    time.sleep(1.1)
    assert _get(sandbox, token, "tsapi/v3/payment/x").status_code == 401


def test_reset_forgets_tokens_and_restores_the_jpm_config(sandbox):
    token = _token(sandbox)
    sandbox.configure(jpm_require_signed_bodies=True)
    sandbox.control("PUT", "jpm/token-ttl", {"seconds": 5})
    sandbox.reset()
    assert _get(sandbox, token, "tsapi/v3/payment/x").status_code == 401
    fresh = _token_request(sandbox).json()
    assert fresh["expires_in"] == 3600
    assert _post_payment(sandbox, fresh["access_token"], _body()).status_code == 202  # unsigned accepted again


# --- payments ---------------------------------------------------------------------------------------------------
def _mutated(path: str, value) -> dict:
    body = _body()
    target = body["payments"]
    *parents, leaf = path.split(".")
    for key in parents:
        target = target[key]
    if value is _DELETE:
        del target[leaf]
    else:
        target[leaf] = value
    return body


_DELETE = object()


@pytest.mark.parametrize(("path", "value", "code"), [
    ("paymentIdentifiers.endToEndId", "x" * 36, "GCA-002"),
    ("paymentIdentifiers.endToEndId", "", "GCA-002"),
    ("paymentIdentifiers.endToEndId", "has space", "GCA-002"),
    ("paymentAmount", 0, "GCA-003"),
    ("paymentAmount", -5, "GCA-003"),
    ("paymentAmount", 1.001, "GCA-003"),
    ("paymentAmount", "10.00", "GCA-003"),
    ("paymentAmount", 100000000, "GCA-003"),
    ("prenote", True, "GCA-003"),  # a prenote with an amount
    ("paymentCurrency", "EUR", "GCA-004"),
    ("paymentType", "WIRE", "GCA-005"),
    ("transferType", "PULL", "GCA-006"),
    ("debtorAgent.financialInstitutionId.clearingSystemId.id", "011000016", "GCA-007"),
    ("creditorAgent.financialInstitutionId.clearingSystemId.id", "02100002", "GCA-007"),
    ("debtor.debtorAccount.accountId", "123", "GCA-008"),
    ("debtor.debtorAccount.accountId", "1" * 18, "GCA-008"),
    ("debtor.debtorAccount.accountId", "12345A", "GCA-008"),
    ("requestedExecutionDate", "23/11/2026", "GCA-009"),
    ("debtor.debtorName", "", "GCA-010"),
    ("debtor.debtorAccount.accountType", "BROKERAGE", "GCA-010"),
    ("creditorAgent.financialInstitutionId.clearingSystemId.idType", "BIC", "GCA-010"),
    ("creditor", _DELETE, "GCA-010"),
])
def test_invalid_payments_are_400_with_a_code_and_change_nothing(sandbox, path, value, code):
    response = _post_payment(sandbox, _token(sandbox), _mutated(path, value))
    assert response.status_code == 400
    assert code in _codes(response)
    assert _ledger(sandbox) == []
    assert _callbacks(sandbox) == {"pending": [], "delivered": []}


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"payment": {}}'])
def test_a_body_that_is_not_a_payment_is_gca_001(sandbox, body):
    response = _post_payment(sandbox, _token(sandbox), data=body, headers={"Content-Type": "application/json"})
    assert (response.status_code, _codes(response)) == (400, ["GCA-001"])
    assert _ledger(sandbox) == []


def test_a_zero_amount_prenote_is_accepted(sandbox):
    response = _post_payment(sandbox, _token(sandbox), _body("prenote-raw", paymentAmount=0, prenote=True))
    assert response.status_code == 202
    assert _ledger(sandbox)[0]["prenote"] is True


def test_repeat_gets_the_same_answer_and_a_different_body_is_422(sandbox):
    token = _token(sandbox)
    first = _post_payment(sandbox, token, _body("idem-1"))
    again = _post_payment(sandbox, token, _body("idem-1"))
    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json() == again.json()
    assert set(first.json()["paymentInitiationResponse"]) == {"endToEndId", "firmRootId"}
    other = _post_payment(sandbox, token, _body("idem-1", paymentAmount=11))
    assert (other.status_code, _codes(other)) == (422, ["GCA-020"])
    [entry] = _ledger(sandbox)
    assert entry["amount"] == "10.50"
    assert len(_callbacks(sandbox)["pending"]) == 1  # the repeat queued no second PENDING callback


def test_jws_bodies_are_verified(sandbox):
    token = _token(sandbox)
    signed = PyJWS().encode(json.dumps(_body("jws-1")).encode(), _private_key(sandbox), algorithm="RS256")
    ok = _post_payment(sandbox, token, data=signed, headers={"Content-Type": "application/jose"})
    assert ok.status_code == 202
    tampered = signed[:-4] + ("AAAA" if not signed.endswith("AAAA") else "BBBB")
    bad = _post_payment(sandbox, token, data=tampered, headers={"Content-Type": "application/jose"})
    assert (bad.status_code, _codes(bad)) == (401, ["GCA-101"])
    garbage = _post_payment(sandbox, token, data=b"abc", headers={"Content-Type": "application/jose"})
    assert (garbage.status_code, _codes(garbage)) == (401, ["GCA-101"])
    assert [e["endToEndId"] for e in _ledger(sandbox)] == ["jws-1"]


def test_routes_and_methods(sandbox):
    token = _token(sandbox)
    assert _get(sandbox, token, "tsapi/v1/payments").status_code == 405
    unknown = _get(sandbox, token, "tsapi/v9/nothing")
    assert unknown.status_code == 404
    assert "errors" not in unknown.json()  # not a JPM "payment not found"
    assert requests.get(f"{sandbox.url}/jpm/oauth2/token", timeout=5).status_code == 405


# --- status timeline and callbacks ------------------------------------------------------------------------------
def _status(sandbox, token: str, end_to_end_id: str) -> dict:
    response = _get(sandbox, token, f"tsapi/v3/payment/{end_to_end_id}")
    assert response.status_code == 200, response.text
    return response.json()["paymentStatus"]


def test_status_thresholds(sandbox):
    token = _token(sandbox)
    _post_payment(sandbox, token, _body("timeline"))
    assert _status(sandbox, token, "timeline")["status"] == "PENDING"
    sandbox.advance(seconds=55)
    assert _status(sandbox, token, "timeline")["status"] == "PENDING"
    sandbox.advance(seconds=10)
    assert _status(sandbox, token, "timeline")["status"] == "ACCEPTED"
    sandbox.advance(seconds=3600 - 70)
    assert _status(sandbox, token, "timeline")["status"] == "ACCEPTED"
    sandbox.advance(seconds=10)
    assert _status(sandbox, token, "timeline")["status"] == "CLEARED"
    sandbox.advance(days=1)
    status = _status(sandbox, token, "timeline")
    assert (status["status"], status["exception"]) == ("COMPLETED", [])
    assert status["createDateTime"].endswith("Z")


def test_every_status_change_queues_a_callback(sandbox):
    token = _token(sandbox)
    _post_payment(sandbox, token, _body("cb-settle"))
    _post_payment(sandbox, token, _body("cb-return", account="555559902"))
    _post_payment(sandbox, token, _body("cb-reject", account="555559851"))
    sandbox.advance(days=3)
    pending = _callbacks(sandbox)["pending"]
    by_id: dict[str, list[dict]] = {}
    for item in pending:
        by_id.setdefault(item["callback"]["endToEndId"], []).append(item["callback"])
    assert [c["paymentStatus"] for c in by_id["cb-settle"]] == ["PENDING", "ACCEPTED", "CLEARED", "COMPLETED"]
    assert [c["paymentStatus"] for c in by_id["cb-return"]] == ["PENDING", "ACCEPTED", "CLEARED", "COMPLETED",
                                                                "RETURNED"]
    assert [c["paymentStatus"] for c in by_id["cb-reject"]] == ["REJECTED"]
    times = [c["createDateTime"] for c in by_id["cb-return"]]
    assert times == sorted(times) and len(set(times)) == 5
    assert by_id["cb-return"][-1]["exceptions"][0]["externalCode"] == "AC04"
    assert by_id["cb-reject"][0]["exceptions"][0]["externalCode"] == "R51"  # no ISO equivalent
    assert [e["status"] for e in _ledger(sandbox)] == ["COMPLETED", "RETURNED", "REJECTED"]


# --- transactions -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("params", [
    {},
    {"accountIds": "000000010962009", "startDate": "2026-11-02", "endDate": "2026-11-01"},
    {"accountIds": "000000010962009", "startDate": "2026-11-01", "endDate": "nope"},
    {"accountIds": "000000010962009", "startDate": "2026-11-01", "endDate": "2026-11-02", "pageNumber": "0"},
    {"startDate": "2026-11-01", "endDate": "2026-11-02"},
])
def test_bad_transaction_queries_are_gca_040(sandbox, params):
    response = _get(sandbox, _token(sandbox), "tsapi/v3/transactions", **params)
    assert (response.status_code, _codes(response)) == (400, ["GCA-040"])


def test_transaction_pages(sandbox):
    token = _token(sandbox)
    for i in range(5):
        _post_payment(sandbox, token, _body(f"page-{i}"))
    sandbox.control("PUT", "jpm/page-size", {"size": 2})
    query = {"accountIds": "000000010962009", "startDate": "2026-11-23", "endDate": "2026-11-23"}
    pages = [_get(sandbox, token, "tsapi/v3/transactions", pageNumber=str(n), **query).json() for n in (1, 2, 3, 4)]
    assert [p["pagination"]["totalPages"] for p in pages] == [3, 3, 3, 3]
    assert [len(p["data"]) for p in pages] == [2, 2, 1, 0]
    assert [r["endToEndId"] for p in pages for r in p["data"]] == [f"page-{i}" for i in range(5)]
    record = pages[0]["data"][0]
    assert record["amount"] == 10.5
    assert "123456780" not in json.dumps(pages)  # counterparty accounts are masked


@pytest.mark.parametrize("size", [0, 1001, "10", None, True])
def test_page_size_is_validated(sandbox, size):
    response = requests.put(f"{sandbox.url}/_control/jpm/page-size", json={"size": size}, timeout=5)
    assert response.status_code == 400


# --- callback delivery ------------------------------------------------------------------------------------------
class Receiver:
    """A webhook receiver on a free port: records every POST and answers the next scripted status (default 200)."""

    def __init__(self):
        self.received: list[dict] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append({"headers": dict(self.headers), "body": body, "at": time.time()})
                status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhooks/jpm"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def messages(self) -> list[dict]:
        return [json.loads(item["body"]) for item in self.received]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _verify_signature(item: dict, secret: str = WEBHOOK_SECRET) -> int:
    """SPEC §10: ``X-JPM-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>``; returns t."""
    parts = dict(part.split("=", 1) for part in item["headers"]["X-JPM-Signature"].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + item["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    return int(parts["t"])


def _submit_many(count: int, *, direction: str = "DEBIT", prefix: str = "p") -> list[str]:
    client = jpm_client()
    ids = [f"{prefix}-{i:03d}" for i in range(count)]
    for e2e in ids:
        client.submit_ach_payment(end_to_end_id=e2e, amount=Decimal("1.00"), direction=direction,
                                  account_number="123456780", routing_number="021000021", account_type="checking",
                                  name="Jane", requested_execution_date=date(2026, 11, 23))
    return ids


def test_deliver_posts_signed_messages_never_mixing_credits_and_debits(sandbox, receiver):
    debits = _submit_many(3, prefix="d")
    credits = _submit_many(2, direction="CREDIT", prefix="c")
    sandbox.advance(seconds=61)  # every payment: PENDING then ACCEPTED → 10 callbacks
    summary = sandbox.control("POST", "jpm/deliver-callbacks", {"url": receiver.url})
    assert (summary["sent"], summary["delivered"], summary["pending"]) == (2, 10, 0)
    assert len(receiver.received) == 2
    for item in receiver.received:
        t = _verify_signature(item)
        assert abs(time.time() - t) <= 300  # inside the 5-minute window
        assert item["headers"]["Content-Type"] == "application/json"
        parsed = parse_callback_message(item["body"])
        ids = {c.end_to_end_id for c in parsed}
        assert ids <= set(debits) or ids <= set(credits)
    by_kind = {m["transferType"]: m["count"] for m in summary["messages"]}
    assert by_kind == {"DEBIT": 6, "CREDIT": 4}
    state = _callbacks(sandbox)
    assert (len(state["pending"]), len(state["delivered"])) == (0, 10)
    # delivered callbacks are not sent again
    assert sandbox.control("POST", "jpm/deliver-callbacks", {"url": receiver.url})["sent"] == 0
    assert len(receiver.received) == 2


def test_a_wrong_secret_does_not_verify(sandbox, receiver):
    _submit_many(1)
    sandbox.control("POST", "jpm/deliver-callbacks", {"url": receiver.url})
    with pytest.raises(AssertionError):
        _verify_signature(receiver.received[0], secret="another-secret")


def test_at_most_fifty_callbacks_per_message(sandbox, receiver):
    _submit_many(60)
    sandbox.control("POST", "jpm/deliver-callbacks", {"url": receiver.url})
    assert [len(m["callbacks"]) for m in receiver.messages()] == [50, 10]
    seen = [c["endToEndId"] for m in receiver.messages() for c in m["callbacks"]]
    assert sorted(seen) == [f"p-{i:03d}" for i in range(60)]


def test_batch_size_and_shuffle(sandbox, receiver):
    ids = _submit_many(20)
    summary = sandbox.control("POST", "jpm/deliver-callbacks", {"url": receiver.url, "batch_size": 7,
                                                                "shuffle": True, "seed": 4})
    assert all(len(m["callbacks"]) <= 7 for m in receiver.messages())
    assert summary["sent"] == 3
    order = [c["endToEndId"] for m in receiver.messages() for c in m["callbacks"]]
    assert sorted(order) == ids  # every callback exactly once
    assert order != ids  # but not in submission order


def test_duplicates_are_identical_copies(sandbox, receiver):
    _submit_many(2)
    summary = sandbox.control("POST", "jpm/deliver-callbacks", {"url": receiver.url, "duplicate": 2})
    assert summary["sent"] == 3
    bodies = [item["body"] for item in receiver.received]
    assert len(bodies) == 3 and len(set(bodies)) == 1
    for item in receiver.received:
        _verify_signature(item)


def test_only_a_200_marks_a_callback_delivered(sandbox, receiver):
    _submit_many(2)
    receiver.answers = [500]
    summary = sandbox.control("POST", "jpm/deliver-callbacks", {"url": receiver.url})
    assert summary["messages"][0]["statuses"] == [500]
    assert (summary["delivered"], summary["pending"]) == (0, 2)
    assert all(item["attempts"] == 1 for item in _callbacks(sandbox)["pending"])
    summary = sandbox.control("POST", "jpm/deliver-callbacks", {"url": receiver.url})
    assert (summary["delivered"], summary["pending"]) == (2, 0)
    assert len(receiver.received) == 2
    assert receiver.received[0]["body"] == receiver.received[1]["body"]  # the same message, retried


def test_an_unreachable_receiver_leaves_callbacks_pending(sandbox):
    _submit_many(1)
    summary = sandbox.control("POST", "jpm/deliver-callbacks", {"url": "http://127.0.0.1:9/webhooks/jpm"})
    assert summary["messages"][0]["statuses"] == ["ConnectionError"]
    assert summary["pending"] == 1


def test_default_url_secret_and_timestamp_come_from_config(sandbox, receiver):
    _submit_many(1)
    sandbox.configure(jpm_webhook_url=receiver.url, jpm_webhook_secret="rotated-secret")
    summary = sandbox.control("POST", "jpm/deliver-callbacks", {"timestamp": 1_700_000_000})
    assert summary["url"] == receiver.url
    assert _verify_signature(receiver.received[0], secret="rotated-secret") == 1_700_000_000


@pytest.mark.parametrize("body", [{"batch_size": 51}, {"batch_size": 0}, {"duplicate": -1}, {"duplicate": "x"},
                                  {"url": "ftp://x"}])
def test_deliver_parameters_are_validated(sandbox, body):
    response = requests.post(f"{sandbox.url}/_control/jpm/deliver-callbacks", json=body, timeout=5)
    assert response.status_code == 400


def test_the_request_log_never_holds_a_full_account_number(sandbox):
    token = _token(sandbox)
    _post_payment(sandbox, token, _body("mask-1", account="739146285017"))
    dumped = json.dumps(sandbox.requests("jpm"))
    assert "739146285017" not in dumped
    assert "****5017" in dumped


def test_body_helper_is_valid(sandbox):
    # guards the parametrised validation test: the unmutated body is accepted
    assert _post_payment(sandbox, _token(sandbox), _body("baseline")).status_code == 202
