"""Usio JSON → our dataclasses and typed errors (processors.md, "Usio"; shapes in docs/sandbox.md "Usio").

Everything Usio-shaped is read here and nowhere else: the rest of the project sees frozen dataclasses and
``integrations.errors``. The shapes marked *assumed* in processors.md (RTPAccountCheck's answer, the balance,
GetTransactionList, RefreshToken) are decided in this module, so a correction touches only this file.

Envelope (known): HTTP 200 even for failures, ``{"Confirmation", "Message", "Status": "success"|"failure"}``.
A failure's ``Message`` starts with a code: ``"5030: Unable to locate record"`` (numeric) or ``"R02: Account
closed"`` (NACHA). Credential failures (``1001``, assumed) are ``ProcessorAuthError``; any other failure is
``ProcessorDeclined(code=…)``; an answer without a valid ``Status`` or a required field is
``ProcessorProtocolError``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from integrations.errors import ProcessorAuthError, ProcessorDeclined, ProcessorProtocolError
from integrations.http import Exchange

PROCESSOR = "usio"

#: Failure codes that mean "your credentials were refused" (assumed; the sandbox answers 1001).
AUTH_CODES = frozenset({"1001"})
#: "Unable to locate record": a lookup that found nothing.
NOT_FOUND_CODE = "5030"

TRANSACTION_TYPES = ("debit", "credit")
TRANSACTION_STATUSES = ("settled", "returned", "chargeback", "failed", "pending")
#: Our report names → the wire ``ReportType`` (assumed).
REPORT_TYPES = {"transactions": "transactions", "ach_returns": "achreturns", "chargebacks": "chargebacks"}
#: A record's type and status as the constants above: one shared string each, not one per record.
_TRANSACTION_TYPES = {name: name for name in TRANSACTION_TYPES}
_TRANSACTION_STATUSES = {name: name for name in TRANSACTION_STATUSES}
_CENT = Decimal("0.01")
_NO_REFUND = Decimal("0.00")

_CODED_MESSAGE = re.compile(r"^\s*(R\d{2}|\d+)\s*:\s*(.*)$", re.DOTALL | re.IGNORECASE)


# --- results ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsioPaymentResult:
    """An accepted submission (payment, credit, refund): Usio's ``Confirmation`` is the transaction id."""

    confirmation: str
    message: str
    exchange: Exchange = field(repr=False)


@dataclass(frozen=True)
class UsioRtpEligibility:
    eligible: bool
    message: str
    exchange: Exchange = field(repr=False)


@dataclass(frozen=True)
class UsioBalance:
    amount: Decimal
    exchange: Exchange = field(repr=False)


@dataclass(frozen=True)
class UsioTokenRefresh:
    """A new token for the same card. ``token`` is a secret: kept out of ``repr`` and of the exchange."""

    token: str = field(repr=False)
    exchange: Exchange = field(repr=False)


@dataclass(frozen=True, slots=True)
class UsioTransaction:
    """One transaction of a report or a lookup.

    ``reference`` is our client reference (``AdditionalSearch``); ``return_code`` is the NACHA code of a return
    or the chargeback reason; ``refunded_amount`` / ``original_confirmation`` are set on card refunds. Slotted: a
    checked report keeps every record until it is synced (``UsioTransactionReport``).
    """

    confirmation: str
    transaction_type: str  # debit | credit
    amount: Decimal
    status: str  # settled | returned | chargeback | failed | pending
    transaction_date: datetime
    return_code: str | None = None
    reference: str | None = None
    account_mask: str | None = None
    return_date: datetime | None = None
    chargeback_date: datetime | None = None
    refunded_amount: Decimal = Decimal("0.00")
    original_confirmation: str | None = None


@dataclass(frozen=True)
class UsioTransactionList:
    transactions: tuple[UsioTransaction, ...]
    exchange: Exchange = field(repr=False)


# --- parsing ------------------------------------------------------------------------------------------------


def _protocol_error(message: str, operation: str, exchange: Exchange) -> ProcessorProtocolError:
    return ProcessorProtocolError(message, processor=PROCESSOR, operation=operation, exchange=exchange)


