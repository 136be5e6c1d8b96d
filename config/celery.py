"""The Celery application.

Queues, attempts and time limits come from ``config.queues`` (SPEC §7); reliability settings
(``acks_late``, ``task_reject_on_worker_lost``, prefetch 1) come from Django settings (``CELERY_*``).
Tasks are declared with ``core.tasks.job`` so that a job which exhausts its attempts lands in
``DeadLetter``.
"""

import os

from celery import Celery
from kombu import Queue
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("payments")
app.config_from_object("django.conf:settings", namespace="CELERY")


def _declare_queues() -> None:
    from config.queues import QUEUES

    app.conf.task_queues = [Queue(name, routing_key=name) for name in QUEUES]
    app.conf.task_default_queue = "default"
    # Each job names its queue (core.tasks.job); the router sends it there.
    app.conf.task_routes = ("core.tasks.route_job",)


class RedisChannel(kombu_redis.Channel):
    """kombu's Redis channel, failing with a connection error once its connection is closed.

    When Redis goes away, the worker closes the lost connection, which detaches its transport (``client = None``)
    while the channel is still in use: closing the channel tries to put its unacknowledged messages back, and a job
    that was running acknowledges its message on it when it ends. Both then reached ``_connparams`` and raised
    ``AttributeError: 'NoneType' object has no attribute 'hostname'`` — not a connection error, so the worker's main
    process died ("Unrecoverable error") instead of reconnecting. As a connection error, kombu and Celery handle it as
    they handle any lost broker: the close goes on, the late acknowledgement is logged, the worker reconnects.
    """

    def _connparams(self, asynchronous=False):
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection of this channel is closed")
        return super()._connparams(asynchronous=asynchronous)


class RedisTransport(kombu_redis.Transport):
    """kombu's Redis transport with ``RedisChannel`` (``CELERY_BROKER_TRANSPORT`` for a Redis broker)."""

    Channel = RedisChannel


_declare_queues()
app.autodiscover_tasks()

# Request-id propagation and other logging plumbing hooks into Celery's signals.
import core.celery_signals  # noqa: E402,F401
