"""The Celery app declares SPEC §7's queues with their attempts and time limits, and the reliability settings."""

import pytest

from config.celery import app
from config.queues import QUEUES
from core.tasks import job

# SPEC §7: queue -> (attempts = SQS maxReceiveCount, time limit = 90% of the visibility timeout)
SPEC_QUEUES = {
    "prenotes": (10, 30),
    "jpm-webhooks": (10, 540),
    "check-ach": (1, 54),
    "blocklist-remove": (10, 540),
    "usio-sync": (10, 540),
    "usio-refresh": (1, 54),
    "debit-fixer": (1, 54),
}


def test_every_spec_queue_is_declared_with_its_attempts_and_time_limit():
    declared = {name: (q.attempts, q.time_limit) for name, q in QUEUES.items() if name != "default"}
    assert declared == SPEC_QUEUES
    assert {q.name for q in app.conf.task_queues} == set(QUEUES)


def test_reliability_settings():
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.beat_scheduler == "django_celery_beat.schedulers:DatabaseScheduler"
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]


@pytest.mark.parametrize("queue", sorted(SPEC_QUEUES))
def test_job_takes_attempts_and_time_limits_from_its_queue(queue):
    attempts, limit = SPEC_QUEUES[queue]

    @job(name=f"tests.config_probe.{queue}", queue=queue)
    def probe():
        return None

    try:
        assert probe.job_queue == queue
        assert app.amqp.router.route({}, probe.name, task_type=probe)["queue"].name == queue
        assert probe.attempts == attempts
        assert probe.max_retries == attempts - 1
        assert probe.time_limit == limit
        assert 0 < probe.soft_time_limit < limit
        assert probe.acks_late is True and probe.reject_on_worker_lost is True
    finally:
        app.tasks.unregister(probe.name)


def test_unknown_queue_is_refused():
    with pytest.raises(KeyError):
        job(name="tests.nowhere", queue="no-such-queue")
