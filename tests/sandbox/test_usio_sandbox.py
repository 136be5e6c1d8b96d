"""The Usio fake at the wire level (raw HTTP, no client): protocol violations, control routes, time, reset."""

import json
from datetime import UTC, datetime, timedelta

import pytest
import requests

from sandbox.usio import return_time

ROUTING = "021000021"


def _creds(settings, name: str = "subscription") -> dict:
    account = settings.USIO_ACCOUNTS[name]
    return {"MerchantID": account["merchant_id"], "Login": account["login"], "Password": account["password"]}


def _post(sandbox, operation: str, body) -> requests.Response:
    return requests.post(f"{sandbox.url}/usio/{operation}", json=body, timeout=10)


def _call(sandbox, settings, operation: str, account: str = "subscription", **fields) -> dict:
    response = _post(sandbox, operation, {**_creds(settings, account), **fields})
    assert response.status_code == 200, response.text
    return response.json()


def _ledger(sandbox) -> list[dict]:
    return sandbox.control("GET", "usio/ledger")["transactions"]


def _failure(answer: dict) -> str:
    assert answer["Status"] == "failure", answer
    assert answer["Confirmation"] == ""
    return answer["Message"]


TOKEN_PAYMENT = {"Token": "tok-1", "Amount": "5.00", "AdditionalSearch": "ref-1", "AccountCode1": "ref-1"}
ACH_PAYMENT = {"RoutingNumber": ROUTING, "AccountNumber": "123456789", "TransCode": "27", "Amount": "5.00",
               "StandardEntryCode": "WEB", "FirstName": "Ada", "LastName": "Lovelace", "AdditionalSearch": "ref-2"}


# --- transport --------------------------------------------------------------------------------------------------


def test_unknown_operation_is_404_like_a_wcf_endpoint(sandbox, settings):
    response = _post(sandbox, "SubmitCashPayment", {**_creds(settings), **TOKEN_PAYMENT})
    assert response.status_code == 404
    assert _ledger(sandbox) == []


def test_only_post_and_json_objects_are_served(sandbox, settings):
    assert requests.get(f"{sandbox.url}/usio/GetPrefundingBalance", timeout=10).status_code == 405
    response = requests.post(f"{sandbox.url}/usio/SubmitTokenPayment", data="Token=tok-1", timeout=10)
    assert response.status_code == 400
    assert _post(sandbox, "SubmitTokenPayment", [_creds(settings)]).status_code == 400
    assert _ledger(sandbox) == []


# --- credentials --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("change", [{"Password": "wrong"}, {"Login": "sandbox-master"}, {"MerchantID": "99999999"},
                                    {"Password": None}])
def test_bad_credentials_are_a_1001_failure_and_change_nothing(sandbox, settings, change):
    body = {**_creds(settings), **TOKEN_PAYMENT, **change}
    response = _post(sandbox, "SubmitTokenPayment", body)
    assert response.status_code == 200
    assert _failure(response.json()) == "1001: Invalid credentials"
    assert _ledger(sandbox) == []
    [logged] = sandbox.requests("usio")
    assert settings.USIO_ACCOUNTS["subscription"]["password"] not in json.dumps(logged)


def test_each_account_has_its_own_credentials(sandbox, settings):
    body = {**_creds(settings, "float_debit"), "MerchantID": settings.USIO_ACCOUNTS["subscription"]["merchant_id"]}
    assert _failure(_post(sandbox, "GetPrefundingBalance", body).json()) == "1001: Invalid credentials"
    assert _call(sandbox, settings, "GetPrefundingBalance", "float_debit")["Balance"] == "100000.00"


# --- request validation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "message"),
    [("abc", "1020: Invalid Amount"), ("-5.00", "1020: Invalid Amount"), ("1.234", "1020: Invalid Amount"),
     ("0.00", "1020: Invalid Amount"), ("1e3", "1020: Invalid Amount"), (True, "1010: Missing required field: Amount"),
     ("", "1010: Missing required field: Amount"), (None, "1010: Missing required field: Amount")],
)
def test_bad_amounts_are_refused(sandbox, settings, amount, message):
    assert _failure(_call(sandbox, settings, "SubmitTokenPayment", **{**TOKEN_PAYMENT, "Amount": amount})) == message
    assert _ledger(sandbox) == []


