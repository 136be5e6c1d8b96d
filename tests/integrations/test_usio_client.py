"""The Usio client against the sandbox over real HTTP: every operation, every error class, no retries, no leaks."""

import json
import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from integrations.errors import (
    ProcessorAuthError,
    ProcessorConfigurationError,
    ProcessorDeclined,
    ProcessorProtocolError,
    ProcessorTimeout,
    ProcessorUnavailable,
)
from integrations.http import Exchange
from integrations.usio import UsioClient, UsioTransaction, usio_client
from integrations.usio import adapter as usio_adapter

ROUTING = "021000021"  # RTP-eligible in the sandbox's default configuration
NON_RTP_ROUTING = "122105278"


def _ref() -> str:
    return str(uuid.uuid4())


def _merchant(settings, name: str) -> str:
    return settings.USIO_ACCOUNTS[name]["merchant_id"]


def _ledger(sandbox) -> list[dict]:
    return sandbox.control("GET", "usio/ledger")["transactions"]


def _balances(sandbox) -> dict[str, str]:
    return sandbox.control("GET", "usio/balances")["balances"]


def _sandbox_now(sandbox) -> datetime:
    return datetime.fromisoformat(sandbox.control("GET", "clock")["now"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ach(client: UsioClient, *, account: str = "123456789", trans_code="27", amount=Decimal("25.00"), reference=None,
         **kwargs):
    return client.submit_ach_payment(routing_number=ROUTING, account_number=account, trans_code=trans_code,
                                     amount=amount, reference=reference or _ref(), first_name="Ada",
                                     last_name="Lovelace", **kwargs)


# --- submissions ----------------------------------------------------------------------------------------------


def test_token_payment_is_recorded_with_our_reference_and_no_secret_anywhere(sandbox, settings):
    reference = _ref()
    result = usio_client("subscription").submit_token_payment(token="tok-card-1111", amount=Decimal("12.34"),
                                                              reference=reference, description="Subscription")
    assert result.message == "Approved"
    [tx] = _ledger(sandbox)
    assert tx["confirmation"] == result.confirmation
    assert (tx["merchant_id"], tx["kind"], tx["transaction_type"], tx["amount"], tx["status"]) == (
        _merchant(settings, "subscription"), "card", "debit", "12.34", "settled")
    assert (tx["reference"], tx["account_code1"], tx["description"]) == (reference, reference, "Subscription")

    [logged] = sandbox.requests("usio", "usio.SubmitTokenPayment")
    assert logged["body"]["Amount"] == "12.34"
    assert logged["body"]["AdditionalSearch"] == reference
    assert logged["body"]["Password"] == logged["body"]["Login"] == logged["body"]["Token"] == "[REDACTED]"
    assert result.exchange.status == 200
    assert result.exchange.request_body["Password"] == "[REDACTED]"
    assert result.exchange.request_body["Token"] == "[REDACTED]"
    assert result.exchange.response_body["Confirmation"] == result.confirmation
    for text in (json.dumps(logged), json.dumps(result.exchange.as_dict())):
        assert "sandbox-subscription-password" not in text
        assert "tok-card-1111" not in text


def test_ach_debit_carries_every_field_and_masks_the_account(sandbox, settings):
    reference = _ref()
    result = _ach(usio_client("float_debit"), reference=reference, address1="1 Main St", city="Austin", state="TX",
                  zip_code="78701", email="ada@example.com", same_day_ach=True)
    [tx] = _ledger(sandbox)
    assert tx["confirmation"] == result.confirmation
    assert (tx["kind"], tx["transaction_type"], tx["trans_code"], tx["amount"]) == ("ach", "debit", "27", "25.00")
    assert (tx["account_mask"], tx["same_day_ach"], tx["standard_entry_code"]) == ("****6789", True, "WEB")
    assert tx["merchant_id"] == _merchant(settings, "float_debit")
    assert tx["reference"] == reference
    [logged] = sandbox.requests("usio", "usio.SubmitACHPayment")
    body = logged["body"]
    assert (body["AccountNumber"], body["RoutingNumber"]) == ("[REDACTED]", "[REDACTED]")
    assert (body["TransCode"], body["City"], body["Zip"], body["SameDayACH"]) == ("27", "Austin", "78701", "Y")
    assert result.exchange.request_body["AccountNumber"] == "[REDACTED]"
    assert "123456789" not in json.dumps(result.exchange.as_dict()) + json.dumps(logged)
    # debits do not move the prefunding balance
    assert _balances(sandbox)[_merchant(settings, "float_debit")] == "100000.00"


def test_ach_credit_is_paid_from_the_prefunding_balance(sandbox, settings):
    client = usio_client("float_credit")
    assert client.get_prefunding_balance().amount == Decimal("100000.00")
    _ach(client, trans_code=32, amount=Decimal("100.10"))
    [tx] = _ledger(sandbox)
    assert (tx["transaction_type"], tx["trans_code"]) == ("credit", "32")
    balance = client.get_prefunding_balance()
    assert balance.amount == Decimal("99899.90")
    assert balance.exchange.response_body["Balance"] == "99899.90"
    # another merchant account's balance is its own
    assert usio_client("loan").get_prefunding_balance().amount == Decimal("100000.00")


@pytest.mark.parametrize("trans_code", ["23", "28", "33", 38])
def test_prenotes_are_accepted_with_amount_zero(sandbox, trans_code):
    client = usio_client("subscription")
    result = _ach(client, trans_code=trans_code, amount=Decimal("0"))
    [tx] = _ledger(sandbox)
    assert (tx["confirmation"], tx["amount"], tx["trans_code"]) == (result.confirmation, "0.00", str(trans_code))
    assert sandbox.requests("usio", "usio.SubmitACHPayment")[0]["body"]["Amount"] == "0.00"
    assert client.get_prefunding_balance().amount == Decimal("100000.00")


@pytest.mark.parametrize(
    ("trans_code", "amount"),
    [
        ("26", Decimal("10.00")),  # not a NACHA code we use
        (99, Decimal("10.00")),
        (True, Decimal("10.00")),
        ("27", Decimal("0")),  # a debit needs a positive amount
        ("27", Decimal("-1.00")),
        ("27", Decimal("1.005")),  # more than two places
        ("27", 12.5),  # floats are refused: money is Decimal
        ("27", Decimal("NaN")),
        ("28", Decimal("1.00")),  # a prenote is exactly zero
    ],
)
def test_invalid_trans_code_or_amount_is_refused_before_sending(sandbox, trans_code, amount):
    with pytest.raises(ValueError):
        _ach(usio_client("subscription"), trans_code=trans_code, amount=amount)
    assert sandbox.requests("usio") == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"token": "tok-1", "amount": Decimal("0.001"), "reference": "r"},
        {"token": "tok-1", "amount": Decimal("0.00"), "reference": "r"},
        {"token": "", "amount": Decimal("1.00"), "reference": "r"},
        {"token": "tok-1", "amount": Decimal("1.00"), "reference": " "},
    ],
)
def test_invalid_card_payment_is_refused_before_sending(sandbox, kwargs):
    with pytest.raises(ValueError):
        usio_client("subscription").submit_token_payment(**kwargs)
    with pytest.raises(ValueError):
        usio_client("float_credit").pinless_credit(**kwargs)
    assert sandbox.requests("usio") == []


