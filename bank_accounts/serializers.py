"""Input and output shapes of the bank account API. Outputs never carry an account or routing number."""

from rest_framework import serializers

from bank_accounts.models import AccountType, PrenoteStatus
from core.serializers import StrictInputSerializer


class StrictStringField(serializers.CharField):
    """A string as sent: a JSON number is refused (``21000021`` would lose a routing number's leading zero) and
    nothing is trimmed (the service refuses non-digits; it does not guess). Error messages never echo the value."""

    default_error_messages = {"invalid": "Must be a JSON string."}

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        kwargs.setdefault("allow_blank", True)  # a blank number is the service's 422, not a 400
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return data


class BankAccountPutRequestSerializer(StrictInputSerializer):
    account_number = StrictStringField(help_text="4 to 17 digits. Stored encrypted; never returned.")
    routing_number = StrictStringField(help_text="9 digits passing the ABA checksum. Stored encrypted; never returned.")
    account_type = serializers.ChoiceField(
        choices=AccountType.choices,
        required=False,
        help_text="checking (default on create) or savings; omitted on update = unchanged.",
    )


class BankAccountResponseSerializer(serializers.Serializer):
    user_id = serializers.CharField()
    account_id = serializers.CharField(help_text="Plaid account id.")
    last4 = serializers.CharField(help_text="Last 4 digits of the account number.")
    account_type = serializers.ChoiceField(choices=AccountType.choices)
    prenote_status = serializers.ChoiceField(choices=PrenoteStatus.choices)
    account_routing_hash = serializers.CharField(
        help_text="Keyed HMAC blind index of routing + account number (input to fraud checks and lookups)."
    )
    entry_timestamp = serializers.DateTimeField(help_text="When the numbers now stored were entered.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class BankAccountLookupRequestSerializer(StrictInputSerializer):
    routing_number = StrictStringField(required=False, help_text="With account_number; hashed on arrival.")
    account_number = StrictStringField(required=False, help_text="With routing_number; hashed on arrival.")
    account_routing_hash = StrictStringField(required=False, help_text="Instead of the numbers: 64 hex characters.")


class BankAccountLookupResponseSerializer(serializers.Serializer):
    exists = serializers.BooleanField()
    user_ids = serializers.ListField(child=serializers.CharField(), help_text="Users holding such an account now.")