def test_json_number_amounts_are_accepted(sandbox, settings):
    answer = _call(sandbox, settings, "SubmitTokenPayment", **{**TOKEN_PAYMENT, "Amount": 12.5})
    assert answer["Status"] == "success"
    assert _ledger(sandbox)[0]["amount"] == "12.50"


@pytest.mark.parametrize(
    ("operation", "fields", "missing"),
    [
        ("SubmitTokenPayment", {"Amount": "1.00"}, "Token"),
        ("PinlessCredit", {"Amount": "1.00"}, "Token"),
        ("SubmitACHPayment", {**ACH_PAYMENT, "RoutingNumber": ""}, "RoutingNumber"),
        ("SubmitACHPayment", {k: v for k, v in ACH_PAYMENT.items() if k != "AccountNumber"}, "AccountNumber"),
        ("SubmitACHPayment", {k: v for k, v in ACH_PAYMENT.items() if k != "TransCode"}, "TransCode"),
        ("SubmitACHPayment", {k: v for k, v in ACH_PAYMENT.items() if k != "LastName"}, "LastName"),
        ("RTPAccountCheck", {"RoutingNumber": ROUTING}, "AccountNumber"),
        ("RTPCredit", {"RoutingNumber": ROUTING, "AccountNumber": "123456789"}, "Amount"),
        ("SubmitCCVoid", {"Amount": "1.00"}, "ConfirmationID"),
        ("GetTransactionDetails", {}, "Confirmation"),
        ("GetTransactionList", {"StartDate": "2026-01-01T00:00:00+00:00", "EndDate": "2026-01-02T00:00:00+00:00"},
         "ReportType"),
        ("GetTransactionList", {"EndDate": "2026-01-02T00:00:00+00:00", "ReportType": "transactions"}, "StartDate"),
        ("RefreshToken", {}, "Token"),
    ],
)
def test_missing_required_fields_are_refused(sandbox, settings, operation, fields, missing):
    message = _failure(_call(sandbox, settings, operation, "float_credit", **fields))
    assert message == f"1010: Missing required field: {missing}"
    assert _ledger(sandbox) == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"TransCode": "26"}, "1021: Invalid TransCode"),
        ({"TransCode": "28"}, "1020: Invalid Amount"),  # a prenote must be 0
        ({"Amount": "0.00"}, "1020: Invalid Amount"),  # a debit must not be
        ({"RoutingNumber": "02100002"}, "1022: Invalid RoutingNumber"),
        ({"AccountNumber": "12a4567"}, "1023: Invalid AccountNumber"),
        ({"SameDayACH": "maybe"}, "1026: Invalid SameDayACH"),
    ],
)
def test_invalid_ach_fields_are_refused(sandbox, settings, fields, message):
    assert _failure(_call(sandbox, settings, "SubmitACHPayment", **{**ACH_PAYMENT, **fields})) == message
    assert _ledger(sandbox) == []


def test_prenote_trans_code_as_a_number_with_zero_amount(sandbox, settings):
    answer = _call(sandbox, settings, "SubmitACHPayment", **{**ACH_PAYMENT, "TransCode": 38, "Amount": 0})
    assert answer["Status"] == "success"
    [tx] = _ledger(sandbox)
    assert (tx["trans_code"], tx["amount"], tx["account_type"], tx["transaction_type"]) == ("38", "0.00", "Savings",
                                                                                            "debit")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"StartDate": "yesterday"}, "1024: Invalid StartDate"),
        ({"EndDate": "2026-01-01T00:00:00+00:00"}, "1024: Invalid date range"),
        ({"ReportType": "refunds"}, "1025: Invalid ReportType"),
    ],
)
def test_invalid_report_requests_are_refused(sandbox, settings, fields, message):
    body = {"StartDate": "2026-01-01T00:00:00+00:00", "EndDate": "2026-01-02T00:00:00+00:00",
            "ReportType": "transactions", **fields}
    assert _failure(_call(sandbox, settings, "GetTransactionList", **body)) == message