def split_code(message: str) -> tuple[str, str]:
    """``"5030: Unable to locate record"`` → ``("5030", "Unable to locate record")``; no code → ``"unknown"``."""
    match = _CODED_MESSAGE.match(message or "")
    if not match:
        return "unknown", (message or "").strip()
    return match.group(1).upper(), match.group(2).strip()


def check_envelope(data: Any, *, operation: str, exchange: Exchange, required: tuple[str, ...] = ()) -> dict:
    """The answer as a dict once it is a ``success``; raises the typed error of a failure or a broken answer."""
    if not isinstance(data, dict):
        raise _protocol_error("answer is not a JSON object", operation, exchange)
    status = data.get("Status")
    status = status.strip().lower() if isinstance(status, str) else None
    if status not in ("success", "failure"):
        raise _protocol_error("answer has no valid Status", operation, exchange)
    if status == "failure":
        message = data.get("Message")
        code, text = split_code(message if isinstance(message, str) else "")
        if code in AUTH_CODES:
            raise ProcessorAuthError(text or "credentials refused", processor=PROCESSOR, operation=operation,
                                     exchange=exchange)
        raise ProcessorDeclined(text or "declined", code=code, processor=PROCESSOR, operation=operation,
                                exchange=exchange)
    missing = [name for name in required if data.get(name) in (None, "")]
    if missing:
        raise _protocol_error(f"answer lacks {', '.join(missing)}", operation, exchange)
    return data


def _message(data: dict) -> str:
    message = data.get("Message")
    return message if isinstance(message, str) else ""


def _decimal(value: Any, name: str, operation: str, exchange: Exchange) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):  # a tuple: faster than a union
        raise _protocol_error(f"{name} is not a number", operation, exchange)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise _protocol_error(f"{name} is not a number", operation, exchange) from exc
    if not amount.is_finite():
        raise _protocol_error(f"{name} is not a number", operation, exchange)
    return amount.quantize(_CENT)


def _datetime(value: Any, name: str, operation: str, exchange: Exchange) -> datetime:
    """ISO 8601; a value without an offset is read as UTC (assumed: the sandbox always sends the offset)."""
    if not isinstance(value, str):
        raise _protocol_error(f"{name} is not a date", operation, exchange)
    try:
        parsed = datetime.fromisoformat(value.strip())
        # In UTC: Python accepts offsets up to ±23:59, PostgreSQL only ±15:59 (an odd offset must not fail a write).
        if parsed.tzinfo is UTC:  # the usual "+00:00" (Python's one UTC instance): already what is returned
            return parsed
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise _protocol_error(f"{name} is not an ISO 8601 date", operation, exchange) from exc


def _optional_str(value: Any) -> str | None:
    if value in (None, ""):
        return None
    return str(value)


def payment_result(data: Any, *, operation: str, exchange: Exchange) -> UsioPaymentResult:
    """SubmitTokenPayment, SubmitACHPayment, PinlessCredit, RTPCredit, SubmitCCVoid: ``Confirmation`` required."""
    body = check_envelope(data, operation=operation, exchange=exchange, required=("Confirmation",))
    return UsioPaymentResult(confirmation=str(body["Confirmation"]), message=_message(body), exchange=exchange)


def rtp_eligibility(data: Any, *, operation: str, exchange: Exchange) -> UsioRtpEligibility:
    """RTPAccountCheck (assumed): a success whose ``Message`` is ``Eligible`` or ``Not Eligible``."""
    body = check_envelope(data, operation=operation, exchange=exchange)
    message = _message(body)
    answer = " ".join(message.lower().replace("-", " ").split())
    if answer == "eligible":
        return UsioRtpEligibility(eligible=True, message=message, exchange=exchange)
    if answer in ("not eligible", "ineligible"):
        return UsioRtpEligibility(eligible=False, message=message, exchange=exchange)
    raise _protocol_error("RTPAccountCheck answer is neither Eligible nor Not Eligible", operation, exchange)


