"""Celery on the real stack: worker processes started here execute, retry, dead-letter and redeliver jobs.

Workers consume from Redis (the production broker) and, where it matters for `make run`, from the
embedded broker (kombu's SQLAlchemy transport on a SQLite file). Jobs are the test-only jobs of
``tests.integration.tasks``, declared with the project's own ``@job``.
"""

import os
import signal
from pathlib import Path

import pytest

from core.dead_letters import dead_letter_replay
from core.models import DeadLetter
from tests.integration import tasks
from tests.integration.stack import (
    JOB_TIMEOUT,
    is_alive,
    publish,
    purge,
    queue_size,
    read_pids,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _files(directory: Path, prefix: str) -> dict[int, Path]:
    """``<prefix>-<pid>`` files in ``directory``, by pid."""
    return {int(p.name.split("-", 1)[1]): p for p in directory.glob(f"{prefix}-*")}


def _attempt_lines(path: Path) -> list[tuple[int, int, int]]:
    """(pid, ppid, retries) per attempt recorded by a failing job."""
    if not path.exists():
        return []
    return [tuple(int(x) for x in line.split()) for line in path.read_text().splitlines()]


def _drain(broker_url: str, queue: str, tmp_path: Path, label: str) -> None:
    """Run a `touch` through ``queue`` and wait for it: the one-child worker consumes a queue in order,
    so every message that was on ``queue`` before it has been run by the time it is done."""
    marker = tmp_path / f"drained-{label}"
    publish(broker_url, tasks.touch, [str(marker)], queue=queue)
    wait_for(marker.exists, timeout=JOB_TIMEOUT, what=f"the drain marker on {queue}")


def _assert_touched_by(marker: Path, worker) -> None:
    pid, ppid = read_pids(marker)
    assert pid != os.getpid()
    assert ppid == worker.pid, f"written by pid {pid} whose parent {ppid} is not worker {worker.pid}"
    assert pid in worker.pool_children()


# --- A worker executes a job ----------------------------------------------------------------------


@pytest.mark.parametrize("broker", ["redis", "embedded"], indirect=True)
def test_worker_executes_a_job(start_worker, broker, tmp_path):
    """On Redis (production) and on the embedded SQLite broker (`make run`'s default)."""
    marker = tmp_path / "touched"
    purge(broker, [tasks.TOUCH_QUEUE])
    publish(broker, tasks.touch, [str(marker)])
    # The message sits on the job's own queue on the broker under test until a worker takes it.
    assert queue_size(broker, tasks.TOUCH_QUEUE) == 1

    worker = start_worker(broker, [tasks.TOUCH_QUEUE], purge_first=False)

    wait_for(marker.exists, timeout=JOB_TIMEOUT, what="the marker file")
    _assert_touched_by(marker, worker)
    assert queue_size(broker, tasks.TOUCH_QUEUE) == 0


# --- Attempts and dead letters --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "queue", "attempts"),
    [(tasks.always_fails, "prenotes", 10), (tasks.always_fails_once, "check-ach", 1)],
    ids=["prenotes-10", "check-ach-1"],
)
def test_failing_job_is_dead_lettered_after_exactly_its_queues_attempts(
    start_worker, redis_broker, tmp_path, task, queue, attempts
):
    log = tmp_path / "attempts.txt"
    worker = start_worker(redis_broker, [queue])

    publish(redis_broker, task, [str(log)])

    letter = wait_for(
        lambda: DeadLetter.objects.filter(task_name=task.name).first(), timeout=JOB_TIMEOUT, what="the dead letter"
    )
    # Anything still queued behind the last attempt (an extra retry) runs before the drain job.
    _drain(redis_broker, queue, tmp_path, "after-dead-letter")

    lines = _attempt_lines(log)
    assert [retries for _, _, retries in lines] == list(range(attempts))
    assert {ppid for _, ppid, _ in lines} == {worker.pid}
    assert DeadLetter.objects.count() == 1
    assert letter.task_name == task.name
    assert letter.queue == queue
    assert letter.attempts == attempts
    assert letter.args == [str(log)]
    assert letter.kwargs == {}
    assert letter.task_id
    assert "RuntimeError" in letter.last_error
    assert "processor declined account" in letter.last_error
    assert tasks.SECRET_NUMBER not in letter.last_error  # redacted before it is stored
    assert letter.replayed_at is None


