from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.signals import request_finished, request_started
        from django.db.models.signals import post_migrate

        from core.auth import schema  # noqa: F401  (registers OpenAPI security schemes)
        from core.groups import sync_group_permissions
        from core.middleware import bind_request_id, unbind_request_id

        # Logging plumbing, not business flow: the request id spans the whole handler (core.middleware).
        request_started.connect(bind_request_id, dispatch_uid="core.bind_request_id")
        request_finished.connect(unbind_request_id, dispatch_uid="core.unbind_request_id")
        # Setup, not business flow: the back-office groups follow core.groups after every migrate.
        post_migrate.connect(sync_group_permissions, dispatch_uid="core.sync_group_permissions")

        # Each app's jobs.py registers its scheduled jobs (core.jobs) as it is added; core's own live beside
        # the registry module.
        import core.idempotency.jobs
        import core.outbox_relay  # noqa: F401  (relay, push delivery and consumer replay: jobs, tasks, schedules)

        autodiscover_modules("jobs")
