"""Back office of refunds: read-only records (ARCHITECTURE.md §7).

Money, statuses and Usio references are never edited here: a refund's status changes only through
``refunds.services.refund_finish`` (step 3, the reconciler). Support finds a refund by user id, Usio confirmation
ids (the refund's own or the transaction refunded), the refunded payment's id or confirmation id, or the refund's
id (our reference, with or without hyphens), and sees the refunds the reconciler could not resolve with the
"stuck" filter (PROCESSING longer than ``PROCESSING_STUCK_MINUTES``).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib import admin
from django.db.models import Q
from django.utils import timezone

from core.admin_base import ReadOnlyAdmin
from refunds.models import Refund, RefundStatus


def _uuid_or_none(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term.strip())
    except (ValueError, AttributeError):
        return None


class StuckRefundFilter(admin.SimpleListFilter):
    """Refunds whose Usio outcome is still unknown after the reconciler's first chance: support looks at these."""

    title = "stuck"
    parameter_name = "stuck"

    def lookups(self, request, model_admin):
        return [("processing", f"PROCESSING > {settings.PROCESSING_STUCK_MINUTES} min")]

    def queryset(self, request, queryset):
        if self.value() == "processing":
            cutoff = timezone.now() - timedelta(minutes=settings.PROCESSING_STUCK_MINUTES)
            return queryset.filter(status=RefundStatus.PROCESSING, created_at__lt=cutoff)
        return queryset


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ("id", "user_id", "amount", "status", "target", "method", "account_type", "payment_id",
                    "confirmation_id", "refund_confirmation_id", "support_name", "created_at", "date_refunded")
    list_filter = (StuckRefundFilter, "status", "target", "method", "account_type")
    search_fields = ("=user_id", "=refund_confirmation_id", "=confirmation_id", "=payment__confirmation_id",
                     "=support_name")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    show_full_result_count = False  # no COUNT(*) over the whole table on every page

    def get_search_results(self, request, queryset, search_term):
        """Also find a refund by its id or by the id of the payment it refunds (UUID, hyphenated or 32 hex)."""
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term_id = _uuid_or_none(search_term)
        if term_id is not None:  # within the active filters (``queryset`` has them)
            found |= queryset.filter(Q(pk=term_id) | Q(payment_id=term_id))
        return found, may_have_duplicates