def test_invalid_bank_numbers_and_windows_are_refused_before_sending(sandbox):
    client = usio_client("float_credit")
    with pytest.raises(ValueError):
        client.rtp_account_check(routing_number="02100002", account_number="123456789")
    with pytest.raises(ValueError):
        client.rtp_credit(routing_number=ROUTING, account_number="12a456", amount=Decimal("1.00"), reference="r")
    now = datetime.now(UTC)
    with pytest.raises(ValueError):
        client.get_transaction_list(start=now, end=now, report_type="transactions")
    with pytest.raises(ValueError):
        client.get_transaction_list(start=now.replace(tzinfo=None), end=now.replace(tzinfo=None) + timedelta(1),
                                    report_type="transactions")
    with pytest.raises(ValueError):
        client.get_transaction_list(start=now, end=now + timedelta(1), report_type="achreturns")  # ours: ach_returns
    with pytest.raises(ValueError):
        client.get_transaction_details(confirmation="x", reference="y")
    assert sandbox.requests("usio") == []


def test_pinless_credit_pays_from_the_balance(sandbox, settings):
    client = usio_client("float_credit")
    reference = _ref()
    result = client.pinless_credit(token="tok-credit-22", amount=Decimal("40.00"), reference=reference)
    [tx] = _ledger(sandbox)
    assert (tx["confirmation"], tx["kind"], tx["transaction_type"], tx["reference"]) == (
        result.confirmation, "card", "credit", reference)
    assert client.get_prefunding_balance().amount == Decimal("99960.00")


