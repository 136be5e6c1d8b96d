"""Input and output shapes of the cards API. Field names follow SPEC §2.2.

Inputs only check shape (types, presence, unknown fields → 400); the rules and their precise 422 codes are in
``cards.services``, so string fields accept blanks and long values and let the service say what is wrong.
"""

from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers

from cards.models import DebitCard, DebitCardChange
from core.serializers import StrictInputSerializer


def _text(**kwargs):
    return serializers.CharField(allow_blank=True, trim_whitespace=False, **kwargs)


class DebitCardSaveInput(StrictInputSerializer):
    masked_card_number = _text(help_text="The last 4 digits of the card. Never the full number.")
    card_exp = _text(help_text="Expiry, MMYYYY; not in the past.")
    transaction_reference_id = _text(help_text="Usio credit token (1-64 printable characters, no spaces).")
    debit_transaction_reference_id = _text(help_text="Usio debit token (1-64 printable characters, no spaces).")


class DebitCardAdminUpdateInput(StrictInputSerializer):
    reason = _text(max_length=2000, help_text="Why support changes the card (required, audited).")
    transaction_reference_id = _text(required=False)
    debit_transaction_reference_id = _text(required=False)
    card_exp = _text(required=False, help_text="MMYYYY; not in the past.")
    is_valid = serializers.BooleanField(required=False, help_text="Validity override.")


class DebitCardUserOutput(serializers.ModelSerializer):
    """What the card holder (user JWT) sees: no tokens, no hash."""

    class Meta:
        model = DebitCard
        fields = ["user_id", "masked_card_number", "card_exp", "created_on", "is_valid", "invalid_date"]
        read_only_fields = fields


class DebitCardServiceOutput(serializers.ModelSerializer):
    """What services and support see: the Usio tokens (processor references, not card data) and the hash."""

    class Meta:
        model = DebitCard
        fields = [
            "user_id", "masked_card_number", "hashed_card_number", "transaction_reference_id",
            "debit_transaction_reference_id", "card_exp", "created_on", "is_valid", "invalid_date",
            "invalid_reason", "token_refreshed_at", "force_failure", "updated_at",
        ]
        read_only_fields = fields


DebitCardOutputSchema = PolymorphicProxySerializer(
    component_name="DebitCardOutput",
    serializers=[DebitCardServiceOutput, DebitCardUserOutput],
    resource_type_field_name=None,
)


class DebitCardChangeableOutput(serializers.Serializer):
    changeable = serializers.BooleanField()
    reason = serializers.ChoiceField(
        choices=["payment_processing", "max_changes_reached"], allow_null=True,
        help_text="Why not, or null when changeable.",
    )


class DebitCardChangeOutput(serializers.ModelSerializer):
    class Meta:
        model = DebitCardChange
        fields = [
            "id", "user_id", "change_type", "old_masked_card_number", "new_masked_card_number",
            "old_hashed_card_number", "new_hashed_card_number", "old_card_exp", "new_card_exp", "actor", "reason",
            "at",
        ]
        read_only_fields = fields
