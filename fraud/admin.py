"""Back office of fraud checks and results: read-only (they are evidence; nothing edits them)."""

from django.contrib import admin

from core.admin_base import ReadOnlyAdmin
from fraud.models import FraudCheck, FraudResult


@admin.register(FraudCheck)
class FraudCheckAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "user_id", "verdict", "fired", "window_hours", "requested_by")
    list_filter = ("verdict", "window_hours", "created_at")
    search_fields = ("=user_id", "=install_id_hash", "=account_routing_hash", "=hashed_card_number")
    search_help_text = "Exact user id, or an install / bank account / card hash."
    date_hierarchy = "created_at"


@admin.register(FraudResult)
class FraudResultAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "user_id", "verdict", "score", "source", "created_by")
    list_filter = ("verdict", "source", "created_at")
    search_fields = ("=user_id",)
    search_help_text = "Exact user id."
    list_select_related = ("fraud_check",)
    date_hierarchy = "created_at"
