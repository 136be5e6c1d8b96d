from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from core.auth import schema  # noqa: F401  (registers OpenAPI security schemes)

        # Each app's jobs.py registers its scheduled jobs (core.jobs) as it is added.
        autodiscover_modules("jobs")
