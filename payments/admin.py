"""Back office of payments: read-only records and their status history (ARCHITECTURE.md §7), and the actions
support takes on one payment (issue 8).

Money, statuses and processor references are never edited here: a status changes only through
``payments.status.payment_apply_status``. Support finds a payment by user id, confirmation id, payment id (our
reference at the processors, with or without hyphens) or the last 4 of the account/card, and sees stuck payments
with the "stuck" filter (SPEC §7.7: PROCESSING longer than ``PROCESSING_STUCK_MINUTES``, ACHSENT for more than
5 business days).

Actions (per-payment admin views, each a form with a required reason; buttons on the payment page and list actions
on the changelist lead to them; the permission is checked on GET and POST):

| view (``admin:payments_payment_…``) | permission | service |
|---|---|---|
| ``refund`` | ``refunds.add_refund`` | ``refunds.backoffice.refund_payment_from_admin`` |
| ``sync`` | ``payments.sync_payment`` | ``payments.backoffice.payment_sync_now`` |
| ``mark_failed`` | ``payments.mark_payment_failed`` (admin group) | ``payments.backoffice.payment_mark_failed`` |

The views stay thin: a service's ``ServiceError`` is shown on the form (message and code, as the API says it), and
a success redirects to the payment with a message.
"""

from __future__ import annotations

import uuid

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone

from core.admin_base import BackofficeActionsMixin, ReadOnlyAdmin, ReasonForm, add_service_error
from core.errors import ServiceError
from core.groups import ADMIN
from payments.models import Payment, PaymentStatusChange, PrenoteRequest, TransactionServiceNotification
from payments.selectors import STUCK_ACHSENT_BUSINESS_DAYS, payment_stuck_conditions

REFUND_PERMISSION = "refunds.add_refund"
SYNC_PERMISSION = "payments.sync_payment"
MARK_FAILED_PERMISSION = "payments.mark_payment_failed"



def _uuid_or_none(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term.strip())
    except (ValueError, AttributeError):
        return None


class StuckFilter(admin.SimpleListFilter):
    """SPEC §7.7: what support should look at."""

    title = "stuck"
    parameter_name = "stuck"

    def lookups(self, request, model_admin):
        return [
            ("processing", f"PROCESSING > {settings.PROCESSING_STUCK_MINUTES} min"),
            ("achsent", f"ACHSENT > {STUCK_ACHSENT_BUSINESS_DAYS} business days"),
        ]

    def queryset(self, request, queryset):
        conditions = payment_stuck_conditions(now=timezone.now())
        if self.value() in conditions:
            return queryset.filter(conditions[self.value()])
        return queryset


class PaymentStatusChangeInline(admin.TabularInline):
    model = PaymentStatusChange
    fields = ("at", "from_status", "to_status", "source", "actor", "return_code", "event_type", "raw_payload_ref")
    readonly_fields = fields
    ordering = ("at", "id")
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# --- action forms ---------------------------------------------------------------------------------------------------
class RefundForm(ReasonForm):
    """A refund of one payment. ``amount`` is text: the refunds service judges it as the API does (same codes).
    ``idempotency_key`` is generated when the form is rendered, so submitting the same form twice refunds once."""

    field_order = ("amount", "description", "reason")

    amount = forms.CharField(max_length=32, help_text="US dollars, e.g. 12.50.")
    description = forms.CharField(max_length=255, help_text="What the refund is for (stored on the refund).")
    idempotency_key = forms.CharField(widget=forms.HiddenInput, min_length=16, max_length=64)


def _new_idempotency_key() -> str:
    return f"admin-refund-{uuid.uuid4()}"


_REFUND_FIELD_CODES = {"invalid_amount": "amount", "amount_over_limit": "amount", "refund_exceeds_balance": "amount",
                       "reason_required": "reason"}


