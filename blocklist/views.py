"""Blocklist API (SPEC §10): status and history (service, support); block and unblock (support, admin)."""

from dataclasses import asdict

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from blocklist.models import BlocklistRecord, BlocklistSource
from blocklist.selectors import NEWEST_FIRST, blocklist_history, blocklist_status
from blocklist.serializers import (
    BlocklistChangeInputSerializer,
    BlocklistRecordOutputSerializer,
    BlocklistStatusOutputSerializer,
)
from blocklist.services import blocklist_block, blocklist_unblock
from core.auth.permissions import require_roles
from core.pagination import CursorPagination
from core.serializers import error_response

_READ = require_roles("service", "support")
_WRITE = require_roles("support", "admin")
_ERRORS = {
    401: error_response("No or invalid credentials."),
    403: error_response("The caller's role may not do this."),
    422: error_response("invalid_user_id, reason_required, reason_too_long."),
}
_BODY_ERRORS = {400: error_response("`validation_error` (unknown field, `details` names it), `malformed_request` "
                                    "(not JSON).")}
_REASON_QUERY = OpenApiParameter(
    "reason", OpenApiTypes.STR, OpenApiParameter.QUERY, required=False,
    description="The reason, when the DELETE has no body (a reason in the body wins).",
)


def _state(user_id: str) -> dict:
    return BlocklistStatusOutputSerializer(asdict(blocklist_status(user_id=user_id))).data


class BlocklistView(APIView):
    """``/users/{user_id}/blocklist``: GET the current state, POST to block, DELETE to unblock."""

    def get_permissions(self):
        if self.request.method in ("POST", "DELETE"):
            return [_WRITE()]
        return [_READ()]

    @extend_schema(
        operation_id="blocklist_status",
        summary="Current blocklist state of a user",
        description="The newest record decides. A user never on the blocklist is `NOTBLOCKED` with `since: null`.",
        responses={200: BlocklistStatusOutputSerializer, **_ERRORS},
    )
    def get(self, request, user_id: str):
        return Response(_state(user_id))

    @extend_schema(
        operation_id="blocklist_block",
        summary="Block a user (support)",
        description="Appends a BLOCKED record (source `manual`, actor = the API key name). 201 when the user was "
                    "not blocked; 200 and no new record when already blocked.",
        request=BlocklistChangeInputSerializer,
        responses={200: BlocklistStatusOutputSerializer, 201: BlocklistStatusOutputSerializer, **_BODY_ERRORS,
                   **_ERRORS},
    )
    def post(self, request, user_id: str):
        body = BlocklistChangeInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        change = blocklist_block(user_id=user_id, reason=body.validated_data.get("reason", ""),
                                 actor=request.user.name, source=BlocklistSource.MANUAL)
        return Response(_state(user_id), status=status.HTTP_201_CREATED if change.changed else status.HTTP_200_OK)

    @extend_schema(
        operation_id="blocklist_unblock",
        summary="Unblock a user (support)",
        description="Appends a NOTBLOCKED record (source `manual`) when the user is blocked; otherwise changes "
                    "nothing. The reason comes in the JSON body or, for clients that send no DELETE body, in the "
                    "`reason` query parameter.",
        request=BlocklistChangeInputSerializer,
        parameters=[_REASON_QUERY],
        responses={200: BlocklistStatusOutputSerializer, **_BODY_ERRORS, **_ERRORS},
    )
    def delete(self, request, user_id: str):
        body = BlocklistChangeInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        reason = body.validated_data.get("reason")
        if reason is None:
            reason = request.query_params.get("reason", "")
        blocklist_unblock(user_id=user_id, reason=reason, actor=request.user.name, source=BlocklistSource.MANUAL)
        return Response(_state(user_id))


class BlocklistHistoryPagination(CursorPagination):
    ordering = NEWEST_FIRST


class BlocklistHistoryView(generics.ListAPIView):
    """``/users/{user_id}/blocklist/history``: every record, newest first, cursor-paginated."""

    permission_classes = [_READ]
    serializer_class = BlocklistRecordOutputSerializer
    pagination_class = BlocklistHistoryPagination
    filter_backends = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request, no user_id
            return BlocklistRecord.objects.none()
        return blocklist_history(user_id=self.kwargs["user_id"])

    @extend_schema(
        operation_id="blocklist_history",
        summary="Blocklist history of a user",
        description="Every block and unblock, newest first (empty for a user never on the blocklist).",
        responses={200: BlocklistRecordOutputSerializer(many=True), 404: error_response("`not_found`: invalid cursor."),
                   **_ERRORS},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
