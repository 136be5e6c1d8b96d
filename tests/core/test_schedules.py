"""Beat schedules are created idempotently from code, keep admin edits, and respect prod-only."""

import pytest
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from core.schedules import ScheduleSpec, register_schedule, unregister_schedule

pytestmark = pytest.mark.django_db


@pytest.fixture
def specs():
    made = [register_schedule(ScheduleSpec(name="test every minute", task="tests.tick", every_seconds=60)),
            register_schedule(ScheduleSpec(name="test daily prod", task="tests.daily", crontab="30 16 * * *",
                                           prod_only=True, kwargs={"job_type": "ach_returns"}))]
    yield made
    for spec in made:
        unregister_schedule(spec.name)


def test_setup_creates_once_and_keeps_admin_edits(specs, settings):
    settings.ENVIRONMENT = "local"
    call_command("setup_schedules")
    tick = PeriodicTask.objects.get(name="test every minute")
    daily = PeriodicTask.objects.get(name="test daily prod")
    assert (tick.task, tick.interval.every, tick.enabled) == ("tests.tick", 60, True)
    assert (daily.crontab.minute, daily.crontab.hour, daily.enabled) == ("30", "16", False)  # prod only
    assert daily.kwargs == '{"job_type": "ach_returns"}'
    tick.enabled = False
    tick.save()
    call_command("setup_schedules")
    assert PeriodicTask.objects.filter(name__startswith="test ").count() == 2
    assert PeriodicTask.objects.get(name="test every minute").enabled is False  # the edit is kept
    call_command("setup_schedules", "--reset")
    assert PeriodicTask.objects.get(name="test every minute").enabled is True


def test_prod_only_schedules_are_enabled_in_prod(specs, settings):
    settings.ENVIRONMENT = "prod"
    call_command("setup_schedules")
    assert PeriodicTask.objects.get(name="test daily prod").enabled is True


@pytest.mark.parametrize("kwargs", [{}, {"crontab": "* * *"}, {"crontab": "0 * * * *", "every_seconds": 5}])
def test_bad_specs_are_refused(kwargs):
    with pytest.raises(ValueError):
        ScheduleSpec(name="bad", task="x", **kwargs)