def test_permanent_error_is_dead_lettered_after_one_attempt(start_worker, redis_broker, tmp_path):
    log = tmp_path / "attempts.txt"
    start_worker(redis_broker, ["prenotes"])  # a 10-attempt queue

    publish(redis_broker, tasks.permanent, [str(log)])

    letter = wait_for(
        lambda: DeadLetter.objects.filter(task_name=tasks.permanent.name).first(),
        timeout=JOB_TIMEOUT,
        what="the dead letter",
    )
    _drain(redis_broker, "prenotes", tmp_path, "after-dead-letter")

    assert len(_attempt_lines(log)) == 1
    assert DeadLetter.objects.count() == 1
    assert letter.attempts == 1
    assert letter.queue == "prenotes"
    assert "PermanentJobError" in letter.last_error


# --- Redelivery after a worker dies ---------------------------------------------------------------


def test_job_of_a_sigkilled_worker_is_redelivered_to_a_new_worker(start_worker, redis_broker, tmp_path):
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    worker_a = start_worker(redis_broker, [tasks.SLOW_QUEUE])
    publish(redis_broker, tasks.slow, [str(job_dir), JOB_TIMEOUT])

    started = wait_for(lambda: _files(job_dir, "started"), timeout=JOB_TIMEOUT, what="worker A to start the job")
    [(child_a, started_a)] = started.items()
    assert read_pids(started_a) == (child_a, worker_a.pid)

    worker_a.kill()  # main process and pool child, mid-job
    assert not is_alive(worker_a.pid) and not is_alive(child_a)
    assert not _files(job_dir, "done")
    (job_dir / "release").touch()  # from now on the job finishes as soon as it starts

    worker_b = start_worker(redis_broker, [tasks.SLOW_QUEUE], purge_first=False)

    # Redis hands the message out again once worker A's visibility timeout has run out.
    done = wait_for(lambda: _files(job_dir, "done"), timeout=JOB_TIMEOUT, what="worker B to complete the job")
    _drain(redis_broker, tasks.SLOW_QUEUE, tmp_path, "after-redelivery")

    done = _files(job_dir, "done")
    assert len(done) == 1, f"completed {len(done)} times"
    [(child_b, done_b)] = done.items()
    assert read_pids(done_b) == (child_b, worker_b.pid)
    assert child_b != child_a
    assert set(_files(job_dir, "started")) == {child_a, child_b}  # started by A, then by B
    assert DeadLetter.objects.count() == 0


@pytest.mark.parametrize("broker", ["redis", "embedded"], indirect=True)
def test_job_of_a_killed_pool_child_is_requeued_and_completed(start_worker, broker, tmp_path):
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    worker = start_worker(broker, [tasks.SLOW_QUEUE])
    publish(broker, tasks.slow, [str(job_dir), JOB_TIMEOUT])

    started = wait_for(lambda: _files(job_dir, "started"), timeout=JOB_TIMEOUT, what="the job to start")
    [(child_1, started_1)] = started.items()
    assert read_pids(started_1) == (child_1, worker.pid)

    os.kill(child_1, signal.SIGKILL)  # only the pool child; the main process lives on
    wait_for(lambda: not is_alive(child_1), timeout=30, what="the pool child to die")
    assert not _files(job_dir, "done")
    (job_dir / "release").touch()

    done = wait_for(lambda: _files(job_dir, "done"), timeout=JOB_TIMEOUT, what="a new child to complete the job")
    _drain(broker, tasks.SLOW_QUEUE, tmp_path, "after-requeue")

    done = _files(job_dir, "done")
    assert len(done) == 1, f"completed {len(done)} times"
    [(child_2, done_2)] = done.items()
    assert child_2 != child_1
    assert read_pids(done_2) == (child_2, worker.pid)
    assert set(_files(job_dir, "started")) == {child_1, child_2}
    assert worker.proc.poll() is None
    assert DeadLetter.objects.count() == 0  # a lost worker is not a failed attempt


# --- Replay ---------------------------------------------------------------------------------------


def test_replayed_dead_letter_runs_again_on_a_live_worker(start_worker, configured_broker, tmp_path):
    # dead_letter_replay publishes with app.send_task to the configured broker: the worker consumes there.
    marker = tmp_path / "replayed"
    worker = start_worker(configured_broker, [tasks.TOUCH_QUEUE])
    letter = DeadLetter.objects.create(
        task_name=tasks.touch.name,
        task_id="dead-0001",
        queue=tasks.TOUCH_QUEUE,
        args=[str(marker)],
        kwargs={},
        last_error="RuntimeError: disk full",
        attempts=1,
    )

    dead_letter_replay(dead_letter=letter, actor="tester")

    wait_for(marker.exists, timeout=JOB_TIMEOUT, what="the replayed job's marker file")
    _assert_touched_by(marker, worker)
    letter.refresh_from_db()
    assert letter.replay_count == 1
    assert letter.replayed_by == "tester"
    assert letter.replayed_at is not None
