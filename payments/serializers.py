"""Payment serializers. ``PaymentOutput`` is also the ``data`` of every payment event (SPEC §4)."""

from datetime import UTC

from django.db import models
from rest_framework import serializers

from payments.models import Payment


class UtcDateTimeField(serializers.DateTimeField):
    """A date-time rendered in UTC (ISO 8601, ``Z``), whatever time zone a request may have activated: events and
    API answers never depend on one. Also cheaper than DRF's default, which looks the current time zone up (a
    context-local read) for every value."""

    def __init__(self, **kwargs):
        kwargs.setdefault("default_timezone", UTC)
        super().__init__(**kwargs)


class PaymentOutput(serializers.ModelSerializer):
    serializer_field_mapping = {**serializers.ModelSerializer.serializer_field_mapping,
                                models.DateTimeField: UtcDateTimeField}
    amount = serializers.DecimalField(max_digits=12, decimal_places=2, coerce_to_string=True)

    class Meta:
        model = Payment
        fields = [
            "id", "confirmation_id", "user_id", "purpose", "payment_method", "payment_type", "payment_provider",
            "merchant_account", "amount", "loan_id", "subscription_id", "cbc_card_id", "account_id",
            "masked_account_number", "masked_card_number", "payment_status", "return_code", "return_info",
            "event_type", "submit_date", "return_date", "cleared_date", "completion_date", "created_at",
            "updated_at", "version",
        ]
        read_only_fields = fields


_renderer: PaymentOutput | None = None
#: (output name, model attribute, the field's ``to_representation``) per field; empty when a field is not a plain
#: attribute (then the serializer renders).
_plain_fields: list[tuple[str, str, object]] | None = None


def _renderer_fields() -> tuple[PaymentOutput, list]:
    global _renderer, _plain_fields
    if _renderer is None:
        from rest_framework.fields import Field

        renderer = PaymentOutput()
        plain = []
        for field in renderer._readable_fields:  # builds the fields, once
            if type(field).get_attribute is not Field.get_attribute or len(field.source_attrs) != 1:
                plain = []
                break
            plain.append((field.field_name, field.source_attrs[0], field.to_representation))
        _renderer, _plain_fields = renderer, plain
    return _renderer, _plain_fields


def payment_render(payment: Payment) -> dict:
    """The payment as the API and the events render it (JSON-safe): exactly ``PaymentOutput(payment).data``.

    One serializer instance renders every payment: a ModelSerializer builds its fields from the model on each new
    instance (~5 ms, most of the cost of rendering one payment); the fields hold no per-payment state. Each field's
    own ``to_representation`` is applied to the model attribute it reads (``None`` stays ``None``), without DRF's
    generic per-field attribute walk (a third of a render; it matters when check-ach renders a million events). A
    field that reads anything but one plain attribute, or a callable value, renders through the serializer.
    Equality with ``PaymentOutput(payment).data`` is asserted in ``tests/perf/test_query_counts.py``.
    """
    renderer, plain = _renderer_fields()
    if plain:
        data = {}
        for name, attribute, represent in plain:
            value = getattr(payment, attribute)
            if callable(value):
                break
            data[name] = None if value is None else represent(value)
        else:
            return data
    return dict(renderer.to_representation(payment))
