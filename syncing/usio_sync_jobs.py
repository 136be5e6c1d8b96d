"""The Usio sync jobs (SPEC §7.3; ``syncing.usio_sync`` holds the rules): Celery tasks, the ``run_job`` entry and the
beat schedules. Imported by ``syncing/jobs.py`` (autodiscovered by ``core``).

- ``syncing.usio_sync_schedule`` (queue ``default``), kwargs ``{"job_type": ...}``: computes the window of the run
  and enqueues one ``syncing.usio_sync_window`` per merchant account of ``USIO_SYNC_ACCOUNTS``. Beat runs it as
  "usio transactions sync" (every 30 minutes, prod only), "usio ACH returns sync" (16:30 UTC daily) and
  "usio chargebacks sync" (20:30 UTC daily).
- ``syncing.usio_sync_window`` (queue ``usio-sync``: 10 attempts, 540 s), args ``[account, job_type, start, end]``
  (ISO 8601): ``usio_sync_window`` for that account and window. A failed attempt (processor unreachable, timed
  out, or an answer that broke the protocol) is retried; after the 10th it is dead-lettered by ``JobTask`` with
  the raw answer. Arguments that cannot work (unknown job type or account, bad dates) are dead-lettered at once.
- ``manage.py run_job usio_sync --job-type transactions|ach_returns|chargebacks [--as-of YYYY-MM-DD]
  [--account NAME]``: every account's window now, synchronously; per-account stats.
"""

from __future__ import annotations

import logging
from datetime import date, datetime

from core.errors import PermanentJobError
from core.jobs import register_job
from core.schedules import ScheduleSpec, register_schedule
from core.tasks import job
from integrations.errors import ProcessorError
from syncing.usio_sync import (
    JOB_TYPES,
    usio_sync_accounts,
    usio_sync_window,
    usio_sync_window_bounds,
)

logger = logging.getLogger(__name__)

SCHEDULE_TASK = "syncing.usio_sync_schedule"
WINDOW_TASK = "syncing.usio_sync_window"
WINDOW_QUEUE = "usio-sync"


@job(name=WINDOW_TASK, queue=WINDOW_QUEUE)
def usio_sync_window_task(account: str, job_type: str, start: str, end: str) -> dict:
    """Sync one merchant account's window (one report). Safe to redeliver: the sync is idempotent."""
    try:
        start_at, end_at = datetime.fromisoformat(start), datetime.fromisoformat(end)
        if job_type not in JOB_TYPES or account not in usio_sync_accounts():
            raise ValueError(f"unknown job type {job_type!r} or account {account!r}")
        if start_at.tzinfo is None or end_at.tzinfo is None or end_at <= start_at:
            raise ValueError("the window needs aware start < end")
    except (TypeError, ValueError) as exc:
        raise PermanentJobError(f"bad usio sync job arguments: {exc}") from exc
    # A ProcessorError is retried by JobTask; after the last attempt it is dead-lettered with its raw answer.
    return usio_sync_window(account=account, job_type=job_type, start=start_at, end=end_at).as_dict()


@job(name=SCHEDULE_TASK, queue="default")
def usio_sync_schedule_task(job_type: str) -> dict:
    """Beat entry point: fan out this run's window, one job per merchant account."""
    return usio_sync_enqueue(job_type=job_type)


def usio_sync_enqueue(*, job_type: str, now: datetime | None = None) -> dict:
    """Enqueue one ``syncing.usio_sync_window`` job per account of ``USIO_SYNC_ACCOUNTS`` on ``usio-sync`` for the
    window of a run at ``now`` (default: the real time; see ``usio_sync_window_bounds``).

    Writes nothing to the database, so it publishes at once (no ``on_commit``). Running it twice enqueues the
    window twice; both jobs are harmless (the sync is idempotent).
    """
    start, end = usio_sync_window_bounds(job_type=job_type, now=now)
    accounts = usio_sync_accounts()
    for account in accounts:
        usio_sync_window_task.apply_async(args=[account, job_type, start.isoformat(), end.isoformat()])
    logger.info("usio sync windows enqueued", extra={"job_type": job_type, "start": start.isoformat(),
                                                     "end": end.isoformat(), "accounts": len(accounts)})
    return {"job_type": job_type, "start": start.isoformat(), "end": end.isoformat(), "enqueued": len(accounts)}


def _arguments(parser) -> None:
    parser.add_argument("--job-type", choices=JOB_TYPES, required=True, help="Which Usio report to sync.")
    parser.add_argument("--account", default=None,
                        help="Only this merchant account (a USIO_SYNC_ACCOUNTS name); default: all of them.")


@register_job("usio_sync", help="Sync a Usio report (transactions, ACH returns or chargebacks) into UsioTransaction "
                                "and apply it to the payments (SPEC §7.3).", add_arguments=_arguments)
def usio_sync_job(*, as_of: date | None = None, job_type: str, account: str | None = None) -> dict:
    """Run the window of ``as_of`` (ach_returns/chargebacks: that Chicago day; transactions: the 35 minutes ending
    at the end of that day, never later than now) for every account, synchronously. An account whose report
    cannot be read is reported with its error; the others still run."""
    start, end = usio_sync_window_bounds(job_type=job_type, as_of=as_of)
    accounts = usio_sync_accounts()
    if account is not None:
        if account not in accounts:
            raise PermanentJobError(f"--account must be one of {', '.join(accounts)}")
        accounts = [account]
    results: dict[str, dict] = {}
    for name in accounts:
        try:
            results[name] = usio_sync_window(account=name, job_type=job_type, start=start, end=end).as_dict()
        except ProcessorError as exc:
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return {"job_type": job_type, "start": start.isoformat(), "end": end.isoformat(), "accounts": results}


register_schedule(ScheduleSpec(name="usio transactions sync", task=SCHEDULE_TASK, crontab="*/30 * * * *",
                               prod_only=True, kwargs={"job_type": "transactions"}))
register_schedule(ScheduleSpec(name="usio ACH returns sync", task=SCHEDULE_TASK, crontab="30 16 * * *",
                               kwargs={"job_type": "ach_returns"}))
register_schedule(ScheduleSpec(name="usio chargebacks sync", task=SCHEDULE_TASK, crontab="30 20 * * *",
                               kwargs={"job_type": "chargebacks"}))
