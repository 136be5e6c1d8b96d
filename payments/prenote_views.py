"""Prenote API (SPEC §6, §10). Thin: parse, call ``payments.prenotes``, render.

- ``POST /api/v1/prenotes`` (service): ask for a zero-dollar prenote of a bank account; 202 with the new request,
  200 with the pending one. ``Idempotency-Key`` optional (honoured when sent).

A user's prenotes are listed by the payments listing: ``GET /api/v1/users/{user_id}/payments?purpose=prenote``.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.auth.permissions import require_roles
from core.card_data import find_card_data
from core.errors import ValidationError
from core.idempotency import request_fingerprint, validate_idempotency_key
from core.idempotency.http import HEADER, REPLAY_HEADER
from core.idempotency.services import MAX_KEY_LENGTH
from core.serializers import StrictInputSerializer, error_response
from payments import prenotes
from payments.models import PrenoteUsioAccount, Provider
from payments.prenote_serializers import PrenoteProviderField, PrenoteRequestOutput, PrenoteUsioAccountField

TAGS = ["prenotes"]

OPTIONAL_IDEMPOTENCY_KEY = OpenApiParameter(
    name=HEADER, type=OpenApiTypes.STR, location=OpenApiParameter.HEADER, required=False,
    description=(
        f"Optional: 1 to {MAX_KEY_LENGTH} printable ASCII characters. When sent, the same key and body replay the "
        "first answer (`Idempotent-Replayed: true`) and the same key with another body is 422 "
        "`idempotency_key_reused`. Without it a repeated request is still safe: it gets the pending prenote."
    ),
)


class PrenoteRequestInput(StrictInputSerializer):
    user_id = serializers.CharField(max_length=64, help_text="The owner of the bank account.")
    account_id = serializers.CharField(max_length=64, help_text="The bank account (Plaid account id).")
    provider = PrenoteProviderField(choices=Provider.choices, help_text="jpm or usio.")
    usio_account = PrenoteUsioAccountField(
        choices=PrenoteUsioAccount.choices, required=False, allow_null=True,
        help_text="Usio only (required then): `subscription` (29111679) or `float_debit` (29063402).")


class PrenoteRequestView(APIView):
    """Ask for a prenote (SPEC §6)."""

    permission_classes = [require_roles("service")]

    @extend_schema(
        operation_id="prenote_request", tags=TAGS, summary="Prove a bank account with a zero-dollar ACH prenote.",
        description=(
            "Accepts a prenote of the user's bank account through JPM or a Usio account (trans code 28 checking / "
            "38 savings, amount 0) and answers **202** with the request (`status: requested`); the account's "
            "`prenote_status` becomes `pending`. The `prenotes` job submits it (a payment with `purpose: prenote` "
            "and the event `PRENOTE_SUBMITTED`); a return makes the account `failed` (`PRENOTE_RETURNED`; R01 "
            "leaves it usable: `verified`), three business days without one make it `verified` "
            "(`PRENOTE_VERIFIED`). A request for an account with a prenote pending (requested, or submitted and "
            "not yet verified or returned) is answered **200** with that one: nothing is sent twice. List a user's "
            "prenotes with `GET /api/v1/users/{user_id}/payments?purpose=prenote`."
        ),
        request=PrenoteRequestInput,
        parameters=[OPTIONAL_IDEMPOTENCY_KEY],
        responses={
            202: OpenApiResponse(response=PrenoteRequestOutput, description="Accepted: a new prenote request."),
            200: OpenApiResponse(response=PrenoteRequestOutput,
                                 description="The prenote already pending for this account (nothing new)."),
            400: error_response(
                "`validation_error` (missing/unknown field, unknown provider/usio_account; `details` names "
                "the field), `malformed_request`, `idempotency_key_invalid`."),
            401: error_response("No or bad credentials."),
            403: error_response("Only the service role may request prenotes."),
            422: error_response("`invalid_user_id`, `invalid_account_id`, `usio_account_required`, "
                        "`usio_account_not_allowed`, `bank_account_not_found`, `card_data_not_allowed`, "
                        "`idempotency_key_reused`."),
        },
    )
    def post(self, request):
        raw_key = request.headers.get(HEADER)
        key = validate_idempotency_key(raw_key) if raw_key is not None else None
        if find_card_data(request.data) is not None:
            raise ValidationError("Card numbers and security codes must never be sent to this service.",
                                  code="card_data_not_allowed")
        fingerprint = request_fingerprint(request) if key is not None else None
        data = PrenoteRequestInput(data=request.data)
        data.is_valid(raise_exception=True)
        result = prenotes.prenote_request(principal=request.user, data=data.validated_data, idempotency_key=key,
                                          fingerprint=fingerprint)
        headers = {REPLAY_HEADER: "true"} if result.replayed else None
        return Response(result.body, status=result.status_code, headers=headers)
