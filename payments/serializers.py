"""Payment serializers. ``PaymentOutput`` is also the ``data`` of every payment event (SPEC §4)."""

from rest_framework import serializers

from payments.models import Payment


class PaymentOutput(serializers.ModelSerializer):
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


def payment_render(payment: Payment) -> dict:
    """The payment as the API and the events render it (JSON-safe): ``PaymentOutput(payment).data``.

    One serializer instance renders every payment: a ModelSerializer builds its fields from the model on each new
    instance (~5 ms, most of the cost of rendering one payment); the fields hold no per-payment state.
    """
    global _renderer
    if _renderer is None:
        renderer = PaymentOutput()
        renderer.fields  # noqa: B018 (built once, here)
        _renderer = renderer
    return dict(_renderer.to_representation(payment))
