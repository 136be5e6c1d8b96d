import json
from datetime import date

from django.core.management.base import BaseCommand, CommandError

from core.errors import ServiceError
from core.job_runs import job_run_finished, job_run_started
from core.jobs import all_jobs, get_job
from core.models import JobRunOutcome


def _as_of(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--as-of must be YYYY-MM-DD, not {value!r}") from None


class Command(BaseCommand):
    help = "Run a scheduled job synchronously: `run_job NAME [--as-of YYYY-MM-DD] [job options]`."

    def add_arguments(self, parser):
        subparsers = parser.add_subparsers(dest="job_name", metavar="NAME", required=True)
        for job in all_jobs():
            sub = subparsers.add_parser(job.name, help=job.help, description=job.help)
            sub.add_argument("--as-of", type=_as_of, default=None, help="Business date to run for (YYYY-MM-DD).")
            if job.add_arguments:
                job.add_arguments(sub)

    def handle(self, *args, job_name, as_of, **options):
        job = get_job(job_name)
        job_options = {
            key: value
            for key, value in options.items()
            if key not in {"verbosity", "settings", "pythonpath", "traceback", "no_color", "force_color",
                           "skip_checks", "stdout", "stderr"}
        }
        run_name = f"run_job {job_name}"
        job_run_started(name=run_name, task_name=job_name)
        try:
            result = job.run(as_of=as_of, **job_options)
        except Exception as exc:
            job_run_finished(name=run_name, outcome=JobRunOutcome.FAILED, error=exc)
            if isinstance(exc, ServiceError):
                raise CommandError(f"{job_name} failed: {exc.code}: {exc.message}") from exc
            raise
        job_run_finished(name=run_name, outcome=JobRunOutcome.SUCCEEDED, result=result)
        self.stdout.write(json.dumps({"job": job_name, "as_of": as_of and as_of.isoformat(), "result": result},
                                     default=str))
