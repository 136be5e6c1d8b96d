"""How a prenote request is rendered (``POST /api/v1/prenotes`` answers, stored idempotent responses).

The enum fields are described inline with the same schema as the input's, so drf-spectacular makes one component
per choice set (``spectacular --fail-on-warn`` stays clean). ``status`` has no ``enum`` keyword: another ``status``
choice set (the blocklist's) would collide; its values are in the pattern.
"""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from payments.models import PrenoteRequest, PrenoteRequestStatus, PrenoteUsioAccount, Provider

PROVIDER_SCHEMA = {"type": "string", "enum": list(Provider.values)}
USIO_ACCOUNT_SCHEMA = {"type": "string", "enum": list(PrenoteUsioAccount.values), "nullable": True}
STATUS_SCHEMA = {
    "type": "string",
    "pattern": "^(" + "|".join(PrenoteRequestStatus.values) + ")$",
    "description": "`requested` (waiting for the prenote job), `submitted` (its payment exists: the outcome is the "
                   "payment's status), `failed` (never reached the bank: `last_error` says why).",
}


@extend_schema_field(PROVIDER_SCHEMA)
class PrenoteProviderField(serializers.ChoiceField):
    """``provider``: jpm or usio."""


@extend_schema_field(USIO_ACCOUNT_SCHEMA)
class PrenoteUsioAccountField(serializers.ChoiceField):
    """``usio_account``: the Usio merchant account a prenote goes through (Usio only)."""


@extend_schema_field(STATUS_SCHEMA)
class PrenoteStatusField(serializers.ChoiceField):
    """``status`` of a prenote request."""


class PrenoteRequestOutput(serializers.ModelSerializer):
    provider = PrenoteProviderField(choices=Provider.choices, read_only=True)
    usio_account = PrenoteUsioAccountField(choices=PrenoteUsioAccount.choices, read_only=True, allow_null=True)
    status = PrenoteStatusField(choices=PrenoteRequestStatus.choices, read_only=True)
    payment_id = serializers.UUIDField(allow_null=True, read_only=True,
                                       help_text="The prenote's payment (purpose `prenote`, amount 0) once the job "
                                                 "submitted it; null while `requested`.")
    payment_status = serializers.SerializerMethodField(
        help_text="The payment's status when rendered (PROCESSING, ACHSENT, CLEARED, COMPLETED = verified, FAILED); "
                  "null while `requested`.")

    class Meta:
        model = PrenoteRequest
        fields = [
            "id", "user_id", "account_id", "masked_account_number", "provider", "usio_account", "status",
            "payment_id", "payment_status", "attempts", "last_error", "created_at", "updated_at",
        ]
        read_only_fields = fields

    def get_payment_status(self, obj: PrenoteRequest) -> str | None:
        return obj.payment.payment_status if obj.payment_id else None


def prenote_render(prenote: PrenoteRequest) -> dict:
    """The prenote request as the API renders it (JSON-safe)."""
    return dict(PrenoteRequestOutput(prenote).data)
