"""Bulk seeding for the benchmarks: payments, status changes and outbox events written with COPY (psycopg 3),
shaped as the service writes them (the API's rendering of a payment in each event's ``data``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from bench.common import copy_rows

PAYMENT_COLUMNS = ["id", "confirmation_id", "user_id", "purpose", "payment_method", "payment_type",
                   "payment_provider", "merchant_account", "amount", "account_id", "masked_account_number",
                   "masked_card_number", "payment_status", "event_type", "submit_date", "idempotency_key",
                   "client_id", "created_at", "updated_at", "version"]
CHANGE_COLUMNS = ["payment_id", "from_status", "to_status", "source", "actor", "raw_payload_ref", "event_type", "at"]
EVENT_COLUMNS = ["event_id", "type", "source", "subject", "aggregate_id", "sequence", "data", "occurred_at",
                 "created_at"]

FLOAT_DEBIT = "29063402"
SUBSCRIPTION_DEBIT = "29111679"


@dataclass
class SeedPayment:
    id: uuid.UUID
    confirmation_id: str
    user_id: str
    purpose: str
    method: str
    type: str
    provider: str
    merchant: str | None
    amount: Decimal
    status: str
    submit_date: datetime

    def row(self) -> tuple:
        ach = self.method == "ach"
        return (self.id, self.confirmation_id, self.user_id, self.purpose, self.method, self.type, self.provider,
                self.merchant, self.amount, f"acct-{self.user_id}" if ach else None, "1234" if ach else None,
                None if ach else "4242", self.status, None, self.submit_date, None, "bench", self.submit_date,
                self.submit_date, 1)

    def render(self, status: str | None = None, *, completion: datetime | None = None,
               event_type: str | None = None, return_code: str | None = None) -> dict:
        """What ``payments.serializers.payment_render`` gives for this payment (the fields the consumers read)."""
        ach = self.method == "ach"
        return {
            "id": str(self.id), "confirmation_id": self.confirmation_id, "user_id": self.user_id,
            "purpose": self.purpose, "payment_method": self.method, "payment_type": self.type,
            "payment_provider": self.provider, "merchant_account": self.merchant, "amount": f"{self.amount:.2f}",
            "loan_id": None, "subscription_id": None, "cbc_card_id": None,
            "account_id": f"acct-{self.user_id}" if ach else None, "masked_account_number": "1234" if ach else None,
            "masked_card_number": None if ach else "4242", "payment_status": status or self.status,
            "return_code": return_code, "return_info": None, "event_type": event_type,
            "submit_date": self.submit_date.isoformat(), "return_date": None, "cleared_date": None,
            "completion_date": completion.isoformat() if completion else None,
        }


def make_payment(index: int, *, provider: str, status: str, submit_date: datetime, method: str = "ach",
                 purpose: str | None = None, payment_type: str = "debit", users: int = 50_000,
                 amount: Decimal | None = None) -> SeedPayment:
    pid = uuid.UUID(int=(0xBE7C << 112) | index)
    if provider == "jpm":
        purpose = purpose or "subscription"
        confirmation, merchant = pid.hex, None  # JPM's endToEndId is our reference
    else:
        purpose = purpose or "float"
        confirmation, merchant = f"UB{index:014X}", SUBSCRIPTION_DEBIT if purpose == "subscription" else FLOAT_DEBIT
    return SeedPayment(id=pid, confirmation_id=confirmation, user_id=f"bu-{index % users:06d}", purpose=purpose,
                       method=method, type=payment_type, provider=provider, merchant=merchant,
                       amount=amount or Decimal(10 + index % 90) + Decimal("0.50"), status=status,
                       submit_date=submit_date)


def copy_payments(payments: Iterator[SeedPayment]) -> int:
    return copy_rows("payments_payment", PAYMENT_COLUMNS, (p.row() for p in payments))


def copy_changes(rows: Iterator[tuple]) -> int:
    return copy_rows("payments_paymentstatuschange", CHANGE_COLUMNS, rows)


def copy_events(rows: Iterator[tuple]) -> int:
    return copy_rows("core_outboxevent", EVENT_COLUMNS, rows)


def event_row(payment: SeedPayment, *, type: str, sequence: int, data: dict, at: datetime) -> tuple:
    return (uuid.uuid4(), type, "PaymentService", payment.confirmation_id, str(payment.id), sequence,
            json.dumps(data), at, at)


def days_ago(now: datetime, days: int) -> datetime:
    return now - timedelta(days=days)
