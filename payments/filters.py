"""Filters of ``GET /api/v1/users/{user_id}/payments`` (django-filter; an invalid value is 400 with the field)."""

from datetime import UTC

from django.core.exceptions import ValidationError
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField

from payments.models import Method, Payment, PaymentType, Purpose, Status


class UtcIsoDateTimeField(IsoDateTimeField):
    """ISO 8601, normalised to UTC before it reaches the database: Python accepts offsets up to ±23:59 but
    PostgreSQL refuses those beyond ±15:59 (a 500 before); an instant that has no UTC form (year 1 with a positive
    offset) is invalid (400)."""

    def to_python(self, value):
        result = super().to_python(value)
        if result is None:
            return None
        try:
            return result.astimezone(UTC)
        except OverflowError as exc:
            raise ValidationError(self.error_messages["invalid"], code="invalid") from exc


class UtcIsoDateTimeFilter(filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class PaymentFilter(filters.FilterSet):
    """``status``, ``payment_method``, ``payment_type``, ``purpose`` (exact enum values) and the submission window
    ``submitted_after`` (inclusive) / ``submitted_before`` (exclusive), ISO 8601 (a date alone means its midnight
    UTC)."""

    status = filters.ChoiceFilter(field_name="payment_status", choices=Status.choices,
                                  help_text="Payment status.")
    payment_method = filters.ChoiceFilter(choices=Method.choices, help_text="ach, pinless or rtp.")
    payment_type = filters.ChoiceFilter(choices=PaymentType.choices, help_text="debit or credit.")
    purpose = filters.ChoiceFilter(choices=Purpose.choices, help_text="subscription, float, loan or prenote.")
    submitted_after = UtcIsoDateTimeFilter(field_name="submit_date", lookup_expr="gte",
                                                help_text="Submitted at or after this instant (ISO 8601).")
    submitted_before = UtcIsoDateTimeFilter(field_name="submit_date", lookup_expr="lt",
                                                 help_text="Submitted before this instant (ISO 8601).")

    class Meta:
        model = Payment
        fields = ["status", "payment_method", "payment_type", "purpose", "submitted_after", "submitted_before"]
