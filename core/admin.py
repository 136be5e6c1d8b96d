"""Back-office views of the core models. State changes go through services (ARCHITECTURE.md §7).

Also the building blocks of the back-office action pages (issue 8) that every app's admin uses: ``ReasonField``,
``add_service_error`` and ``BackofficeActionsMixin`` — a per-object admin view shows a form (GET) and acts (POST),
after a server-side permission check on both, and renders the service's refusal as the form's error.
"""


from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpResponseRedirect
from django.urls import path

from core.admin_base import (
    BackofficeActionsMixin,
    ReadOnlyAdmin,
    ReasonField,
    ReasonForm,
    add_service_error,
    pretty_json,
)
from core.auth.api_keys import api_key_revoke
from core.backoffice import dead_letter_replay_with_reason, event_redeliver, event_redelivery_targets
from core.errors import ServiceError
from core.models import (
    ApiKey,
    AuditEntry,
    DeadLetter,
    IdempotencyKey,
    JobRun,
    OutboxConsumption,
    OutboxEvent,
    PushDelivery,
    PushDeliveryStatus,
    PushSubscription,
)
from core.outbox_push import (
    push_delivery_retry,
    push_subscription_create,
    push_subscription_update,
    push_subscription_validate,
)
from core.redaction import redact_text


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
class DeadLetterAdmin(BackofficeActionsMixin, ReadOnlyAdmin):
    """Jobs that exhausted their attempts. Read-only (they are evidence; no delete either); replaying one asks for a
    reason — the per-letter "Replay" page (``admin:core_deadletter_replay``) or the list action for several."""

    list_display = ("task_name", "queue", "attempts", "failed_at", "replay_count", "replayed_at", "replayed_by")
    list_filter = ("queue", "task_name", ("replayed_at", admin.EmptyFieldListFilter))
    search_fields = ("task_name", "=task_id", "=replayed_by")
    search_help_text = "Task name, exact task id (a consumer's event id, a push delivery id) or who replayed."
    date_hierarchy = "failed_at"
    readonly_fields = [f.name for f in DeadLetter._meta.fields]
    actions = ["replay"]

    def has_replay_permission(self, request) -> bool:
        return request.user.has_perm("core.replay_deadletter")

    def get_urls(self):
        return [
            path("<path:object_id>/replay/", self.admin_site.admin_view(self.replay_view),
                 name="core_deadletter_replay"),
            *super().get_urls(),
        ]

    def replay_view(self, request, object_id: str):
        """Confirm page of one letter (task, redacted arguments, last error, raw answer) and its reason form."""
        self.require_permission(request, "core.replay_deadletter")
        letter = self.get_action_object(request, object_id)
        form = ReasonForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            try:
                letter = dead_letter_replay_with_reason(dead_letter_id=letter.pk, actor=request.user.get_username(),
                                                        reason=form.cleaned_data["reason"])
            except ServiceError as exc:
                add_service_error(form, exc)
            else:
                self.message_user(request, f"Replayed {letter.task_name}: sent again to queue {letter.queue} "
                                           f"(replay #{letter.replay_count}).", messages.SUCCESS)
                return HttpResponseRedirect(self.change_url(letter))
        return self.render_action(
            request, template="admin/core/deadletter/replay.html", title="Replay a dead letter", form=form,
            original=letter, submit_label="Replay", args_json=pretty_json(letter.args),
            kwargs_json=pretty_json(letter.kwargs), last_error=redact_text(letter.last_error),
            raw_answer_json=pretty_json(letter.raw_answer) if letter.raw_answer is not None else "",
        )

    @admin.action(description="Replay selected jobs (asks for a reason)", permissions=["replay"])
    def replay(self, request, queryset):
        """An intermediate page asks for one reason; each letter is then replayed and audited on its own."""
        form = ReasonForm(request.POST if "_confirm" in request.POST else None)
        if form.is_bound and form.is_valid():
            actor, reason = request.user.get_username(), form.cleaned_data["reason"]
            ids = list(queryset.values_list("pk", flat=True))
            for pk in ids:
                dead_letter_replay_with_reason(dead_letter_id=pk, actor=actor, reason=reason)
            self.message_user(request, f"Replayed {len(ids)} job(s).", messages.SUCCESS)
            return None
        return self.render_action(
            request, template="admin/core/deadletter/replay_selected.html", title="Replay dead letters", form=form,
            submit_label="Replay", queryset=queryset, action_checkbox_name=helpers.ACTION_CHECKBOX_NAME,
        )


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("at", "actor", "action", "target_type", "target_id", "user_id", "reason")
    list_filter = ("action", "target_type", "at")
    search_fields = ("=user_id", "=target_id", "=actor")
    search_help_text = "Exact user id, target id (payment, card, dead letter, event id...) or staff username."
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
# Push subscriptions and deliveries belong to the admin role (core.groups.ADMIN_ONLY_MODELS).


