from django.apps import AppConfig


class SyncingConfig(AppConfig):
    name = "syncing"
    default_auto_field = "django.db.models.BigAutoField"
