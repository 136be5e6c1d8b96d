from django.apps import AppConfig


class FraudConfig(AppConfig):
    name = "fraud"
    default_auto_field = "django.db.models.BigAutoField"
