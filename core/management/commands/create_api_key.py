from django.core.management.base import BaseCommand, CommandError

from core.auth.api_keys import api_key_create
from core.errors import ValidationError
from core.models import Role


class Command(BaseCommand):
    help = "Create an API key for a service client and print it once (only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="A unique name for the client, e.g. float-service.")
        parser.add_argument("--role", required=True, choices=Role.values)

    def handle(self, *args, name, role, **options):
        try:
            key, raw_key = api_key_create(name=name, role=role)
        except ValidationError as exc:
            raise CommandError(exc.message) from exc
        self.stderr.write(f"Created API key {key.name!r} with role {key.role}. Store it now: it is not shown again.")
        self.stdout.write(raw_key)