def test_insufficient_prefunding_balance_is_declined_and_changes_nothing(sandbox, settings):
    merchant = _merchant(settings, "float_credit")
    sandbox.control("PUT", f"usio/balances/{merchant}", {"balance": "10.00"})
    client = usio_client("float_credit")
    with pytest.raises(ProcessorDeclined) as exc:
        client.pinless_credit(token="tok-credit-22", amount=Decimal("10.01"), reference=_ref())
    assert exc.value.code == "5040"
    assert _ledger(sandbox) == []
    assert client.get_prefunding_balance().amount == Decimal("10.00")
    client.pinless_credit(token="tok-credit-22", amount=Decimal("10.00"), reference=_ref())
    assert client.get_prefunding_balance().amount == Decimal("0.00")


def test_rtp_eligibility(sandbox):
    client = usio_client("float_credit")
    eligible = client.rtp_account_check(routing_number=ROUTING, account_number="123456789")
    assert (eligible.eligible, eligible.message) == (True, "Eligible")
    other = client.rtp_account_check(routing_number=NON_RTP_ROUTING, account_number="123456789")
    assert (other.eligible, other.message) == (False, "Not Eligible")
    assert _ledger(sandbox) == []


def test_rtp_credit_to_an_eligible_account(sandbox):
    client = usio_client("float_credit")
    reference = _ref()
    result = client.rtp_credit(routing_number=ROUTING, account_number="5550001234", amount=Decimal("75.25"),
                               reference=reference)
    [tx] = _ledger(sandbox)
    assert (tx["confirmation"], tx["kind"], tx["transaction_type"], tx["account_mask"], tx["reference"]) == (
        result.confirmation, "rtp", "credit", "****1234", reference)
    assert client.get_prefunding_balance().amount == Decimal("99924.75")


def test_rtp_credit_to_an_ineligible_account_is_declined_and_changes_nothing(sandbox):
    client = usio_client("float_credit")
    with pytest.raises(ProcessorDeclined) as exc:
        client.rtp_credit(routing_number=NON_RTP_ROUTING, account_number="5550001234", amount=Decimal("5.00"),
                          reference=_ref())
    assert exc.value.code == "5050"
    assert _ledger(sandbox) == []
    assert client.get_prefunding_balance().amount == Decimal("100000.00")


# --- refunds --------------------------------------------------------------------------------------------------


def test_partial_refunds_up_to_the_original_amount(sandbox):
    client = usio_client("subscription")
    original = client.submit_token_payment(token="tok-card-1", amount=Decimal("50.00"), reference=_ref())
    first = client.void_or_refund(confirmation_id=original.confirmation, amount=Decimal("20.00"))
    assert first.confirmation != original.confirmation
    with pytest.raises(ProcessorDeclined) as exc:
        client.void_or_refund(confirmation_id=original.confirmation, amount=Decimal("30.01"))
    assert exc.value.code == "5032"
    second = client.void_or_refund(confirmation_id=original.confirmation, amount=Decimal("30.00"))
    with pytest.raises(ProcessorDeclined):
        client.void_or_refund(confirmation_id=original.confirmation, amount=Decimal("0.01"))

    ledger = {tx["confirmation"]: tx for tx in _ledger(sandbox)}
    assert len(ledger) == 3  # the refused refunds recorded nothing
    assert ledger[original.confirmation]["refunded"] == "50.00"
    assert [ledger[c]["amount"] for c in (first.confirmation, second.confirmation)] == ["20.00", "30.00"]
    assert ledger[second.confirmation]["original_confirmation"] == original.confirmation

    [tx] = client.get_transaction_details(confirmation=original.confirmation).transactions
    assert tx.refunded_amount == Decimal("50.00")
    [refund] = client.get_transaction_details(confirmation=first.confirmation).transactions
    assert (refund.transaction_type, refund.amount, refund.original_confirmation) == (
        "credit", Decimal("20.00"), original.confirmation)


def test_refund_of_unknown_or_foreign_or_non_card_transaction_is_refused(sandbox):
    subscription = usio_client("subscription")
    original = subscription.submit_token_payment(token="tok-card-1", amount=Decimal("5.00"), reference=_ref())
    ach = _ach(subscription)
    with pytest.raises(ProcessorDeclined) as unknown:
        subscription.void_or_refund(confirmation_id="UNOSUCHCONFIRM", amount=Decimal("1.00"))
    assert (unknown.value.code, unknown.value.message) == ("5030", "Unable to locate record")
    with pytest.raises(ProcessorDeclined) as foreign:  # another merchant account's transaction
        usio_client("float_debit").void_or_refund(confirmation_id=original.confirmation, amount=Decimal("1.00"))
    assert foreign.value.code == "5030"
    with pytest.raises(ProcessorDeclined) as not_card:
        subscription.void_or_refund(confirmation_id=ach.confirmation, amount=Decimal("1.00"))
    assert not_card.value.code == "5031"
    assert len(_ledger(sandbox)) == 2
    assert all(tx["refunded"] == "0.00" for tx in _ledger(sandbox))


