"""Back office of fraud checks and results: read-only (they are evidence; nothing edits them)."""

from django.contrib import admin

from fraud.models import FraudCheck, FraudResult


class _ReadOnlyAdmin(admin.ModelAdmin):
    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(FraudCheck)
class FraudCheckAdmin(_ReadOnlyAdmin):
    list_display = ("created_at", "user_id", "verdict", "fired", "window_hours", "requested_by")
    list_filter = ("verdict",)
    search_fields = ("=user_id", "=install_id_hash", "=account_routing_hash", "=hashed_card_number")
    date_hierarchy = "created_at"


@admin.register(FraudResult)
class FraudResultAdmin(_ReadOnlyAdmin):
    list_display = ("created_at", "user_id", "verdict", "score", "source", "created_by")
    list_filter = ("verdict", "source")
    search_fields = ("=user_id",)
    date_hierarchy = "created_at"
