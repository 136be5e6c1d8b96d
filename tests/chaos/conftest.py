"""Fixtures of the chaos suite: the whole system running as separate processes on PostgreSQL + Redis + the sandbox.

The suite needs PostgreSQL (row locks, ``SKIP LOCKED``, many connections) and Redis (the production broker):
``make test`` runs it on them (see ``scripts/run-tests.sh``); on another database every test errors with the
reason instead of passing vacuously.

Tests are ``django_db(transaction=True)``: what the processes write is committed and visible to the test, and
the test database is flushed after each test.
"""

from __future__ import annotations

import itertools
import os
import uuid

import pytest
from django.db import connection

from tests.chaos.stack import ApiServer, RedisServer, TcpProxy, database_url, service_env
from tests.integration.stack import Worker, purge

_names = itertools.count(1)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the logs of the test's processes (workers, gunicorn, Redis) to a failed test's report."""
    report = yield
    if report.failed:
        for name, read in getattr(item, "_chaos_logs", []):
            report.sections.append((name, read()))
    return report


@pytest.fixture(autouse=True)
def _postgresql_only(request):
    if connection.vendor != "postgresql":
        raise pytest.UsageError(
            "tests/chaos runs on PostgreSQL + Redis: set DATABASE_URL=postgres://… (make test does, see "
            f"scripts/run-tests.sh); the test database here is {connection.vendor}"
        )
    request.node._chaos_logs = []


@pytest.fixture
def redis_server(request, tmp_path):
    """A private Redis for this test (its broker): killing or restarting it disturbs nobody else."""
    server = RedisServer(tmp_path / "redis.log")
    request.node._chaos_logs.append(("redis-server log", lambda: server.log_path.read_text(errors="replace")))
    yield server
    server.stop()


@pytest.fixture
def chaos_env(sandbox, redis_server):
    """``chaos_env(**extra)``: the environment of a worker or the API server (private Redis, sandbox, test DB)."""

    def _env(*, database: str | None = None, **extra: str) -> dict[str, str]:
        return service_env(broker_url=redis_server.url, sandbox=sandbox, database=database, **extra)

    return _env


@pytest.fixture
def start_worker(request, tmp_path, transactional_db, redis_server, chaos_env):
    """``start_worker(queues, **env)``: a real ``celery worker`` (prefork, one child) on the private Redis.

    Returns the ``tests.integration.stack.Worker``; ``worker.kill()`` is SIGKILL for the whole process group.
    Every worker is stopped before the test database is flushed.
    """
    workers: list[Worker] = []

    def _start(queues: list[str], *, purge_first: bool = False, **extra: str) -> Worker:
        if purge_first:
            purge(redis_server.url, queues)
        name = f"chaos{os.getpid()}-{next(_names)}-{uuid.uuid4().hex[:6]}"
        worker = Worker(
            name=name,
            broker_url=redis_server.url,
            queues=queues,
            log_path=tmp_path / f"worker-{name}.log",
            env=chaos_env(**extra),
        )
        workers.append(worker)
        request.node._chaos_logs.append((f"celery worker {name} log", worker.log))
        worker.wait_ready()
        return worker

    yield _start
    for worker in reversed(workers):
        worker.stop()


@pytest.fixture
def start_api(request, tmp_path, transactional_db, chaos_env):
    """``start_api(database=None, **env)``: gunicorn serving the API on a free port (``ApiServer``)."""
    servers: list[ApiServer] = []

    def _start(*, database: str | None = None, **extra) -> ApiServer:
        options = {k: extra.pop(k) for k in ("workers", "threads") if k in extra}
        log_path = tmp_path / f"gunicorn-{len(servers)}.log"
        server = ApiServer(env=chaos_env(database=database, **extra), log_path=log_path, **options)
        servers.append(server)
        request.node._chaos_logs.append((f"gunicorn log ({server.url})", server.log))
        return server

    yield _start
    for server in reversed(servers):
        server.stop()


@pytest.fixture
def pg_proxy():
    """A ``TcpProxy`` in front of the test database; ``database_url(port=pg_proxy.port)`` goes through it."""
    db = connection.settings_dict
    proxy = TcpProxy((db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)))
    yield proxy
    proxy.close()


@pytest.fixture
def proxied_database_url(pg_proxy) -> str:
    return database_url(port=pg_proxy.port)


from tests.payments.conftest import bank_account, debit_card  # noqa: E402,F401  (fixtures)
