"""Check ACH (SPEC §7.2): Celery tasks, the ``run_job`` entry and the beat schedule. Services: ``syncing.check_ach``.

- ``syncing.check_ach_schedule`` (queue ``default``: 3 attempts, 300 s) — beat "check-ach", daily 17:00 UTC (30 min
  after the 16:30 Usio returns sweep). Selects the candidate ids and publishes one ``syncing.check_ach_process`` job
  per ``CHECK_ACH_JPM_JOB_SIZE`` JPM ids or ``CHECK_ACH_JOB_SIZE`` Usio ids over ONE producer/connection, no result
  waits. On ``default``, not ``check-ach``:
  the check-ach queue's 54 s limit is sized for a worker job, while the fan-out of a million rows (200 SELECTs,
  ~6,000 publishes) needs more headroom; ``default``'s 300 s gives it.
- ``syncing.check_ach_process`` (queue ``check-ach``: 1 attempt, 54 s) — ``check_ach_process`` on its ids. One attempt:
  a duplicate state update is worse than a day's delay (SPEC §7.2); a job that raises is dead-lettered whole by
  ``JobTask.on_failure``; a single payment whose JPM answer breaks the protocol is dead-lettered alone by the
  service (``args=[[payment_id]]``: replaying it re-runs just that payment through this task). The JPM payments a
  job had no time to ask about (a slow JPM) are published as a new job of this task, at the end of the queue: not
  a retry — none of them was asked.
- ``manage.py run_job check_ach [--as-of YYYY-MM-DD]`` — the same selection, every batch processed inline.
"""

from __future__ import annotations

from datetime import date

from config.celery import app
from core.jobs import register_job
from core.schedules import ScheduleSpec, register_schedule
from core.tasks import job
from syncing.check_ach import (
    QUEUE,
    SCHEDULER_TASK,
    WORKER_TASK,
    check_ach_process,
    check_ach_run,
    check_ach_schedule,
)


@job(name=WORKER_TASK, queue=QUEUE)
def check_ach_process_task(payment_ids: list[str]) -> dict:
    """One batch of check-ach (ids from the scheduler, a job before it, or one id from a dead-letter replay); the JPM
    payments it has no time to ask about go to a new job (``continue_with``)."""
    return check_ach_process(payment_ids=payment_ids, time_limit=check_ach_process_task.soft_time_limit,
                             continue_with=lambda ids: check_ach_process_task.apply_async(args=[ids])).as_dict()


@job(name=SCHEDULER_TASK, queue="default")
def check_ach_schedule_task() -> dict:
    """The daily fan-out: one ``check_ach_process`` job per batch of candidate ids."""
    return check_ach_fan_out().as_dict()


def check_ach_fan_out():
    """Publish the jobs through one pooled producer (one broker connection for the whole fan-out)."""
    with app.producer_or_acquire() as producer:
        return check_ach_schedule(
            enqueue=lambda ids: check_ach_process_task.apply_async(args=[ids], producer=producer))


@register_job("check_ach",
              help="Complete / fail ACH debits past the three-business-day gate (JPM asked first), inline.")
def check_ach_job(*, as_of: date | None = None) -> dict:
    """``as_of``: as at the end of that Chicago day (never later than now). Returns selected, jobs and the stats."""
    return check_ach_run(as_of=as_of)


register_schedule(ScheduleSpec(name="check-ach", task=SCHEDULER_TASK, crontab="0 17 * * *"))