def test_naive_report_dates_are_read_as_utc(sandbox, settings):
    _call(sandbox, settings, "SubmitTokenPayment", **TOKEN_PAYMENT)
    created = datetime.fromisoformat(_ledger(sandbox)[0]["created_at"])
    naive = created.astimezone(UTC).replace(tzinfo=None)
    answer = _call(sandbox, settings, "GetTransactionList", StartDate=naive.isoformat(),
                   EndDate=(naive + timedelta(seconds=1)).isoformat(), ReportType="TRANSACTIONS")
    assert [tx["Confirmation"] for tx in answer["Transactions"]] == [_ledger(sandbox)[0]["confirmation"]]


# --- consistency --------------------------------------------------------------------------------------------------


def test_every_confirmation_is_found_and_listed_for_its_merchant(sandbox, settings):
    issued = [
        _call(sandbox, settings, "SubmitTokenPayment", "float_credit", **TOKEN_PAYMENT),
        _call(sandbox, settings, "PinlessCredit", "float_credit", **TOKEN_PAYMENT),
        _call(sandbox, settings, "SubmitACHPayment", "float_credit", **{**ACH_PAYMENT, "TransCode": "22"}),
        _call(sandbox, settings, "RTPCredit", "float_credit", RoutingNumber=ROUTING, AccountNumber="123456789",
              Amount="3.00", AdditionalSearch="ref-3"),
    ]
    confirmations = [answer["Confirmation"] for answer in issued]
    refund = _call(sandbox, settings, "SubmitCCVoid", "float_credit", ConfirmationID=confirmations[0], Amount="1.00")
    confirmations.append(refund["Confirmation"])
    assert all(answer["Status"] == "success" for answer in issued)
    assert len(set(confirmations)) == 5

    ledger = _ledger(sandbox)
    assert [tx["confirmation"] for tx in ledger] == confirmations
    for confirmation in confirmations:
        [detail] = _call(sandbox, settings, "GetTransactionDetails", "float_credit",
                         Confirmation=confirmation)["Transactions"]
        assert detail["Confirmation"] == confirmation
    times = [datetime.fromisoformat(tx["created_at"]) for tx in ledger]
    listed = _call(sandbox, settings, "GetTransactionList", "float_credit", StartDate=min(times).isoformat(),
                   EndDate=(max(times) + timedelta(microseconds=1)).isoformat(), ReportType="transactions")
    assert [tx["Confirmation"] for tx in listed["Transactions"]] == confirmations
    assert [tx["TransactionType"] for tx in listed["Transactions"]] == ["debit", "credit", "credit", "credit",
                                                                         "credit"]
    # credits (pinless 5.00, ACH 5.00, RTP 3.00) came out of the float credit balance; the refund did not
    balance = _call(sandbox, settings, "GetPrefundingBalance", "float_credit")["Balance"]
    assert balance == "99987.00"
    # another merchant account sees none of it
    other = _call(sandbox, settings, "GetTransactionList", "loan", StartDate=min(times).isoformat(),
                  EndDate=(max(times) + timedelta(microseconds=1)).isoformat(), ReportType="transactions")
    assert other["Transactions"] == []


def test_details_answer_uses_additional_search1_and_list_additional_search(sandbox, settings):
    confirmation = _call(sandbox, settings, "SubmitTokenPayment", **TOKEN_PAYMENT)["Confirmation"]
    [detail] = _call(sandbox, settings, "GetTransactionDetails", AdditionalSearch="ref-1")["Transactions"]
    assert (detail["Confirmation"], detail["AdditionalSearch1"], detail["Amount"]) == (confirmation, "ref-1", "5.00")
    now = datetime.now(UTC)
    [item] = _call(sandbox, settings, "GetTransactionList", StartDate=(now - timedelta(hours=1)).isoformat(),
                   EndDate=(now + timedelta(hours=1)).isoformat(), ReportType="transactions")["Transactions"]
    assert item["AdditionalSearch"] == "ref-1"
    assert "AdditionalSearch1" not in item


# --- time ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("submitted", "returned"),
    [
        ("2026-03-10T14:00:00+00:00", "2026-03-11T15:00:00+00:00"),  # 09:00 CDT -> next day 10:00 CDT
        ("2026-03-11T04:30:00+00:00", "2026-03-11T15:00:00+00:00"),  # still the 10th in Chicago (23:30 CDT)
        ("2026-01-15T23:59:00+00:00", "2026-01-16T16:00:00+00:00"),  # 17:59 CST -> next day 10:00 CST
    ],
)
def test_return_time_is_10_central_on_the_next_central_day(submitted, returned):
    assert return_time(datetime.fromisoformat(submitted)) == datetime.fromisoformat(returned)


