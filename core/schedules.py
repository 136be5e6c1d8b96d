"""Beat schedules (SPEC §7), declared in code and written to django-celery-beat by ``manage.py setup_schedules``.

Apps register theirs in ``<app>/jobs.py`` with ``register_schedule``. ``schedules_sync`` is idempotent: it creates
missing schedules and leaves existing ones alone (support may have edited or disabled them in the admin) unless
``reset`` is set. "Prod only" schedules are created disabled unless ``ENVIRONMENT=prod``. Times are UTC.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction

_SCHEDULES: dict[str, ScheduleSpec] = {}


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    task: str
    crontab: str | None = None  # "minute hour day_of_month month_of_year day_of_week", UTC
    every_seconds: int | None = None
    prod_only: bool = False
    kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        if (self.crontab is None) == (self.every_seconds is None):
            raise ValueError(f"schedule {self.name!r} needs exactly one of crontab / every_seconds")
        if self.crontab is not None and len(self.crontab.split()) != 5:
            raise ValueError(f"schedule {self.name!r}: crontab needs 5 fields")


def register_schedule(spec: ScheduleSpec) -> ScheduleSpec:
    existing = _SCHEDULES.get(spec.name)
    if existing is not None and existing != spec:
        raise ValueError(f"schedule {spec.name!r} is already registered differently")
    _SCHEDULES[spec.name] = spec
    return spec


def unregister_schedule(name: str) -> None:
    _SCHEDULES.pop(name, None)


def all_schedules() -> list[ScheduleSpec]:
    return [_SCHEDULES[name] for name in sorted(_SCHEDULES)]


def _schedule_kwargs(spec: ScheduleSpec) -> dict:
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule

    if spec.crontab is not None:
        minute, hour, day_of_month, month_of_year, day_of_week = spec.crontab.split()
        crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
            day_of_week=day_of_week, timezone="UTC",
        )
        return {"crontab": crontab, "interval": None}
    interval, _ = IntervalSchedule.objects.get_or_create(every=spec.every_seconds, period=IntervalSchedule.SECONDS)
    return {"interval": interval, "crontab": None}


def schedules_sync(*, reset: bool = False) -> dict[str, int]:
    """Create the registered schedules that are missing (``reset``: rewrite every one). Returns counts."""
    from django_celery_beat.models import PeriodicTask

    counts = {"created": 0, "reset": 0, "kept": 0}
    is_prod = settings.ENVIRONMENT == "prod"
    with transaction.atomic():
        for spec in all_schedules():
            values = {"task": spec.task, "kwargs": json.dumps(spec.kwargs), "enabled": is_prod or not spec.prod_only,
                      **_schedule_kwargs(spec)}
            task = PeriodicTask.objects.filter(name=spec.name).first()
            if task is None:
                PeriodicTask.objects.create(name=spec.name, **values)
                counts["created"] += 1
            elif reset:
                for key, value in values.items():
                    setattr(task, key, value)
                task.save()
                counts["reset"] += 1
            else:
                counts["kept"] += 1
    return counts
