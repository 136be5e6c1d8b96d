"""``core.celery_signals.recycle_db_connections`` around an eager task: the task runs inside its caller's use of
the connection (a request, a transaction), so the connection is left alone even when Django's rule would close it
at a worker's job boundary. (Worker jobs: tests/chaos/test_worker_db_connections.py.)"""

from __future__ import annotations

import time

import pytest
from django.db import connection, transaction

from tests.integration import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_eager_task_leaves_its_callers_connection_open(tmp_path):
    connection.ensure_connection()
    raw = connection.connection
    with transaction.atomic():
        connection.close_at = time.monotonic() - 1  # obsolete by CONN_MAX_AGE: a job boundary would close it

        tasks.touch.apply(args=[str(tmp_path / "marker")])

        assert connection.connection is raw and not connection.needs_rollback
        with connection.cursor() as cursor:  # the caller's transaction goes on, on the same connection
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
    assert (tmp_path / "marker").exists()
