from django.apps import AppConfig


class BlocklistConfig(AppConfig):
    name = "blocklist"
    default_auto_field = "django.db.models.BigAutoField"
