"""Telling the Transaction Service about float payments leaving ACHSENT (SPEC §7.2), without holding a
transaction across its HTTP call.

1. ``ts_notification_record`` (``ts_notification_record_many`` for a relay batch) — called by the outbox consumer
   ``payments.transaction_service_notifier`` inside the relay's transaction: writes one
   ``TransactionServiceNotification`` (unique per event id) and asks for a send run after commit. No HTTP here: the
   relay's batch (and its row locks) never waits for the Transaction Service.
2. ``ts_notifications_send_due`` — the sender (task ``payments.notify_transaction_service``, every minute and kicked
   after each commit that wrote a notification): claims due notifications in a short transaction (a lease on
   ``next_attempt_at``, ``SKIP LOCKED`` on PostgreSQL, so parallel runs never send one twice at once), then POSTs
   each outside any transaction. Accepted → ``sent``. Refused for good (a 4xx other than 408/409/425/429) → ``dead``
   and a ``DeadLetter`` at once. Network errors, timeouts and 5xx → retried with the consumers' back-off
   (``OUTBOX_CONSUMER_BACKOFF_SECONDS``, doubling, capped) until ``OUTBOX_CONSUMER_MAX_ATTEMPTS``, then ``dead`` and
   a ``DeadLetter``. Replaying that dead letter (``payments.ts_notification_retry``) makes it pending again.

At least once: a crash after the POST and before ``sent`` is committed sends it again when the lease expires; the
Transaction Service is idempotent on ``event_id`` (processors.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core.bulk import bulk_insert
from core.dead_letters import dead_letter_record
from core.outbox_relay import consumer_backoff, consumer_max_attempts
from core.redaction import redact_text
from integrations.errors import ProcessorDeclined, ProcessorError
from payments.models import NotificationStatus, TransactionServiceNotification

logger = logging.getLogger(__name__)

SEND_TASK = "payments.notify_transaction_service"
RETRY_TASK = "payments.ts_notification_retry"
BATCH_SIZE = 50
LEASE = timedelta(seconds=120)  # longer than one POST can take (connect + read timeouts)
DEFAULT_MAX_SECONDS = 240.0  # under the default queue's 300 s limit
# Transaction Service answers that retrying can change (the notification itself is not refused).
RETRYABLE_DECLINES = frozenset({"http_408", "http_409", "http_425", "http_429"})


@dataclass
class SendStats:
    claimed: int = 0
    sent: int = 0
    retrying: int = 0
    dead: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def ts_notification_record(*, event_id: str, payment_id, body: dict) -> bool:
    """Write the notification of event ``event_id`` (once: a repeat changes nothing) and ask for a send run after
    commit. Returns True when it was new. Call inside the consumer's transaction."""
    _, created = TransactionServiceNotification.objects.get_or_create(
        event_id=event_id, defaults={"payment_id": payment_id, "body": body})
    if created:
        from payments.transaction_service_jobs import ts_notify_kick

        transaction.on_commit(ts_notify_kick)
    return created


def ts_notification_record_many(*, notifications: list[tuple[str, object, dict]]) -> None:
    """``ts_notification_record`` for many ``(event_id, payment_id, body)``: one INSERT, an event that already has
    its notification is left alone (the unique event id), and one send run asked for after commit."""
    if not notifications:
        return
    # COPY on PostgreSQL (bulk_insert): bulk_create's client-side quoting of the JSON bodies was ~12 % of a relay
    # process's CPU
    bulk_insert(TransactionServiceNotification,
                [TransactionServiceNotification(event_id=event_id, payment_id=payment_id, body=body)
                 for event_id, payment_id, body in notifications],
                ignore_conflicts=True)
    from payments.transaction_service_jobs import ts_notify_kick

    transaction.on_commit(ts_notify_kick)


