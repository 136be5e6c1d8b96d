"""The Celery application.

Queues, attempts and time limits come from ``config.queues`` (SPEC §7); reliability settings
(``acks_late``, ``task_reject_on_worker_lost``, prefetch 1) come from Django settings (``CELERY_*``).
Tasks are declared with ``core.tasks.job`` so that a job which exhausts its attempts lands in
``DeadLetter``.
"""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("payments")
app.config_from_object("django.conf:settings", namespace="CELERY")


def _declare_queues() -> None:
    from config.queues import QUEUES

    app.conf.task_queues = [Queue(name, routing_key=name) for name in QUEUES]
    app.conf.task_default_queue = "default"
    # Each job names its queue (core.tasks.job); the router sends it there.
    app.conf.task_routes = ("core.tasks.route_job",)


_declare_queues()
app.autodiscover_tasks()

# Request-id propagation and other logging plumbing hooks into Celery's signals.
import core.celery_signals  # noqa: E402,F401
