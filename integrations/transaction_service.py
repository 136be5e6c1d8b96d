"""Transaction Service notifications (processors.md, **assumed** shape).

``POST {TRANSACTION_SERVICE_URL}/payments/status`` with ``{event_id, confirmation_id, user_id, payment_status,
previous_status, amount, occurred_at}``; any 2xx = accepted. The receiver is idempotent on ``event_id``, so the
outbox may deliver the same event again after a timeout.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings

from integrations.errors import ProcessorConfigurationError, ProcessorDeclined
from integrations.http import Exchange, HttpClient


@dataclass(frozen=True)
class StatusNotification:
    event_id: str
    confirmation_id: str
    user_id: str
    payment_status: str
    previous_status: str
    amount: Decimal
    occurred_at: datetime

    def as_json(self) -> dict:
        return {
            "event_id": self.event_id,
            "confirmation_id": self.confirmation_id,
            "user_id": self.user_id,
            "payment_status": self.payment_status,
            "previous_status": self.previous_status,
            "amount": f"{self.amount:.2f}",
            "occurred_at": self.occurred_at.isoformat(),
        }


@dataclass(frozen=True)
class NotificationAccepted:
    duplicate: bool
    exchange: Exchange


class TransactionServiceClient(HttpClient):
    processor = "transaction_service"

    def post_payment_status(self, notification: StatusNotification) -> NotificationAccepted:
        """Deliver one status change. 4xx → ``ProcessorDeclined`` (code ``http_<status>``): not retryable."""
        response, exchange = self._send("POST", "payments/status", operation="post_payment_status",
                                        json_body=notification.as_json())
        if not 200 <= response.status_code < 300:
            raise ProcessorDeclined(f"Transaction Service refused the notification (HTTP {response.status_code})",
                                    code=f"http_{response.status_code}", processor=self.processor,
                                    operation="post_payment_status", exchange=exchange)
        body = self.json_body(response, exchange, operation="post_payment_status") if response.content else {}
        return NotificationAccepted(duplicate=bool(isinstance(body, dict) and body.get("duplicate")),
                                    exchange=exchange)


def transaction_service_client() -> TransactionServiceClient:
    if not settings.TRANSACTION_SERVICE_URL:
        raise ProcessorConfigurationError("TRANSACTION_SERVICE_URL is not set", processor="transaction_service",
                                          operation="configure")
    return TransactionServiceClient(base_url=settings.TRANSACTION_SERVICE_URL,
                                    connect_timeout=settings.OUTBOUND_CONNECT_TIMEOUT,
                                    read_timeout=settings.OUTBOUND_READ_TIMEOUT)
