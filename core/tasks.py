"""``@job``: how every Celery task of the project is declared.

A job names its queue; the queue (``config.queues``, SPEC §7) decides its attempts and time limits.
It runs with ``acks_late`` and ``reject_on_worker_lost``, so a worker that dies mid-job leaves the
message to be delivered again — jobs must therefore be idempotent. A failed attempt is retried with
exponential back-off until the queue's attempts are spent; then (or at once for a
``PermanentJobError``, or on a hard time limit) the job is written to ``DeadLetter``.
"""

import logging

from celery import Task
from celery.exceptions import Retry
from django.conf import settings

from config.celery import app
from config.queues import QUEUES
from core.errors import PermanentJobError

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300


def route_job(name, args, kwargs, options, task=None, **kw):
    """Celery router (``task_routes``): a job goes to the queue it was declared on."""
    queue = getattr(task, "job_queue", None)
    return {"queue": queue} if queue else None


class JobTask(Task):
    abstract = True
    acks_late = True
    reject_on_worker_lost = True
    attempts: int = 1
    job_queue: str = "default"

    def _schedule_name(self) -> str | None:
        """The beat schedule that sent this run (django-celery-beat's ``periodic_task_name`` header), if any."""
        request = self.request
        if request.called_directly:
            return None
        name = getattr(request, "periodic_task_name", None) or (request.headers or {}).get("periodic_task_name")
        return name if isinstance(name, str) and name else None

    def __call__(self, *args, **kwargs):
        from core.job_runs import job_run_finished, job_run_started
        from core.models import JobRunOutcome

        schedule = self._schedule_name()
        if schedule:
            job_run_started(name=schedule, task_name=self.name)
        try:
            result = super().__call__(*args, **kwargs)
        except Retry:
            raise
        except Exception as exc:
            if self.request.called_directly or isinstance(exc, PermanentJobError):
                raise
            attempt = self.request.retries + 1
            if attempt >= self.attempts:
                raise  # on_failure dead-letters it
            if schedule:
                job_run_finished(name=schedule, outcome=JobRunOutcome.RETRYING, error=exc)
            countdown = min(MAX_BACKOFF_SECONDS, settings.CELERY_RETRY_BACKOFF_SECONDS * 2 ** (attempt - 1))
            logger.warning(
                "job attempt failed; retrying",
                extra={"task_name": self.name, "attempt": attempt, "attempts": self.attempts},
            )
            raise self.retry(exc=exc, countdown=countdown, max_retries=self.attempts - 1) from exc
        if schedule:
            job_run_finished(name=schedule, outcome=JobRunOutcome.SUCCEEDED, result=result)
        return result

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        """Final failure (attempts spent, permanent error, or hard time limit): keep it for replay."""
        from core.dead_letters import dead_letter_record
        from core.job_runs import job_run_finished
        from core.models import JobRunOutcome

        schedule = self._schedule_name()
        if schedule:
            job_run_finished(name=schedule, outcome=JobRunOutcome.FAILED, error=exc)
        retries = getattr(self.request, "retries", None) or 0
        try:
            dead_letter_record(
                task_name=self.name,
                task_id=task_id,
                queue=self.job_queue,
                args=args,
                kwargs=kwargs,
                error=exc,
                attempts=retries + 1,
            )
        except Exception:
            # The database is down too: the log line is the last record of this job.
            logger.critical("could not write dead letter", extra={"task_name": self.name, "task_id": task_id})


def job(*, name: str, queue: str, **options):
    """Declare a Celery task on ``queue`` with that queue's attempts and time limits (SPEC §7)."""
    spec = QUEUES[queue]

    def decorator(func):
        return app.task(
            base=JobTask,
            name=name,
            job_queue=queue,
            attempts=spec.attempts,
            max_retries=spec.attempts - 1,
            time_limit=spec.time_limit,
            soft_time_limit=spec.soft_time_limit,
            **options,
        )(func)

    return decorator
