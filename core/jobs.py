"""The registry of scheduled jobs that ``manage.py run_job NAME`` runs synchronously.

Each domain app registers its jobs in its own ``jobs.py`` (autodiscovered at start-up)::

    @register_job("check_ach", help="Complete ACH payments past the three-business-day gate.")
    def check_ach(*, as_of: date | None = None) -> JobResult: ...

A job takes ``as_of`` (the business date to act for; None = today) and any options it declares with
``add_arguments`` (an argparse hook, e.g. ``--job-type``). It returns a short, JSON-able summary.
The beat schedule calls the same function through a task; operators and tests call it directly.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.utils import timezone

from core.business_days import CHICAGO


@dataclass(frozen=True)
class Job:
    name: str
    func: Callable[..., Any]
    help: str
    add_arguments: Callable[[Any], None] | None = None

    def run(self, *, as_of: date | None = None, **options) -> Any:
        return self.func(as_of=as_of, **options)


_REGISTRY: dict[str, Job] = {}


def register_job(name: str, *, help: str, add_arguments: Callable[[Any], None] | None = None):
    """Register ``func`` under ``name``. Registering another function under a taken name is an error."""

    def decorator(func):
        existing = _REGISTRY.get(name)
        if existing is not None and existing.func is not func:
            raise ValueError(f"job {name!r} is already registered by {existing.func.__module__}")
        _REGISTRY[name] = Job(name=name, func=func, help=help, add_arguments=add_arguments)
        return func

    return decorator


def unregister_job(name: str) -> None:
    _REGISTRY.pop(name, None)


def get_job(name: str) -> Job:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown job {name!r}; known: {', '.join(sorted(_REGISTRY)) or 'none'}") from None


def all_jobs() -> list[Job]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def job_clock(*, as_of: date | datetime | None, now: datetime | None) -> datetime:
    """The moment a job acts for: ``now`` (aware; tests) as given; else ``as_of`` (a datetime, or a date meaning the
    end of that America/Chicago day) but never later than the real time — an operator replaying a day cannot make
    young records look old (and fail or verify them early)."""
    if now is not None:
        if timezone.is_naive(now):
            raise ValueError("now must be timezone-aware")
        return now
    real = timezone.now()
    if as_of is None:
        return real
    if isinstance(as_of, datetime):
        moment = as_of if timezone.is_aware(as_of) else timezone.make_aware(as_of, CHICAGO)
    else:
        moment = datetime.combine(as_of + timedelta(days=1), datetime.min.time(), tzinfo=CHICAGO)
    return min(moment, real)
