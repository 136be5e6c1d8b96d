"""Bank account API (SPEC §10): service role only. Thin: parse, call one service or selector, render."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from bank_accounts.selectors import bank_account_get
from bank_accounts.serializers import (
    BankAccountLookupRequestSerializer,
    BankAccountLookupResponseSerializer,
    BankAccountPutRequestSerializer,
    BankAccountResponseSerializer,
)
from bank_accounts.services import bank_account_delete, bank_account_lookup, bank_account_save
from core.auth.permissions import require_roles
from core.serializers import error_response


def _errors(*codes: tuple[int, str]) -> dict:
    return {status_code: error_response(text) for status_code, text in codes}


_AUTH_ERRORS = (
    (401, "No or bad credentials."),
    (403, "Not the service role (`permission_denied`)."),
)
_NOT_FOUND = (404, "`bank_account_not_found`.")
_INVALID_IDS = (422, "`invalid_user_id`, `invalid_account_id`.")


class BankAccountView(APIView):
    """One bank account of a user, keyed by the Plaid ``account_id``."""

    permission_classes = [require_roles("service")]

    @extend_schema(
        operation_id="bank_account_get",
        summary="Get a bank account (last 4 only)",
        responses={200: BankAccountResponseSerializer, **_errors(*_AUTH_ERRORS, _NOT_FOUND, _INVALID_IDS)},
        tags=["bank accounts"],
    )
    def get(self, request, user_id: str, account_id: str):
        account = bank_account_get(user_id=user_id, account_id=account_id)
        return Response(BankAccountResponseSerializer(account).data)

    @extend_schema(
        operation_id="bank_account_put",
        summary="Create or replace a bank account",
        description=(
            "201 when created, 200 when updated or unchanged. Saving the numbers already stored changes nothing. "
            "A create, update or delete lifts a blocklist block on the user (queue `blocklist-remove`)."
        ),
        request=BankAccountPutRequestSerializer,
        responses={
            200: BankAccountResponseSerializer,
            201: BankAccountResponseSerializer,
            **_errors(
                (400, "Malformed body, unknown field, non-string number (`validation_error`)."),
                *_AUTH_ERRORS,
                (422, "`invalid_routing_number`, `invalid_account_number` (`details.reason`), "
                      "`invalid_account_type`, `invalid_user_id`, `invalid_account_id`."),
            ),
        },
        tags=["bank accounts"],
    )
    def put(self, request, user_id: str, account_id: str):
        body = BankAccountPutRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = bank_account_save(user_id=user_id, account_id=account_id, actor=str(request.user),
                                   **body.validated_data)
        return Response(
            BankAccountResponseSerializer(result.account).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )

    @extend_schema(
        operation_id="bank_account_delete",
        summary="Delete a bank account",
        responses={204: None, **_errors(*_AUTH_ERRORS, _NOT_FOUND, _INVALID_IDS)},
        tags=["bank accounts"],
    )
    def delete(self, request, user_id: str, account_id: str):
        bank_account_delete(user_id=user_id, account_id=account_id, actor=str(request.user))
        return Response(status=status.HTTP_204_NO_CONTENT)


class BankAccountLookupView(APIView):
    """Does a bank account exist, by its numbers (hashed on arrival) or by its blind index."""

    permission_classes = [require_roles("service")]

    @extend_schema(
        operation_id="bank_account_lookup",
        summary="Look up a bank account by numbers or hash",
        description="Send either `routing_number` + `account_number`, or `account_routing_hash`.",
        request=BankAccountLookupRequestSerializer,
        responses={
            200: BankAccountLookupResponseSerializer,
            **_errors(
                (400, "Neither or both forms (`invalid_lookup_request`), or a malformed body."),
                *_AUTH_ERRORS,
                (422, "`invalid_routing_number`, `invalid_account_number`, `invalid_account_routing_hash`."),
            ),
        },
        tags=["bank accounts"],
    )
    def post(self, request):
        body = BankAccountLookupRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return Response(BankAccountLookupResponseSerializer(bank_account_lookup(**body.validated_data)).data)
