from django.core.management.base import BaseCommand

from core.schedules import all_schedules, schedules_sync


class Command(BaseCommand):
    help = "Create the beat schedules of SPEC §7 in django-celery-beat (idempotent; --reset rewrites edited ones)."

    def add_arguments(self, parser):
        parser.add_argument("--reset", action="store_true", help="overwrite schedules edited in the admin")

    def handle(self, *args, reset, **options):
        counts = schedules_sync(reset=reset)
        self.stdout.write(f"schedules: {len(all_schedules())} registered, {counts['created']} created, "
                          f"{counts['reset']} reset, {counts['kept']} kept")
