"""The Transaction Service sender's tasks, ``run_job`` entry and schedule (``payments.transaction_service``).

Imported by ``payments/jobs.py`` (autodiscovered), so workers, beat and ``manage.py`` register them.
"""

from __future__ import annotations

from datetime import date

from core.jobs import register_job
from core.outbox_push import coalesced_enqueue, kick_delay_seconds
from core.schedules import ScheduleSpec, register_schedule
from core.tasks import job
from payments.transaction_service import (
    RETRY_TASK,
    SEND_TASK,
    ts_notification_retry,
    ts_notifications_send_due,
)

_KICK_KEY = "payments:ts-notify-kick"


@job(name=SEND_TASK, queue="default")
def notify_transaction_service_task() -> dict:
    return ts_notifications_send_due().as_dict()


@job(name=RETRY_TASK, queue="default")
def ts_notification_retry_task(event_id: str) -> bool:
    """A dead-letter replay: the notification is due again."""
    return ts_notification_retry(event_id=event_id)


def ts_notify_kick() -> bool:
    """Ask for a send run soon (after a commit that wrote a notification). Coalesced; never raises."""
    return coalesced_enqueue(notify_transaction_service_task, key=_KICK_KEY, delay=kick_delay_seconds())


@register_job("notify_transaction_service",
              help="Send the due Transaction Service notifications (float payments leaving ACHSENT).")
def notify_transaction_service_job(*, as_of: date | None = None) -> dict:
    """``as_of`` is accepted for the job interface and ignored: what is due now is sent."""
    return ts_notifications_send_due().as_dict()


register_schedule(ScheduleSpec(name="transaction service notifier", task=SEND_TASK, every_seconds=60))