# --- lookups and reports --------------------------------------------------------------------------------------


def test_transaction_details_by_confirmation_and_by_reference(sandbox):
    client = usio_client("subscription")
    reference = _ref()
    result = client.submit_token_payment(token="tok-card-1", amount=Decimal("9.99"), reference=reference)
    [ledgered] = _ledger(sandbox)

    by_confirmation = client.get_transaction_details(confirmation=result.confirmation)
    by_reference = client.get_transaction_details(reference=reference)
    assert by_confirmation.transactions == by_reference.transactions
    [tx] = by_confirmation.transactions
    assert isinstance(tx, UsioTransaction)
    assert (tx.confirmation, tx.transaction_type, tx.amount, tx.status, tx.reference) == (
        result.confirmation, "debit", Decimal("9.99"), "settled", reference)
    assert tx.account_mask == ledgered["account_mask"]
    assert tx.account_mask.startswith("****")
    assert tx.transaction_date == datetime.fromisoformat(ledgered["created_at"])
    assert tx.return_code is None
    assert sandbox.requests("usio", "usio.GetTransactionDetails")[1]["body"]["AdditionalSearch"] == reference


def test_transaction_details_not_found_is_an_empty_answer(sandbox):
    client = usio_client("subscription")
    assert client.get_transaction_details(confirmation="UNOSUCHCONFIRM").transactions == ()
    assert client.get_transaction_details(reference=_ref()).transactions == ()
    # another merchant account's transaction is not found either
    other = usio_client("float_debit").submit_token_payment(token="tok-1", amount=Decimal("1.00"), reference=_ref())
    assert client.get_transaction_details(confirmation=other.confirmation).transactions == ()


def test_transaction_list_windows_are_half_open_on_the_transaction_date(sandbox):
    client = usio_client("subscription")
    reference = _ref()
    result = client.submit_token_payment(token="tok-card-1", amount=Decimal("3.00"), reference=reference)
    created = datetime.fromisoformat(_ledger(sandbox)[0]["created_at"])
    tick = timedelta(microseconds=1)

    def listed(start, end, client=client):
        return [tx.confirmation for tx in client.get_transaction_list(start=start, end=end,
                                                                      report_type="transactions").transactions]

    assert listed(created, created + tick) == [result.confirmation]
    assert listed(created - timedelta(hours=1), created) == []
    assert listed(created + tick, created + timedelta(hours=1)) == []
    assert listed(created - timedelta(minutes=35), created + timedelta(minutes=35),
                  client=usio_client("float_debit")) == []
    [tx] = client.get_transaction_list(start=created - timedelta(minutes=35), end=created + timedelta(minutes=1),
                                       report_type="transactions").transactions
    assert (tx.reference, tx.amount, tx.status, tx.transaction_type) == (reference, Decimal("3.00"), "settled",
                                                                         "debit")
    body = sandbox.requests("usio", "usio.GetTransactionList")[0]["body"]
    assert body["ReportType"] == "transactions"
    assert datetime.fromisoformat(body["StartDate"]) == created


def test_ach_return_appears_in_the_returns_report_once_the_clock_reaches_it(sandbox):
    client = usio_client("float_debit")
    reference = _ref()
    returned = _ach(client, account="12349903", reference=reference)
    fine = _ach(client, account="12340042")
    [tx, _] = _ledger(sandbox)
    created, returns_at = datetime.fromisoformat(tx["created_at"]), datetime.fromisoformat(tx["returns_at"])
    assert returns_at > created
    window = {"start": created - timedelta(days=1), "end": created + timedelta(days=3)}

    assert client.get_transaction_list(**window, report_type="ach_returns").transactions == ()
    statuses = {t.confirmation: t.status for t in client.get_transaction_list(**window, report_type="transactions")
                .transactions}
    assert statuses == {returned.confirmation: "settled", fine.confirmation: "settled"}

    sandbox.advance(seconds=(returns_at - _sandbox_now(sandbox)).total_seconds() + 1)

    [ret] = client.get_transaction_list(**window, report_type="ach_returns").transactions
    assert (ret.confirmation, ret.status, ret.return_code, ret.reference) == (returned.confirmation, "returned",
                                                                            "R03", reference)
    assert ret.return_date == returns_at
    assert ret.transaction_date == created
    # the returns report is windowed on the return date, not the submission date
    assert client.get_transaction_list(start=created - timedelta(hours=1), end=returns_at,
                                       report_type="ach_returns").transactions == ()
    [detail] = client.get_transaction_details(confirmation=returned.confirmation).transactions
    assert (detail.status, detail.return_code) == ("returned", "R03")
    [ok] = client.get_transaction_details(confirmation=fine.confirmation).transactions
    assert (ok.status, ok.return_code) == ("settled", None)


