"""Back-office views of the core models. State changes go through services (ARCHITECTURE.md §7)."""

from django.contrib import admin, messages

from core.admin_base import ReadOnlyAdmin
from core.auth.api_keys import api_key_revoke
from core.dead_letters import dead_letter_replay
from core.models import ApiKey, AuditEntry, DeadLetter, IdempotencyKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "role", "prefix", "created_at", "last_used_at", "revoked_at")
    list_filter = ("role", "revoked_at")
    search_fields = ("name", "prefix")
    readonly_fields = ("name", "role", "prefix", "created_at", "last_used_at", "revoked_at")
    exclude = ("key_hash",)
    actions = ["revoke"]

    def has_add_permission(self, request):
        # A key must be shown exactly once: `manage.py create_api_key --name N --role R` prints it.
        return False

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request, queryset):
        for key in queryset:
            api_key_revoke(key=key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ("task_name", "queue", "attempts", "failed_at", "replay_count", "replayed_at", "replayed_by")
    list_filter = ("queue", "task_name")
    search_fields = ("task_name", "task_id")
    date_hierarchy = "failed_at"
    readonly_fields = [f.name for f in DeadLetter._meta.fields]
    actions = ["replay"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_replay_permission(self, request) -> bool:
        return request.user.has_perm("core.replay_deadletter")

    @admin.action(
        description="Replay selected jobs (enqueue again with a fresh attempt budget)", permissions=["replay"]
    )
    def replay(self, request, queryset):
        for letter in queryset:
            dead_letter_replay(dead_letter=letter, actor=request.user.get_username())
        self.message_user(request, f"Replayed {queryset.count()} job(s).", messages.SUCCESS)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("at", "actor", "action", "target_type", "target_id", "user_id", "reason")
    list_filter = ("action", "target_type")
    search_fields = ("user_id", "target_id", "actor")
    date_hierarchy = "at"


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "client_id", "key", "status", "response_status_code", "resource_id")
    list_filter = ("status",)
    search_fields = ("=key", "=resource_id", "=client_id")
    date_hierarchy = "created_at"
    exclude = ("response_body",)
    readonly_fields = ("client_id", "key", "fingerprint", "status", "lease_expires_at", "resource_id",
                       "response_status_code", "created_at", "updated_at", "completed_at")
