"""Back office of payments: read-only records and their status history (ARCHITECTURE.md §7).

Money, statuses and processor references are never edited here: a status changes only through
``payments.status.payment_apply_status``. Support finds a payment by user id, confirmation id, payment id (our
reference at the processors, with or without hyphens) or the last 4 of the account/card, and sees stuck payments
with the "stuck" filter (SPEC §7.7: PROCESSING longer than ``PROCESSING_STUCK_MINUTES``, ACHSENT for more than
5 business days).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib import admin
from django.db.models import Q
from django.utils import timezone

from core.admin_base import ReadOnlyAdmin
from core.business_days import CHICAGO, add_business_days, chicago_date
from payments.models import Payment, PaymentStatusChange, PrenoteRequest, Status

STUCK_ACHSENT_BUSINESS_DAYS = 5


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
        now = timezone.now()
        if self.value() == "processing":
            cutoff = now - timedelta(minutes=settings.PROCESSING_STUCK_MINUTES)
            return queryset.filter(payment_status=Status.PROCESSING, created_at__lt=cutoff)
        if self.value() == "achsent":
            # More than 5 business days passed ⟺ submitted before the 6th business day before today (Chicago).
            day = add_business_days(chicago_date(now), -(STUCK_ACHSENT_BUSINESS_DAYS + 1))
            cutoff = datetime.combine(day, datetime.min.time(), tzinfo=CHICAGO)
            return queryset.filter(
                Q(submit_date__lt=cutoff) | Q(submit_date__isnull=True, created_at__lt=cutoff),
                payment_status=Status.ACHSENT,
            )
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


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
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
