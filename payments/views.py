"""Payments API (SPEC §5, §10). Thin: parse, call a service or selector, render.

- ``POST /api/v1/payments`` (service, user for itself): submit a payment; ``Idempotency-Key`` required.
- ``GET /api/v1/users/{user_id}/payments`` (service, support, user for itself): newest first, cursor-paginated,
  filtered (``payments.filters.PaymentFilter``).
- ``GET /api/v1/payments/{confirmation_id}`` (service, support, user for its own payments): by the processor's
  confirmation id, or by our payment id (a payment without a confirmation yet has only that).
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from core.auth.permissions import ensure_user_access, require_roles
from core.card_data import find_card_data
from core.errors import ValidationError
from core.idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotency_key_from_request, request_fingerprint
from core.idempotency.http import REPLAY_HEADER
from core.pagination import CursorPagination
from core.serializers import StrictInputSerializer, error_response
from payments import selectors, services
from payments.filters import PaymentFilter
from payments.models import Method, Payment, PaymentType, Provider, Purpose
from payments.serializers import PaymentOutput

TAGS = ["payments"]


# --- serializers ---------------------------------------------------------------------------------------------------
@extend_schema_field({
    "oneOf": [
        {"type": "string", "pattern": r"^[0-9]+(\.[0-9]{1,2})?$", "example": "12.34"},
        {"type": "number", "example": 12.34},
    ],
    "description": "US dollars, > 0, at most two decimals, at most MAX_PAYMENT_AMOUNT (default 5000.00).",
})
class AmountInputField(serializers.Field):
    """The amount as sent (JSON string or number); ``payments.services.clean_amount`` decides (422
    ``invalid_amount`` / ``amount_over_limit``), so every amount problem has the same code whatever its type."""

    def to_internal_value(self, data):
        return data

    def to_representation(self, value):
        return str(value)


@extend_schema_field({"type": "string", "enum": list(Provider.values), "nullable": True})
class ProviderOverrideField(serializers.ChoiceField):
    """``provider``: the same values as the output's ``payment_provider``, described inline (one enum component
    per choice set keeps ``spectacular --fail-on-warn`` clean)."""


class PaymentSubmitInput(StrictInputSerializer):
    user_id = serializers.CharField(max_length=64, help_text="The user who pays or is paid.")
    purpose = serializers.ChoiceField(choices=Purpose.choices)
    payment_method = serializers.ChoiceField(choices=Method.choices)
    payment_type = serializers.ChoiceField(choices=PaymentType.choices)
    amount = AmountInputField()
    account_id = serializers.CharField(max_length=64, required=False, allow_null=True,
                                       help_text="The bank account (Plaid account id): required for ACH and RTP.")
    loan_id = serializers.CharField(max_length=64, required=False, allow_null=True)
    subscription_id = serializers.CharField(max_length=64, required=False, allow_null=True)
    cbc_card_id = serializers.CharField(max_length=64, required=False, allow_null=True)
    provider = ProviderOverrideField(
        choices=Provider.choices, required=False, allow_null=True,
        help_text="Subscription ACH debits only: jpm or usio instead of SUBSCRIPTION_ACH_PROVIDER. On any other "
                  "route it must be the route's own provider (usio).")
    rtp_mode = serializers.ChoiceField(
        choices=[(mode, mode) for mode in services.RTP_MODES], required=False, allow_null=True,
        help_text="RTP only. `only` (default): not RTP-eligible → FAILED `rtp_not_eligible`; `fallback`: sent as "
                  "an ACH credit instead.")
    first_name = serializers.CharField(max_length=services.NAME_MAX_LENGTH, required=False,
                                       help_text=f"Account holder's first name for ACH (default "
                                                 f"`{services.DEFAULT_FIRST_NAME}`).")
    last_name = serializers.CharField(max_length=services.NAME_MAX_LENGTH, required=False,
                                      help_text=f"Account holder's last name for ACH (default "
                                                f"`{services.DEFAULT_LAST_NAME}`).")


COMMON_ERRORS = {
    401: error_response("No or bad credentials."),
    403: error_response("Role not allowed, or another user's payment (`not_your_user`)."),
}


# --- views ---------------------------------------------------------------------------------------------------------
class PaymentSubmitView(APIView):
    """Submit a payment (SPEC §5): routing, pre-checks, one processor call, idempotent per API client and key."""

    permission_classes = [require_roles("service", "user")]

    @extend_schema(
        operation_id="payment_submit", tags=TAGS, summary="Submit a payment.",
        description=(
            "Routes the payment (SPEC §5 table), checks it, records it PROCESSING, calls the processor once with "
            "our payment id as reference, and answers **201** with the payment: ACHSENT (ACH), COMPLETED or FAILED "
            "(pinless/RTP; a decline is a FAILED payment with `return_code`/`return_info`). **202** with the "
            "PROCESSING payment when the processor's answer is unknown (timeout): the reconciler resolves it; poll "
            "`GET /payments/{id}`. Retrying with the same `Idempotency-Key` and body replays the answer "
            "(`Idempotent-Replayed: true`). Refusals of the pre-checks (422 `user_blocklisted`, "
            "`bank_account_not_found`, `debit_card_missing`, `debit_card_invalid`) are stored on the key too: send "
            "a corrected request with a new key. Body errors (400/403/422 below) store nothing."
        ),
        request=PaymentSubmitInput,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={
            201: PaymentOutput,
            202: OpenApiResponse(response=PaymentOutput, description="Outcome unknown: the payment is PROCESSING."),
            400: error_response("`idempotency_key_missing`, `idempotency_key_invalid` (1-255 printable ASCII), "
                        "`validation_error` (missing/unknown field, unknown purpose/method/type/provider/rtp_mode "
                        "value; `details` names the field), `malformed_request` (not JSON)."),
            409: error_response("`idempotency_in_progress`: the first request with this key is still running."),
            422: error_response(
                "`idempotency_key_reused` (same key, different body), `unsupported_route`, `invalid_amount` "
                "(`details.reason`: `not_a_number`, `not_positive`, `too_many_decimals`), "
                "`amount_over_limit`, `account_id_required`, `account_id_not_allowed`, "
                "`rtp_mode_not_allowed`, `invalid_name`, `invalid_user_id`, `invalid_account_id`, "
                "`card_data_not_allowed`, `user_blocklisted`, `bank_account_not_found`, "
                "`debit_card_missing`, `debit_card_invalid`."),
            **COMMON_ERRORS,
        },
    )
    def post(self, request):
        key = idempotency_key_from_request(request)
        if find_card_data(request.data) is not None:
            raise ValidationError("Card numbers and security codes must never be sent to this service.",
                                  code="card_data_not_allowed")
        fingerprint = request_fingerprint(request)
        result = services.payment_replay(principal=request.user, idempotency_key=key, fingerprint=fingerprint)
        if result is None:
            data = PaymentSubmitInput(data=request.data)
            data.is_valid(raise_exception=True)
            result = services.payment_submit(principal=request.user, idempotency_key=key, fingerprint=fingerprint,
                                             data=data.validated_data)
        headers = {REPLAY_HEADER: "true"} if result.replayed else None
        return Response(result.body, status=result.status_code, headers=headers)


class PaymentListPagination(CursorPagination):
    ordering = selectors.NEWEST_FIRST


class UserPaymentListView(ListAPIView):
    """The user's payments, newest first, cursor-paginated, filtered."""

    permission_classes = [require_roles("service", "support", "user")]
    serializer_class = PaymentOutput
    pagination_class = PaymentListPagination
    filterset_class = PaymentFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request, no user_id
            return Payment.objects.none()
        return selectors.payment_list_for_user(user_id=self.kwargs["user_id"])

    @extend_schema(
        operation_id="user_payments_list", tags=TAGS,
        summary="A user's payments, newest first (cursor-paginated; empty for a user with none).",
        responses={200: PaymentOutput(many=True),
                   400: error_response("`validation_error`: a filter value is invalid (`details` names it)."),
                   422: error_response("`invalid_user_id`."), 404: error_response("`not_found`: invalid cursor."),
                   **COMMON_ERRORS},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class PaymentDetailView(APIView):
    """One payment by the processor's confirmation id or by our payment id."""

    permission_classes = [require_roles("service", "support", "user")]

    @extend_schema(
        operation_id="payment_get", tags=TAGS,
        summary="One payment, by confirmation id (Usio Confirmation, JPM endToEndId) or by our payment id.",
        parameters=[OpenApiParameter(
            "confirmation_id", OpenApiTypes.STR, OpenApiParameter.PATH,
            description="The processor's confirmation id, or our payment id (UUID, with or without dashes): a "
                        "payment still PROCESSING, or refused before the processor confirmed it, has only our id.")],
        responses={200: PaymentOutput, 404: error_response("`payment_not_found`."), **COMMON_ERRORS},
    )
    def get(self, request, confirmation_id: str):
        payment = selectors.payment_get(identifier=confirmation_id)
        ensure_user_access(request.user, payment.user_id)
        return Response(PaymentOutput(payment).data)
