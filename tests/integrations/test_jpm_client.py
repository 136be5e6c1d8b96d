"""The JPM client against the sandbox over real HTTP: auth (private_key_jwt, token cache), JWS bodies, mTLS,
every operation, and every error class provoked for real."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from datetime import date
from decimal import Decimal

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from integrations.errors import (
    ProcessorAuthError,
    ProcessorConfigurationError,
    ProcessorDeclined,
    ProcessorProtocolError,
    ProcessorTimeout,
    ProcessorUnavailable,
)
from integrations.jpm import (
    ISO_TO_NACHA,
    JpmPaymentNotFound,
    JpmPaymentStatus,
    adapter,
    clear_token_cache,
    jpm_client,
    nacha_for,
    parse_callback_message,
)

EXECUTION_DATE = date(2026, 11, 23)
COMPANY_ACCOUNT = "000000010962009"


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    """The sandbox forgets its tokens on reset; so must the process-wide cache."""
    clear_token_cache()
    yield
    clear_token_cache()


def _submit(client=None, end_to_end_id: str = "pay-0001", *, account: str = "123456780", amount: str = "12.34",
            direction: str = "DEBIT", routing: str = "021000021", prenote: bool = False,
            execution_date: date = EXECUTION_DATE, account_type: str = "checking"):
    return (client or jpm_client()).submit_ach_payment(
        end_to_end_id=end_to_end_id, amount=Decimal(amount), direction=direction, account_number=account,
        routing_number=routing, account_type=account_type, name="Jane Doe",
        requested_execution_date=execution_date, prenote=prenote)


def _ledger(sandbox) -> list[dict]:
    return sandbox.control("GET", "jpm/ledger")["ledger"]


def _ops(sandbox, operation: str) -> list[dict]:
    return sandbox.requests("jpm", operation)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _other_key(tmp_path) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "other-key.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return str(path)


# --- submit -----------------------------------------------------------------------------------------------------
def test_submit_debit_is_accepted_and_recorded_once(sandbox):
    submission = _submit(end_to_end_id="pay-debit-1")
    ledger = _ledger(sandbox)
    assert len(ledger) == 1
    assert submission.end_to_end_id == "pay-debit-1"
    assert submission.firm_root_id == ledger[0]["firmRootId"]
    assert (ledger[0]["transferType"], ledger[0]["amount"], ledger[0]["status"]) == ("DEBIT", "12.34", "PENDING")
    assert ledger[0]["accountLast4"] == "6780"  # the counterparty is the debtor of a DEBIT
    assert submission.exchange.status == 202
    [token] = _ops(sandbox, "jpm.token")
    assert token["body"]["client_assertion"] == "[REDACTED]"


def test_submit_credit_pays_from_our_account(sandbox):
    _submit(end_to_end_id="pay-credit-1", direction="CREDIT", account="55554321", account_type="savings")
    [entry] = _ledger(sandbox)
    assert (entry["transferType"], entry["accountLast4"]) == ("CREDIT", "4321")
    [txn] = jpm_client().list_transactions(start=EXECUTION_DATE, end=EXECUTION_DATE)
    assert (txn.account_id, txn.credit_debit_indicator) == (COMPANY_ACCOUNT, "DEBIT")  # money left our account


def test_request_body_shape_debit_and_credit():
    common = {"end_to_end_id": "e2e-1", "amount": Decimal("12.30"), "account_number": "1234", "routing_number":
              "011000015", "account_type": "savings", "name": "Jane", "requested_execution_date": EXECUTION_DATE,
              "prenote": False, "company_account_id": COMPANY_ACCOUNT, "company_routing_number": "021000021",
              "company_name": "Us"}
    debit = adapter.payment_request(direction="DEBIT", **common)["payments"]
    assert debit["paymentIdentifiers"] == {"endToEndId": "e2e-1"}
    assert (debit["paymentAmount"], debit["paymentCurrency"], debit["paymentType"], debit["transferType"]) == (
        12.3, "USD", "ACH.TRF", "DEBIT")
    assert debit["requestedExecutionDate"] == "2026-11-23"
    assert debit["debtor"] == {"debtorName": "Jane", "debtorAccount": {"accountId": "1234", "accountType": "SAVINGS",
                                                                       "accountCurrency": "USD"}}
    assert debit["debtorAgent"]["financialInstitutionId"]["clearingSystemId"] == {"id": "011000015",
                                                                                  "idType": "USABA"}
    assert debit["creditor"]["creditorAccount"]["accountId"] == COMPANY_ACCOUNT
    assert "prenote" not in debit
    credit = adapter.payment_request(direction="CREDIT", **{**common, "prenote": True, "amount": Decimal(0)})
    credit = credit["payments"]
    assert credit["creditor"]["creditorAccount"]["accountId"] == "1234"
    assert credit["debtor"]["debtorName"] == "Us"
    assert credit["prenote"] is True
    audit = adapter.redacted_payment_request({"payments": debit})
    assert audit["payments"]["debtor"]["debtorAccount"]["accountId"] == "****1234"
    assert debit["debtor"]["debtorAccount"]["accountId"] == "1234"  # the original is untouched


def test_submit_is_idempotent_on_end_to_end_id(sandbox):
    client = jpm_client()
    first = _submit(client, "pay-same")
    again = _submit(client, "pay-same")
    assert again.firm_root_id == first.firm_root_id
    assert len(_ledger(sandbox)) == 1
    assert [r["status"] for r in _ops(sandbox, "jpm.payments")] == [202, 202]


def test_same_end_to_end_id_with_another_body_is_declined_and_changes_nothing(sandbox):
    client = jpm_client()
    first = _submit(client, "pay-reused")
    with pytest.raises(ProcessorDeclined) as exc:
        _submit(client, "pay-reused", amount="99.00")
    assert exc.value.code == "GCA-020"
    [entry] = _ledger(sandbox)
    assert (entry["firmRootId"], entry["amount"]) == (first.firm_root_id, "12.34")


def test_processor_validation_error_is_declined_with_its_code(sandbox):
    with pytest.raises(ProcessorDeclined) as exc:
        _submit(routing="021000022")  # bad ABA check digit
    assert exc.value.code == "GCA-007"
    assert "check digit" in exc.value.message
    assert exc.value.exchange.status == 400
    assert _ledger(sandbox) == []
    assert [r["status"] for r in _ops(sandbox, "jpm.payments")] == [400]


def test_prenote_is_a_zero_amount_entry(sandbox):
    _submit(end_to_end_id="prenote-1", amount="0", prenote=True)
    [entry] = _ledger(sandbox)
    assert (entry["prenote"], entry["amount"]) == (True, "0.00")


@pytest.mark.parametrize("override", [
    {"direction": "PUSH"},
    {"amount": "1.001"},
    {"amount": "-1.00"},
    {"amount": "0"},
    {"amount": "5.00", "prenote": True},
    {"end_to_end_id": "x" * 36},
    {"end_to_end_id": "bad/id"},
    {"account_type": "brokerage"},
])
def test_impossible_arguments_raise_before_anything_is_sent(sandbox, override):
    args = {"end_to_end_id": "pay-args", **override}
    with pytest.raises(ValueError):
        _submit(**args)
    assert sandbox.requests("jpm") == []


# --- status -----------------------------------------------------------------------------------------------------
def test_unknown_payment_is_a_typed_not_found(sandbox):
    result = jpm_client().get_payment_status("never-sent")
    assert isinstance(result, JpmPaymentNotFound)
    assert (result.found, result.error_code, result.exchange.status) == (False, "GCA-030", 404)


def test_404_without_a_jpm_error_body_is_a_protocol_error_not_not_found(sandbox, settings):
    settings.JPM_BASE_URL = f"{sandbox.url}/jpm/wrong-prefix"
    with pytest.raises(ProcessorProtocolError):
        jpm_client().get_payment_status("pay-1")


def test_settled_payment_moves_to_completed_with_the_clock(sandbox):
    client = jpm_client()
    _submit(client, "pay-settle")
    seen = [client.get_payment_status("pay-settle").status]
    for seconds in (61, 3600, 86400, 3 * 86400):
        sandbox.advance(seconds=seconds)
        seen.append(client.get_payment_status("pay-settle").status)
    assert seen == ["PENDING", "ACCEPTED", "CLEARED", "COMPLETED", "COMPLETED"]
    final = client.get_payment_status("pay-settle")
    assert isinstance(final, JpmPaymentStatus)
    assert (final.exceptions, final.return_code, final.return_code_nacha) == ((), None, None)
    assert final.create_date_time is not None and final.create_date_time.tzinfo is not None


@pytest.mark.parametrize(("account", "iso", "nacha"), [
    ("123459902", "AC04", "R02"),
    ("123459901", "AM04", "R01"),
    ("123459907", "R07", "R07"),  # no ISO equivalent: JPM reports the NACHA code itself
])
def test_returned_payment_carries_the_iso_code_and_its_nacha_equivalent(sandbox, account, iso, nacha):
    client = jpm_client()
    _submit(client, "pay-return", account=account)
    sandbox.advance(days=1, seconds=60)
    assert client.get_payment_status("pay-return").status == "COMPLETED"  # not final: may still be returned
    sandbox.advance(days=1)
    status = client.get_payment_status("pay-return")
    assert status.status == "RETURNED"
    assert status.is_final_failure
    assert [e.external_code for e in status.exceptions] == [iso]
    assert (status.return_code, status.return_code_nacha) == (iso, nacha)


def test_rejected_payment_is_rejected_at_once(sandbox):
    client = jpm_client()
    _submit(client, "pay-reject", account="123459803")
    status = client.get_payment_status("pay-reject")
    assert status.status == "REJECTED"
    assert (status.return_code, status.return_code_nacha) == ("AC01", "R03")
    sandbox.advance(days=5)
    assert client.get_payment_status("pay-reject").status == "REJECTED"


# --- transactions -----------------------------------------------------------------------------------------------
def test_transactions_follow_every_page_and_return_each_record_once(sandbox, settings):
    sandbox.control("PUT", "jpm/page-size", {"size": 3})
    client = jpm_client()
    inside = [f"txn-{i:02d}" for i in range(8)]
    for i, e2e in enumerate(inside):
        _submit(client, e2e, execution_date=date(2026, 11, 20 + i % 3))
    _submit(client, "txn-before", execution_date=date(2026, 11, 19))
    _submit(client, "txn-after", execution_date=date(2026, 11, 23))
    settings.JPM_ACCOUNT_ID = "000000099999999"  # another of our accounts: not in this account's statement
    _submit(jpm_client(), "txn-other-account", execution_date=date(2026, 11, 21))
    settings.JPM_ACCOUNT_ID = COMPANY_ACCOUNT

    records = jpm_client().list_transactions(start=date(2026, 11, 20), end=date(2026, 11, 22))

    assert sorted(r.end_to_end_id for r in records) == inside  # each exactly once
    assert len({r.transaction_id for r in records}) == 8
    assert len(_ops(sandbox, "jpm.transactions")) == 3  # pages 1..3 of 3
    first = next(r for r in records if r.end_to_end_id == "txn-00")
    assert (first.amount, first.currency, first.credit_debit_indicator, first.status) == (
        Decimal("12.34"), "USD", "CREDIT", "PENDING")
    assert first.raw["endToEndId"] == "txn-00"


def test_no_transactions_is_one_empty_page(sandbox):
    assert jpm_client().list_transactions(start=date(2026, 1, 1), end=date(2026, 1, 2)) == []
    assert len(_ops(sandbox, "jpm.transactions")) == 1


def test_malformed_transactions_page_is_a_protocol_error(sandbox):
    sandbox.fault("jpm.transactions", "malformed")
    with pytest.raises(ProcessorProtocolError):
        jpm_client().list_transactions(start=date(2026, 11, 1), end=date(2026, 11, 30))


# --- auth -------------------------------------------------------------------------------------------------------
def test_one_token_serves_many_calls(sandbox):
    client = jpm_client()
    _submit(client, "pay-cache-1")
    _submit(jpm_client(), "pay-cache-2")  # a new client instance shares the process-wide cache
    for _ in range(3):
        client.get_payment_status("pay-cache-1")
    client.list_transactions(start=EXECUTION_DATE, end=EXECUTION_DATE)
    assert len(_ops(sandbox, "jpm.token")) == 1
    assert len(sandbox.requests("jpm")) == 7


def test_concurrent_first_calls_share_one_token_request(sandbox):
    barrier = threading.Barrier(8)
    outcomes: list = []

    def call():
        client = jpm_client()
        barrier.wait()
        try:
            outcomes.append(client.get_payment_status("pay-x"))
        except Exception as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(outcomes) == 8 and all(isinstance(o, JpmPaymentNotFound) for o in outcomes)
    assert len(_ops(sandbox, "jpm.token")) == 1


def test_a_new_token_is_fetched_when_the_old_one_expires(sandbox):
    sandbox.control("PUT", "jpm/token-ttl", {"seconds": 1})
    client = jpm_client()
    client.get_payment_status("pay-x")
    client.get_payment_status("pay-x")
    assert len(_ops(sandbox, "jpm.token")) == 1
    time.sleep(1.05)
    client.get_payment_status("pay-x")
    assert len(_ops(sandbox, "jpm.token")) == 2
    assert all(r["status"] == 404 for r in _ops(sandbox, "jpm.payment_status"))  # never a 401 on the way


def test_a_refused_token_on_a_read_is_replaced_and_the_read_retried_once(sandbox):
    client = jpm_client()
    client.get_payment_status("pay-x")
    sandbox.control("POST", "jpm/tokens/revoke")
    assert isinstance(client.get_payment_status("pay-x"), JpmPaymentNotFound)
    assert [r["status"] for r in _ops(sandbox, "jpm.payment_status")] == [404, 401, 404]
    assert len(_ops(sandbox, "jpm.token")) == 2


def test_a_refused_token_on_a_payment_fails_without_resubmitting(sandbox):
    client = jpm_client()
    client.get_payment_status("pay-x")
    sandbox.control("POST", "jpm/tokens/revoke")
    with pytest.raises(ProcessorAuthError) as exc:
        _submit(client, "pay-after-revoke")
    assert exc.value.exchange.status == 401
    assert exc.value.exchange.response_body["errors"]["errorDetails"][0]["errorCode"] == "GCA-100"
    assert _ledger(sandbox) == []
    assert len(_ops(sandbox, "jpm.payments")) == 1
    _submit(client, "pay-after-revoke")  # the dropped token is not reused: the next call fetches a new one
    assert len(_ledger(sandbox)) == 1
    assert len(_ops(sandbox, "jpm.token")) == 2


def test_an_assertion_signed_with_another_key_is_refused_and_nothing_is_paid(sandbox, settings, tmp_path):
    settings.JPM_PRIVATE_KEY_PATH = _other_key(tmp_path)
    with pytest.raises(ProcessorAuthError) as exc:
        _submit(end_to_end_id="pay-bad-key")
    assert exc.value.operation == "token"
    assert exc.value.exchange.status == 401
    assert "eyJ" not in str(exc.value.exchange.as_dict())  # the assertion never reaches the audit record
    assert _ledger(sandbox) == []
    assert _ops(sandbox, "jpm.payments") == []
    assert [r["status"] for r in _ops(sandbox, "jpm.token")] == [401]


def test_an_unknown_client_id_is_refused(sandbox, settings):
    settings.JPM_CLIENT_ID = "someone-else"
    with pytest.raises(ProcessorAuthError):
        jpm_client().get_payment_status("pay-x")
    assert _ops(sandbox, "jpm.payment_status") == []


def test_token_endpoint_5xx_is_unavailable_and_the_payment_not_sent(sandbox):
    sandbox.fault("jpm.token", "500")
    with pytest.raises(ProcessorUnavailable):
        _submit(end_to_end_id="pay-token-500")
    assert _ops(sandbox, "jpm.payments") == []
    assert _ledger(sandbox) == []


def test_token_endpoint_timeout_is_unavailable_not_outcome_unknown(sandbox):
    sandbox.fault("jpm.token", "timeout")
    with pytest.raises(ProcessorUnavailable) as exc:
        _submit(end_to_end_id="pay-token-timeout")
    assert not isinstance(exc.value, ProcessorTimeout)
    assert exc.value.retryable
    assert _ops(sandbox, "jpm.payments") == []
    assert _ledger(sandbox) == []


def test_tokens_and_assertions_are_never_logged(sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    client = jpm_client()
    _submit(client, "pay-logs")
    client.get_payment_status("pay-logs")
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "jpm access token obtained" in text
    assert "eyJ" not in text
    assert "Bearer " not in text
    assert "123456780" not in text


# --- JWS bodies -------------------------------------------------------------------------------------------------
def test_signed_bodies_required_refuses_plain_json(sandbox):
    sandbox.configure(jpm_require_signed_bodies=True)
    with pytest.raises(ProcessorAuthError) as exc:
        _submit(end_to_end_id="pay-unsigned")
    assert exc.value.exchange.response_body["errors"]["errorDetails"][0]["errorCode"] == "GCA-102"
    assert _ledger(sandbox) == []


def test_signed_bodies_are_verified_and_accepted(sandbox, settings):
    sandbox.configure(jpm_require_signed_bodies=True)
    settings.JPM_SIGN_REQUESTS = True
    submission = _submit(end_to_end_id="pay-signed")
    [entry] = _ledger(sandbox)
    assert entry["firmRootId"] == submission.firm_root_id
    [logged] = _ops(sandbox, "jpm.payments")
    assert logged["body"]["jws"]["payments"]["paymentIdentifiers"]["endToEndId"] == "pay-signed"
    # the audit record holds the JSON inside the JWS, accounts masked
    assert submission.exchange.request_body["payments"]["debtor"]["debtorAccount"]["accountId"] == "****6780"


def test_a_body_signed_with_another_key_is_refused(sandbox, settings, tmp_path):
    settings.JPM_SIGN_REQUESTS = True
    settings.JPM_SIGNING_KEY_PATH = _other_key(tmp_path)  # the assertion key is still the right one
    with pytest.raises(ProcessorAuthError) as exc:
        _submit(end_to_end_id="pay-badly-signed")
    assert exc.value.exchange.response_body["errors"]["errorDetails"][0]["errorCode"] == "GCA-101"
    assert _ledger(sandbox) == []
    assert [r["status"] for r in _ops(sandbox, "jpm.token")] == [200]


# --- transport failures -----------------------------------------------------------------------------------------
def test_refused_port_is_unavailable(settings):
    url = f"http://127.0.0.1:{_free_port()}/jpm"
    settings.JPM_BASE_URL, settings.JPM_TOKEN_URL = url, f"{url}/oauth2/token"
    with pytest.raises(ProcessorUnavailable) as exc:
        _submit(end_to_end_id="pay-refused")
    assert exc.value.exchange.error == "could not connect"


def test_refused_api_port_after_a_good_token_is_unavailable(sandbox, settings):
    settings.JPM_BASE_URL = f"http://127.0.0.1:{_free_port()}/jpm"
    with pytest.raises(ProcessorUnavailable) as exc:
        _submit(end_to_end_id="pay-refused")
    assert exc.value.operation == "submit_ach_payment"
    assert _ledger(sandbox) == []


def test_5xx_is_unavailable_and_nothing_recorded(sandbox):
    sandbox.fault("jpm.payments", "500")
    with pytest.raises(ProcessorUnavailable) as exc:
        _submit(end_to_end_id="pay-500")
    assert exc.value.exchange.status == 500
    assert _ledger(sandbox) == []
    assert [r["fault"] for r in _ops(sandbox, "jpm.payments")] == ["500"]


def test_timeout_is_outcome_unknown_and_a_resubmit_finds_the_same_payment(sandbox):
    sandbox.fault("jpm.payments", "timeout")
    client = jpm_client()
    with pytest.raises(ProcessorTimeout):
        _submit(client, "pay-timeout")
    [entry] = _ledger(sandbox)  # JPM did receive it: that is what "outcome unknown" means
    again = _submit(client, "pay-timeout")
    assert again.firm_root_id == entry["firmRootId"]
    assert len(_ledger(sandbox)) == 1
    assert client.get_payment_status("pay-timeout").status == "PENDING"


def test_malformed_answer_is_a_protocol_error(sandbox):
    sandbox.fault("jpm.payments", "malformed")
    with pytest.raises(ProcessorProtocolError):
        _submit(end_to_end_id="pay-malformed")
    assert len(_ledger(sandbox)) == 1  # processed: the reconciler finds it by endToEndId


def test_status_timeout_is_a_timeout(sandbox):
    sandbox.fault("jpm.payment_status", "timeout")
    with pytest.raises(ProcessorTimeout):
        jpm_client().get_payment_status("pay-x")


# --- configuration ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("setting", ["JPM_BASE_URL", "JPM_TOKEN_URL", "JPM_CLIENT_ID", "JPM_PRIVATE_KEY_PATH"])
def test_missing_settings_are_a_configuration_error(settings, setting):
    setattr(settings, setting, "")
    with pytest.raises(ProcessorConfigurationError) as exc:
        jpm_client()
    assert setting in str(exc.value)


def test_unreadable_key_and_half_mtls_are_configuration_errors(settings, tmp_path):
    settings.JPM_PRIVATE_KEY_PATH = str(tmp_path / "missing.pem")
    with pytest.raises(ProcessorConfigurationError):
        jpm_client()
    (tmp_path / "not-a-key.pem").write_text("hello")
    settings.JPM_PRIVATE_KEY_PATH = str(tmp_path / "not-a-key.pem")
    with pytest.raises(ProcessorConfigurationError):
        jpm_client()
    settings.JPM_PRIVATE_KEY_PATH = _other_key(tmp_path)
    settings.JPM_MTLS_CERT_PATH = str(tmp_path / "client.crt")
    with pytest.raises(ProcessorConfigurationError):
        jpm_client()


def test_submit_needs_our_company_account(sandbox, settings):
    settings.JPM_ACCOUNT_ROUTING_NUMBER = ""
    with pytest.raises(ProcessorConfigurationError):
        _submit(end_to_end_id="pay-no-company")
    assert sandbox.requests("jpm") == []


# --- mutual TLS -------------------------------------------------------------------------------------------------
def _point_at(settings, tls_sandbox, tls_files, cert=None, key=None):
    settings.JPM_BASE_URL = f"{tls_sandbox.url}/jpm"
    settings.JPM_TOKEN_URL = f"{tls_sandbox.url}/jpm/oauth2/token"
    settings.JPM_PRIVATE_KEY_PATH = str(tls_sandbox.private_key_path)
    settings.JPM_CA_BUNDLE = str(tls_files.ca_cert)
    settings.JPM_MTLS_CERT_PATH = str(cert) if cert else ""
    settings.JPM_MTLS_KEY_PATH = str(key) if key else ""


def test_mtls_with_our_client_certificate_succeeds(mtls_sandbox, tls_files, settings):
    _point_at(settings, mtls_sandbox, tls_files, tls_files.client_cert, tls_files.client_key)
    submission = _submit(end_to_end_id="pay-mtls")
    assert mtls_sandbox.ledger() == ["pay-mtls"]
    assert submission.exchange.url.startswith("https://")
    assert [r["operation"] for r in mtls_sandbox.requests()] == ["jpm.token", "jpm.payments"]


@pytest.mark.parametrize("which", ["none", "another CA"])
def test_mtls_without_an_accepted_client_certificate_is_an_auth_error(mtls_sandbox, tls_files, settings, which):
    cert, key = (None, None) if which == "none" else (tls_files.rogue_client_cert, tls_files.rogue_client_key)
    _point_at(settings, mtls_sandbox, tls_files, cert, key)
    with pytest.raises(ProcessorAuthError) as exc:
        _submit(end_to_end_id="pay-no-cert")
    assert exc.value.exchange.error == "TLS handshake failed"
    assert mtls_sandbox.requests() == []  # nothing reached the application
    assert mtls_sandbox.ledger() == []


def test_mtls_server_not_signed_by_our_ca_bundle_is_refused(mtls_sandbox, tls_files, settings):
    _point_at(settings, mtls_sandbox, tls_files, tls_files.client_cert, tls_files.client_key)
    settings.JPM_CA_BUNDLE = ""  # system CAs: the test CA is unknown
    with pytest.raises(ProcessorAuthError):
        _submit(end_to_end_id="pay-untrusted-server")
    assert mtls_sandbox.ledger() == []


def test_plain_http_client_cannot_reach_the_tls_sandbox(mtls_sandbox):
    with pytest.raises(requests.ConnectionError):
        requests.get(mtls_sandbox.url.replace("https", "http") + "/jpm/oauth2/token", timeout=2)


# --- codes and callbacks ----------------------------------------------------------------------------------------
SPEC_12 = {"AM04": "R01", "AC04": "R02", "AC01": "R03", "AC03": "R04", "MS02": "R08", "MD01": "R10",
           "AC06": "R16", "AG01": "R20", "AM05": "R24", "MD07": "R15", "BE01": "R03"}


@pytest.mark.parametrize(("iso", "nacha"), sorted(SPEC_12.items()))
def test_iso_to_nacha_pair_of_spec_12(iso, nacha):
    assert nacha_for(iso) == nacha
    assert nacha_for(iso.lower()) == nacha


def test_iso_to_nacha_table_is_exactly_spec_12():
    assert ISO_TO_NACHA == SPEC_12


@pytest.mark.parametrize(("code", "expected"), [("R07", "R07"), ("r29", "R29"), ("XX99", None), ("", None),
                                                (None, None), ("R1", None)])
def test_nacha_codes_pass_through_and_unknown_codes_are_none(code, expected):
    assert nacha_for(code) == expected


def _callback(i: int, status: str = "COMPLETED", **extra) -> dict:
    return {"endToEndId": f"pay-{i}", "firmRootId": f"fr-{i}", "createDateTime": "2026-11-21T05:07:30.173Z",
            "paymentStatus": status, "exceptions": [], **extra}


def test_callback_message_is_parsed():
    message = {"callbacks": [_callback(1), _callback(2, "RETURNED", exceptions=[
        {"errorCode": "ACH-RETURN", "errorDescription": "Account closed", "ruleDefinition": "r",
         "externalCode": "AC04"}])]}
    first, second = parse_callback_message(json.dumps(message).encode())
    assert (first.end_to_end_id, first.payment_status, first.return_code_nacha) == ("pay-1", "COMPLETED", None)
    assert first.create_date_time.isoformat() == "2026-11-21T05:07:30.173000+00:00"
    assert (second.return_code, second.return_code_nacha) == ("AC04", "R02")
    assert second.exceptions[0].error_description == "Account closed"


@pytest.mark.parametrize("message", [
    b"not json",
    b"[]",
    {"callbacks": []},
    {"callbacks": "x"},
    {"callbacks": [_callback(i) for i in range(51)]},
    {"callbacks": [_callback(1, "SETTLED")]},
    {"callbacks": [{**_callback(1), "endToEndId": ""}]},
    {"callbacks": [_callback(1, createDateTime="yesterday")]},
    {"callbacks": [_callback(1, exceptions="none")]},
])
def test_callback_message_with_a_bad_shape_is_a_protocol_error(message):
    with pytest.raises(ProcessorProtocolError):
        parse_callback_message(message)


def test_fifty_callbacks_is_the_limit_not_an_error():
    assert len(parse_callback_message({"callbacks": [_callback(i) for i in range(50)]})) == 50
