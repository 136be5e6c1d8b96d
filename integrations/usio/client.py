"""Usio Payments API 2.0 client: one instance per merchant account (processors.md, "Usio").

Transport (known): every operation is ``POST {USIO_BASE_URL}/{Operation}`` with a JSON body that carries the
merchant account's ``MerchantID``, ``Login`` and ``Password`` (no auth header). Usio answers HTTP 200 even for
failures; ``integrations.usio.adapter`` reads the envelope and raises the typed errors. Nothing is retried: a
timeout leaves the outcome unknown and the caller looks the transaction up by our reference
(``get_transaction_details(reference=…)``).

Arguments are validated before anything is sent (``ValueError``): amounts are ``Decimal`` with at most two
places, positive (prenotes: exactly 0), sent as a decimal string (``"12.34"``); routing numbers 9 digits,
account numbers 4-17 digits; NACHA transaction codes 22/27/32/37 and prenotes 23/28/33/38.

Logging: one line per call (logger ``integrations.usio``) with only the operation, our account name, our
reference, the outcome, the Usio code of a refusal and the duration — never credentials, tokens, account or
routing numbers. The audit ``Exchange`` is redacted by ``integrations.http``; RefreshToken's new token (its
``Confirmation``) is removed from it here.
"""

from __future__ import annotations

import codecs
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from django.conf import settings

from core.redaction import REDACTED
from integrations.errors import (
    ProcessorConfigurationError,
    ProcessorError,
    ProcessorProtocolError,
)
from integrations.http import DEFAULT_KEEPALIVE_SECONDS, Exchange, HttpClient
from integrations.usio import adapter
from integrations.usio.adapter import (
    UsioBalance,
    UsioPaymentResult,
    UsioRtpEligibility,
    UsioTokenRefresh,
    UsioTransactionList,
)

logger = logging.getLogger("integrations.usio")

T = TypeVar("T")

#: NACHA transaction codes (processors.md): 22/27 checking credit/debit, 32/37 savings credit/debit.
ACH_TRANS_CODES = frozenset({"22", "27", "32", "37"})
#: Zero-dollar prenotes: 23/28 checking credit/debit, 33/38 savings credit/debit.
PRENOTE_TRANS_CODES = frozenset({"23", "28", "33", "38"})

_CENT = Decimal("0.01")
_ROUTING = re.compile(r"^\d{9}$")
_ACCOUNT = re.compile(r"^\d{4,17}$")


def _amount(amount: Decimal, *, prenote: bool = False) -> str:
    """The wire amount ``"12.34"``; ``ValueError`` for a non-Decimal, > 2 places, ≤ 0 (prenote: ≠ 0)."""
    if isinstance(amount, bool) or not isinstance(amount, Decimal) or not amount.is_finite():
        raise ValueError("amount must be a finite Decimal")
    try:
        cents = amount.quantize(_CENT)
    except InvalidOperation as exc:
        raise ValueError("amount is too large") from exc
    if cents != amount:
        raise ValueError("amount must have at most two decimal places")
    if prenote and cents != 0:
        raise ValueError("a prenote amount must be 0")
    if not prenote and cents <= 0:
        raise ValueError("amount must be positive")
    return f"{cents + 0:f}"  # "+ 0" turns -0.00 into 0.00


def _text(value: str, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} is required")
    return value.strip()