def test_ach_rejected_at_once_is_declined_with_the_return_code(sandbox):
    with pytest.raises(ProcessorDeclined) as exc:
        _ach(usio_client("float_debit"), account="12349802")
    assert (exc.value.code, exc.value.message) == ("R02", "Account closed")
    assert _ledger(sandbox) == []
    assert len(sandbox.requests("usio", "usio.SubmitACHPayment")) == 1


def test_chargeback_via_control_shows_in_the_chargebacks_report(sandbox):
    client = usio_client("subscription")
    result = client.submit_token_payment(token="tok-card-1", amount=Decimal("60.00"), reference=_ref())
    now = _sandbox_now(sandbox)
    window = {"start": now - timedelta(hours=1), "end": now + timedelta(hours=1)}
    assert client.get_transaction_list(**window, report_type="chargebacks").transactions == ()

    charged = sandbox.control("POST", "usio/chargeback", {"confirmation": result.confirmation, "code": "4837"})
    assert charged["status"] == "chargeback"

    [cb] = client.get_transaction_list(**window, report_type="chargebacks").transactions
    assert (cb.confirmation, cb.status, cb.return_code) == (result.confirmation, "chargeback", "4837")
    assert cb.chargeback_date is not None
    [tx] = client.get_transaction_list(**window, report_type="transactions").transactions
    assert tx.status == "chargeback"
    with pytest.raises(ProcessorDeclined) as exc:  # a charged-back payment cannot be refunded any more
        client.void_or_refund(confirmation_id=result.confirmation, amount=Decimal("1.00"))
    assert exc.value.code == "5031"


def test_balance_set_through_control(sandbox, settings):
    sandbox.control("PUT", f"usio/balances/{_merchant(settings, 'loan')}", {"balance": "123.45"})
    balance = usio_client("loan").get_prefunding_balance()
    assert balance.amount == Decimal("123.45")
    assert usio_client("float_credit").get_prefunding_balance().amount == Decimal("100000.00")


def test_token_refresh_gives_a_new_token_that_stays_out_of_audit(sandbox):
    client = usio_client("master")
    refreshed = client.refresh_token(token="tok-card-7777")
    assert refreshed.token.startswith("tok_")
    assert refreshed.token != "tok-card-7777"
    assert refreshed.token not in repr(refreshed)
    assert refreshed.exchange.response_body["Confirmation"] == "[REDACTED]"
    assert refreshed.token not in json.dumps(refreshed.exchange.as_dict())
    assert refreshed.exchange.request_body["Token"] == "[REDACTED]"

    # both tokens pay, for the same card
    payer = usio_client("subscription")
    new = payer.submit_token_payment(token=refreshed.token, amount=Decimal("1.00"), reference=_ref())
    old = payer.submit_token_payment(token="tok-card-7777", amount=Decimal("1.00"), reference=_ref())
    masks = {tx["confirmation"]: tx["account_mask"] for tx in _ledger(sandbox)}
    assert masks[new.confirmation] == masks[old.confirmation]


def test_refreshed_token_keeps_the_scripted_outcome_and_unknown_is_refused(sandbox):
    client = usio_client("master")
    refreshed = client.refresh_token(token="decline_51")
    with pytest.raises(ProcessorDeclined) as exc:
        usio_client("subscription").submit_token_payment(token=refreshed.token, amount=Decimal("1.00"),
                                                         reference=_ref())
    assert exc.value.code == "51"
    with pytest.raises(ProcessorDeclined) as unknown:
        client.refresh_token(token="unknown")
    assert unknown.value.code == "5030"
    assert _ledger(sandbox) == []


# --- errors ---------------------------------------------------------------------------------------------------


