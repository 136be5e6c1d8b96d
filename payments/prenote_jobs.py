"""The prenote jobs (SPEC §6, §7): Celery tasks, ``run_job`` entries and beat schedules. Imported by
``payments/jobs.py`` (autodiscovered by ``core``), so workers, beat and ``manage.py`` all register them.

- ``payments.process_prenotes`` (queue ``prenotes``: 10 attempts, 30 s): ``prenote_process_batch`` — up to 50
  requested prenotes per run. Kicked after a prenote request commits (coalesced), again by itself when a run
  stopped with requests left, and every 5 minutes by beat ("prenote submitter"). ``run_job process_prenotes``.
- ``payments.verify_prenotes`` (queue ``check-ach``: 1 attempt, 54 s): ``prenote_verify_due`` — three business
  days without a return → COMPLETED. Daily at 17:05 UTC ("prenote verifier": after the 16:30 returns sweep and
  the 17:00 check-ach). ``run_job verify_prenotes [--as-of YYYY-MM-DD]``.
"""

from __future__ import annotations

from datetime import date

from core.jobs import register_job
from core.outbox_push import coalesced_enqueue
from core.schedules import ScheduleSpec, register_schedule
from core.tasks import job
from payments.prenotes import prenote_process_batch, prenote_verify_due

PROCESS_TASK = "payments.process_prenotes"
VERIFY_TASK = "payments.verify_prenotes"
KICK_KEY = "payments:prenote-kick"
KICK_DELAY_SECONDS = 1.0


@job(name=PROCESS_TASK, queue="prenotes")
def process_prenotes_task() -> dict:
    """One batch of prenote submissions; another run is kicked when this one left requests waiting."""
    stats = prenote_process_batch()
    if stats.more:
        prenote_kick()
    return stats.as_dict()


@job(name=VERIFY_TASK, queue="check-ach")
def verify_prenotes_task() -> dict:
    """The daily verification of prenotes past three business days."""
    return prenote_verify_due().as_dict()


def prenote_kick() -> bool:
    """Ask for a prenote batch soon (after a request commits). Coalesced per second; never raises (the
    every-5-minutes schedule is the safety net)."""
    return coalesced_enqueue(process_prenotes_task, key=KICK_KEY, delay=KICK_DELAY_SECONDS)


@register_job("process_prenotes", help="Submit requested prenotes (one batch of up to PRENOTE_BATCH_SIZE).")
def process_prenotes_job(*, as_of: date | None = None) -> dict:
    """``as_of`` is accepted for the job interface and ignored: whatever is due now is submitted."""
    return prenote_process_batch().as_dict()


@register_job("verify_prenotes",
              help="Complete prenotes past three business days without a return (PRENOTE_VERIFIED).")
def verify_prenotes_job(*, as_of: date | None = None) -> dict:
    """``as_of``: verify as at the end of that Chicago day (never later than now)."""
    return prenote_verify_due(as_of=as_of).as_dict()


register_schedule(ScheduleSpec(name="prenote submitter", task=PROCESS_TASK, every_seconds=300))
register_schedule(ScheduleSpec(name="prenote verifier", task=VERIFY_TASK, crontab="5 17 * * *"))
