"""Scheduled jobs of the refunds app (autodiscovered by ``core``): the refund reconciler.

``manage.py run_job reconcile_refunds [--as-of YYYY-MM-DD]`` runs it now; beat runs the Celery task
``refunds.reconcile_processing`` (``refunds.tasks``) every 15 minutes (``manage.py setup_schedules``).
"""

from datetime import date

from core.jobs import register_job
from core.schedules import ScheduleSpec, register_schedule
from refunds.reconciler import refund_reconcile_processing

register_schedule(
    ScheduleSpec(name="stuck-refund reconciler", task="refunds.reconcile_processing", every_seconds=900)
)


@register_job(
    "reconcile_refunds",
    help="Resolve refunds stuck in PROCESSING by asking Usio (our reference, or the refunded transaction).",
)
def reconcile_refunds_job(*, as_of: date | None = None) -> dict:
    """Run the refund reconciler; ``as_of`` is the end of that Chicago day, never later than now. Its stats."""
    return refund_reconcile_processing(as_of=as_of).as_dict()
