"""JPM JSON ⇄ our dataclasses. Processor JSON never leaves this package (ARCHITECTURE.md §4).

Wire shapes (processors.md, J.P. Morgan; docs/sandbox-jpm.md lists which parts are **assumed**):

- submit body ``{"payments": {requestedExecutionDate, paymentIdentifiers.endToEndId, paymentCurrency,
  paymentAmount, paymentType: "ACH.TRF", transferType, debtor, debtorAgent, creditor, creditorAgent
  [, prenote]}}`` → ``{"paymentInitiationResponse": {"endToEndId", "firmRootId"}}``;
- status ``{"paymentStatus": {"status", "createDateTime", "exception": [...]}}``;
- transactions ``{"data": [...], "pagination": {"pageNumber", "totalPages"}}``;
- callbacks ``{"callbacks": [{endToEndId, firmRootId, createDateTime, paymentStatus, exceptions}]}`` (≤ 50);
- errors ``{"errors": {"errorDetails": [{"errorCode", "errorDescription"}]}}``.

Everything that parses raises ``ProcessorProtocolError`` on a shape it does not understand: an answer we cannot
read is "outcome unknown", never a guess.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from integrations.errors import ProcessorProtocolError
from integrations.http import Exchange
from integrations.jpm.codes import nacha_for

PROCESSOR = "jpm"
STATUSES = ("PENDING", "ACCEPTED", "HOLD", "CLEARED", "COMPLETED", "REJECTED", "RETURNED")
FINAL_STATUSES = ("REJECTED", "RETURNED")
DIRECTIONS = ("DEBIT", "CREDIT")
# Assumed (processors.md): how an ACH account type is spelled on the wire.
ACCOUNT_TYPES = {"checking": "CHECKING", "savings": "SAVINGS"}
MAX_CALLBACKS_PER_MESSAGE = 50


# --- dataclasses -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JpmException:
    """One ``exception[]`` entry: why JPM rejected or the receiving bank returned the payment."""

    error_code: str | None
    error_description: str | None
    rule_definition: str | None
    external_code: str | None  # ISO (``AC04``) or NACHA (``R07``) reason

    @property
    def nacha_code(self) -> str | None:
        return nacha_for(self.external_code)


@dataclass(frozen=True)
class JpmSubmission:
    """JPM accepted the payment for processing (202). A repeat with the same endToEndId returns the same."""

    end_to_end_id: str
    firm_root_id: str
    exchange: Exchange | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class JpmPaymentStatus:
    found: ClassVar[bool] = True

    end_to_end_id: str
    status: str
    create_date_time: datetime | None
    exceptions: tuple[JpmException, ...] = ()
    return_code: str | None = None  # the first externalCode, as JPM sent it
    return_code_nacha: str | None = None  # nacha_for(return_code)
    exchange: Exchange | None = field(default=None, compare=False, repr=False)

    @property
    def is_final_failure(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class JpmPaymentNotFound:
    """JPM answered 404 with its error body: it never received a payment with this endToEndId."""

    found: ClassVar[bool] = False

    end_to_end_id: str
    error_code: str | None = None
    exchange: Exchange | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class JpmTransaction:
    """One record of ``/tsapi/v3/transactions``. ``raw`` is the record as received (for the staging table)."""

    transaction_id: str
    account_id: str | None
    transaction_date: date
    amount: Decimal
    currency: str | None
    credit_debit_indicator: str | None
    status: str | None
    end_to_end_id: str | None
    firm_root_id: str | None
    payment_type: str | None
    description: str | None
    raw: dict = field(default_factory=dict, compare=False, repr=False, hash=False)


@dataclass(frozen=True)
class JpmTransactionsPage:
    transactions: tuple[JpmTransaction, ...]
    page_number: int
    total_pages: int
    exchange: Exchange | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class JpmCallback:
    end_to_end_id: str
    firm_root_id: str | None
    create_date_time: datetime | None
    payment_status: str
    exceptions: tuple[JpmException, ...] = ()
    return_code: str | None = None
    return_code_nacha: str | None = None


# --- request bodies ----------------------------------------------------------------------------------------------
def _party(role: str, *, name: str, account_id: str, account_type: str, routing_number: str) -> dict:
    return {
        role: {
            f"{role}Name": name,
            f"{role}Account": {"accountId": account_id, "accountType": ACCOUNT_TYPES[account_type],
                               "accountCurrency": "USD"},
        },
        f"{role}Agent": {"financialInstitutionId": {"clearingSystemId": {"id": routing_number, "idType": "USABA"}}},
    }


def payment_request(
    *,
    end_to_end_id: str,
    amount: Decimal,
    direction: str,
    account_number: str,
    routing_number: str,
    account_type: str,
    name: str,
    requested_execution_date: date,
    prenote: bool,
    company_account_id: str,
    company_routing_number: str,
    company_name: str,
) -> dict:
    """The submit body. DEBIT pulls from the counterparty into our account (counterparty = debtor);
    CREDIT pushes from our account (counterparty = creditor)."""
    counterparty = {"name": name, "account_id": account_number, "account_type": account_type,
                    "routing_number": routing_number}
    company = {"name": company_name, "account_id": company_account_id, "account_type": "checking",
               "routing_number": company_routing_number}
    debtor, creditor = (counterparty, company) if direction == "DEBIT" else (company, counterparty)
    payments: dict[str, Any] = {
        "requestedExecutionDate": requested_execution_date.isoformat(),
        "paymentIdentifiers": {"endToEndId": end_to_end_id},
        "paymentCurrency": "USD",
        # A JSON number (processors.md). Amounts have at most 2 decimals, so the float's shortest repr is exact.
        "paymentAmount": float(amount),
        "paymentType": "ACH.TRF",
        "transferType": direction,
        **_party("debtor", **debtor),
        **_party("creditor", **creditor),
    }
    if prenote:
        payments["prenote"] = True  # assumed flag (processors.md has no prenote field)
    return {"payments": payments}


def mask_account(value: Any) -> str:
    text = str(value or "")
    return "****" + text[-4:] if text else ""


def redacted_payment_request(body: dict) -> dict:
    """The submit body for audit: account numbers reduced to their last 4 digits (short ones too)."""
    safe = copy.deepcopy(body)
    payments = safe.get("payments", {})
    for role in ("debtor", "creditor"):
        account = payments.get(role, {}).get(f"{role}Account")
        if isinstance(account, dict) and "accountId" in account:
            account["accountId"] = mask_account(account["accountId"])
    return safe


# --- parsing helpers ---------------------------------------------------------------------------------------------
def _protocol(message: str, *, operation: str, exchange: Exchange | None) -> ProcessorProtocolError:
    return ProcessorProtocolError(message, processor=PROCESSOR, operation=operation, exchange=exchange)


def _object(value: Any, what: str, *, operation: str, exchange: Exchange | None) -> Mapping:
    if not isinstance(value, Mapping):
        raise _protocol(f"{what} is not an object", operation=operation, exchange=exchange)
    return value


def _string(value: Any, what: str, *, operation: str, exchange: Exchange | None, required: bool = True) -> str | None:
    if not required and (value is None or value == ""):
        return None
    if not isinstance(value, str) or not value.strip():
        raise _protocol(f"{what} is missing or not a string", operation=operation, exchange=exchange)
    return value


def _datetime(value: Any, what: str, *, operation: str, exchange: Exchange | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
        # In UTC: Python accepts offsets up to ±23:59, PostgreSQL only ±15:59 (an odd offset must not fail a write).
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _protocol(f"{what} is not an ISO 8601 date-time", operation=operation, exchange=exchange) from exc


def _status(value: Any, what: str, *, operation: str, exchange: Exchange | None) -> str:
    if value not in STATUSES:
        raise _protocol(f"{what} is not a known JPM status", operation=operation, exchange=exchange)
    return value


def _exceptions(value: Any, *, operation: str, exchange: Exchange | None) -> tuple[JpmException, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _protocol("exception list is not a list", operation=operation, exchange=exchange)
    parsed = []
    for item in value:
        item = _object(item, "exception entry", operation=operation, exchange=exchange)
        texts = {}
        for key in ("errorCode", "errorDescription", "ruleDefinition", "externalCode"):
            raw = item.get(key)
            if raw is not None and not isinstance(raw, str | int):
                raise _protocol(f"exception {key} is not a string", operation=operation, exchange=exchange)
            texts[key] = None if raw is None else str(raw)
        parsed.append(JpmException(error_code=texts["errorCode"], error_description=texts["errorDescription"],
                                   rule_definition=texts["ruleDefinition"], external_code=texts["externalCode"]))
    return tuple(parsed)


def _return_code(exceptions: tuple[JpmException, ...]) -> tuple[str | None, str | None]:
    for item in exceptions:
        if item.external_code:
            return item.external_code, item.nacha_code
    return None, None


# --- answers -----------------------------------------------------------------------------------------------------
def error_details(body: Any) -> list[tuple[str, str]] | None:
    """``[(errorCode, errorDescription), ...]`` of a JPM error body, or None when ``body`` is not one."""
    if not isinstance(body, Mapping) or not isinstance(body.get("errors"), Mapping):
        return None
    details = body["errors"].get("errorDetails")
    if not isinstance(details, list) or not details:
        return None
    parsed = []
    for item in details:
        if not isinstance(item, Mapping) or not isinstance(item.get("errorCode"), str) or not item["errorCode"]:
            return None
        description = item.get("errorDescription")
        parsed.append((item["errorCode"], description if isinstance(description, str) else ""))
    return parsed


def parse_submission(body: Any, *, end_to_end_id: str, exchange: Exchange | None,
                     operation: str = "submit_ach_payment") -> JpmSubmission:
    answer = _object(_object(body, "answer", operation=operation, exchange=exchange).get("paymentInitiationResponse"),
                     "paymentInitiationResponse", operation=operation, exchange=exchange)
    echoed = _string(answer.get("endToEndId"), "endToEndId", operation=operation, exchange=exchange)
    if echoed != end_to_end_id:
        raise _protocol("the answer is for another endToEndId", operation=operation, exchange=exchange)
    firm_root_id = _string(answer.get("firmRootId"), "firmRootId", operation=operation, exchange=exchange)
    return JpmSubmission(end_to_end_id=end_to_end_id, firm_root_id=firm_root_id, exchange=exchange)


def parse_payment_status(body: Any, *, end_to_end_id: str, exchange: Exchange | None,
                         operation: str = "get_payment_status") -> JpmPaymentStatus:
    status = _object(_object(body, "answer", operation=operation, exchange=exchange).get("paymentStatus"),
                     "paymentStatus", operation=operation, exchange=exchange)
    exceptions = _exceptions(status.get("exception", status.get("exceptions")), operation=operation,
                             exchange=exchange)
    return_code, nacha = _return_code(exceptions)
    return JpmPaymentStatus(
        end_to_end_id=end_to_end_id,
        status=_status(status.get("status"), "status", operation=operation, exchange=exchange),
        create_date_time=_datetime(status.get("createDateTime"), "createDateTime", operation=operation,
                                   exchange=exchange),
        exceptions=exceptions,
        return_code=return_code,
        return_code_nacha=nacha,
        exchange=exchange,
    )


def _positive_int(value: Any, what: str, *, operation: str, exchange: Exchange | None, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _protocol(f"{what} is not an integer ≥ {minimum}", operation=operation, exchange=exchange)
    return value


def _transaction(record: Any, *, operation: str, exchange: Exchange | None) -> JpmTransaction:
    record = _object(record, "transaction record", operation=operation, exchange=exchange)
    try:
        transaction_date = date.fromisoformat(record.get("transactionDate"))
    except (TypeError, ValueError) as exc:
        raise _protocol("transactionDate is not a date", operation=operation, exchange=exchange) from exc
    amount_raw = record.get("amount")
    if isinstance(amount_raw, bool) or not isinstance(amount_raw, int | float | str):
        raise _protocol("amount is not a number", operation=operation, exchange=exchange)
    try:
        amount = Decimal(str(amount_raw))
    except InvalidOperation as exc:
        raise _protocol("amount is not a number", operation=operation, exchange=exchange) from exc
    if not amount.is_finite():
        raise _protocol("amount is not a number", operation=operation, exchange=exchange)

    def optional(key: str) -> str | None:
        return _string(record.get(key), key, operation=operation, exchange=exchange, required=False)

    return JpmTransaction(
        transaction_id=_string(record.get("transactionId"), "transactionId", operation=operation, exchange=exchange),
        account_id=optional("accountId"),
        transaction_date=transaction_date,
        amount=amount,
        currency=optional("currency"),
        credit_debit_indicator=optional("creditDebitIndicator"),
        status=optional("status"),
        end_to_end_id=optional("endToEndId"),
        firm_root_id=optional("firmRootId"),
        payment_type=optional("paymentType"),
        description=optional("description"),
        raw=dict(record),
    )


def parse_transactions_page(body: Any, *, exchange: Exchange | None,
                            operation: str = "list_transactions") -> JpmTransactionsPage:
    body = _object(body, "answer", operation=operation, exchange=exchange)
    data = body.get("data")
    if not isinstance(data, list):
        raise _protocol("data is not a list", operation=operation, exchange=exchange)
    pagination = _object(body.get("pagination"), "pagination", operation=operation, exchange=exchange)
    return JpmTransactionsPage(
        transactions=tuple(_transaction(item, operation=operation, exchange=exchange) for item in data),
        page_number=_positive_int(pagination.get("pageNumber"), "pageNumber", operation=operation,
                                  exchange=exchange, minimum=1),
        total_pages=_positive_int(pagination.get("totalPages"), "totalPages", operation=operation,
                                  exchange=exchange, minimum=0),
        exchange=exchange,
    )


def parse_callback_message(message: bytes | str | Mapping) -> tuple[JpmCallback, ...]:
    """Parse one webhook message ``{"callbacks": [...]}`` (SPEC §7.1): 1 to 50 callbacks, each with an
    endToEndId and a known paymentStatus. Authenticate the message (SPEC §10) before calling this."""
    operation = "callback"
    if isinstance(message, bytes | str):
        try:
            message = json.loads(message)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _protocol("callback message is not JSON", operation=operation, exchange=None) from exc
    body = _object(message, "callback message", operation=operation, exchange=None)
    callbacks = body.get("callbacks")
    if not isinstance(callbacks, list) or not callbacks:
        raise _protocol("callbacks is missing, empty or not a list", operation=operation, exchange=None)
    if len(callbacks) > MAX_CALLBACKS_PER_MESSAGE:
        raise _protocol(f"more than {MAX_CALLBACKS_PER_MESSAGE} callbacks in one message", operation=operation,
                        exchange=None)
    parsed = []
    for item in callbacks:
        item = _object(item, "callback", operation=operation, exchange=None)
        exceptions = _exceptions(item.get("exceptions", item.get("exception")), operation=operation, exchange=None)
        return_code, nacha = _return_code(exceptions)
        parsed.append(JpmCallback(
            end_to_end_id=_string(item.get("endToEndId"), "endToEndId", operation=operation, exchange=None),
            firm_root_id=_string(item.get("firmRootId"), "firmRootId", operation=operation, exchange=None,
                                 required=False),
            create_date_time=_datetime(item.get("createDateTime"), "createDateTime", operation=operation,
                                       exchange=None),
            payment_status=_status(item.get("paymentStatus"), "paymentStatus", operation=operation, exchange=None),
            exceptions=exceptions,
            return_code=return_code,
            return_code_nacha=nacha,
        ))
    return tuple(parsed)
