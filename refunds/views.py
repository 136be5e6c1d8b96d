"""Refunds API (SPEC §8, §10). Thin: parse, call a service or selector, render.

- ``POST /api/v1/refunds`` (support, admin): refund a payment, a Usio transaction or an arbitrary amount;
  ``Idempotency-Key`` required; the support identity comes from the caller and the request.
- ``GET /api/v1/users/{user_id}/refunds`` (service, support): newest first, cursor-paginated.
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from core.auth.permissions import require_roles
from core.card_data import find_card_data
from core.errors import ValidationError
from core.idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotency_key_from_request, request_fingerprint
from core.idempotency.http import REPLAY_HEADER
from core.pagination import CursorPagination
from core.serializers import error_response
from refunds import selectors, services
from refunds.data import SupportIdentity
from refunds.models import Refund
from refunds.serializers import RefundCreateInput, RefundOutput

TAGS = ["refunds"]


def support_identity(request) -> SupportIdentity:
    """The caller as the refund's support identity: the API key's name, no email (API keys have none), and the
    connecting address (``REMOTE_ADDR``; a trusted proxy header is not read — behind a proxy this is the proxy)."""
    return SupportIdentity(name=request.user.name, email="", ip=request.META.get("REMOTE_ADDR") or None)


class RefundCreateView(APIView):
    """Refund (SPEC §8): one Usio refund or credit, idempotent per API client and key."""

    permission_classes = [require_roles("support", "admin")]

    @extend_schema(
        operation_id="refund_create", tags=TAGS, summary="Refund a payment, a Usio transaction or an amount.",
        description=(
            "Exactly one of `payment_id` (one of our COMPLETED Usio debits: a card debit is refunded with Usio "
            "SubmitCCVoid, an ACH debit with an ACH credit to its bank account), `confirmation_id` (a settled "
            "Usio card debit with no payment record, looked up at Usio first) or `account_type` (an arbitrary "
            "amount: `debit` → PinlessCredit to the user's card, `ach` → ACH credit to `account_id`). A refund "
            "of a payment or transaction may not exceed what is left of it (completed and in-flight refunds "
            "count). **201** with the refund: COMPLETED, or FAILED with Usio's `failure_code`/`failure_message`. "
            "A payment whose refunds reach its amount becomes REFUNDED (`*_REFUNDED` event). **202** with the "
            "PROCESSING refund when Usio's answer is unknown (timeout): its amount stays held and the refund "
            "reconciler resolves it. The support identity (`support_name` = the API key's name, "
            "`support_email`, `support_last_ip` = the caller's address) is never read from the body. Retrying "
            "with the same `Idempotency-Key` and body replays the answer; refusals after the key was claimed "
            "(the 422s marked *stored*) are stored too: send a corrected request with a new key."
        ),
        request=RefundCreateInput,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={
            201: RefundOutput,
            202: OpenApiResponse(response=RefundOutput, description="Outcome unknown: the refund is PROCESSING."),
            400: error_response("`idempotency_key_missing`, `idempotency_key_invalid`, `validation_error` (missing or "
                        "blank `description`/`user_id`/`amount`, unknown field — e.g. `support_name` —, unknown "
                        "`account_type`; `details` names the field), `malformed_request`."),
            401: error_response("No or bad credentials."),
            403: error_response("The caller's role may not refund (service, user)."),
            409: error_response("`idempotency_in_progress`: the first request with this key is still running."),
            422: error_response("`idempotency_key_reused`, `invalid_user_id`, `invalid_amount`, `amount_over_limit`, "
                        "`refund_target_missing`, `refund_target_conflict`, `invalid_confirmation_id`, "
                        "`invalid_account_id`, `account_id_required`, `account_id_not_allowed`, "
                        "`card_data_not_allowed`, `confirmation_has_payment`, `usio_transaction_not_found`; "
                        "*stored*: `payment_not_found`, `payment_user_mismatch`, `refund_not_supported` "
                        "(`details.reason`: `jpm_payment`, `not_a_debit`, ...), `payment_not_refundable`, "
                        "`usio_transaction_not_refundable`, `refund_exceeds_balance` (`details.refundable`), "
                        "`debit_card_missing`, `debit_card_invalid`, `bank_account_not_found`."),
            503: error_response("`usio_unavailable`: the Usio transaction could not be looked up; retry."),
        },
    )
    def post(self, request):
        key = idempotency_key_from_request(request)
        if find_card_data(request.data) is not None:
            raise ValidationError("Card numbers and security codes must never be sent to this service.",
                                  code="card_data_not_allowed")
        fingerprint = request_fingerprint(request)
        data = RefundCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        result = services.refund_create(principal=request.user, support=support_identity(request),
                                        idempotency_key=key, fingerprint=fingerprint, data=data.validated_data)
        headers = {REPLAY_HEADER: "true"} if result.replayed else None
        return Response(result.body, status=result.status_code, headers=headers)


class RefundListPagination(CursorPagination):
    ordering = selectors.NEWEST_FIRST


class UserRefundListView(ListAPIView):
    """The user's refunds, newest first, cursor-paginated."""

    permission_classes = [require_roles("service", "support")]
    serializer_class = RefundOutput
    pagination_class = RefundListPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request, no user_id
            return Refund.objects.none()
        return selectors.refund_list_for_user(user_id=self.kwargs["user_id"])

    @extend_schema(
        operation_id="user_refunds_list", tags=TAGS,
        summary="A user's refunds, newest first (cursor-paginated; empty for a user with none).",
        responses={200: RefundOutput(many=True), 401: error_response("No or bad credentials."),
                   403: error_response("The caller's role may not list refunds (admin, user)."),
                   404: error_response("`not_found`: invalid cursor."), 422: error_response("`invalid_user_id`.")},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