def balance(data: Any, *, operation: str, exchange: Exchange) -> UsioBalance:
    """GetPrefundingBalance (assumed): ``{Status, Message, Balance}``, ``Balance`` a decimal string or number."""
    body = check_envelope(data, operation=operation, exchange=exchange, required=("Balance",))
    return UsioBalance(amount=_decimal(body["Balance"], "Balance", operation, exchange), exchange=exchange)


def token_refresh(data: Any, *, operation: str, exchange: Exchange) -> UsioTokenRefresh:
    """RefreshToken (assumed): the new token is the ``Confirmation``."""
    body = check_envelope(data, operation=operation, exchange=exchange, required=("Confirmation",))
    return UsioTokenRefresh(token=str(body["Confirmation"]), exchange=exchange)


def transaction(item: Any, *, operation: str, exchange: Exchange) -> UsioTransaction:
    """One entry of ``Transactions`` (GetTransactionList, or GetTransactionDetails with ``AdditionalSearch1``)."""
    if not isinstance(item, dict):
        raise _protocol_error("a transaction is not a JSON object", operation, exchange)
    confirmation = item.get("Confirmation")
    if not confirmation:
        raise _protocol_error("a transaction lacks Confirmation", operation, exchange)
    kind = str(item.get("TransactionType") or "").strip().lower()
    if kind not in _TRANSACTION_TYPES:
        raise _protocol_error(f"unknown TransactionType {kind!r}", operation, exchange)
    status = str(item.get("Status") or "").strip().lower()
    if status not in _TRANSACTION_STATUSES:
        raise _protocol_error(f"unknown transaction Status {status!r}", operation, exchange)
    reference = item.get("AdditionalSearch", item.get("AdditionalSearch1"))
    return UsioTransaction(
        confirmation=str(confirmation),
        transaction_type=_TRANSACTION_TYPES[kind],
        amount=_decimal(item.get("Amount"), "Amount", operation, exchange),
        status=_TRANSACTION_STATUSES[status],
        transaction_date=_datetime(item.get("TransactionDate"), "TransactionDate", operation, exchange),
        return_code=_optional_str(item.get("ReturnCode")),
        reference=_optional_str(reference),
        account_mask=_optional_str(item.get("AccountMask")),
        return_date=(_datetime(item["ReturnDate"], "ReturnDate", operation, exchange)
                     if item.get("ReturnDate") else None),
        chargeback_date=(_datetime(item["ChargebackDate"], "ChargebackDate", operation, exchange)
                         if item.get("ChargebackDate") else None),
        refunded_amount=(_decimal(item["RefundedAmount"], "RefundedAmount", operation, exchange)
                         if item.get("RefundedAmount") not in (None, "") else _NO_REFUND),
        original_confirmation=_optional_str(item.get("OriginalConfirmation")),
    )


def transaction_details(data: Any, *, operation: str, exchange: Exchange) -> UsioTransactionList:
    """GetTransactionDetails: like ``transaction_list``, but "5030: Unable to locate record" is an empty answer."""
    if isinstance(data, dict) and str(data.get("Status", "")).strip().lower() == "failure":
        message = data.get("Message")
        if split_code(message if isinstance(message, str) else "")[0] == NOT_FOUND_CODE:
            return UsioTransactionList(transactions=(), exchange=exchange)
    return transaction_list(data, operation=operation, exchange=exchange)


def transaction_list(data: Any, *, operation: str, exchange: Exchange) -> UsioTransactionList:
    """GetTransactionList / GetTransactionDetails: ``{Status, Message, Transactions: [...]}``."""
    body = check_envelope(data, operation=operation, exchange=exchange)
    items = body.get("Transactions")
    if not isinstance(items, list):
        raise _protocol_error("answer lacks a Transactions list", operation, exchange)
    return UsioTransactionList(
        transactions=tuple(transaction(item, operation=operation, exchange=exchange) for item in items),
        exchange=exchange,
    )


# --- a large report, read page by page ------------------------------------------------------------------------

_JSON_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


