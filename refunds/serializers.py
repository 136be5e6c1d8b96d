"""Refund serializers: the input of ``POST /refunds`` and the refund as the API renders it."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.serializers import StrictInputSerializer
from refunds.models import AccountType, Refund, RefundStatus


@extend_schema_field({
    "oneOf": [
        {"type": "string", "pattern": r"^[0-9]+(\.[0-9]{1,2})?$", "example": "12.34"},
        {"type": "number", "example": 12.34},
    ],
    "description": "US dollars, > 0, at most two decimals, at most MAX_PAYMENT_AMOUNT (default 5000.00), and at "
                   "most what is left to refund of the payment or Usio transaction.",
})
class RefundAmountInputField(serializers.Field):
    """The amount as sent (JSON string or number); ``payments.services.clean_amount`` decides (422
    ``invalid_amount`` / ``amount_over_limit``), so every amount problem has one code whatever its JSON type."""

    def to_internal_value(self, data):
        return data

    def to_representation(self, value):
        return str(value)


@extend_schema_field({"type": "string", "enum": list(AccountType.values),
                      "description": "`debit` (the user's card) or `ach` (a bank account)."},
                     component_name="RefundAccountType")
class RefundAccountTypeField(serializers.ChoiceField):
    """``account_type`` as its own schema component: bank accounts use the same field name for checking/savings,
    and two choice sets under one name are an enum-naming collision for ``spectacular --fail-on-warn``."""


@extend_schema_field({"type": "string", "enum": list(RefundStatus.values),
                      "description": "PROCESSING (Usio's answer not known yet), COMPLETED or FAILED."},
                     component_name="RefundStatus")
class RefundStatusField(serializers.ChoiceField):
    """The refund's status as its own schema component (the blocklist's ``status`` is another choice set)."""


class RefundCreateInput(StrictInputSerializer):
    """Exactly one of ``payment_id``, ``confirmation_id``, ``account_type``. No support identity here: it comes from
    the caller (a ``support_name``/``support_email``/``support_last_ip`` field is an unknown field, 400)."""

    user_id = serializers.CharField(max_length=64, help_text="The user who gets the money back.")
    amount = RefundAmountInputField()
    description = serializers.CharField(max_length=255, help_text="Why (required; also the audit reason).")
    payment_id = serializers.CharField(
        max_length=64, required=False, allow_null=True,
        help_text="Refund one of our payments: its id (UUID, with or without dashes) or its confirmation_id.")
    confirmation_id = serializers.CharField(
        max_length=64, required=False, allow_null=True,
        help_text="Refund a Usio card transaction that has no payment record (looked up at Usio first).")
    account_type = RefundAccountTypeField(
        choices=AccountType.choices, required=False, allow_null=True,
        help_text="Refund an arbitrary amount: `debit` → a PinlessCredit to the user's card, `ach` → an ACH credit "
                  "to the bank account `account_id`.")
    account_id = serializers.CharField(max_length=64, required=False, allow_null=True,
                                       help_text="With `account_type: ach` only: the user's bank account.")
    loan_id = serializers.CharField(max_length=64, required=False, allow_null=True)
    subscription_id = serializers.CharField(max_length=64, required=False, allow_null=True)


class RefundOutput(serializers.ModelSerializer):
    amount = serializers.DecimalField(max_digits=12, decimal_places=2, coerce_to_string=True)
    payment_id = serializers.UUIDField(allow_null=True, read_only=True,
                                       help_text="Our payment refunded (null when not tied to a payment).")
    account_type = RefundAccountTypeField(choices=AccountType.choices, read_only=True)
    status = RefundStatusField(choices=RefundStatus.choices, read_only=True)

    class Meta:
        model = Refund
        fields = [
            "id", "refund_confirmation_id", "user_id", "amount", "description", "account_type", "target", "method",
            "payment_id", "loan_id", "subscription_id", "confirmation_id", "merchant_account",
            "masked_account_number", "masked_card_number", "support_name", "support_email", "support_last_ip",
            "date_refunded", "status", "failure_code", "failure_message", "created_at", "updated_at",
        ]
        read_only_fields = fields


def refund_render(refund: Refund) -> dict:
    """The refund as the API renders it (JSON-safe)."""
    return dict(RefundOutput(refund).data)