def test_refused_port_is_unavailable(sandbox, settings):
    settings.USIO_BASE_URL = f"http://127.0.0.1:{_free_port()}/usio"
    with pytest.raises(ProcessorUnavailable) as exc:
        usio_client("subscription").submit_token_payment(token="tok-1", amount=Decimal("1.00"), reference=_ref())
    assert exc.value.retryable is True
    assert (exc.value.exchange.status, exc.value.exchange.error) == (None, "could not connect")
    assert exc.value.exchange.request_body["Password"] == "[REDACTED]"
    assert sandbox.requests("usio") == []


def test_http_500_is_unavailable_nothing_processed_and_not_retried(sandbox):
    sandbox.fault("usio.SubmitTokenPayment", "500")
    with pytest.raises(ProcessorUnavailable) as exc:
        usio_client("subscription").submit_token_payment(token="tok-1", amount=Decimal("1.00"), reference=_ref())
    assert exc.value.exchange.status == 500
    [logged] = sandbox.requests("usio")
    assert (logged["status"], logged["fault"]) == (500, "500")
    assert _ledger(sandbox) == []


def test_timeout_token_is_processed_but_the_answer_never_comes(sandbox):
    reference = _ref()
    started = time.monotonic()
    with pytest.raises(ProcessorTimeout) as exc:
        usio_client("subscription").submit_token_payment(token="timeout", amount=Decimal("8.00"), reference=reference)
    assert time.monotonic() - started < 3.0  # the client gave up at its read timeout, before the sandbox answered
    assert exc.value.retryable is False
    # outcome unknown, not "nothing happened": the sandbox did record it, and our reference finds it
    [tx] = _ledger(sandbox)
    assert (tx["reference"], tx["amount"], tx["status"]) == (reference, "8.00", "settled")
    [found] = usio_client("subscription").get_transaction_details(reference=reference).transactions
    assert found.confirmation == tx["confirmation"]
    # exactly one request: never retried (the hung answer is logged once it is sent)
    assert len(sandbox.wait_for_requests("usio.SubmitTokenPayment")) == 1
    time.sleep(0.3)
    assert len(sandbox.requests("usio", "usio.SubmitTokenPayment")) == 1


def test_timeout_fault_is_processed_and_not_retried(sandbox):
    sandbox.fault("usio.SubmitACHPayment", "timeout")
    reference = _ref()
    with pytest.raises(ProcessorTimeout):
        _ach(usio_client("float_debit"), reference=reference)
    [tx] = _ledger(sandbox)
    assert tx["reference"] == reference
    [logged] = sandbox.requests("usio")
    assert logged["fault"] == "timeout"


def test_malformed_answer_is_a_protocol_error_and_the_payment_was_processed(sandbox):
    sandbox.fault("usio.SubmitTokenPayment", "malformed")
    with pytest.raises(ProcessorProtocolError) as exc:
        usio_client("subscription").submit_token_payment(token="tok-1", amount=Decimal("2.00"), reference=_ref())
    assert exc.value.exchange.status == 200
    assert len(_ledger(sandbox)) == 1
    assert len(sandbox.requests("usio")) == 1


def test_unexpected_http_status_is_a_protocol_error(sandbox, settings):
    settings.USIO_BASE_URL = f"{sandbox.url}/usio/2.0/payments.svc/JSON"  # the sandbox has no such endpoint: 404
    with pytest.raises(ProcessorProtocolError) as exc:
        usio_client("subscription").get_prefunding_balance()
    assert exc.value.exchange.status == 404
    assert _ledger(sandbox) == []


def test_wrong_password_is_an_auth_error_and_changes_nothing(sandbox, settings):
    accounts = {name: dict(account) for name, account in settings.USIO_ACCOUNTS.items()}
    accounts["subscription"]["password"] = "not-the-password"
    settings.USIO_ACCOUNTS = accounts
    with pytest.raises(ProcessorAuthError) as exc:
        usio_client("subscription").submit_token_payment(token="tok-1", amount=Decimal("1.00"), reference=_ref())
    assert exc.value.message == "Invalid credentials"
    assert exc.value.exchange.request_body["Password"] == "[REDACTED]"
    assert "not-the-password" not in json.dumps(exc.value.exchange.as_dict())
    assert "not-the-password" not in json.dumps(sandbox.requests("usio"))
    assert _ledger(sandbox) == []


@pytest.mark.parametrize(("token", "code", "message"), [("decline_51", "51", "Insufficient funds"),
                                                         ("decline_05", "05", "Do not honor"),
                                                         ("unknown", "5030", "Unable to locate record")])