@admin.register(Payment)
class PaymentAdmin(BackofficeActionsMixin, ReadOnlyAdmin):
    change_form_template = "admin/payments/payment/change_form.html"
    actions = ["refund_selected", "sync_selected", "mark_failed_selected"]
    list_display = ("id", "confirmation_id", "user_id", "purpose", "payment_type", "payment_method",
                    "payment_provider", "amount", "payment_status", "last4", "submit_date", "created_at")
    list_filter = (StuckFilter, "payment_status", "payment_method", "payment_type", "payment_provider", "purpose")
    search_fields = ("=user_id", "=confirmation_id", "=masked_account_number", "=masked_card_number")
    date_hierarchy = "submit_date"
    ordering = ("-submit_date", "-created_at")
    inlines = [PaymentStatusChangeInline]
    show_full_result_count = False  # no COUNT(*) over the whole table on every page

    @admin.display(description="last 4")
    def last4(self, obj: Payment) -> str:
        return obj.masked_account_number or obj.masked_card_number or ""

    def get_search_results(self, request, queryset, search_term):
        """Also find a payment by its id (our processor reference: a UUID, hyphenated or 32 hex)."""
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        payment_id = _uuid_or_none(search_term)
        if payment_id is not None:  # within the active filters (``queryset`` has them)
            found |= queryset.filter(pk=payment_id)
        return found, may_have_duplicates

    # --- permissions of the actions (also used by the changelist's ``actions``) -----------------------------------
    def has_refund_permission(self, request) -> bool:
        return request.user.has_perm(REFUND_PERMISSION)

    def has_sync_permission(self, request) -> bool:
        return request.user.has_perm(SYNC_PERMISSION)

    def has_mark_failed_permission(self, request) -> bool:
        return request.user.has_perm(MARK_FAILED_PERMISSION)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_refund": self.has_refund_permission(request),
                         "can_sync": self.has_sync_permission(request),
                         "can_mark_failed": self.has_mark_failed_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    # --- changelist actions: lead to the form of ONE payment --------------------------------------------------------
    def _to_form_of_one(self, request, queryset, view: str):
        ids = list(queryset.values_list("pk", flat=True)[:2])
        if len(ids) != 1:
            self.message_user(request, "Select exactly one payment for this action.", messages.ERROR)
            return None
        return HttpResponseRedirect(reverse(f"admin:payments_payment_{view}", args=[quote(ids[0])]))

    @admin.action(description="Refund the selected payment…", permissions=["refund"])
    def refund_selected(self, request, queryset):
        return self._to_form_of_one(request, queryset, "refund")

    @admin.action(description="Sync the selected payment now (ask the processor)…", permissions=["sync"])
    def sync_selected(self, request, queryset):
        return self._to_form_of_one(request, queryset, "sync")

    @admin.action(description="Mark the selected stuck payment failed…", permissions=["mark_failed"])
    def mark_failed_selected(self, request, queryset):
        return self._to_form_of_one(request, queryset, "mark_failed")

    # --- the action views -------------------------------------------------------------------------------------------
    def get_urls(self):
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/refund/", wrap(self.refund_view), name=f"{prefix}_refund"),
            path("<path:object_id>/sync/", wrap(self.sync_view), name=f"{prefix}_sync"),
            path("<path:object_id>/mark-failed/", wrap(self.mark_failed_view), name=f"{prefix}_mark_failed"),
            *super().get_urls(),
        ]

    def _payment_for(self, request, object_id: str, permission: str) -> Payment:
        """The payment of an action view, after the permission check (403 first: a forbidden user learns nothing
        about which payments exist)."""
        self.require_permission(request, permission)
        return self.get_action_object(request, object_id)

    def _render(self, request, template: str, payment: Payment, title: str, form: forms.Form, **context):
        return self.render_action(request, template=f"admin/payments/payment/{template}", title=title, form=form,
                                  original=payment, payment=payment, subtitle=str(payment.pk),
                                  last4=self.last4(payment), **context)

    def _to_payment(self, payment: Payment) -> HttpResponseRedirect:
        return HttpResponseRedirect(self.change_url(payment))

    def refund_view(self, request, object_id):
        """Refund this payment (``refunds.add_refund``): shows the refundable balance; POST refunds through
        ``refunds.backoffice.refund_payment_from_admin`` and redirects to the payment with the outcome."""
        from refunds.backoffice import (
            refund_payment_from_admin,
            refund_refundable_balance,
            refund_staff_principal,
        )
        from refunds.data import SupportIdentity

        payment = self._payment_for(request, object_id, REFUND_PERMISSION)
        if request.method == "POST":
            form = RefundForm(request.POST)
            if form.is_valid():
                user = request.user
                principal = refund_staff_principal(
                    staff_id=user.pk, username=user.get_username(),
                    is_admin=user.is_superuser or user.groups.filter(name=ADMIN).exists())
                support = SupportIdentity(name=user.get_full_name() or user.get_username(), email=user.email or "",
                                          ip=request.META.get("REMOTE_ADDR") or None)
                try:
                    result = refund_payment_from_admin(
                        principal=principal, support=support, payment=payment, amount=form.cleaned_data["amount"],
                        description=form.cleaned_data["description"], reason=form.cleaned_data["reason"],
                        idempotency_key=form.cleaned_data["idempotency_key"])
                except ServiceError as exc:
                    add_service_error(form, exc, field_codes=_REFUND_FIELD_CODES)
                else:
                    if result.status_code < 400:
                        self._refund_message(request, result)
                        return self._to_payment(payment)
                    error = (result.body or {}).get("error") or {}
                    add_service_error(form, ServiceError(error.get("message"), code=error.get("code"),
                                                           details=error.get("details")),
                                        field_codes=_REFUND_FIELD_CODES)
            # The key may have been claimed by a refused attempt: the corrected form is a new request.
            form.data = form.data.copy()
            form.data["idempotency_key"] = _new_idempotency_key()
        else:
            form = RefundForm(initial={"idempotency_key": _new_idempotency_key()})
        return self._render(request, "refund.html", payment, "Refund this payment", form,
                            refundable=refund_refundable_balance(payment=payment))

    def _refund_message(self, request, result) -> None:
        refund = result.body
        again = "This form was submitted already: " if result.replayed else ""
        text = f"{again}refund {refund['id']} of {refund['amount']} is {refund['status']}"
        if refund["status"] == "COMPLETED":
            self.message_user(request, f"{text} (Usio confirmation {refund['refund_confirmation_id']}).",
                              messages.SUCCESS)
        elif refund["status"] == "FAILED":
            self.message_user(request, f"{text}: {refund['failure_code']} {refund['failure_message']}.",
                              messages.ERROR)
        else:
            self.message_user(request, f"{text}: Usio's answer is not known yet; the refund reconciler will "
                                       "resolve it. Its amount stays held against the balance.", messages.WARNING)

    def sync_view(self, request, object_id):
        """Sync now (``payments.sync_payment``): ask the processor and apply its answer
        (``payments.backoffice.payment_sync_now``); the message says what it answered and what changed."""
        from payments.backoffice import payment_sync_now

        payment = self._payment_for(request, object_id, SYNC_PERMISSION)
        form = ReasonForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                result = payment_sync_now(payment_id=payment.pk, actor=request.user.get_username(),
                                          reason=form.cleaned_data["reason"])
            except ServiceError as exc:
                add_service_error(form, exc)
            else:
                if result.changed:
                    outcome = f"changed {result.from_status} → {result.to_status} ({', '.join(result.applied)})"
                else:
                    outcome = f"no change (the payment stays {result.to_status})"
                self.message_user(request, f"{result.answer}: {outcome}.", messages.SUCCESS)
                return self._to_payment(payment)
        return self._render(request, "sync.html", payment, "Sync this payment now", form)

    def mark_failed_view(self, request, object_id):
        """Mark a stuck payment failed (``payments.mark_payment_failed``, admin group):
        ``payments.backoffice.payment_mark_failed``."""
        from payments.backoffice import payment_mark_failed, payment_mark_failed_refusal

        payment = self._payment_for(request, object_id, MARK_FAILED_PERMISSION)
        form = ReasonForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                payment = payment_mark_failed(payment_id=payment.pk, actor=request.user.get_username(),
                                              reason=form.cleaned_data["reason"])
            except ServiceError as exc:
                add_service_error(form, exc)
            else:
                self.message_user(request, f"Payment {payment.pk} marked FAILED ({payment.return_info}).",
                                  messages.SUCCESS)
                return self._to_payment(payment)
        refusal = payment_mark_failed_refusal(payment=payment)
        return self._render(request, "mark_failed.html", payment, "Mark this stuck payment failed", form,
                            refusal=f"{refusal.message} ({refusal.code})" if refusal else None,
                            stuck_minutes=settings.PROCESSING_STUCK_MINUTES)


