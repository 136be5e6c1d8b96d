"""Helpers for the integration tests: real Celery worker processes, brokers, polling.

A ``Worker`` is a real ``celery worker`` subprocess (prefork pool, one child) in its own process
group, logging to a file. Messages are published from the test process straight to the broker under
test (not to whatever broker the test settings configure).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from django.conf import settings
from django.db import connection
from kombu import Connection

BASE_DIR = Path(settings.BASE_DIR)
CELERY = Path(sys.executable).with_name("celery")

# Redis hands a message out again once a worker has held it unacknowledged this long (seconds).
VISIBILITY_TIMEOUT = 4
# Generous deadlines: the suite may run on a loaded 2-core machine.
READY_TIMEOUT = 60.0
JOB_TIMEOUT = 60.0

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], *, timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def is_redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://"))


def redis_broker_url() -> str:
    """The Redis broker under test: TEST_REDIS_URL, else the configured broker if it is Redis, else db 15."""
    override = os.environ.get("TEST_REDIS_URL")
    if override:
        return override
    if is_redis(settings.CELERY_BROKER_URL):
        return settings.CELERY_BROKER_URL
    return "redis://127.0.0.1:6379/15"


def worker_database_url() -> str:
    """A DATABASE_URL for the test database pytest-django created (for worker processes)."""
    db = connection.settings_dict
    engine = db["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        name = str(db["NAME"])
        if name == ":memory:" or name.startswith("file:"):
            raise AssertionError(f"worker processes cannot share an in-memory SQLite test database ({name!r})")
        return f"sqlite:///{Path(name).resolve()}"
    if engine == "django.db.backends.postgresql":
        auth = quote(db.get("USER") or "", safe="")
        if db.get("PASSWORD"):
            auth += ":" + quote(db["PASSWORD"], safe="")
        host = db.get("HOST") or "localhost"
        port = db.get("PORT") or 5432
        return f"postgres://{auth}@{host}:{port}/{quote(db['NAME'], safe='')}"
    raise AssertionError(f"no DATABASE_URL form for test database engine {engine}")


# --- Broker access from the test process ----------------------------------------------------------


def broker_connection(broker_url: str) -> Connection:
    """A plain kombu connection to ``broker_url``.

    Not ``app.connection_for_write(url)``: that adds the configured broker's transport options, and
    Redis options make the SQLAlchemy transport fail (they are passed on to ``create_engine``).
    """
    return Connection(broker_url, connect_timeout=10)


def publish(broker_url: str, task, args: list, *, queue: str | None = None):
    """Send ``task`` to ``broker_url`` (the task's own queue unless ``queue`` is given)."""
    options = {"queue": queue} if queue else {}
    with broker_connection(broker_url) as conn:
        return task.apply_async(args=args, connection=conn, **options)


def queue_size(broker_url: str, queue: str) -> int:
    """Messages waiting (not handed out) in ``queue`` on ``broker_url``."""
    with broker_connection(broker_url) as conn:
        return conn.default_channel.queue_declare(queue=queue, passive=False).message_count


def purge(broker_url: str, queues: Iterable[str]) -> None:
    """Empty ``queues`` on the broker, including (Redis) messages a dead worker left unacknowledged."""
    queues = set(queues)
    with broker_connection(broker_url) as conn:
        channel = conn.default_channel
        for queue in queues:
            channel.queue_purge(queue)
        if is_redis(broker_url):
            # kombu keeps messages handed out to workers in a hash (+ an index by delivery time) and
            # puts them back on their queue after the visibility timeout: drop those of our queues.
            client = channel.client
            for tag, raw in client.hgetall(channel.unacked_key).items():
                _message, _exchange, routing_key = json.loads(raw)
                if routing_key in queues:
                    client.hdel(channel.unacked_key, tag)
                    client.zrem(channel.unacked_index_key, tag)


# --- Processes ------------------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgrp) of ``pid`` from /proc, or None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2])


def is_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (a zombie can do nothing any more)."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _live_processes() -> Iterable[tuple[int, int, int]]:
    """(pid, ppid, pgrp) of every live process."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[0] not in ("Z", "X"):
                yield int(entry.name), stat[1], stat[2]


def read_log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"


class Worker:
    """A running ``celery worker`` subprocess, leader of its own process group."""

    def __init__(self, *, name: str, broker_url: str, queues: list[str], log_path: Path, env: dict):
        self.name = name
        self.broker_url = broker_url
        self.queues = queues
        self.log_path = log_path
        cmd = [
            str(CELERY), "-A", "config", "worker",
            "--include", "tests.integration.tasks",
            "-Q", ",".join(queues),
            "--pool", "prefork", "--concurrency", "1",
            "--without-mingle", "--without-gossip", "--without-heartbeat",
            "-n", f"{name}@%h",
            "--loglevel", "INFO",
        ]  # fmt: skip
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=BASE_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        """The main (consumer) process; also the process group id."""
        return self.proc.pid

    def log(self) -> str:
        return read_log(self.log_path)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        marker = f"{self.name}@"
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker {self.name} exited with {self.proc.returncode}:\n{self.log()}")
            if any(marker in line and " ready." in line for line in self.log().splitlines()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"worker {self.name} not ready after {timeout:.0f}s:\n{self.log()}")
            time.sleep(0.05)

    def pool_children(self) -> set[int]:
        return {pid for pid, ppid, _ in _live_processes() if ppid == self.pid}

    def group_members(self) -> set[int]:
        return {pid for pid, _, pgrp in _live_processes() if pgrp == self.pid}

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children) and wait until all are gone."""
        os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        wait_for(lambda: not self.group_members(), timeout=30, what=f"worker {self.name} processes to die")

    def stop(self) -> None:
        """SIGTERM (warm shutdown), then SIGKILL whatever is left of the process group."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        wait_for(lambda: not self.group_members(), timeout=30, what=f"worker {self.name} processes to die")


def read_pids(path: Path) -> tuple[int, int]:
    """(pid, ppid) recorded in a marker file written by a test job."""
    pid, ppid = path.read_text().split()
    return int(pid), int(ppid)


def worker_env(*, broker_url: str) -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": worker_database_url(),
        "CELERY_BROKER_URL": broker_url,
        "CELERY_RETRY_BACKOFF_SECONDS": "0",
        "CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
        "CELERY_UNACKED_RESTORE_INTERVAL": "1",
        "CELERY_UNACKED_RESTORE_THROTTLE": "1",
    }
