"""Celery tasks of the payments app (thin: each calls one service)."""

from core.tasks import job
from payments.reconciler import reconcile_processing


@job(name="payments.reconcile_processing", queue="default")
def reconcile_processing_task() -> dict:
    """Beat entry point of the stuck-payment reconciler (every 15 min, queue ``default``): its stats.

    Safe to run twice or concurrently: every change goes through the status machine's conditional update.
    """
    return reconcile_processing().as_dict()
