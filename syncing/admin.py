"""Back-office views of what the sync pipelines keep: read-only (the pipelines write these rows)."""

from django.contrib import admin

from core.admin_base import ReadOnlyAdmin
from syncing.models import JpmTransaction, JpmUnknownCallback, JpmWebhookMessage, UsioTransaction


@admin.register(JpmWebhookMessage)
class JpmWebhookMessageAdmin(ReadOnlyAdmin):
    list_display = ("received_at", "content_hash", "callbacks", "status", "deliveries", "attempts", "processed_at")
    list_filter = ("status", "authenticated_by")
    search_fields = ("=content_hash", "body")
    search_help_text = "Exact content hash, or text of the body (an endToEndId)."
    date_hierarchy = "received_at"


@admin.register(JpmUnknownCallback)
class JpmUnknownCallbackAdmin(ReadOnlyAdmin):
    list_display = ("first_seen_at", "end_to_end_id", "payment_status", "return_code", "times_seen", "resolved_at")
    list_filter = ("payment_status", "return_code", ("resolved_at", admin.EmptyFieldListFilter), "first_seen_at")
    search_fields = ("=end_to_end_id", "=firm_root_id")
    search_help_text = "Exact endToEndId (our confirmation id) or firmRootId."
    date_hierarchy = "first_seen_at"


@admin.register(UsioTransaction)
class UsioTransactionAdmin(ReadOnlyAdmin):
    list_display = ("transaction_date", "confirmation", "record_type", "kind", "merchant_account", "amount",
                    "status", "return_code", "payment")
    list_filter = ("record_type", "kind", "status", "merchant_account", "transaction_date")
    search_fields = ("=confirmation", "=reference", "=payment__user_id", "=payment__confirmation_id")
    search_help_text = "Exact Usio confirmation, reference, user id or payment confirmation id."
    date_hierarchy = "transaction_date"
    list_select_related = ("payment",)


@admin.register(JpmTransaction)
class JpmTransactionAdmin(ReadOnlyAdmin):
    list_display = ("transaction_date", "transaction_id", "end_to_end_id", "amount", "credit_debit_indicator",
                    "status")
    list_filter = ("status", "credit_debit_indicator", "transaction_date")
    search_fields = ("=transaction_id", "=end_to_end_id", "=firm_root_id")
    search_help_text = "Exact transaction id, endToEndId (our confirmation id) or firmRootId."
    date_hierarchy = "transaction_date"
