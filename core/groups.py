"""The back-office groups (SPEC §10) and their permissions, declared here and applied after every ``migrate``.

- ``support``: view everything support works with (payments, cards, bank accounts, refunds, blocklist, fraud,
  syncing records, dead letters, events, audit), and act on refunds, the blocklist, card overrides and "sync now".
- ``admin``: every permission of the project's apps and of the schedules (django-celery-beat), including API keys,
  push subscriptions, dead-letter replay, event re-delivery and marking stuck payments failed.

Django checks these permissions server-side on every admin page, form and action. The groups are rewritten from
this table after each ``migrate`` (``sync_group_permissions``, a ``post_migrate`` receiver): edit them here, not in
the admin.
"""

from __future__ import annotations

from django.db.models import Q

SUPPORT = "support"
ADMIN = "admin"

# Apps whose models the back office shows.
PROJECT_APPS = ("core", "payments", "cards", "bank_accounts", "refunds", "blocklist", "fraud", "syncing")
# Models support must not even see: credentials, outbound subscriptions, their deliveries, idempotency records.
ADMIN_ONLY_MODELS = {("core", "apikey"), ("core", "pushsubscription"), ("core", "pushdelivery"),
                     ("core", "idempotencykey")}
SUPPORT_ACTIONS = (
    ("refunds", "add_refund"),
    ("blocklist", "add_blocklistrecord"),
    ("cards", "change_debitcard"),
    ("payments", "sync_payment"),
)
ADMIN_APPS = (*PROJECT_APPS, "django_celery_beat")


def desired_permissions(Permission) -> dict[str, set[int]]:
    """Group name → permission ids, from the permissions that exist now."""
    support_q = Q(content_type__app_label__in=PROJECT_APPS, codename__startswith="view_")
    for app_label, model in ADMIN_ONLY_MODELS:
        support_q &= ~Q(content_type__app_label=app_label, content_type__model=model)
    actions_q = Q(pk__in=[])
    for app_label, codename in SUPPORT_ACTIONS:
        actions_q |= Q(content_type__app_label=app_label, codename=codename)
    return {
        SUPPORT: set(Permission.objects.filter(support_q | actions_q).values_list("pk", flat=True)),
        ADMIN: set(Permission.objects.filter(content_type__app_label__in=ADMIN_APPS).values_list("pk", flat=True)),
    }


def sync_group_permissions(*, apps=None, **kwargs) -> None:
    """Make each group hold exactly its permissions (idempotent). Runs after every app's migrations."""
    from django.apps import apps as global_apps

    apps = apps or global_apps
    try:
        Group = apps.get_model("auth", "Group")
        Permission = apps.get_model("auth", "Permission")
    except LookupError:
        return
    for name, permission_ids in desired_permissions(Permission).items():
        group, _ = Group.objects.get_or_create(name=name)
        current = set(group.permissions.values_list("pk", flat=True))
        if current != permission_ids:
            group.permissions.set(permission_ids)
