"""The idempotency-key purge: job ``purge_idempotency_keys`` (``manage.py run_job``) and Celery task
``core.purge_idempotency_keys`` (queue ``default``) for the beat schedule.

Imported by ``CoreConfig.ready`` (core's own ``jobs.py`` is the registry itself, so autodiscovery does not find
this module).
"""

from datetime import date

from core.idempotency.services import idempotency_purge, idempotency_retention_hours
from core.jobs import register_job
from core.schedules import ScheduleSpec, register_schedule
from core.tasks import job


def _add_arguments(parser) -> None:
    parser.add_argument(
        "--older-than-hours",
        type=int,
        default=None,
        help="Retention in hours (default IDEMPOTENCY_RETENTION_HOURS; at least 24).",
    )


@register_job(
    "purge_idempotency_keys",
    help="Delete idempotency keys completed, or stale, longer ago than the retention (at least 24 h).",
    add_arguments=_add_arguments,
)
def purge_idempotency_keys(*, as_of: date | None = None, older_than_hours: int | None = None) -> dict:
    """Run ``idempotency_purge``. ``as_of`` is accepted for the job interface and ignored: retention is measured
    from now, not from a business date."""
    hours = idempotency_retention_hours() if older_than_hours is None else older_than_hours
    return {"deleted": idempotency_purge(older_than_hours=hours), "older_than_hours": hours}


@job(name="core.purge_idempotency_keys", queue="default")
def purge_idempotency_keys_task() -> int:
    """Beat entry point: purge with the configured retention; returns how many records were deleted."""
    return idempotency_purge()


register_schedule(ScheduleSpec(name="idempotency-key purge", task="core.purge_idempotency_keys", crontab="17 * * * *"))