def _digits(value: str, pattern: re.Pattern, name: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ValueError(f"{name} has an invalid format")
    return value


def _yes_no(flag: bool) -> str:
    return "Y" if flag else "N"


def _iso(moment: datetime, name: str) -> str:
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return moment.astimezone(UTC).isoformat()


def _without_confirmation(exchange: Exchange | None) -> Exchange | None:
    """The exchange with the answer's ``Confirmation`` (RefreshToken: the new token) redacted."""
    if exchange is None or exchange.response_body in (None, ""):
        return exchange
    body = exchange.response_body
    if isinstance(body, dict):
        return replace(exchange, response_body={**body, "Confirmation": REDACTED}) if "Confirmation" in body \
            else exchange
    return replace(exchange, response_body=REDACTED)  # not JSON: the text may hold the token


def _texts(chunks: Iterable[bytes]) -> Iterator[str]:
    """The answer's text as its bytes arrive (JSON is UTF-8, RFC 8259; a BOM is tolerated as ``requests`` does).
    Bytes that are not UTF-8 raise ``UnicodeDecodeError`` (the adapter's "answer is not valid JSON")."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    for chunk in chunks:
        yield decoder.decode(chunk)
    yield decoder.decode(b"", final=True)


def _report_fields(start: datetime, end: datetime, report_type: str) -> dict:
    """The ``GetTransactionList`` fields of a window; a bad report type or window → ``ValueError`` (nothing sent)."""
    if report_type not in adapter.REPORT_TYPES:
        raise ValueError(f"report_type must be one of {sorted(adapter.REPORT_TYPES)}")
    start_text, end_text = _iso(start, "start"), _iso(end, "end")
    if end <= start:
        raise ValueError("end must be after start")
    return {"StartDate": start_text, "EndDate": end_text, "ReportType": adapter.REPORT_TYPES[report_type]}


class UsioClient(HttpClient):
    """The Usio API for one merchant account. Methods are keyword-only and validate before sending."""

    processor = "usio"

    def __init__(self, *, merchant_id: str, login: str, password: str, base_url: str, connect_timeout: float,
                 read_timeout: float, account_name: str = "", **kwargs):
        missing = [name for name, value in (("merchant_id", merchant_id), ("login", login), ("password", password))
                   if not value]
        if missing:
            raise ProcessorConfigurationError(f"Usio account {account_name!r}: {', '.join(missing)} not configured",
                                              processor=self.processor, operation="configure")
        super().__init__(base_url=base_url, connect_timeout=connect_timeout, read_timeout=read_timeout, **kwargs)
        self.account_name = account_name
        self.merchant_id = merchant_id
        self._login = login
        self._password = password

    def __repr__(self) -> str:
        return f"UsioClient(account={self.account_name!r}, base_url={self.base_url!r})"

    # --- transport ------------------------------------------------------------------------------------------
    def _call(self, operation: str, fields: dict[str, Any], parse: Callable[..., T], *, reference: str | None = None,
              secret_answer: bool = False, text_body: bool = False) -> T:
        """POST one operation and parse the answer; log the outcome (never the body). ``text_body``: ``parse``
        gets the answer's text, not its decoded JSON (it decodes it itself, piece by piece)."""
        body = {"MerchantID": self.merchant_id, "Login": self._login, "Password": self._password}
        body.update({key: value for key, value in fields.items() if value is not None})
        started = time.perf_counter()
        try:
            if text_body:
                response, exchange, chunks = self._send_streamed("POST", operation, operation=operation,
                                                                 json_body=body)
            else:
                response, exchange = self._send("POST", operation, operation=operation, json_body=body)
            if secret_answer:
                exchange = _without_confirmation(exchange)
            if response.status_code != 200:
                response.close()
                raise ProcessorProtocolError(f"unexpected HTTP {response.status_code}", processor=self.processor,
                                             operation=operation, exchange=exchange)
            if text_body:
                with response:  # read to the end, or closed: its connection is never reused half-read
                    result = parse(_texts(chunks), operation=operation, exchange=exchange)
            else:
                result = parse(self.json_body(response, exchange, operation=operation), operation=operation,
                               exchange=exchange)
        except ProcessorError as exc:
            if secret_answer:
                exc.exchange = _without_confirmation(exc.exchange)
            self._log(logging.WARNING, operation, type(exc).__name__, started, reference=reference,
                      code=getattr(exc, "code", None))
            raise
        self._log(logging.INFO, operation, "success", started, reference=reference)
        return result

    def _log(self, level: int, operation: str, outcome: str, started: float, *, reference: str | None,
             code: str | None = None) -> None:
        extra = {"processor": self.processor, "operation": operation, "usio_account": self.account_name,
                 "outcome": outcome, "duration_ms": round((time.perf_counter() - started) * 1000, 1)}
        if reference:
            extra["reference"] = reference
        if code:
            extra["usio_code"] = code
        logger.log(level, "usio %s -> %s", operation, outcome, extra=extra)

    # --- payments -------------------------------------------------------------------------------------------
    def submit_token_payment(self, *, token: str, amount: Decimal, reference: str, description: str | None = None,
                             same_day_ach: bool = False) -> UsioPaymentResult:
        """Pinless debit with the card's debit token (``SubmitTokenPayment``, processors.md).

        Our payment id goes in ``AdditionalSearch`` and ``AccountCode1``. Declines raise ``ProcessorDeclined``
        with Usio's code (``51``…); a timeout leaves the outcome unknown (look it up by ``reference``).
        """
        reference = _text(reference, "reference")
        fields = {"Token": _text(token, "token"), "Amount": _amount(amount), "AdditionalSearch": reference,
                  "AccountCode1": reference, "Description": description, "SameDayACH": _yes_no(same_day_ach)}
        return self._call("SubmitTokenPayment", fields, adapter.payment_result, reference=reference)

    def submit_ach_payment(self, *, routing_number: str, account_number: str, trans_code: str | int,
                           amount: Decimal, reference: str, first_name: str, last_name: str,
                           address1: str | None = None, city: str | None = None, state: str | None = None,
                           zip_code: str | None = None, email: str | None = None,
                           same_day_ach: bool = False) -> UsioPaymentResult:
        """ACH debit, credit or prenote (``SubmitACHPayment``, processors.md), SEC code ``WEB``.

        ``trans_code`` is the NACHA code: 22/27 checking credit/debit, 32/37 savings credit/debit, prenotes
        23/28/33/38 (amount exactly 0). An immediate rejection raises ``ProcessorDeclined`` with the ``Rnn`` code;
        returns come later through ``get_transaction_list(report_type="ach_returns")``.
        """
        code = str(trans_code).strip() if isinstance(trans_code, str | int) and not isinstance(trans_code, bool) \
            else ""
        if code not in ACH_TRANS_CODES | PRENOTE_TRANS_CODES:
            raise ValueError("trans_code must be one of 22, 27, 32, 37 or the prenotes 23, 28, 33, 38")
        reference = _text(reference, "reference")
        fields = {
            "RoutingNumber": _digits(routing_number, _ROUTING, "routing_number"),
            "AccountNumber": _digits(account_number, _ACCOUNT, "account_number"),
            "TransCode": code,
            "Amount": _amount(amount, prenote=code in PRENOTE_TRANS_CODES),
            "StandardEntryCode": "WEB",
            "SameDayACH": _yes_no(same_day_ach),
            "FirstName": _text(first_name, "first_name"),
            "LastName": _text(last_name, "last_name"),
            "Address1": address1, "City": city, "State": state, "Zip": zip_code, "EmailAddress": email,
            "AdditionalSearch": reference,
            "AccountCode1": reference,
        }
        return self._call("SubmitACHPayment", fields, adapter.payment_result, reference=reference)

    def pinless_credit(self, *, token: str, amount: Decimal, reference: str) -> UsioPaymentResult:
        """Push to card with the credit token (``PinlessCredit``; fields assumed as SubmitTokenPayment's).

        Paid from this merchant account's prefunding balance (insufficient → ``ProcessorDeclined``).
        """
        reference = _text(reference, "reference")
        fields = {"Token": _text(token, "token"), "Amount": _amount(amount), "AdditionalSearch": reference,
                  "AccountCode1": reference}
        return self._call("PinlessCredit", fields, adapter.payment_result, reference=reference)

    def rtp_account_check(self, *, routing_number: str, account_number: str) -> UsioRtpEligibility:
        """Whether the account can receive RTP (``RTPAccountCheck``; answer assumed in ``Message``)."""
        fields = {"RoutingNumber": _digits(routing_number, _ROUTING, "routing_number"),
                  "AccountNumber": _digits(account_number, _ACCOUNT, "account_number")}
        return self._call("RTPAccountCheck", fields, adapter.rtp_eligibility)

    def rtp_credit(self, *, routing_number: str, account_number: str, amount: Decimal,
                   reference: str) -> UsioPaymentResult:
        """Instant credit over RTP (``RTPCredit``; fields assumed), paid from the prefunding balance.

        An account that is not RTP-eligible is refused (``ProcessorDeclined``); check it first.
        """
        reference = _text(reference, "reference")
        fields = {"RoutingNumber": _digits(routing_number, _ROUTING, "routing_number"),
                  "AccountNumber": _digits(account_number, _ACCOUNT, "account_number"),
                  "Amount": _amount(amount), "AdditionalSearch": reference, "AccountCode1": reference}
        return self._call("RTPCredit", fields, adapter.payment_result, reference=reference)

    def void_or_refund(self, *, confirmation_id: str, amount: Decimal) -> UsioPaymentResult:
        """Refund (or void) a card transaction, partially or fully (``SubmitCCVoid``: ``ConfirmationID``,
        ``Amount``). The result's ``confirmation`` is the refund's. Usio refuses more than what is left."""
        confirmation_id = _text(confirmation_id, "confirmation_id")
        fields = {"ConfirmationID": confirmation_id, "Amount": _amount(amount)}
        return self._call("SubmitCCVoid", fields, adapter.payment_result, reference=confirmation_id)

    # --- reports and lookups --------------------------------------------------------------------------------
    def get_prefunding_balance(self) -> UsioBalance:
        """This merchant account's prefunding balance (``GetPrefundingBalance``; ``Balance`` assumed)."""
        return self._call("GetPrefundingBalance", {}, adapter.balance)

    def get_transaction_details(self, *, confirmation: str | None = None,
                                reference: str | None = None) -> UsioTransactionList:
        """Look a transaction up by Usio ``Confirmation`` or by our reference (``AdditionalSearch``; several
        transactions may carry it). "Unable to locate record" (5030) is an empty list, not an error."""
        if (confirmation is None) == (reference is None):
            raise ValueError("give exactly one of confirmation or reference")
        if confirmation is not None:
            fields = {"Confirmation": _text(confirmation, "confirmation")}
        else:
            fields = {"AdditionalSearch": _text(reference, "reference")}
        fields["ReturnAccountMask"] = "Y"
        return self._call("GetTransactionDetails", fields, adapter.transaction_details,
                          reference=confirmation or reference)

    def get_transaction_list(self, *, start: datetime, end: datetime, report_type: str) -> UsioTransactionList:
        """One report for the window ``[start, end)`` (``GetTransactionList``, assumed).

        ``report_type``: ``transactions`` (by transaction date), ``ach_returns`` (by return date) or
        ``chargebacks`` (by chargeback date); dates are sent as ISO 8601 in UTC.
        """
        return self._call("GetTransactionList", _report_fields(start, end, report_type), adapter.transaction_list)

    def get_transaction_report(self, *, start: datetime, end: datetime,
                               report_type: str) -> adapter.UsioTransactionReport:
        """``get_transaction_list`` for a large window: the same request and the same errors (all raised here,
        after the whole answer was checked), but the records are handed out page by page
        (``UsioTransactionReport.pages``); the answer is read record by record, each converted once and kept,
        without its text or JSON tree."""
        return self._call("GetTransactionList", _report_fields(start, end, report_type), adapter.transaction_report,
                          text_body=True)

    def refresh_token(self, *, token: str) -> UsioTokenRefresh:
        """A new token for the same card (``RefreshToken``, assumed: the new token is the ``Confirmation``).

        The new token is kept out of the audit exchange and the logs. Refused → ``ProcessorDeclined``.
        """
        return self._call("RefreshToken", {"Token": _text(token, "token")}, adapter.token_refresh,
                          secret_answer=True)


def usio_client(account_name: str) -> UsioClient:
    """The client of a configured merchant account (``USIO_ACCOUNTS[account_name]``), settings read now.

    Unknown name, missing credentials or no ``USIO_BASE_URL`` → ``ProcessorConfigurationError``. Its calls go
    through the thread's kept-alive connections (``integrations.http._thread_manager``), none reused after
    ``PROCESSOR_KEEPALIVE_SECONDS`` idle (default 1; 0: a new connection per client).
    """
    accounts = getattr(settings, "USIO_ACCOUNTS", {}) or {}
    account = accounts.get(account_name)
    if not isinstance(account, dict):
        raise ProcessorConfigurationError(f"unknown Usio account {account_name!r}", processor="usio",
                                          operation="configure")
    return UsioClient(
        account_name=account_name,
        merchant_id=str(account.get("merchant_id") or ""),
        login=str(account.get("login") or ""),
        password=str(account.get("password") or ""),
        base_url=settings.USIO_BASE_URL,
        connect_timeout=settings.USIO_CONNECT_TIMEOUT,
        read_timeout=settings.USIO_READ_TIMEOUT,
        keepalive_seconds=getattr(settings, "PROCESSOR_KEEPALIVE_SECONDS", DEFAULT_KEEPALIVE_SECONDS),
    )


__all__ = ["ACH_TRANS_CODES", "PRENOTE_TRANS_CODES", "UsioClient", "usio_client"]
