"""The balance report jobs (SPEC §7.6, prod only): Celery task, ``run_job`` entry and beat schedules.

- ``syncing.balance_report`` (queue ``default``: 3 attempts, 300 s): ``balance_report_post(mode=...)``. Beat:
  "balance report daily" (13:00 UTC, ``mode=daily``) and "balance report hourly" (every hour at :00,
  ``mode=hourly``), both prod only (created disabled unless ``ENVIRONMENT=prod``). A Slack failure fails the
  attempt: retried, then dead-lettered.
- ``run_job balance_report [--mode daily|hourly]`` (``--as-of`` is accepted and ignored: a balance is read now).
"""

from __future__ import annotations

from datetime import date

from core.jobs import register_job
from core.schedules import ScheduleSpec, register_schedule
from core.tasks import job
from syncing.balance_report import MODES, balance_report_post

REPORT_TASK = "syncing.balance_report"


@job(name=REPORT_TASK, queue="default")
def balance_report_task(*, mode: str = "daily") -> dict:
    """Post the ``mode`` balance report."""
    return balance_report_post(mode=mode)


def _arguments(parser) -> None:
    parser.add_argument("--mode", choices=MODES, default="daily",
                        help="daily: one line per account and the total; hourly: one condensed line.")


@register_job("balance_report", help="Post the Usio prefunding balances to Slack.", add_arguments=_arguments)
def balance_report_job(*, as_of: date | None = None, mode: str = "daily") -> dict:
    return balance_report_post(mode=mode)


register_schedule(ScheduleSpec(name="balance report daily", task=REPORT_TASK, crontab="0 13 * * *",
                               prod_only=True, kwargs={"mode": "daily"}))
register_schedule(ScheduleSpec(name="balance report hourly", task=REPORT_TASK, crontab="0 * * * *",
                               prod_only=True, kwargs={"mode": "hourly"}))
