"""The JPM transaction sync job (SPEC §7.5): Celery task, ``run_job`` entry and beat schedule.

- ``syncing.jpm_transaction_sync`` (queue ``default``: 3 attempts, 300 s; daily 13:00 UTC, "jpm transaction
  sync"): ``jpm_transactions_sync`` for the previous Chicago day (or ``day``, ISO date, for a replay). A processor
  error writes nothing and fails the attempt: retried, then dead-lettered with the raw answer.
- ``run_job jpm_transaction_sync [--as-of YYYY-MM-DD]``: syncs the day before ``--as-of`` (default: yesterday).
"""

from __future__ import annotations

from datetime import date

from core.jobs import register_job
from core.schedules import ScheduleSpec, register_schedule
from core.tasks import job
from syncing.jpm_sync import jpm_transactions_sync

SYNC_TASK = "syncing.jpm_transaction_sync"


@job(name=SYNC_TASK, queue="default")
def jpm_transaction_sync_task(*, day: str | None = None) -> dict:
    """Sync ``day`` (YYYY-MM-DD), by default the previous Chicago day."""
    return jpm_transactions_sync(day=date.fromisoformat(day) if day else None).as_dict()


@register_job("jpm_transaction_sync",
              help="Upsert the previous day's JPM transaction details (all pages) into the staging table.")
def jpm_transaction_sync_job(*, as_of: date | None = None) -> dict:
    """``as_of``: the day the run acts for; the day before it is synced."""
    return jpm_transactions_sync(as_of=as_of).as_dict()


register_schedule(ScheduleSpec(name="jpm transaction sync", task=SYNC_TASK, crontab="0 13 * * *"))
