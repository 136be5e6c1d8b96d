"""A worker keeps its database connection from one job to the next (``CELERY_DB_REUSE_MAX`` and
``core.celery_signals.recycle_db_connections``), and drops it by Django's request-boundary rule: a connection the
server closed, or one older than ``CONN_MAX_AGE``, is replaced before the next job uses it; a job's SQL error does
not spoil the next job. Real worker (prefork, one child), real PostgreSQL; the jobs report ``pg_backend_pid()``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.db import connection

from core.models import DeadLetter
from tests.integration import tasks
from tests.integration.stack import JOB_TIMEOUT, publish, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _run(worker, path: Path, *, fail: bool = False) -> int:
    """Publish one ``tests.db_session`` job and wait until it recorded its session; its backend pid."""
    done = len(path.read_text().splitlines()) if path.exists() else 0
    publish(worker.broker_url, tasks.db_session, [str(path), fail])
    lines = wait_for(lambda: path.exists() and len(path.read_text().splitlines()) > done and path.read_text(),
                     timeout=JOB_TIMEOUT, what="the job's database session").splitlines()
    return int(lines[done].split()[1])


def _alive(backend: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [backend])
        return cursor.fetchone()[0] == 1


def test_consecutive_jobs_share_one_connection(start_worker, tmp_path):
    worker = start_worker([tasks.TOUCH_QUEUE])
    path = tmp_path / "sessions"

    backends = [_run(worker, path) for _ in range(4)]

    assert len(set(backends)) == 1, f"a new database session per job: {backends}"
    assert _alive(backends[0])  # still open between jobs, for the next one


def test_a_connection_the_server_closed_is_replaced_and_the_next_job_runs(start_worker, tmp_path):
    worker = start_worker([tasks.TOUCH_QUEUE])
    path = tmp_path / "sessions"
    first = _run(worker, path)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [first])
    wait_for(lambda: not _alive(first), timeout=10, what="the session to end")

    second = _run(worker, path)  # the health check finds the dead connection and opens a new one

    assert second != first
    assert _run(worker, path) == second
    assert DeadLetter.objects.count() == 0  # no job failed on the closed connection


def test_a_job_that_ends_on_a_database_error_leaves_a_usable_connection(start_worker, tmp_path):
    worker = start_worker([tasks.TOUCH_QUEUE])
    path = tmp_path / "sessions"
    first = _run(worker, path, fail=True)  # the job fails (dead-lettered: one attempt) after its SQL error
    wait_for(lambda: DeadLetter.objects.filter(task_name="tests.db_session").exists(), timeout=JOB_TIMEOUT,
             what="the failed job's dead letter")

    after = [_run(worker, path) for _ in range(2)]

    assert after == [first, first]  # still usable: kept, and the jobs after it succeed on it
    assert DeadLetter.objects.count() == 1


def test_a_connection_older_than_conn_max_age_is_replaced_between_jobs(start_worker, tmp_path):
    worker = start_worker([tasks.TOUCH_QUEUE], DB_CONN_MAX_AGE="2")
    path = tmp_path / "sessions"
    first = _run(worker, path)
    assert _run(worker, path) == first  # younger than 2 s: kept
    time.sleep(2.5)

    later = _run(worker, path)

    assert later != first
    wait_for(lambda: not _alive(first), timeout=10, what="the old session to be closed, not leaked")
