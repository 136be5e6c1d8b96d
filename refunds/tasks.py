"""Celery tasks of the refunds app (thin: each calls one service)."""

from core.tasks import job
from refunds.reconciler import refund_reconcile_processing


@job(name="refunds.reconcile_processing", queue="default")
def reconcile_refunds_task() -> dict:
    """Beat entry point of the refund reconciler (every 15 min, queue ``default``): its stats.

    Safe to run twice or concurrently: every change is ``refund_finish``'s conditional update.
    """
    return refund_reconcile_processing().as_dict()
