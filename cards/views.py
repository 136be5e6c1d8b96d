"""Cards API (SPEC §10). Thin: parse, call a service or selector, render.

Every view goes through ``CardDataGuardMixin`` (422 ``card_data_not_allowed`` for a PAN or CVV anywhere in the
query string or body). The user role sees its card without tokens or hash; services see everything.
"""

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from cards import selectors, services
from cards.guard import CardDataGuardMixin
from cards.models import DebitCardChange
from cards.serializers import (
    DebitCardAdminUpdateInput,
    DebitCardChangeableOutput,
    DebitCardChangeOutput,
    DebitCardOutputSchema,
    DebitCardSaveInput,
    DebitCardServiceOutput,
    DebitCardUserOutput,
)
from core.auth.permissions import require_roles
from core.auth.principal import ROLE_USER
from core.errors import NotFoundError
from core.pagination import CursorPagination
from core.serializers import error_response

TAGS = ["debit cards"]


COMMON_ERRORS = {
    401: error_response("No or bad credentials."),
    403: error_response("Role not allowed, or another user's card (`not_your_user`)."),
}
GUARD_ERROR = "`card_data_not_allowed`: a card number or CVV in the body or query string (nothing is stored)."


def _card_output(request, card) -> dict:
    serializer = DebitCardUserOutput if request.user.role == ROLE_USER else DebitCardServiceOutput
    return serializer(card).data


class CardsAPIView(CardDataGuardMixin, APIView):
    """Base of the cards endpoints: the card-data guard on every request."""


class DebitCardView(CardsAPIView):
    """The user's debit card: read, save (replace) or remove it. Card numbers and CVVs are refused (422)."""

    permission_classes = [require_roles("service", "user")]

    @extend_schema(
        operation_id="debit_card_get", tags=TAGS,
        summary="The user's debit card (user role: without tokens and hash).",
        responses={200: DebitCardOutputSchema, 404: error_response("`debit_card_not_found`."),
                   422: error_response(f"`invalid_user_id`; {GUARD_ERROR}"), **COMMON_ERRORS},
    )
    def get(self, request, user_id: str):
        return Response(_card_output(request, selectors.card_get(user_id=user_id)))

    @extend_schema(
        operation_id="debit_card_save", tags=TAGS,
        summary="Save the user's debit card, replacing the active one (201 when first created, else 200).",
        description=(
            "Send the last 4 digits, the expiry and the two Usio tokens — never the card number or CVV. "
            "Resets validity and records the change. Saving exactly the card on file again changes nothing."
        ),
        request=DebitCardSaveInput,
        responses={
            200: DebitCardOutputSchema, 201: DebitCardOutputSchema,
            400: error_response("Missing or unknown fields (`validation_error`)."),
            409: error_response("`debit_card_not_changeable` (`details.reason`: `payment_processing`, "
                        "`max_changes_reached`)."),
            422: error_response("`invalid_masked_card_number`, `invalid_card_exp`, `card_expired`, `token_empty`, "
                        f"`token_too_long`, `token_malformed`, `invalid_user_id`; {GUARD_ERROR}"),
            **COMMON_ERRORS,
        },
    )
    def put(self, request, user_id: str):
        data = DebitCardSaveInput(data=request.data)
        data.is_valid(raise_exception=True)
        card, created = services.card_save(user_id=user_id, actor=str(request.user), **data.validated_data)
        return Response(_card_output(request, card), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(
        operation_id="debit_card_delete", tags=TAGS, summary="Remove the user's debit card.",
        responses={204: None, 404: error_response("`debit_card_not_found`."),
                   409: error_response("`debit_card_not_changeable` (a card payment is processing)."),
                   422: error_response(f"`invalid_user_id`; {GUARD_ERROR}"), **COMMON_ERRORS},
    )
    def delete(self, request, user_id: str):
        services.card_delete(user_id=user_id, actor=str(request.user))
        return Response(status=status.HTTP_204_NO_CONTENT)


class DebitCardChangeableView(CardsAPIView):
    """Whether the card may be changed now (SPEC §8): not while a pinless/RTP payment is processing, not after
    `DEBIT_CARD_MAX_CHANGES` saves in 30 days."""

    permission_classes = [require_roles("service", "user")]

    @extend_schema(
        operation_id="debit_card_changeable", tags=TAGS, summary="May the user change the card now, and why not.",
        responses={200: DebitCardChangeableOutput, 422: error_response(f"`invalid_user_id`; {GUARD_ERROR}"),
                   **COMMON_ERRORS},
    )
    def get(self, request, user_id: str):
        changeable, reason = selectors.card_changeable(user_id=user_id)
        return Response(DebitCardChangeableOutput({"changeable": changeable, "reason": reason}).data)


class CardChangesPagination(CursorPagination):
    ordering = ("-at", "-id")


class DebitCardChangesView(CardDataGuardMixin, ListAPIView):
    """Every save, replacement, deletion, admin update and invalidation of the user's card (no tokens)."""

    permission_classes = [require_roles("service", "support")]
    serializer_class = DebitCardChangeOutput
    pagination_class = CardChangesPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request, no user_id
            return DebitCardChange.objects.none()
        return selectors.card_changes_list(user_id=self.kwargs["user_id"])

    @extend_schema(
        operation_id="debit_card_changes", tags=TAGS,
        summary="The user's card history, newest first (cursor-paginated; empty when the user never had a card).",
        responses={200: DebitCardChangeOutput(many=True), 422: error_response(f"`invalid_user_id`; {GUARD_ERROR}"),
                   404: error_response("`not_found`: invalid cursor."), **COMMON_ERRORS},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class DebitCardAdminView(CardsAPIView):
    """Support override of the card on file; requires a reason; recorded in the card history and audit trail."""

    permission_classes = [require_roles("support", "admin")]

    @extend_schema(
        operation_id="debit_card_admin_update", tags=TAGS,
        summary="Support override of tokens, expiry or validity (audited; actor = the API key's name).",
        request=DebitCardAdminUpdateInput,
        responses={
            200: DebitCardServiceOutput, 400: error_response("Missing `reason`, unknown fields (`validation_error`)."),
            404: error_response("`debit_card_not_found`."),
            422: error_response(
                "`reason_required`, `nothing_to_update`, `invalid_card_exp`, `card_expired`, `token_empty`, "
                f"`token_too_long`, `token_malformed`, `invalid_user_id`; {GUARD_ERROR}"),
            **COMMON_ERRORS,
        },
    )
    def patch(self, request, user_id: str):
        data = DebitCardAdminUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        card = services.card_admin_update(user_id=user_id, actor=request.user.name, **data.validated_data)
        return Response(DebitCardServiceOutput(card).data)


class DebitCardToggleFailureView(CardsAPIView):
    """Test environments only. In prod every authenticated caller gets 404 (401 without credentials)."""

    permission_classes = [require_roles("service")]

    def check_permissions(self, request):
        if settings.ENVIRONMENT == "prod" and request.user is not None:
            raise NotFoundError()
        super().check_permissions(request)

    @extend_schema(
        operation_id="debit_card_toggle_failure", tags=TAGS, request=None,
        summary="Test environments only: flip force_failure on the user's card (404 in prod).",
        responses={200: DebitCardServiceOutput,
                   404: error_response("`debit_card_not_found`; `not_found` in prod."),
                   422: error_response(f"`invalid_user_id`; {GUARD_ERROR}"), **COMMON_ERRORS},
    )
    def post(self, request, user_id: str):
        return Response(DebitCardServiceOutput(services.card_toggle_failure(user_id=user_id)).data)

