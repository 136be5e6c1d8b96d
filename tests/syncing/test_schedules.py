"""The beat schedules of SPEC §7 as `manage.py setup_schedules` writes them, and the `run_job` names of issue 7."""

import json

import pytest
from django.contrib import admin
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from config.celery import app
from core.jobs import get_job

pytestmark = pytest.mark.django_db

# name → (task, crontab "m h dom mon dow" or interval seconds, kwargs, prod only) — SPEC §7's table.
EXPECTED = {
    "usio transactions sync": ("syncing.usio_sync_schedule", "*/30 * * * *", {"job_type": "transactions"}, True),
    "usio ACH returns sync": ("syncing.usio_sync_schedule", "30 16 * * *", {"job_type": "ach_returns"}, False),
    "usio chargebacks sync": ("syncing.usio_sync_schedule", "30 20 * * *", {"job_type": "chargebacks"}, False),
    "check-ach": ("syncing.check_ach_schedule", "0 17 * * *", {}, False),
    "usio token refresh": ("syncing.usio_token_refresh_schedule", "0 15 * * *", {}, False),
    "jpm transaction sync": ("syncing.jpm_transaction_sync", "0 13 * * *", {}, False),
    "balance report daily": ("syncing.balance_report", "0 13 * * *", {"mode": "daily"}, True),
    "balance report hourly": ("syncing.balance_report", "0 * * * *", {"mode": "hourly"}, True),
    "jpm webhook sweeper": ("syncing.sweep_jpm_webhooks", "*/5 * * * *", {}, False),
    "outbox relay": ("core.outbox_relay", 60, {}, False),
    "stuck-payment reconciler": ("payments.reconcile_processing", 900, {}, False),
}


@pytest.fixture(autouse=True)
def worker_modules():
    """What a worker or beat imports at start (the apps' tasks.py modules through autodiscovery)."""
    app.loader.import_default_modules()


def _when(task: PeriodicTask):
    if task.crontab is not None:
        c = task.crontab
        assert str(c.timezone) == "UTC"
        return f"{c.minute} {c.hour} {c.day_of_month} {c.month_of_year} {c.day_of_week}"
    return task.interval.every


@pytest.mark.parametrize("environment", ["test", "prod"])
def test_setup_schedules_writes_spec_7_with_prod_only_rules_disabled_outside_prod(settings, environment):
    settings.ENVIRONMENT = environment
    call_command("setup_schedules")
    call_command("setup_schedules")  # idempotent: nothing doubled

    for name, (task_name, when, kwargs, prod_only) in EXPECTED.items():
        task = PeriodicTask.objects.get(name=name)
        assert (task.task, _when(task), json.loads(task.kwargs)) == (task_name, when, kwargs), name
        assert task.enabled is (environment == "prod" or not prod_only), name
        assert task.task in app.tasks, f"{name}: beat would send an unknown task {task.task}"
    assert PeriodicTask.objects.filter(name__in=EXPECTED).count() == len(EXPECTED)


def test_every_scheduled_task_is_a_registered_celery_task(settings):
    call_command("setup_schedules")
    unknown = [t.task for t in PeriodicTask.objects.all() if t.task not in app.tasks]
    assert unknown == []


def test_schedules_are_editable_in_the_admin():
    assert admin.site.is_registered(PeriodicTask)


@pytest.mark.parametrize("name", ["jpm_webhooks", "check_ach", "usio_sync", "usio_token_refresh",
                                  "jpm_transaction_sync", "balance_report"])
def test_issue_7_job_names_are_runnable(name):
    assert get_job(name).name == name


def test_usio_sync_job_refuses_an_unknown_job_type():
    from django.core.management.base import CommandError

    with pytest.raises((CommandError, SystemExit)):
        call_command("run_job", "usio_sync", "--job-type", "everything")
