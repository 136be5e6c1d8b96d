from django.apps import AppConfig


class BackofficeConfig(AppConfig):
    """Support pages of the Django admin that span apps: the user page and the dashboard (issue 8).

    No models: every read is in ``backoffice.selectors``; every change goes through the owning app's admin actions.
    """

    name = "backoffice"
    verbose_name = "Back office"
    default_auto_field = "django.db.models.BigAutoField"
