"""Fake Usio Payments API 2.0 (processors.md "Usio"; behaviour in docs/sandbox.md "Usio").

``POST /usio/<Operation>`` with the merchant account's ``MerchantID``/``Login``/``Password`` in the JSON body; every
answer is HTTP 200 with ``{"Confirmation", "Message", "Status": "success"|"failure"}`` (plus ``Balance`` or
``Transactions`` where the operation has them), failures coded ``"<code>: <text>"``. An unknown operation is a
404 (like WCF's "Endpoint not found"), another method than POST a 405, a body that is not a JSON object a 400.

Outcomes follow ``sandbox.conventions``: tokens ``decline_NN`` / ``unknown`` / ``timeout``; bank accounts ending
``98NN`` (rejected at once with ``RNN``) and ``99NN`` (settled, then returned with ``RNN`` at 10:00
America/Chicago on the calendar day after submission). Statuses are computed from the sandbox clock whenever
they are read, so advancing the clock needs no bookkeeping. A refusal records nothing.

Control routes (``/_control/usio/...``): ``GET ledger``, ``GET balances``, ``PUT balances/<merchant_id>``
``{"balance": "123.45"}``, ``POST chargeback`` ``{"confirmation", "code"?}``.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from werkzeug.wrappers import Request, Response

from sandbox.conventions import account_outcome, token_outcome
from sandbox.core import SandboxService, hang_after, json_response, request_json

AUTH_FAILED = "1001: Invalid credentials"
NOT_FOUND = "5030: Unable to locate record"
NOT_REFUNDABLE = "5031: Transaction cannot be refunded"
OVER_REFUND = "5032: Amount exceeds the refundable amount"
INSUFFICIENT_BALANCE = "5040: Insufficient prefunding balance"
NOT_RTP_ELIGIBLE = "5050: Account is not RTP eligible"

ACH_CREDIT_CODES = frozenset({"22", "32"})
ACH_DEBIT_CODES = frozenset({"27", "37"})
PRENOTE_CODES = frozenset({"23", "28", "33", "38"})
REPORT_TYPES = ("transactions", "achreturns", "chargebacks")

# Returns are published once a day: 10:00 Central on the Central calendar day after submission (seed 004: Usio's
# return-drop cutoff, swept at 16:30 UTC).
CENTRAL = ZoneInfo("America/Chicago")
RETURN_TIME = time(10, 0)

DECLINE_TEXT = {"05": "Do not honor", "14": "Invalid card number", "41": "Lost card", "43": "Stolen card",
                "51": "Insufficient funds", "54": "Expired card", "57": "Transaction not permitted to cardholder",
                "61": "Exceeds withdrawal limit", "62": "Restricted card", "65": "Exceeds withdrawal frequency",
                "82": "Negative CVV results", "91": "Issuer unavailable"}
RETURN_TEXT = {"R01": "Insufficient funds", "R02": "Account closed", "R03": "No account / unable to locate account",
               "R04": "Invalid account number", "R07": "Authorization revoked by customer",
               "R08": "Payment stopped", "R10": "Customer advises not authorized", "R16": "Account frozen",
               "R20": "Non-transaction account", "R24": "Duplicate entry",
               "R29": "Corporate customer advises not authorized"}

_AMOUNT = re.compile(r"^\d{1,10}(\.\d{1,2})?$")
_ROUTING = re.compile(r"^\d{9}$")
_ACCOUNT = re.compile(r"^\d{4,17}$")


class Refusal(Exception):
    """A failure envelope: ``message`` is ``"<code>: <text>"``."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def return_time(submitted: datetime) -> datetime:
    """When a ``99NN`` ACH entry is returned: 10:00 Central on the next Central calendar day."""
    next_day = submitted.astimezone(CENTRAL).date() + timedelta(days=1)
    return datetime.combine(next_day, RETURN_TIME, tzinfo=CENTRAL).astimezone(UTC)


def _envelope(status: str, message: str = "", confirmation: str = "", **extra: Any) -> Response:
    return json_response({"Confirmation": confirmation, "Message": message, "Status": status, **extra})


#: Report entries per chunk of a streamed answer.
_STREAM_BATCH = 500


