"""Test-only jobs, declared with the project's real ``@job`` decorator.

Workers started by the integration tests load this module with ``--include tests.integration.tasks``.
Every job reports what happened through files under a directory (or file) the test passes in, and
each record carries the pid and parent pid of the process that ran it, so a test can tell which
worker (main process = the parent of the pool child) executed the job.
"""

import os
import time
from pathlib import Path

from celery import current_task

from core.errors import PermanentJobError
from core.tasks import job

# The error message quotes an account-like number: the stored dead letter must not.
SECRET_NUMBER = "123456789012"

TOUCH_QUEUE = "debit-fixer"  # 1 attempt
SLOW_QUEUE = "usio-sync"  # 10 attempts, 540 s time limit


def _whoami() -> str:
    return f"{os.getpid()} {os.getppid()}"


def _write_atomic(path: Path, text: str) -> None:
    """Write ``path`` so that a reader never sees it half-written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _append_attempt(path: str) -> None:
    with open(path, "a") as fh:
        fh.write(f"{_whoami()} {current_task.request.retries}\n")


@job(name="tests.touch", queue=TOUCH_QUEUE)
def touch(path: str) -> None:
    """Write a marker file ``path`` holding "<pid> <ppid>"."""
    _write_atomic(Path(path), _whoami())


def _fail(path: str) -> None:
    _append_attempt(path)
    raise RuntimeError(f"processor declined account {SECRET_NUMBER}")


@job(name="tests.always_fails", queue="prenotes")  # 10 attempts
def always_fails(path: str) -> None:
    """Append "<pid> <ppid> <retries>" to ``path``, then fail."""
    _fail(path)


@job(name="tests.always_fails_once", queue="check-ach")  # 1 attempt
def always_fails_once(path: str) -> None:
    """Same as ``always_fails``, on a queue with a single attempt."""
    _fail(path)


@job(name="tests.permanent", queue="prenotes")  # 10 attempts, but the error is permanent
def permanent(path: str) -> None:
    """Append "<pid> <ppid> <retries>" to ``path``, then raise a PermanentJobError."""
    _append_attempt(path)
    raise PermanentJobError("the bank account is closed")


@job(name="tests.slow", queue=SLOW_QUEUE)
def slow(path: str, seconds: float) -> None:
    """Write ``<path>/started-<pid>``, wait, then write ``<path>/done-<pid>`` (each holding "<pid> <ppid>").

    The wait lasts ``seconds`` at most and ends early once the test creates ``<path>/release``: the
    test decides when the job may finish, so a job it wants to kill is still running when it kills
    it, and a redelivered job finishes well within the broker's visibility timeout (a job still
    running after the visibility timeout is handed out a second time by Redis).
    """
    directory = Path(path)
    _write_atomic(directory / f"started-{os.getpid()}", _whoami())
    release = directory / "release"
    deadline = time.monotonic() + seconds
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    _write_atomic(directory / f"done-{os.getpid()}", _whoami())


@job(name="tests.db_session", queue=TOUCH_QUEUE)  # 1 attempt
def db_session(path: str, fail: bool = False) -> None:
    """Append this job's database session (PostgreSQL's ``pg_backend_pid()``) to ``path`` as "<n> <backend pid>"
    (n: the line's number); with ``fail``, then run a statement the database refuses, and let its error end the job."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    target = Path(path)
    lines = target.read_text().splitlines() if target.exists() else []
    _write_atomic(target, "".join(f"{line}\n" for line in [*lines, f"{len(lines) + 1} {backend}"]))
    if fail:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table_for_this_test")
