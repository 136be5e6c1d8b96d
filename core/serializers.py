"""Serializer base classes shared by the domain APIs."""

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class StrictInputSerializer(serializers.Serializer):
    """An input serializer that refuses fields it does not know (400 ``validation_error``).

    For money-moving requests a misspelt optional field (``amout``) must not be silently ignored.
    """

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class ErrorDetailOutput(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.JSONField()


class ErrorOutput(serializers.Serializer):
    """The error envelope every 4xx/5xx carries (``core.exception_handler``), for the OpenAPI schema."""

    error = ErrorDetailOutput()


def error_response(description: str) -> OpenApiResponse:
    """An OpenAPI response documenting an error answer."""
    return OpenApiResponse(response=ErrorOutput, description=description)
