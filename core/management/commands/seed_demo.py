from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from core.auth.api_keys import api_key_create, hash_api_key
from core.models import ApiKey, Role

DEMO_KEY_NAME = "demo-service"


class Command(BaseCommand):
    help = "Create demo data for local use: a service API key and support/admin users. Idempotent. Never in prod."

    def add_arguments(self, parser):
        parser.add_argument("--support-password", default="support-demo-pass")
        parser.add_argument("--admin-password", default="admin-demo-pass")

    @transaction.atomic
    def handle(self, *args, support_password, admin_password, **options):
        if settings.ENVIRONMENT == "prod" or not settings.DEMO_API_KEY:
            raise CommandError("seed_demo is for local environments only (DEMO_API_KEY unset or ENVIRONMENT=prod).")
        key = ApiKey.objects.filter(name=DEMO_KEY_NAME).first()
        if key is not None and key.key_hash != hash_api_key(settings.DEMO_API_KEY):
            key.delete()
            key = None
        if key is None:
            api_key_create(name=DEMO_KEY_NAME, role=Role.SERVICE, raw_key=settings.DEMO_API_KEY)

        users = get_user_model()
        support, _ = users.objects.get_or_create(username="support", defaults={"email": "support@example.com"})
        support.is_staff = True
        support.set_password(support_password)
        support.save()
        support.groups.add(Group.objects.get(name="support"))

        admin, _ = users.objects.get_or_create(username="admin", defaults={"email": "admin@example.com"})
        admin.is_staff = True
        admin.is_superuser = True
        admin.set_password(admin_password)
        admin.save()
        admin.groups.add(Group.objects.get(name="admin"))

        self.stdout.write(f"  API key (role service): {settings.DEMO_API_KEY}")
        self.stdout.write(f"  Support login:          support / {support_password}")
        self.stdout.write(f"  Admin login:            admin / {admin_password}")
