"""Input and output shapes of the fraud API."""

from rest_framework import serializers

from core.serializers import StrictInputSerializer
from fraud.models import FraudCheck, FraudResult, FraudVerdict
from fraud.signals import SIGNAL_NAMES


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers instead of turning them into strings (a routing number sent as a JSON
    number has lost its leading zero already)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


def _optional(help_text: str) -> StrictCharField:
    return StrictCharField(required=False, allow_null=True, help_text=help_text)


class FraudCheckInputSerializer(StrictInputSerializer):
    """What to check. Each optional input enables one signal; raw values are hashed on arrival, never stored."""

    user_id = StrictCharField(help_text="The user being checked.")
    install_id = _optional("The app install id of the device (enables the install_id signal).")
    routing_number = _optional("ABA routing number; with account_number enables the bank_account signal.")
    account_number = _optional("4-17 digits; with routing_number enables the bank_account signal.")
    account_routing_hash = _optional("Instead of the numbers: the account's blind index.")
    card_last4 = _optional("Last 4 digits of the card; with card_exp enables the card signal.")
    card_exp = _optional("Card expiry, MMYYYY.")
    hashed_card_number = _optional("Instead of last 4 + expiry: the card's blind index.")


class FraudEvidenceOutputSerializer(serializers.Serializer):
    other_user_ids = serializers.ListField(child=serializers.CharField(),
                                           help_text="Other users behind the signal (sorted, at most 100).")
    count = serializers.IntegerField(help_text="Other users (or, for user_history, flags on record) in all.")
    fraudulent_results = serializers.IntegerField(required=False, help_text="user_history only.")
    blocks = serializers.IntegerField(required=False, help_text="user_history only: BLOCKED records on record.")


class FraudSignalOutputSerializer(serializers.Serializer):
    name = serializers.ChoiceField(choices=SIGNAL_NAMES)
    fired = serializers.BooleanField(help_text="count > threshold")
    threshold = serializers.IntegerField()
    evidence = FraudEvidenceOutputSerializer()


class FraudCheckOutputSerializer(serializers.ModelSerializer):
    verdict = serializers.ChoiceField(choices=FraudVerdict.choices, help_text="review when any signal fired.")
    fired = serializers.ListField(child=serializers.CharField(),
                                  help_text="Every signal that fired (signal names).")
    signals = FraudSignalOutputSerializer(many=True, help_text="Every signal evaluated (those whose input was given).")
    thresholds = serializers.DictField(child=serializers.IntegerField())

    class Meta:
        model = FraudCheck
        fields = ["id", "user_id", "verdict", "fired", "signals", "window_hours", "thresholds", "install_id_hash",
                  "account_routing_hash", "hashed_card_number", "created_at"]
        read_only_fields = fields


class FraudResultInputSerializer(StrictInputSerializer):
    user_id = StrictCharField()
    verdict = StrictCharField(help_text="fraudulent, suspicious or legitimate.")
    source = StrictCharField(help_text="Who reached the result (e.g. sift, manual-review).")
    score = serializers.DecimalField(max_digits=5, decimal_places=4, required=False, allow_null=True,
                                     help_text="Risk score from 0 to 1.")
    flags = serializers.ListField(child=StrictCharField(), required=False, allow_null=True,
                                  help_text="Short lower-case codes, at most 20.")
    details = serializers.JSONField(required=False, allow_null=True,
                                    help_text="A JSON object of at most 4 KB and 5 levels; no card/account data.")
    fraud_check_id = serializers.UUIDField(required=False, allow_null=True,
                                           help_text="The fraud check this result concludes (same user).")


class FraudResultOutputSerializer(serializers.ModelSerializer):
    fraud_check_id = serializers.UUIDField(allow_null=True, read_only=True)
    details = serializers.JSONField(read_only=True)
    flags = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = FraudResult
        fields = ["id", "user_id", "verdict", "score", "flags", "source", "details", "fraud_check_id", "created_by",
                  "created_at"]
        read_only_fields = fields
