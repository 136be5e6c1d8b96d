"""Back-office views of the core models. State changes go through services (ARCHITECTURE.md §7)."""

from django.contrib import admin, messages

from core.admin_base import ReadOnlyAdmin
from core.auth.api_keys import api_key_revoke
from core.dead_letters import dead_letter_replay
from core.models import ApiKey, AuditEntry, DeadLetter, IdempotencyKey, JobRun


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


# --- Outbox delivery (SPEC §4): events, consumer handlings, push subscriptions and deliveries ----------------------
# Push subscriptions and deliveries belong to the admin role: grant the admin group core.*_pushsubscription,
# core.view_pushdelivery and core.retry_pushdelivery when the back-office groups get their permissions.

from django import forms  # noqa: E402  (this section is appended to the module)
from django.core.exceptions import ValidationError as DjangoValidationError  # noqa: E402

from core.errors import ServiceError  # noqa: E402
from core.models import (  # noqa: E402
    OutboxConsumption,
    OutboxEvent,
    PushDelivery,
    PushDeliveryStatus,
    PushSubscription,
)
from core.outbox_push import (  # noqa: E402
    push_delivery_retry,
    push_subscription_create,
    push_subscription_update,
    push_subscription_validate,
)


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    list_display = ("position", "type", "subject", "sequence", "occurred_at", "published_at")
    list_filter = ("type", ("published_at", admin.EmptyFieldListFilter))
    search_fields = ("=event_id", "=subject", "=aggregate_id")
    date_hierarchy = "occurred_at"


@admin.register(OutboxConsumption)
class OutboxConsumptionAdmin(ReadOnlyAdmin):
    """What each in-process consumer did with each event; ``failing``/``dead`` ones show the error (the dead ones
    are replayed from Dead letters)."""

    list_display = ("consumer", "event_id", "status", "attempts", "next_attempt_at", "updated_at")
    list_filter = ("status", "consumer")
    search_fields = ("=event_id",)


class PushSubscriptionForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https", help_text="http(s) outside prod; https in prod.")
    # Not the model field's name: the model form never copies it onto the instance (the services store it).
    new_secret = forms.CharField(
        label="Secret", required=False, strip=False, widget=forms.PasswordInput(render_value=False),
        help_text="Write-only: never shown again. 16-255 characters. Leave empty to keep the current secret.",
    )

    class Meta:
        model = PushSubscription
        fields = ("name", "url", "event_types", "active")
        help_texts = {"event_types": 'A JSON list of event types, e.g. ["FLOAT_DEBIT_RETURNED"]; [] = every type.'}

    def clean(self):
        data = super().clean()
        try:
            push_subscription_validate(
                name=data.get("name", ""), url=data.get("url", ""), event_types=data.get("event_types"),
                secret=data.get("new_secret"), secret_required=self.instance.pk is None,
            )
        except ServiceError as exc:
            errors = {("new_secret" if field == "secret" else field): message
                      for field, message in (exc.details or {}).items()}
            raise DjangoValidationError(
                {field: message for field, message in errors.items() if field in self.fields} or exc.message
            ) from exc
        return data


@admin.register(PushSubscription)
class PushSubscriptionAdmin(admin.ModelAdmin):
    form = PushSubscriptionForm
    list_display = ("name", "url", "active", "event_types", "created_at", "updated_at")
    list_filter = ("active",)
    search_fields = ("name",)
    readonly_fields = ("created_at", "updated_at")

    def has_delete_permission(self, request, obj=None):
        return False  # deliveries refer to it: deactivate instead

    def save_model(self, request, obj, form, change):
        data, actor = form.cleaned_data, request.user.get_username()
        if change:
            saved = push_subscription_update(
                subscription_id=obj.pk, actor=actor, name=data["name"], url=data["url"],
                event_types=data.get("event_types"), active=data.get("active", False),
                secret=data.get("new_secret") or None,
            )
        else:
            saved = push_subscription_create(
                name=data["name"], url=data["url"], secret=data["new_secret"], event_types=data.get("event_types"),
                active=data.get("active", False), actor=actor,
            )
        obj.pk = saved.pk


@admin.register(PushDelivery)
class PushDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("id", "subscription", "event_type", "event_subject", "status", "attempts", "next_attempt_at",
                    "delivered_at", "last_status_code")
    list_filter = ("status", "subscription")
    search_fields = ("=event__event_id", "=event__subject")
    list_select_related = ("subscription", "event")
    actions = ["retry"]

    @admin.display(description="event type")
    def event_type(self, obj):
        return obj.event.type

    @admin.display(description="subject")
    def event_subject(self, obj):
        return obj.event.subject

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm("core.retry_pushdelivery")

    @admin.action(description="Retry selected dead deliveries (fresh attempt budget)", permissions=["retry"])
    def retry(self, request, queryset):
        actor = request.user.get_username()
        retried = sum(
            push_delivery_retry(delivery_id=pk, actor=actor, reason="Retried from the admin.")
            for pk in queryset.filter(status=PushDeliveryStatus.DEAD).values_list("pk", flat=True)
        )
        skipped = queryset.count() - retried
        self.message_user(request, f"Retried {retried} dead delivery(ies); {skipped} not dead, left alone.",
                          messages.SUCCESS)


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyAdmin):
    list_display = ("name", "task_name", "last_outcome", "last_started_at", "last_finished_at", "runs", "failures")
    list_filter = ("last_outcome",)
    search_fields = ("name", "task_name")