@admin.register(PaymentStatusChange)
class PaymentStatusChangeAdmin(ReadOnlyAdmin):
    list_display = ("at", "payment_id", "from_status", "to_status", "source", "actor", "return_code", "event_type")
    list_filter = ("source", "to_status", "from_status")
    search_fields = ("=payment__user_id", "=payment__confirmation_id", "=actor", "=return_code")
    date_hierarchy = "at"
    ordering = ("-at", "-id")
    show_full_result_count = False

    def get_search_results(self, request, queryset, search_term):
        """Also find the history of one payment by its id."""
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        payment_id = _uuid_or_none(search_term)
        if payment_id is not None:
            found |= queryset.filter(payment_id=payment_id)
        return found, may_have_duplicates


@admin.register(PrenoteRequest)
class PrenoteRequestAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "user_id", "account_id", "masked_account_number", "provider", "usio_account",
                    "status", "attempts", "payment", "last_error")
    list_filter = ("status", "provider")
    search_fields = ("=user_id", "=account_id", "=masked_account_number", "=payment__id")
    date_hierarchy = "created_at"


@admin.register(TransactionServiceNotification)
class TransactionServiceNotificationAdmin(ReadOnlyAdmin):
    """What the Transaction Service was (or will be) told; a dead one has a dead letter to replay."""

    list_display = ("created_at", "event_id", "payment", "status", "attempts", "next_attempt_at", "sent_at")
    list_filter = ("status",)
    search_fields = ("=event_id", "=payment__id", "=payment__user_id", "=payment__confirmation_id")
    date_hierarchy = "created_at"
    list_select_related = ("payment",)

