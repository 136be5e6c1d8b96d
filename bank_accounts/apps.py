from django.apps import AppConfig


class BankAccountsConfig(AppConfig):
    name = "bank_accounts"
    verbose_name = "Bank accounts"
    default_auto_field = "django.db.models.BigAutoField"
