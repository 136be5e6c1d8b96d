"""The fake JPM's wire shapes: constants, error bodies, payment validation and the records it answers with."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from werkzeug.wrappers import Response

from sandbox.conventions import AccountOutcome, account_outcome
from sandbox.core import json_response

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_PATH = "/jpm/oauth2/token"
JOSE = "application/jose"

# Status timeline after submission (sandbox clock).
ACCEPTED_AFTER = timedelta(minutes=1)
CLEARED_AFTER = timedelta(hours=1)
COMPLETED_AFTER = timedelta(days=1)
RETURNED_AFTER = timedelta(days=2)
FINAL = ("REJECTED", "RETURNED")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_CALLBACKS_PER_MESSAGE = 50
CALLBACK_TIMEOUT_SECONDS = 3.0  # processors.md: JPM waits 3 s for the webhook's 200
MAX_AMOUNT = Decimal("99999999.99")
# The config fields a test may change (PATCH /_control/config, PUT token-ttl); reset() restores them.
TUNABLE_CONFIG = ("jpm_require_signed_bodies", "jpm_token_ttl_seconds", "jpm_webhook_url", "jpm_webhook_secret")

END_TO_END_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,34}$")
ACCOUNT_ID = re.compile(r"^\d{4,17}$")
ROUTING = re.compile(r"^\d{9}$")
ACCOUNT_TYPES = ("CHECKING", "SAVINGS")

# Sandbox error codes (JPM's real catalogue is not public; the format is processors.md's).
E_BODY = ("GCA-001", "The request body is not a JSON object with a payments object")
E_END_TO_END_ID = ("GCA-002", "endToEndId must be 1-35 characters [A-Za-z0-9._-]")
E_AMOUNT = ("GCA-003", "paymentAmount is invalid")
E_CURRENCY = ("GCA-004", "paymentCurrency must be USD")
E_PAYMENT_TYPE = ("GCA-005", "paymentType must be ACH.TRF")
E_TRANSFER_TYPE = ("GCA-006", "transferType must be DEBIT or CREDIT")
E_ROUTING = ("GCA-007", "Routing number must be 9 digits with a valid ABA check digit")
E_ACCOUNT = ("GCA-008", "accountId must be 4-17 digits")
E_DATE = ("GCA-009", "requestedExecutionDate must be YYYY-MM-DD")
E_PARTY = ("GCA-010", "debtor/creditor name, accountType (CHECKING|SAVINGS) or agent idType (USABA) is invalid")
E_DUPLICATE = ("GCA-020", "endToEndId was already used for a different payment")
E_NOT_FOUND = ("GCA-030", "No payment with this endToEndId")
E_QUERY = ("GCA-040", "accountIds, startDate, endDate (YYYY-MM-DD, start <= end) and pageNumber >= 1 are required")
E_TOKEN = ("GCA-100", "Missing, unknown or expired access token")
E_SIGNATURE = ("GCA-101", "The JWS body signature is invalid")
E_UNSIGNED = ("GCA-102", "The request body must be a JWS (application/jose)")

RETURN_DESCRIPTIONS = {
    "R01": "Insufficient funds", "R02": "Account closed", "R03": "No account/unable to locate account",
    "R04": "Invalid account number", "R08": "Payment stopped", "R10": "Customer advises not authorized",
    "R15": "Beneficiary or account holder deceased", "R16": "Account frozen", "R20": "Non-transaction account",
    "R24": "Duplicate entry",
}


def errors_response(details: list[tuple[str, str]], status: int, headers: dict | None = None) -> Response:
    return json_response({"errors": {"errorDetails": [{"errorCode": code, "errorDescription": description}
                                                      for code, description in details]}}, status, headers)


def oauth_error(error: str, description: str, status: int) -> Response:
    return json_response({"error": error, "error_description": description}, status)


def aba_valid(routing: str) -> bool:
    if not ROUTING.match(routing or ""):
        return False
    d = [int(c) for c in routing]
    return (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + d[2] + d[5] + d[8]) % 10 == 0


def iso_time(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


class BadBody(Exception):
    def __init__(self, response: Response):
        self.response = response


@dataclass
class PaymentRecord:
    seq: int
    end_to_end_id: str
    firm_root_id: str
    transfer_type: str
    amount: Decimal
    prenote: bool
    requested_execution_date: date
    counterparty_name: str
    counterparty_last4: str
    company_account_id: str
    outcome: AccountOutcome
    created_at: datetime
    canonical: str
    status: str = "PENDING"
    history: list[tuple[str, datetime]] = field(default_factory=list)
    exceptions: list[dict] = field(default_factory=list)

    def answer(self) -> dict:
        return {"paymentInitiationResponse": {"endToEndId": self.end_to_end_id, "firmRootId": self.firm_root_id}}

    def schedule(self) -> list[tuple[str, datetime]]:
        if self.outcome.kind == "reject":
            return []
        steps = [("ACCEPTED", ACCEPTED_AFTER), ("CLEARED", CLEARED_AFTER), ("COMPLETED", COMPLETED_AFTER)]
        if self.outcome.kind == "return":
            steps.append(("RETURNED", RETURNED_AFTER))
        return [(status, self.created_at + delay) for status, delay in steps]

    def reason(self, rule: str) -> dict:
        nacha = self.outcome.return_code
        return {"errorCode": "ACH-RETURN" if self.outcome.kind == "return" else "ACH-REJECT",
                "errorDescription": RETURN_DESCRIPTIONS.get(nacha, f"ACH {nacha}"),
                "ruleDefinition": rule, "externalCode": self.outcome.iso_code}


def masked_body(body: Any) -> Any:
    payment = body.get("payments") if isinstance(body, dict) else None
    if not isinstance(payment, dict):
        return body
    payment = json.loads(json.dumps(payment, default=str))
    for role in ("debtor", "creditor"):
        party = payment.get(role)
        account = party.get(f"{role}Account") if isinstance(party, dict) else None
        if isinstance(account, dict) and isinstance(account.get("accountId"), str):
            account["accountId"] = "****" + account["accountId"][-4:]
    return {**body, "payments": payment}


def validate_payment(payment: dict) -> tuple[list[tuple[str, str]], dict]:
    """Field checks of a submit body → (errors, the parsed fields). Each error code appears once."""
    errors: list[tuple[str, str]] = []

    def fail(error: tuple[str, str]) -> None:
        if error not in errors:
            errors.append(error)

    def obj(value: Any) -> dict:
        return value if isinstance(value, dict) else {}

    end_to_end_id = obj(payment.get("paymentIdentifiers")).get("endToEndId")
    if not isinstance(end_to_end_id, str) or not END_TO_END_ID.match(end_to_end_id):
        fail(E_END_TO_END_ID)
    prenote = payment.get("prenote", False)
    if not isinstance(prenote, bool):
        fail(E_AMOUNT)
    amount = payment.get("paymentAmount")
    if isinstance(amount, bool) or not isinstance(amount, int | Decimal):
        fail(E_AMOUNT)
        amount = Decimal(0)
    amount = Decimal(amount)
    if (amount != amount.quantize(Decimal("0.01")) or amount < 0 or amount > MAX_AMOUNT
            or (prenote is True and amount != 0) or (prenote is not True and amount <= 0)):
        fail(E_AMOUNT)
    if payment.get("paymentCurrency") != "USD":
        fail(E_CURRENCY)
    if payment.get("paymentType") != "ACH.TRF":
        fail(E_PAYMENT_TYPE)
    transfer_type = payment.get("transferType")
    if transfer_type not in ("DEBIT", "CREDIT"):
        fail(E_TRANSFER_TYPE)
    try:
        execution_date = date.fromisoformat(payment.get("requestedExecutionDate"))
    except (TypeError, ValueError):
        fail(E_DATE)
        execution_date = None
    parties = {}
    for role in ("debtor", "creditor"):
        party = obj(payment.get(role))
        account = obj(party.get(f"{role}Account"))
        clearing = obj(obj(obj(payment.get(f"{role}Agent")).get("financialInstitutionId")).get("clearingSystemId"))
        name = party.get(f"{role}Name")
        if not isinstance(name, str) or not name.strip() or len(name) > 140:
            fail(E_PARTY)
        if account.get("accountType") not in ACCOUNT_TYPES or clearing.get("idType") != "USABA":
            fail(E_PARTY)
        account_id = account.get("accountId")
        if not isinstance(account_id, str) or not ACCOUNT_ID.match(account_id):
            fail(E_ACCOUNT)
        if not isinstance(clearing.get("id"), str) or not aba_valid(clearing["id"]):
            fail(E_ROUTING)
        parties[role] = (name, account_id)
    if errors:
        return errors, {}
    counterparty, company = ((parties["debtor"], parties["creditor"]) if transfer_type == "DEBIT"
                             else (parties["creditor"], parties["debtor"]))
    return [], {
        "end_to_end_id": end_to_end_id, "transfer_type": transfer_type, "amount": amount, "prenote": prenote,
        "requested_execution_date": execution_date, "counterparty_name": counterparty[0],
        "counterparty_last4": counterparty[1][-4:], "company_account_id": company[1],
        "outcome": account_outcome(counterparty[1]),
    }


def transaction_record(record: PaymentRecord) -> dict:
    """A transaction record of our (company) account. **Assumed** shape (processors.md has only the envelope)."""
    return {
        "transactionId": f"TX{record.seq:012d}",
        "accountId": record.company_account_id,
        "transactionDate": record.requested_execution_date.isoformat(),
        "amount": float(record.amount),
        "currency": "USD",
        # From our account's side: a DEBIT of the counterparty credits our account.
        "creditDebitIndicator": "CREDIT" if record.transfer_type == "DEBIT" else "DEBIT",
        "status": record.status,
        "endToEndId": record.end_to_end_id,
        "firmRootId": record.firm_root_id,
        "paymentType": "ACH.TRF",
        "description": f"ACH {record.transfer_type}{' PRENOTE' if record.prenote else ''}"
                       f" ****{record.counterparty_last4}",
    }


def ledger_entry(record: PaymentRecord) -> dict:
    return {
        "endToEndId": record.end_to_end_id, "firmRootId": record.firm_root_id, "transferType": record.transfer_type,
        "amount": f"{record.amount:.2f}", "prenote": record.prenote, "status": record.status,
        "statusHistory": [{"status": s, "at": iso_time(at)} for s, at in record.history],
        "exceptions": list(record.exceptions), "requestedExecutionDate": record.requested_execution_date.isoformat(),
        "createdAt": iso_time(record.created_at), "counterpartyName": record.counterparty_name,
        "accountLast4": record.counterparty_last4, "outcome": record.outcome.kind,
        "returnCode": record.outcome.return_code,
    }