def test_declines_carry_usios_code_and_record_nothing(sandbox, token, code, message):
    with pytest.raises(ProcessorDeclined) as exc:
        usio_client("subscription").submit_token_payment(token=token, amount=Decimal("1.00"), reference=_ref())
    assert (exc.value.code, exc.value.message) == (code, message)
    assert exc.value.exchange.response_body["Status"] == "failure"
    assert _ledger(sandbox) == []
    assert len(sandbox.requests("usio")) == 1


def test_configuration_errors(settings):
    with pytest.raises(ProcessorConfigurationError):
        usio_client("no-such-account")
    accounts = {name: dict(account) for name, account in settings.USIO_ACCOUNTS.items()}
    accounts["loan"]["password"] = ""
    settings.USIO_ACCOUNTS = accounts
    with pytest.raises(ProcessorConfigurationError) as exc:
        usio_client("loan")
    assert "password" in str(exc.value)
    settings.USIO_BASE_URL = ""
    with pytest.raises(ProcessorConfigurationError):
        usio_client("subscription")


def test_client_repr_has_no_credentials(settings):
    text = repr(usio_client("subscription"))
    assert "subscription" in text
    assert settings.USIO_ACCOUNTS["subscription"]["password"] not in text
    assert settings.USIO_ACCOUNTS["subscription"]["login"] not in text


# --- logs -----------------------------------------------------------------------------------------------------


def test_logs_name_the_call_but_never_credentials_tokens_or_account_numbers(sandbox, settings, json_lines):
    reference = _ref()
    secrets = ["tok-logcheck-card", "987654321012", settings.USIO_ACCOUNTS["float_debit"]["password"],
               settings.USIO_ACCOUNTS["float_debit"]["login"], settings.USIO_ACCOUNTS["master"]["password"]]
    usio_client("float_debit").submit_token_payment(token=secrets[0], amount=Decimal("1.00"), reference=reference)
    _ach(usio_client("float_debit"), account=secrets[1], reference=reference)
    refreshed = usio_client("master").refresh_token(token=secrets[0])
    with pytest.raises(ProcessorDeclined):
        usio_client("float_debit").submit_token_payment(token="decline_51", amount=Decimal("1.00"), reference=reference)

    lines = [line for line in json_lines() if line["logger"] == "integrations.usio"]
    outcomes = [(line["operation"], line["outcome"]) for line in lines]
    assert outcomes == [("SubmitTokenPayment", "success"), ("SubmitACHPayment", "success"),
                        ("RefreshToken", "success"), ("SubmitTokenPayment", "ProcessorDeclined")]
    assert lines[0]["reference"] == reference
    assert lines[0]["usio_account"] == "float_debit"
    assert lines[-1]["usio_code"] == "51"
    assert lines[-1]["level"] == "WARNING"
    # the message is readable: not mistaken for a "token: value" pair by the redaction filter
    assert lines[0]["message"] == "usio SubmitTokenPayment -> success"
    text = "\n".join(json.dumps(line) for line in json_lines())
    for secret in [*secrets, refreshed.token]:
        assert secret not in text


# --- adapter: answers the sandbox never gives ------------------------------------------------------------------

_EXCHANGE = Exchange(processor="usio", operation="probe", method="POST", url="http://usio.test/probe",
                     request_body=None, status=200)


@pytest.mark.parametrize(
    "answer",
    [
        [],  # not an object
        {"Confirmation": "U1", "Message": ""},  # no Status
        {"Confirmation": "U1", "Message": "", "Status": "maybe"},
        {"Confirmation": "", "Message": "Approved", "Status": "success"},  # success without a Confirmation
    ],
)
def test_answers_without_status_or_required_fields_are_protocol_errors(answer):
    with pytest.raises(ProcessorProtocolError):
        usio_adapter.payment_result(answer, operation="probe", exchange=_EXCHANGE)


@pytest.mark.parametrize(
    "answer",
    [
        {"Status": "success", "Message": ""},  # no Balance
        {"Status": "success", "Message": "", "Balance": "lots"},
    ],
)
def test_balance_answers_without_a_number_are_protocol_errors(answer):
    with pytest.raises(ProcessorProtocolError):
        usio_adapter.balance(answer, operation="probe", exchange=_EXCHANGE)


