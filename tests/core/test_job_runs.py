"""The dashboard's "last run and outcome of each scheduled job" (core.models.JobRun): recorded for runs started by
beat (django-celery-beat's ``periodic_task_name`` header) and by ``run_job``; never for fanned-out jobs."""

import pytest
from django.core.management import call_command

from core.errors import PermanentJobError
from core.jobs import register_job, unregister_job
from core.models import DeadLetter, JobRun
from core.tasks import job

pytestmark = pytest.mark.django_db

BEAT = {"periodic_task_name": "nightly probe"}
calls = {"n": 0}


@job(name="tests.job_runs.ok", queue="default")
def ok_task(count):
    return {"examined": count, "account_number": "739146285017"}


@job(name="tests.job_runs.flaky", queue="default")
def flaky_task():
    calls["n"] += 1
    if calls["n"] < 2:
        raise RuntimeError("first attempt fails")
    return {"done": True}


@job(name="tests.job_runs.broken", queue="default")
def broken_task():
    raise PermanentJobError("cannot work with account 739146285017")


def test_a_beat_run_records_its_outcome_and_summary():
    ok_task.apply(args=[3], headers=BEAT)
    ok_task.apply(args=[5], headers=BEAT)

    run = JobRun.objects.get(name="nightly probe")
    assert (run.task_name, run.last_outcome, run.runs, run.failures) == ("tests.job_runs.ok", "succeeded", 2, 0)
    assert run.last_result["examined"] == 5
    assert "739146285017" not in str(run.last_result)  # summaries are redacted like logs
    assert run.last_finished_at >= run.last_started_at


def test_a_retried_then_successful_run_ends_succeeded():
    calls["n"] = 0
    flaky_task.apply(headers=BEAT)  # eager apply runs the retry inline

    run = JobRun.objects.get(name="nightly probe")
    assert (run.last_outcome, run.failures, run.last_result) == ("succeeded", 0, {"done": True})
    assert calls["n"] == 2


def test_a_failed_run_is_recorded_failed_with_its_redacted_error():
    result = broken_task.apply(headers=BEAT)

    assert result.failed()
    run = JobRun.objects.get(name="nightly probe")
    assert (run.last_outcome, run.failures) == ("failed", 1)
    assert "cannot work" in run.last_error and "739146285017" not in run.last_error
    assert DeadLetter.objects.filter(task_name="tests.job_runs.broken").count() == 1


def test_runs_without_the_beat_header_are_not_recorded():
    ok_task.apply(args=[1])
    ok_task(2)
    assert not JobRun.objects.exists()


def test_run_job_records_its_runs():
    register_job("tests_job_runs_echo", help="echo")(lambda *, as_of=None: {"as_of": str(as_of)})
    try:
        call_command("run_job", "tests_job_runs_echo", "--as-of", "2026-11-20")
    finally:
        unregister_job("tests_job_runs_echo")
    run = JobRun.objects.get(name="run_job tests_job_runs_echo")
    assert (run.last_outcome, run.last_result) == ("succeeded", {"as_of": "2026-11-20"})
