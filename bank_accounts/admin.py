"""Back-office views of bank accounts: read-only, and no role ever sees a decrypted number here.

The encrypted fields are excluded from every form and list and deferred in every query, so the admin neither shows
nor decrypts them (a page keeps working even if a key is missing). Changes go through the API's services, which
write the history and lift blocks; the admin has no add, change or delete.
"""

from django.contrib import admin

from bank_accounts.models import BankAccount, BankAccountHistory
from core.admin_base import ReadOnlyAdmin

ENCRYPTED_FIELDS = ("account_number", "routing_number")


@admin.register(BankAccount)
class BankAccountAdmin(ReadOnlyAdmin):
    list_display = ("user_id", "account_id", "last4", "account_type", "prenote_status", "entry_timestamp",
                    "updated_at")
    list_filter = ("account_type", "prenote_status", "entry_timestamp")
    search_fields = ("=user_id", "=account_id", "=last4")
    search_help_text = "Exact user id, Plaid account id or last 4 digits."
    date_hierarchy = "entry_timestamp"
    exclude = ENCRYPTED_FIELDS
    readonly_fields = [f.name for f in BankAccount._meta.fields if f.name not in ENCRYPTED_FIELDS]

    def get_queryset(self, request):
        return super().get_queryset(request).defer(*ENCRYPTED_FIELDS)


@admin.register(BankAccountHistory)
class BankAccountHistoryAdmin(ReadOnlyAdmin):
    list_display = ("at", "action", "user_id", "account_id", "last4", "account_type", "prenote_status", "actor")
    list_filter = ("action", "prenote_status", "at")
    search_fields = ("=user_id", "=account_id", "=last4", "=account_routing_hash")
    search_help_text = "Exact user id, Plaid account id, last 4 digits or account hash."
    date_hierarchy = "at"
