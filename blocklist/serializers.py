"""Input and output shapes of the blocklist API."""

from rest_framework import serializers

from blocklist.models import BlocklistRecord, BlocklistSource, BlocklistStatus
from core.serializers import StrictInputSerializer


class BlocklistChangeInputSerializer(StrictInputSerializer):
    """Body of a block (POST) or unblock (DELETE). The reason is checked by the service (422 ``reason_required``)."""

    reason = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False,
        help_text="Why support blocks / unblocks the user (required, up to 2000 characters).",
    )


class BlocklistStatusOutputSerializer(serializers.Serializer):
    """A user's current state: their newest record. A user never on the blocklist is NOTBLOCKED with nulls."""

    user_id = serializers.CharField()
    status = serializers.ChoiceField(choices=BlocklistStatus.choices)
    reason = serializers.CharField(allow_null=True)
    source = serializers.ChoiceField(choices=BlocklistSource.choices, allow_null=True)
    return_code = serializers.CharField(allow_null=True)
    since = serializers.DateTimeField(allow_null=True, help_text="When the current state began (the newest record).")


class BlocklistRecordOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = BlocklistRecord
        fields = ["id", "user_id", "status", "reason", "source", "return_code", "payment_id", "actor", "created_at"]
        read_only_fields = fields
