"""Fixtures that start real Celery worker processes against a real broker and the test database.

Workers read the test database pytest-django created (SQLite file or PostgreSQL), so tests that use
them are ``@pytest.mark.django_db(transaction=True)``: what a worker writes is committed and visible
here, and what the test writes is visible to the worker.
"""

import itertools
import os
import uuid

import pytest
from django.conf import settings

from tests.integration.stack import Worker, purge, redis_broker_url, worker_env

_names = itertools.count(1)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the logs of the test's workers to a failed test's report."""
    report = yield
    if report.failed:
        for worker in getattr(item, "_celery_workers", []):
            report.sections.append((f"celery worker {worker.name} log ({worker.log_path})", worker.log()))
    return report


@pytest.fixture
def redis_broker() -> str:
    """The Redis broker under test (see ``stack.redis_broker_url``)."""
    return redis_broker_url()


@pytest.fixture
def embedded_broker(tmp_path) -> str:
    """A fresh embedded broker (kombu's SQLAlchemy transport on a SQLite file), as `make run` uses."""
    return f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}"


@pytest.fixture
def configured_broker() -> str:
    """The broker the test settings configure (where ``app.send_task`` publishes)."""
    return settings.CELERY_BROKER_URL


@pytest.fixture
def broker(request, redis_broker, embedded_broker) -> str:
    """Indirect parametrization: ``"redis"`` or ``"embedded"``."""
    return {"redis": redis_broker, "embedded": embedded_broker}[request.param]


@pytest.fixture
def start_worker(request, tmp_path, transactional_db):
    """Start a real worker: ``start_worker(broker_url, queues)`` purges the queues, starts, waits until ready.

    Every worker started is stopped (SIGTERM, then SIGKILL) before the test database is flushed.
    """
    workers: list[Worker] = []
    request.node._celery_workers = workers

    def _start(broker_url: str, queues: list[str], *, purge_first: bool = True) -> Worker:
        if purge_first:
            purge(broker_url, queues)
        name = f"it{os.getpid()}-{next(_names)}-{uuid.uuid4().hex[:6]}"
        worker = Worker(
            name=name,
            broker_url=broker_url,
            queues=queues,
            log_path=tmp_path / f"worker-{name}.log",
            env=worker_env(broker_url=broker_url),
        )
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield _start
    for worker in reversed(workers):
        worker.stop()