@pytest.mark.parametrize(
    "item",
    [
        {"Confirmation": "U1", "TransactionType": "refund", "Amount": "1.00", "Status": "settled",
         "TransactionDate": "2026-11-20T17:00:00+00:00"},
        {"Confirmation": "U1", "TransactionType": "debit", "Amount": "1.00", "Status": "lost",
         "TransactionDate": "2026-11-20T17:00:00+00:00"},
        {"Confirmation": "U1", "TransactionType": "debit", "Amount": "1.00", "Status": "settled",
         "TransactionDate": "yesterday"},
        {"TransactionType": "debit", "Amount": "1.00", "Status": "settled",
         "TransactionDate": "2026-11-20T17:00:00+00:00"},
    ],
)
def test_unreadable_transactions_are_protocol_errors(item):
    with pytest.raises(ProcessorProtocolError):
        usio_adapter.transaction_list({"Status": "success", "Transactions": [item]}, operation="probe",
                                      exchange=_EXCHANGE)
    with pytest.raises(ProcessorProtocolError):
        usio_adapter.transaction_list({"Status": "success"}, operation="probe", exchange=_EXCHANGE)


def test_rtp_answer_must_say_eligible_or_not():
    with pytest.raises(ProcessorProtocolError):
        usio_adapter.rtp_eligibility({"Status": "success", "Message": "Maybe"}, operation="probe",
                                     exchange=_EXCHANGE)


@pytest.mark.parametrize(
    ("message", "code", "text"),
    [("5030: Unable to locate record", "5030", "Unable to locate record"), ("R02: Account closed", "R02",
                                                                            "Account closed"),
     ("51:Insufficient funds", "51", "Insufficient funds"), ("Something odd", "unknown", "Something odd"),
     ("", "unknown", "")],
)
def test_failure_codes_are_split_from_the_message(message, code, text):
    with pytest.raises(ProcessorDeclined) as exc:
        usio_adapter.check_envelope({"Status": "failure", "Message": message, "Confirmation": ""},
                                    operation="probe", exchange=_EXCHANGE)
    assert exc.value.code == code
    assert exc.value.message == (text or "declined")


# --- a large report, streamed ---------------------------------------------------------------------------------------

def test_a_large_report_is_read_as_it_streams_with_the_records_and_audit_of_the_whole_answer(sandbox):
    client = usio_client("float_debit")
    start = _sandbox_now(sandbox) - timedelta(minutes=1)
    for index in range(60):  # ~27 KB of answer: more than the audit record keeps (20,000 bytes)
        _ach(client, amount=Decimal("1.00") + index, reference=f"stream-{index}")
    end = _sandbox_now(sandbox) + timedelta(minutes=1)

    report = client.get_transaction_report(start=start, end=end, report_type="transactions")
    listed = client.get_transaction_list(start=start, end=end, report_type="transactions")

    assert [record for page in report.pages(7) for record in page] == list(listed.transactions)
    assert [record.reference for record in listed.transactions] == [f"stream-{index}" for index in range(60)]
    # The same audit record as the answer read whole: its first 20,000 bytes (cut: not JSON, kept as text).
    assert isinstance(report.exchange.response_body, str) and len(report.exchange.response_body) == 20_000
    assert (report.exchange.status, report.exchange.response_body) == (200, listed.exchange.response_body)
    [first, second] = sandbox.requests("usio", "usio.GetTransactionList")
    assert (first["status"], second["status"]) == (200, 200)


class _CutOffServer:
    """An HTTP server that answers 200 with the first ``sent`` bytes of a chunked JSON body, then closes."""

    def __init__(self, sent: int):
        self.sent = sent
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            while len(body) < length:
                body += conn.recv(65536)
            text = b'{"Status": "success", "Message": "", "Transactions": [' + b'{"Confirmation": "x"}, ' * 5000
            part = text[:self.sent]
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                         + f"{len(part):x}\r\n".encode() + part + b"\r\n")
            time.sleep(0.2)  # then the connection closes without the last chunk

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("sent", [1_000, 60_000])  # within the audit record's bytes, and after them
def test_a_report_cut_off_while_it_streams_is_a_timeout_with_the_answer_s_status(settings, sent):
    server = _CutOffServer(sent)
    settings.USIO_BASE_URL = f"http://127.0.0.1:{server.port}/usio"
    now = datetime.now(UTC)
    try:
        with pytest.raises(ProcessorTimeout) as exc:
            usio_client("float_debit").get_transaction_report(start=now - timedelta(hours=1), end=now,
                                                              report_type="transactions")
    finally:
        server.close()
    assert (exc.value.exchange.status, exc.value.exchange.error) == (200, "connection lost while the answer was read")
    assert exc.value.exchange.request_body["Password"] == "[REDACTED]"
