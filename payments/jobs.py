"""Scheduled jobs of the payments app (autodiscovered by ``core``): the stuck-payment reconciler (SPEC §7.7).

``manage.py run_job reconcile_processing [--as-of YYYY-MM-DD]`` runs it now; beat runs the Celery task
``payments.reconcile_processing`` (``payments.tasks``) every 15 minutes (``manage.py setup_schedules``).
"""

from datetime import date

from core.jobs import register_job
from core.schedules import ScheduleSpec, register_schedule
from payments import (
    prenote_jobs,  # noqa: F401  (the prenote submitter and verifier: tasks, jobs, schedules)
    transaction_service_jobs,  # noqa: F401  (the Transaction Service sender)
)
from payments.reconciler import reconcile_processing

register_schedule(
    ScheduleSpec(name="stuck-payment reconciler", task="payments.reconcile_processing", every_seconds=900)
)


@register_job(
    "reconcile_processing",
    help="Resolve payments stuck in PROCESSING by asking the processor with our reference (SPEC §7.7).",
)
def reconcile_processing_job(*, as_of: date | None = None) -> dict:
    """Run the reconciler; ``as_of`` is the end of that Chicago day, never later than now. Returns its stats."""
    return reconcile_processing(as_of=as_of).as_dict()