def test_return_waits_for_the_clock(sandbox, settings):
    _call(sandbox, settings, "SubmitACHPayment", "float_debit", **{**ACH_PAYMENT, "AccountNumber": "55559901"})
    [tx] = _ledger(sandbox)
    returns_at = datetime.fromisoformat(tx["returns_at"])
    assert returns_at == return_time(datetime.fromisoformat(tx["created_at"]))
    assert (tx["status"], tx["return_code"]) == ("settled", "R01")
    now = datetime.fromisoformat(sandbox.control("GET", "clock")["now"])
    sandbox.advance(seconds=(returns_at - now).total_seconds() - 60)
    assert _ledger(sandbox)[0]["status"] == "settled"
    sandbox.advance(seconds=61)
    assert _ledger(sandbox)[0]["status"] == "returned"
    [detail] = _call(sandbox, settings, "GetTransactionDetails", "float_debit",
                     Confirmation=tx["confirmation"])["Transactions"]
    assert (detail["Status"], detail["ReturnCode"]) == ("returned", "R01")


# --- control routes -----------------------------------------------------------------------------------------------


def test_chargeback_control_errors(sandbox, settings):
    card = _call(sandbox, settings, "SubmitTokenPayment", **TOKEN_PAYMENT)["Confirmation"]
    ach = _call(sandbox, settings, "SubmitACHPayment", **ACH_PAYMENT)["Confirmation"]
    url = f"{sandbox.url}/_control/usio/chargeback"
    assert requests.post(url, json={}, timeout=10).status_code == 400
    assert requests.post(url, json={"confirmation": "UNOSUCH"}, timeout=10).status_code == 404
    assert requests.post(url, json={"confirmation": ach}, timeout=10).status_code == 409
    assert requests.post(url, json={"confirmation": card}, timeout=10).status_code == 200
    assert requests.post(url, json={"confirmation": card}, timeout=10).status_code == 409  # only once
    statuses = {tx["confirmation"]: tx["status"] for tx in _ledger(sandbox)}
    assert statuses == {card: "chargeback", ach: "settled"}


@pytest.mark.parametrize("balance", ["-1.00", "1.234", "abc", None])
def test_balance_control_validates(sandbox, settings, balance):
    merchant = settings.USIO_ACCOUNTS["loan"]["merchant_id"]
    response = requests.put(f"{sandbox.url}/_control/usio/balances/{merchant}", json={"balance": balance}, timeout=10)
    assert response.status_code == 400
    assert sandbox.control("GET", "usio/balances")["balances"][merchant] == "100000.00"


def test_balance_control_of_unknown_merchant_is_404(sandbox):
    response = requests.put(f"{sandbox.url}/_control/usio/balances/12345", json={"balance": "1.00"}, timeout=10)
    assert response.status_code == 404
    assert "12345" not in sandbox.control("GET", "usio/balances")["balances"]


def test_balances_list_every_configured_merchant(sandbox, settings):
    balances = sandbox.control("GET", "usio/balances")["balances"]
    assert set(balances) == {account["merchant_id"] for account in settings.USIO_ACCOUNTS.values()}
    assert set(balances.values()) == {"100000.00"}


def test_reset_forgets_ledger_balances_and_refreshed_tokens(sandbox, settings):
    merchant = settings.USIO_ACCOUNTS["subscription"]["merchant_id"]
    _call(sandbox, settings, "SubmitTokenPayment", **TOKEN_PAYMENT)
    sandbox.control("PUT", f"usio/balances/{merchant}", {"balance": "1.00"})
    refreshed = _call(sandbox, settings, "RefreshToken", "master", Token="decline_62")["Confirmation"]
    assert _failure(_call(sandbox, settings, "SubmitTokenPayment", **{**TOKEN_PAYMENT, "Token": refreshed})) == (
        "62: Restricted card")

    sandbox.reset()

    assert _ledger(sandbox) == []
    assert sandbox.control("GET", "usio/balances")["balances"][merchant] == "100000.00"
    # the refreshed token no longer stands for decline_62: it is just another (approved) token
    assert _call(sandbox, settings, "SubmitTokenPayment", **{**TOKEN_PAYMENT, "Token": refreshed})["Status"] == (
        "success")
