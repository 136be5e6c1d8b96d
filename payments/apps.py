from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the in-process consumers of payment events with the outbox relay (SPEC §4).
        from payments import consumers, prenote_consumers  # noqa: F401