CONSUMER_PREFIX, SUBSCRIPTION_PREFIX = "consumer:", "subscription:"


class RedeliverForm(forms.Form):
    """Targets are ``consumer:<name>`` (consumers that have not handled the event) and ``subscription:<id>``."""

    targets = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple, label="Deliver again to",
        error_messages={"required": "Choose at least one consumer or subscription."},
    )
    reason = ReasonField()

    def __init__(self, *args, targets, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["targets"].choices = [
            *((f"{CONSUMER_PREFIX}{c.name}", f"Consumer {c.name} ({c.status or 'never handled'})")
              for c in targets.consumers if not c.handled),
            *((f"{SUBSCRIPTION_PREFIX}{s.subscription_id}",
               f"Push subscription {s.name} ({s.delivery_status or 'no delivery yet'})")
              for s in targets.subscriptions),
        ]

    def chosen(self) -> tuple[list[str], list[int]]:
        targets = self.cleaned_data["targets"]
        return ([t.removeprefix(CONSUMER_PREFIX) for t in targets if t.startswith(CONSUMER_PREFIX)],
                [int(t.removeprefix(SUBSCRIPTION_PREFIX)) for t in targets if t.startswith(SUBSCRIPTION_PREFIX)])


@admin.register(OutboxEvent)
class OutboxEventAdmin(BackofficeActionsMixin, ReadOnlyAdmin):
    """Events of the outbox; "Re-deliver" (``admin:core_outboxevent_redeliver``) sends one again to chosen targets."""

    list_display = ("position", "type", "subject", "aggregate_id", "sequence", "occurred_at", "published_at")
    list_filter = ("type", ("published_at", admin.EmptyFieldListFilter), "occurred_at")
    search_fields = ("=event_id", "=subject", "=aggregate_id")
    search_help_text = "Exact event id, subject (confirmation id or payment id) or payment id."
    date_hierarchy = "occurred_at"

    def get_urls(self):
        return [
            path("<path:object_id>/redeliver/", self.admin_site.admin_view(self.redeliver_view),
                 name="core_outboxevent_redeliver"),
            *super().get_urls(),
        ]

    def redeliver_view(self, request, object_id: str):
        self.require_permission(request, "core.redeliver_event")
        event = self.get_action_object(request, object_id)
        targets = event_redelivery_targets(event=event)
        form = RedeliverForm(request.POST if request.method == "POST" else None, targets=targets)
        if form.is_bound and form.is_valid():
            consumers, subscription_ids = form.chosen()
            try:
                done = event_redeliver(event_id=event.event_id, consumers=consumers, subscription_ids=subscription_ids,
                                       actor=request.user.get_username(), reason=form.cleaned_data["reason"])
            except ServiceError as exc:
                add_service_error(form, exc)
            else:
                parts = []
                if done.consumers:
                    parts.append(f"replay queued for {', '.join(done.consumers)}")
                if done.subscriptions:
                    parts.append(f"{len(done.subscriptions)} push delivery(ies) due now")
                self.message_user(request, f"Event {event.type} re-delivered: {'; '.join(parts)}.", messages.SUCCESS)
                return HttpResponseRedirect(self.change_url(event))
        return self.render_action(
            request, template="admin/core/outboxevent/redeliver.html", title="Re-deliver an event", form=form,
            original=event, submit_label="Re-deliver", targets=targets, data_json=pretty_json(event.data),
        )


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