class UsioTransactionReport:
    """A ``GetTransactionList`` answer handed out one page of records at a time.

    Built by ``transaction_report``, which has read the whole answer once, checking and converting each record as
    it went: the answer is valid JSON, the envelope is a ``success``, ``Transactions`` is a list and every record
    is valid (the same errors, raised in the same order, as ``transaction_list``), so nothing raises once the
    caller starts writing. It keeps the converted records (slotted ``UsioTransaction``), not the answer's text nor
    its JSON tree (issue 10: a 200,000-record window parsed at once held ~850 MB): one record per ``Confirmation``
    (a report listing one twice: the last wins), in report order — as the syncer always had it. Each record is
    parsed once (it used to be parsed again per page, ~a third of the sync's Python time).
    """

    def __init__(self, *, records: list[UsioTransaction], operation: str, exchange: Exchange):
        self._records = records
        self.count = len(records)  # records after removing duplicates
        self.operation = operation
        self.exchange = exchange

    def pages(self, page_size: int) -> Iterator[tuple[UsioTransaction, ...]]:
        if page_size < 1:
            raise ValueError("page_size must be positive")
        for start in range(0, len(self._records), page_size):
            yield tuple(self._records[start:start + page_size])


#: Read text kept before a value that has not ended yet: past this, the rest of the answer is read at once before
#: decoding the value again (a value that never ends would otherwise be decoded again after every chunk).
_RETRY_SPAN = 1 << 20
#: Consumed text dropped from the reader's buffer once it is this long.
_COMPACT = 1 << 16


class _JsonReader:
    """A JSON text read from ``chunks`` (strings) as it arrives, by a scanner that asks for values one at a time:
    only the text not yet consumed is kept. ``pos`` is the scanner's position in ``text``. A value is decoded once
    it is whole (``json``'s C decoder), so the answer is parsed while the rest of it is still on its way. The same
    text gives the same values and the same ``json.JSONDecodeError``s in one chunk or many."""

    def __init__(self, chunks: Iterable[str]):
        self._chunks = iter(chunks)
        self.text = ""
        self.pos = 0
        self.ended = False

    def _more(self) -> bool:
        """Append the next non-empty chunk (dropping consumed text first); False once the answer has ended."""
        for chunk in self._chunks:
            if chunk:
                if self.pos >= _COMPACT:
                    self.text, self.pos = self.text[self.pos:], 0
                self.text += chunk
                return True
        self.ended = True
        return False

    def read_all(self) -> None:
        while self._more():
            pass

    def error(self, message: str) -> json.JSONDecodeError:
        return json.JSONDecodeError(message, self.text, self.pos)

    def skip_ws(self) -> None:
        """Past any whitespace; then ``text[pos]`` is the next character, unless the answer has ended."""
        while True:
            self.pos = _JSON_WS.match(self.text, self.pos).end()
            if self.pos < len(self.text) or not self._more():
                return

    def at(self, char: str) -> bool:
        """Whether the next character (after ``skip_ws``) is ``char``."""
        return self.text.startswith(char, self.pos)

    def after_item(self, close: str) -> bool:
        """After a member or an element: True once past the container's closing ``close``, False once past the
        ``,`` before the next (and its whitespace); anything else is the error ``json.loads`` would raise."""
        self.skip_ws()
        if self.at(close):
            self.pos += 1
            return True
        if not self.at(","):
            raise self.error(f"expected ',' or '{close}'")
        self.pos += 1
        self.skip_ws()
        return False

    def value(self) -> Any:
        """Decode the value at ``pos`` and move past it, once it is whole: a value that fails to decode may just
        not have arrived yet (read on, then decode it again); one ending where the text read so far ends (a number)
        may go on in the next chunk. At the end of the answer, the decoder's error is the answer's."""
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError:
                if self.ended:
                    raise
                if len(self.text) - self.pos > _RETRY_SPAN:
                    self.read_all()
                else:
                    self._more()
                continue
            if end < len(self.text) or self.ended or not self._more():
                self.pos = end
                return value


