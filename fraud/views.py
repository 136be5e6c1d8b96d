"""Fraud API (SPEC §10): run a fraud check, save a fraud result. Service role only."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.auth.permissions import require_roles
from fraud.serializers import (
    FraudCheckInputSerializer,
    FraudCheckOutputSerializer,
    FraudResultInputSerializer,
    FraudResultOutputSerializer,
)
from fraud.services import fraud_check, fraud_refuse_card_data, fraud_result_save

# Fields whose values are legitimately long digit strings (never card numbers): not scanned for PANs.
_CHECK_NOT_CARD_FIELDS = frozenset({"user_id", "routing_number", "account_number"})
_RESULT_NOT_CARD_FIELDS = frozenset({"user_id"})
_ERRORS = {
    400: OpenApiResponse(description="Malformed body, unknown field or wrong type (validation_error)."),
    401: OpenApiResponse(description="No or invalid credentials."),
    403: OpenApiResponse(description="Only the service role may call this."),
}


class FraudCheckCreateView(APIView):
    permission_classes = [require_roles("service")]

    @extend_schema(
        operation_id="fraud_check_create",
        summary="Run a fraud check",
        description=(
            "Evaluates every signal whose input is given (`user_history` always; `install_id`; `bank_account`; "
            "`card`) over the configured window and thresholds, stores the check (inputs as keyed hashes only) "
            "and returns each signal with its evidence and the verdict (`review` when any fired). Fails closed: "
            "a database error is 503 `fraud_check_unavailable`, never `clear`."
        ),
        request=FraudCheckInputSerializer,
        responses={
            201: FraudCheckOutputSerializer,
            **_ERRORS,
            422: OpenApiResponse(description="invalid_user_id, invalid_routing_number, incomplete_bank_account, "
                                             "ambiguous_card, card_data_not_allowed, ..."),
            503: OpenApiResponse(description="fraud_check_unavailable: the check could not be evaluated."),
        },
    )
    def post(self, request):
        fraud_refuse_card_data(request.data, skip=_CHECK_NOT_CARD_FIELDS)
        body = FraudCheckInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        check = fraud_check(**body.validated_data, requested_by=request.user.name)
        return Response(FraudCheckOutputSerializer(check).data, status=status.HTTP_201_CREATED)


class FraudResultCreateView(APIView):
    permission_classes = [require_roles("service")]

    @extend_schema(
        operation_id="fraud_result_create",
        summary="Save a fraud result",
        description="Stores a result reached by the caller. `fraudulent` results count in the `user_history` "
                    "signal of later checks.",
        request=FraudResultInputSerializer,
        responses={
            201: FraudResultOutputSerializer,
            **_ERRORS,
            422: OpenApiResponse(description="invalid_user_id, invalid_verdict, invalid_score, details_too_large, "
                                             "sensitive_data_not_allowed, fraud_check_not_found, ..."),
        },
    )
    def post(self, request):
        fraud_refuse_card_data(request.data, skip=_RESULT_NOT_CARD_FIELDS)
        body = FraudResultInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = fraud_result_save(**body.validated_data, actor=request.user.name)
        return Response(FraudResultOutputSerializer(result).data, status=status.HTTP_201_CREATED)
