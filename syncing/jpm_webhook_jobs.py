"""The JPM webhook jobs (SPEC §7.1, §7): Celery tasks, ``run_job`` entries and beat schedules. Imported by
``syncing/jobs.py`` (autodiscovered by ``core``). See ``syncing.jpm_webhook`` for the rules.

- ``syncing.process_jpm_webhook`` (queue ``jpm-webhooks``: 10 attempts, 540 s): ``jpm_webhook_process`` for one
  stored message. Enqueued after the intake commits (and by the sweeper). A failing attempt is retried with
  back-off; the last one (or a permanent error) marks the message ``failed`` and ``JobTask.on_failure``
  dead-letters the job (args ``[message_id]``: a replay re-runs that message).
- ``syncing.sweep_jpm_webhooks`` (queue ``default``): ``jpm_webhook_sweep`` every 5 minutes ("jpm webhook
  sweeper") — queues again the stored messages whose enqueue was lost. ``run_job jpm_webhooks_sweep``.
- ``run_job jpm_webhooks``: process every ``received`` message now, synchronously.
"""

from __future__ import annotations

from datetime import date

from core.errors import PermanentJobError
from core.jobs import register_job
from core.schedules import ScheduleSpec, register_schedule
from core.tasks import job
from syncing.jpm_webhook import (
    jpm_webhook_process,
    jpm_webhook_process_received,
    jpm_webhook_record_failure,
    jpm_webhook_sweep,
)

PROCESS_TASK = "syncing.process_jpm_webhook"
SWEEP_TASK = "syncing.sweep_jpm_webhooks"
QUEUE = "jpm-webhooks"


@job(name=PROCESS_TASK, queue=QUEUE, bind=True)
def process_jpm_webhook_task(self, message_id: int) -> dict:
    """Process one stored JPM message. On failure the attempt is noted on the message; the last attempt (or a
    permanent error) marks it ``failed`` before the job is dead-lettered."""
    try:
        return jpm_webhook_process(message_id=message_id).as_dict()
    except Exception as exc:
        final = not self.request.called_directly and (
            isinstance(exc, PermanentJobError) or self.request.retries + 1 >= self.attempts)
        jpm_webhook_record_failure(message_id=message_id, error=exc, final=final)
        raise


@job(name=SWEEP_TASK, queue="default")
def sweep_jpm_webhooks_task() -> dict:
    """Beat, every 5 minutes: queue again the stored messages whose job was never started."""
    return jpm_webhook_sweep().as_dict()


@register_job("jpm_webhooks", help="Process every stored JPM webhook message still 'received', now.")
def jpm_webhooks_job(*, as_of: date | None = None) -> dict:
    """``as_of`` is accepted for the job interface and ignored: the messages stored now are processed."""
    return jpm_webhook_process_received().as_dict()


@register_job("jpm_webhooks_sweep", help="Queue again the stored JPM webhook messages whose job never started.")
def jpm_webhooks_sweep_job(*, as_of: date | None = None) -> dict:
    """``as_of`` is accepted and ignored: the sweep looks at messages older than JPM_WEBHOOK_SWEEP_MINUTES now."""
    return jpm_webhook_sweep().as_dict()


register_schedule(ScheduleSpec(name="jpm webhook sweeper", task=SWEEP_TASK, crontab="*/5 * * * *"))