def _claim(*, now: datetime, batch_size: int) -> list[TransactionServiceNotification]:
    with transaction.atomic():
        queryset = (TransactionServiceNotification.objects
                    .filter(status=NotificationStatus.PENDING, next_attempt_at__lte=now).order_by("id"))
        if connection.features.has_select_for_update_skip_locked:
            queryset = queryset.select_for_update(skip_locked=True)
        rows = list(queryset[:batch_size])
        if rows:
            TransactionServiceNotification.objects.filter(pk__in=[r.pk for r in rows]).update(
                next_attempt_at=now + LEASE)
    return rows


def _notification(body: dict):
    from integrations.transaction_service import StatusNotification

    return StatusNotification(
        event_id=body["event_id"], confirmation_id=body["confirmation_id"], user_id=body["user_id"],
        payment_status=body["payment_status"], previous_status=body["previous_status"],
        amount=Decimal(body["amount"]), occurred_at=parse_datetime(body["occurred_at"]),
    )


def _dead(row: TransactionServiceNotification, exc: Exception, *, attempts: int) -> None:
    TransactionServiceNotification.objects.filter(pk=row.pk).update(
        status=NotificationStatus.DEAD, attempts=attempts, last_error=redact_text(str(exc))[:2000])
    dead_letter_record(task_name=RETRY_TASK, task_id="", queue="default", args=[],
                       kwargs={"event_id": str(row.event_id)}, error=exc, attempts=attempts)


def _send(row: TransactionServiceNotification, stats: SendStats) -> None:
    from integrations.transaction_service import transaction_service_client

    try:
        transaction_service_client().post_payment_status(_notification(row.body))
    except ProcessorError as exc:
        attempts = row.attempts + 1
        refused = isinstance(exc, ProcessorDeclined) and exc.code not in RETRYABLE_DECLINES
        if refused or attempts >= consumer_max_attempts():
            _dead(row, exc, attempts=attempts)
            stats.dead += 1
            logger.error("transaction service notification dead-lettered",
                         extra={"event_id": str(row.event_id), "attempts": attempts, "error": type(exc).__name__})
            return
        TransactionServiceNotification.objects.filter(pk=row.pk).update(
            attempts=attempts, next_attempt_at=timezone.now() + consumer_backoff(attempts),
            last_error=redact_text(str(exc))[:2000])
        stats.retrying += 1
        logger.warning("transaction service notification failed; will retry",
                       extra={"event_id": str(row.event_id), "attempts": attempts, "error": type(exc).__name__})
        return
    TransactionServiceNotification.objects.filter(pk=row.pk).update(
        status=NotificationStatus.SENT, sent_at=timezone.now(), last_error="")
    stats.sent += 1


def ts_notifications_send_due(*, now: datetime | None = None, batch_size: int = BATCH_SIZE,
                              max_seconds: float = DEFAULT_MAX_SECONDS) -> SendStats:
    """Send every due notification (see the module). ``now`` (aware; tests) is the clock deciding what is due."""
    deadline = time.monotonic() + max_seconds
    stats = SendStats()
    while time.monotonic() < deadline:
        rows = _claim(now=now or timezone.now(), batch_size=batch_size)
        if not rows:
            break
        stats.claimed += len(rows)
        for row in rows:
            _send(row, stats)
        if len(rows) < batch_size:
            break
    if stats.claimed:
        logger.info("transaction service notifications sent", extra={"stats": stats.as_dict()})
    return stats


def ts_notification_retry(*, event_id: str) -> bool:
    """Make a dead (or pending) notification due now with a fresh attempt budget (dead-letter replay). False when
    there is no such notification or it was sent already."""
    updated = TransactionServiceNotification.objects.filter(event_id=event_id).exclude(
        status=NotificationStatus.SENT).update(status=NotificationStatus.PENDING, attempts=0,
                                               next_attempt_at=timezone.now(), last_error="")
    if updated:
        from payments.transaction_service_jobs import ts_notify_kick

        transaction.on_commit(ts_notify_kick)
    return bool(updated)


__all__ = ["ts_notification_record", "ts_notification_record_many", "ts_notification_retry",
           "ts_notifications_send_due"]