def _streamed_envelope(items: Iterable[dict]) -> Iterator[bytes]:
    """``_envelope("success", "", Transactions=[*items])``'s text, chunk by chunk, each item rendered when its chunk
    is written."""
    yield b'{"Confirmation": "", "Message": "", "Status": "success", "Transactions": ['
    batch, first = [], True
    for item in items:
        batch.append(json.dumps(item))
        if len(batch) == _STREAM_BATCH:
            yield (("" if first else ", ") + ", ".join(batch)).encode()
            batch, first = [], False
    if batch:
        yield (("" if first else ", ") + ", ".join(batch)).encode()
    yield b"]}"


def _money(amount: Decimal) -> str:
    return f"{amount:.2f}"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _text(body: dict, name: str) -> str | None:
    value = body.get(name)
    if value is None or isinstance(value, dict | list | bool):
        return None
    return str(value).strip() or None


def _required(body: dict, name: str) -> str:
    value = _text(body, name)
    if value is None:
        raise Refusal(f"1010: Missing required field: {name}")
    return value


def parse_amount(value: Any) -> Decimal | None:
    """A non-negative amount with at most 2 decimals (string or JSON number), else None."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = str(value).strip()
    return Decimal(text).quantize(Decimal("0.01")) if _AMOUNT.match(text) else None


def _amount(body: dict, *, prenote: bool = False) -> Decimal:
    _required(body, "Amount")
    amount = parse_amount(body["Amount"])
    if amount is None or (amount == 0) != prenote:
        raise Refusal("1020: Invalid Amount")
    return amount


def _bank_account(body: dict) -> tuple[str, str]:
    routing, account = _required(body, "RoutingNumber"), _required(body, "AccountNumber")
    if not _ROUTING.match(routing):
        raise Refusal("1022: Invalid RoutingNumber")
    if not _ACCOUNT.match(account):
        raise Refusal("1023: Invalid AccountNumber")
    return routing, account


def _date(body: dict, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(_required(body, name))
    except ValueError as exc:
        raise Refusal(f"1024: Invalid {name}") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _card_mask(token: str) -> str:
    """A stable fake card mask per card (the root token), never the token itself."""
    return "****" + f"{sum(ord(c) * (i + 1) for i, c in enumerate(token)) % 10000:04d}"


class UsioSandbox(SandboxService):
    name = "usio"
    OPERATIONS = ("SubmitTokenPayment", "SubmitACHPayment", "PinlessCredit", "RTPAccountCheck", "RTPCredit",
                  "GetPrefundingBalance", "SubmitCCVoid", "GetTransactionDetails", "GetTransactionList",
                  "RefreshToken")

    def __init__(self, ctx):
        super().__init__(ctx)
        self.ledger: dict[str, dict] = {}  # confirmation -> transaction, in submission order
        self.balances: dict[str, Decimal] = {}  # merchant id -> prefunding balance (initial until first use)
        self.token_aliases: dict[str, str] = {}  # refreshed token -> the token it replaced (root)

    def reset(self) -> None:
        with self.lock:
            self.ledger.clear()
            self.balances.clear()
            self.token_aliases.clear()

    # on_clock_advanced: nothing to do, statuses are derived from the clock when read (_status).

    # --- dispatch ---------------------------------------------------------------------------------------------
    def handle(self, request: Request, subpath: str) -> Response:
        operation = subpath.strip("/")
        if operation not in self.OPERATIONS:
            return json_response({"error": "not_found", "message": f"Endpoint not found: {operation}"}, status=404)
        if request.method != "POST":
            return json_response({"error": "method_not_allowed", "message": "use POST"}, status=405)
        body = request_json(request)
        if not isinstance(body, dict):
            return json_response({"error": "bad_request", "message": "the body is not a JSON object"}, status=400)
        try:
            merchant = self._authenticate(body)
            return getattr(self, f"_op_{operation}")(body, merchant)
        except Refusal as refusal:
            return _envelope("failure", refusal.message)

    def _authenticate(self, body: dict) -> str:
        merchant = _text(body, "MerchantID") or ""
        expected = self.ctx.config.usio_accounts.get(merchant)
        if expected is None or (body.get("Login"), body.get("Password")) != tuple(expected):
            raise Refusal(AUTH_FAILED)
        return merchant

    # --- ledger -----------------------------------------------------------------------------------------------
    def _balance(self, merchant: str) -> Decimal:
        return self.balances.setdefault(merchant, Decimal(self.ctx.config.usio_initial_balance))

    def _pay_out(self, merchant: str, amount: Decimal) -> None:
        balance = self._balance(merchant)
        if amount > balance:
            raise Refusal(INSUFFICIENT_BALANCE)
        self.balances[merchant] = balance - amount

    def _record(self, merchant: str, operation: str, *, kind: str, transaction_type: str, amount: Decimal,
                body: dict | None = None, account_mask: str, account_type: str, trans_code: str | None = None,
                return_code: str | None = None, original: str | None = None) -> dict:
        body = body or {}
        now = self.ctx.clock.now()
        confirmation = f"U{secrets.token_hex(8).upper()}"
        self.ledger[confirmation] = tx = {
            "confirmation": confirmation, "merchant_id": merchant, "operation": operation, "kind": kind,
            "transaction_type": transaction_type, "amount": amount, "reference": _text(body, "AdditionalSearch"),
            "account_code1": _text(body, "AccountCode1"), "description": _text(body, "Description"),
            "account_mask": account_mask, "account_type": account_type, "trans_code": trans_code,
            "same_day_ach": _text(body, "SameDayACH") == "Y",
            "standard_entry_code": _text(body, "StandardEntryCode") if kind == "ach" else None,
            "created_at": now, "returns_at": return_time(now) if return_code else None, "return_code": return_code,
            "chargeback_at": None, "chargeback_code": None, "refunded": Decimal("0.00"),
            "original_confirmation": original,
        }
        return tx

    @staticmethod
    def _status(tx: dict, now: datetime) -> str:
        if tx["chargeback_at"] is not None:
            return "chargeback"
        if tx["returns_at"] is not None and tx["returns_at"] <= now:
            return "returned"
        return "settled"

    def _wire(self, tx: dict, now: datetime, *, details: bool = False) -> dict:
        status = self._status(tx, now)
        code = {"returned": tx["return_code"], "chargeback": tx["chargeback_code"]}.get(status)
        return {
            "Confirmation": tx["confirmation"], "TransactionType": tx["transaction_type"],
            "Amount": _money(tx["amount"]), "Status": status, "ReturnCode": code,
            "TransactionDate": _iso(tx["created_at"]),
            "ReturnDate": _iso(tx["returns_at"]) if status == "returned" else None,
            "ChargebackDate": _iso(tx["chargeback_at"]), "AccountMask": tx["account_mask"],
            "AccountType": tx["account_type"],
            # GetTransactionDetails' reference field is AdditionalSearch1 (known); the list's is assumed.
            "AdditionalSearch1" if details else "AdditionalSearch": tx["reference"],
            "AccountCode1": tx["account_code1"], "RefundedAmount": _money(tx["refunded"]),
            "OriginalConfirmation": tx["original_confirmation"],
        }

    def _view(self, tx: dict, now: datetime) -> dict:
        view = {key: (_money(value) if isinstance(value, Decimal) else
                      _iso(value) if isinstance(value, datetime) else value) for key, value in tx.items()}
        view["status"] = self._status(tx, now)
        return view

    # --- card ---------------------------------------------------------------------------------------------------
    def _card(self, body: dict, merchant: str, operation: str, *, credit: bool) -> Response:
        token, amount = _required(body, "Token"), _amount(body)
        with self.lock:
            root = self.token_aliases.get(token, token)
        outcome = token_outcome(root)
        if outcome.kind == "decline":
            raise Refusal(f"{outcome.code}: {DECLINE_TEXT.get(outcome.code, 'Declined')}")
        if outcome.kind == "unknown":
            raise Refusal(NOT_FOUND)
        with self.lock:
            if credit:
                self._pay_out(merchant, amount)
            tx = self._record(merchant, operation, kind="card", transaction_type="credit" if credit else "debit",
                              amount=amount, body=body, account_mask=_card_mask(root), account_type="Card")
        response = _envelope("success", "Approved", tx["confirmation"])
        # "timeout": processed, but the answer comes after the client gave up
        return hang_after(response) if outcome.kind == "timeout" else response

    def _op_SubmitTokenPayment(self, body: dict, merchant: str) -> Response:
        return self._card(body, merchant, "SubmitTokenPayment", credit=False)

    def _op_PinlessCredit(self, body: dict, merchant: str) -> Response:
        return self._card(body, merchant, "PinlessCredit", credit=True)

    def _op_RefreshToken(self, body: dict, merchant: str) -> Response:
        token = _required(body, "Token")
        with self.lock:
            root = self.token_aliases.get(token, token)
            outcome = token_outcome(root)
            if outcome.kind == "unknown":
                raise Refusal(NOT_FOUND)
            new_token = f"tok_{secrets.token_hex(12)}"
            # The old token keeps working: both resolve to the same card (and the same scripted outcome).
            self.token_aliases[new_token] = root
        response = _envelope("success", "", new_token)
        return hang_after(response) if outcome.kind == "timeout" else response

    def _op_SubmitCCVoid(self, body: dict, merchant: str) -> Response:
        original_id, amount = _required(body, "ConfirmationID"), _amount(body)
        with self.lock:
            original = self.ledger.get(original_id)
            if original is None or original["merchant_id"] != merchant:
                raise Refusal(NOT_FOUND)
            if (original["kind"], original["transaction_type"]) != ("card", "debit") \
                    or self._status(original, self.ctx.clock.now()) != "settled":
                raise Refusal(NOT_REFUNDABLE)
            if amount > original["amount"] - original["refunded"]:
                raise Refusal(OVER_REFUND)
            original["refunded"] += amount
            refund = self._record(merchant, "SubmitCCVoid", kind="refund", transaction_type="credit", amount=amount,
                                  account_mask=original["account_mask"], account_type="Card", original=original_id)
        return _envelope("success", "Approved", refund["confirmation"])

    # --- bank accounts ------------------------------------------------------------------------------------------
    def _op_SubmitACHPayment(self, body: dict, merchant: str) -> Response:
        _, account = _bank_account(body)
        code = _required(body, "TransCode")
        if code not in ACH_CREDIT_CODES | ACH_DEBIT_CODES | PRENOTE_CODES:
            raise Refusal("1021: Invalid TransCode")
        amount = _amount(body, prenote=code in PRENOTE_CODES)
        _required(body, "FirstName")
        _required(body, "LastName")
        if _text(body, "SameDayACH") not in (None, "Y", "N"):
            raise Refusal("1026: Invalid SameDayACH")
        outcome = account_outcome(account)
        if outcome.kind == "reject":
            raise Refusal(f"{outcome.return_code}: {RETURN_TEXT.get(outcome.return_code, 'Returned entry')}")
        with self.lock:
            if code in ACH_CREDIT_CODES:
                self._pay_out(merchant, amount)
            tx = self._record(merchant, "SubmitACHPayment", kind="ach", amount=amount, body=body,
                              transaction_type="credit" if code[1] in "23" else "debit", trans_code=code,
                              account_mask=f"****{account[-4:]}",
                              account_type="Checking" if code.startswith("2") else "Savings",
                              return_code=outcome.return_code if outcome.kind == "return" else None)
        return _envelope("success", "Approved", tx["confirmation"])

    def _op_RTPAccountCheck(self, body: dict, merchant: str) -> Response:
        routing, _ = _bank_account(body)
        eligible = routing in self.ctx.config.rtp_routing_numbers
        return _envelope("success", "Eligible" if eligible else "Not Eligible")

    def _op_RTPCredit(self, body: dict, merchant: str) -> Response:
        (routing, account), amount = _bank_account(body), _amount(body)
        if routing not in self.ctx.config.rtp_routing_numbers:
            raise Refusal(NOT_RTP_ELIGIBLE)
        with self.lock:
            self._pay_out(merchant, amount)
            tx = self._record(merchant, "RTPCredit", kind="rtp", transaction_type="credit", amount=amount, body=body,
                              account_mask=f"****{account[-4:]}", account_type="RTP")
        return _envelope("success", "Approved", tx["confirmation"])

    # --- balances and reports -----------------------------------------------------------------------------------
    def _op_GetPrefundingBalance(self, body: dict, merchant: str) -> Response:
        with self.lock:
            balance = self._balance(merchant)
        return _envelope("success", "", Balance=_money(balance))

    def _op_GetTransactionDetails(self, body: dict, merchant: str) -> Response:
        confirmation, reference = _text(body, "Confirmation"), _text(body, "AdditionalSearch")
        if confirmation is None and reference is None:
            raise Refusal("1010: Missing required field: Confirmation")
        with self.lock:
            now = self.ctx.clock.now()
            found = [tx for tx in self.ledger.values() if tx["merchant_id"] == merchant
                     and (tx["confirmation"] == confirmation if confirmation else tx["reference"] == reference)]
            if not found:
                raise Refusal(NOT_FOUND)
            items = [self._wire(tx, now, details=True) for tx in found]
        return _envelope("success", "", Transactions=items)

    def _op_GetTransactionList(self, body: dict, merchant: str) -> Response:
        start, end = _date(body, "StartDate"), _date(body, "EndDate")
        if end <= start:
            raise Refusal("1024: Invalid date range")
        report = _required(body, "ReportType").lower()
        if report not in REPORT_TYPES:
            raise Refusal("1025: Invalid ReportType")
        with self.lock:
            now = self.ctx.clock.now()
            listed = []
            for tx in self.ledger.values():
                # Each report is windowed on its own date: submission, return (once it happened), chargeback.
                status = self._status(tx, now)
                when = {"transactions": tx["created_at"],
                        "achreturns": tx["returns_at"] if status == "returned" else None,
                        "chargebacks": tx["chargeback_at"]}[report]
                if tx["merchant_id"] == merchant and when is not None and start <= when < end:
                    listed.append(dict(tx))  # as it is now: written out after the lock is released
        # Streamed as it is written, as a server sends a large report: the same text as ``_envelope`` gives.
        return Response(_streamed_envelope(self._wire(tx, now) for tx in listed), mimetype="application/json")

    # --- control API (called under self.lock by sandbox.app) ---------------------------------------------------
    def control(self, request: Request, subpath: str) -> Response | None:
        method, path = request.method, subpath.strip("/")
        now = self.ctx.clock.now()
        if (method, path) == ("GET", "ledger"):
            return json_response({"transactions": [self._view(tx, now) for tx in self.ledger.values()],
                                  "balances": self._balances()})
        if (method, path) == ("GET", "balances"):
            return json_response({"balances": self._balances()})
        if (method, path) == ("POST", "chargeback"):
            return self._chargeback(request_json(request), now)
        if method == "PUT" and path.startswith("balances/"):
            return self._set_balance(path.split("/", 1)[1], request_json(request))
        return None

    def _balances(self) -> dict[str, str]:
        return {merchant: _money(self._balance(merchant)) for merchant in self.ctx.config.usio_accounts}

    def _chargeback(self, body: Any, now: datetime) -> Response:
        confirmation = body.get("confirmation") if isinstance(body, dict) else None
        if not isinstance(confirmation, str) or not confirmation:
            return json_response({"error": "bad_request", "message": "confirmation is required"}, status=400)
        tx = self.ledger.get(confirmation)
        if tx is None:
            return json_response({"error": "not_found", "message": "no such transaction"}, status=404)
        if tx["kind"] not in ("card", "rtp") or self._status(tx, now) != "settled":
            return json_response({"error": "conflict", "message": "only a settled card or RTP transaction can be "
                                  "charged back"}, status=409)
        tx["chargeback_at"], tx["chargeback_code"] = now, str(body.get("code") or "") or None
        return json_response(self._view(tx, now))

    def _set_balance(self, merchant: str, body: Any) -> Response:
        if merchant not in self.ctx.config.usio_accounts:
            return json_response({"error": "not_found", "message": "no such merchant account"}, status=404)
        balance = parse_amount(body.get("balance")) if isinstance(body, dict) else None
        if balance is None:
            return json_response({"error": "bad_request", "message": "balance must be a non-negative amount with "
                                  "at most 2 decimals"}, status=400)
        self.balances[merchant] = balance
        return json_response({"merchant_id": merchant, "balance": _money(balance)})
