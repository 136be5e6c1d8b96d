"""Recording the last run of each scheduled job (``core.models.JobRun``) for the back-office dashboard.

Never raises: a job must not fail because its bookkeeping could not be written (the database being down is
reported by the job itself). Errors are redacted before they are stored.
"""

from __future__ import annotations

import json
import logging

from django.db.models import F
from django.utils import timezone

from core.models import JobRun, JobRunOutcome
from core.redaction import redact, redact_text

logger = logging.getLogger(__name__)

MAX_RESULT_CHARS = 4000


def _small(result) -> dict | list | str | int | float | bool | None:
    """The job's summary if it is JSON and small; else a note saying what it was."""
    try:
        text = json.dumps(result, default=str)
    except (TypeError, ValueError):
        return {"note": f"unserialisable {type(result).__name__}"}
    if len(text) > MAX_RESULT_CHARS:
        return {"note": f"summary of {len(text)} characters not kept"}
    return redact(json.loads(text))


def job_run_started(*, name: str, task_name: str) -> None:
    try:
        now = timezone.now()
        updated = JobRun.objects.filter(name=name).update(
            task_name=task_name, last_started_at=now, last_finished_at=None, last_outcome=JobRunOutcome.RUNNING,
            last_error="", runs=F("runs") + 1)
        if not updated:
            JobRun.objects.get_or_create(name=name, defaults={
                "task_name": task_name, "last_started_at": now, "last_outcome": JobRunOutcome.RUNNING, "runs": 1})
    except Exception:
        logger.warning("could not record a job start", extra={"job": name}, exc_info=True)


def job_run_finished(*, name: str, outcome: str, result=None, error: BaseException | None = None) -> None:
    try:
        values = {"last_finished_at": timezone.now(), "last_outcome": outcome}
        if outcome == JobRunOutcome.SUCCEEDED:
            values["last_result"] = _small(result)
        if error is not None:
            values["last_error"] = redact_text(f"{type(error).__name__}: {error}")[:2000]
        if outcome == JobRunOutcome.FAILED:
            values["failures"] = F("failures") + 1
        JobRun.objects.filter(name=name).update(**values)
    except Exception:
        logger.warning("could not record a job outcome", extra={"job": name}, exc_info=True)