def _scan_object(reader: _JsonReader, on_item: Callable[[Any], None],
                 on_array: Callable[[], None]) -> tuple[dict, bool]:
    """The top-level JSON object of the answer without keeping its ``Transactions`` array: its other members, and
    whether that array was there (False when ``Transactions`` is absent or not an array: then it is among the
    members); each value of the array is decoded and handed to ``on_item``, then dropped (``on_array`` is called
    first: a repeated member restarts). ``json.JSONDecodeError`` for anything ``json.loads`` would refuse (trailing
    data included)."""
    reader.skip_ws()
    if not reader.at("{"):
        raise reader.error("expected an object")
    members: dict = {}
    has_items = False
    reader.pos += 1
    reader.skip_ws()
    if reader.at("}"):
        reader.pos += 1
    else:
        while True:
            if not reader.at('"'):
                raise reader.error("expected a member name")
            key = reader.value()
            reader.skip_ws()
            if not reader.at(":"):
                raise reader.error("expected ':'")
            reader.pos += 1
            reader.skip_ws()
            if key == "Transactions" and reader.at("["):
                members.pop(key, None)  # a repeated member: the last wins, as in json.loads
                has_items = True
                on_array()
                _scan_array(reader, on_item)
            else:
                members[key] = reader.value()
                if key == "Transactions":
                    has_items = False
            if reader.after_item("}"):
                break
    reader.skip_ws()
    if reader.pos != len(reader.text):
        raise reader.error("extra data")
    return members, has_items


def _scan_array(reader: _JsonReader, on_item: Callable[[Any], None]) -> None:
    """The JSON array at ``pos`` (its ``[``), value by value to ``on_item``; ``pos`` ends after its ``]``."""
    reader.pos += 1
    reader.skip_ws()
    if reader.at("]"):
        reader.pos += 1
        return
    while True:
        on_item(reader.value())
        if reader.after_item("]"):
            return


def transaction_report(text: str | Iterable[str], *, operation: str, exchange: Exchange) -> UsioTransactionReport:
    """GetTransactionList read for paging (``UsioTransactionReport``): checks the whole answer and raises exactly
    what ``transaction_list`` raises for it (not JSON; a failure envelope; no ``Transactions`` list; the first bad
    record); keeps the records, each converted once as it is checked (the text and the JSON tree are not kept).

    ``text``: the answer, whole or as the chunks of text it arrives in (``UsioClient`` streams it: records are
    checked and converted while the rest is still arriving). Text that cannot be decoded (a ``UnicodeDecodeError``
    from the chunks) is "answer is not valid JSON", as is anything ``json.loads`` would refuse.
    """
    records: list[UsioTransaction] = []
    last: dict[str, int] = {}  # confirmation → index of its last listing
    bad: list[ProcessorProtocolError] = []

    def on_item(item: Any) -> None:
        if not bad:
            try:
                record = transaction(item, operation=operation, exchange=exchange)
            except ProcessorProtocolError as exc:
                bad.append(exc)  # raised once the envelope is known good, as transaction_list does
                records.clear()
            else:
                last[record.confirmation] = len(records)
                records.append(record)

    def on_array() -> None:
        records.clear()
        last.clear()
        bad.clear()

    reader = _JsonReader([text] if isinstance(text, str) else text)
    try:
        reader.skip_ws()
        if not reader.at("{"):
            reader.read_all()  # not an object: read whole, it raises what transaction_list raises for it
            transaction_list(json.loads(reader.text), operation=operation, exchange=exchange)
        members, has_items = _scan_object(reader, on_item, on_array)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _protocol_error("answer is not valid JSON", operation, exchange) from exc
    check_envelope({**members, "Transactions": [] if has_items else members.get("Transactions")},
                   operation=operation, exchange=exchange)
    if not has_items:
        raise _protocol_error("answer lacks a Transactions list", operation, exchange)
    if bad:
        raise bad[0]
    if len(last) != len(records):  # a confirmation listed twice: only its last listing stays, where it is
        records = [record for index, record in enumerate(records) if last[record.confirmation] == index]
    return UsioTransactionReport(records=records, operation=operation, exchange=exchange)
