"""``POST /webhooks/jpm``: JPM's payment status callbacks (SPEC §7.1, §10). Thin: the rules are in
``syncing.jpm_webhook``.

Order of checks, each refusal answered in the error envelope and written as one audit log line (reason, content
length, client address, SHA-256 of the body when it was read — never the body) with nothing else stored:
1. rate limit per client address (``JPM_WEBHOOK_THROTTLE_RATE``) → 429 (the body is not read);
2. size: Content-Length, then the bytes actually read, over ``JPM_WEBHOOK_MAX_BYTES`` → 413;
3. authentication (HMAC signature or the trusted mTLS header) → 401 — an unauthenticated body is never parsed;
4. the method: anything but POST → 405 (after authentication: without credentials every method gets 401);
5. parsing (1 to 50 callbacks of known statuses) → 400 ``invalid_callback_message``.
Then the message is stored, queued after commit, and answered 200 ``{"received": n, "duplicate": bool}``.

Outside the API's authentication (JPM has no API key): the view has no DRF authentication classes and checks
the JPM signature itself.
"""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from core.errors import PayloadTooLarge, ServiceError
from core.serializers import error_response
from syncing.jpm_webhook import (
    SIGNATURE_HEADER,
    InvalidCallbackMessage,
    WebhookAuthenticationError,
    jpm_webhook_authenticate,
    jpm_webhook_receive,
)

logger = logging.getLogger(__name__)
TAGS = ["webhooks"]


class JpmWebhookThrottle(SimpleRateThrottle):
    """Requests per client address (``JPM_WEBHOOK_THROTTLE_RATE``, read per request)."""

    scope = "jpm_webhook"

    def get_rate(self):
        return settings.JPM_WEBHOOK_THROTTLE_RATE or None

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class MethodNotAllowedError(ServiceError):
    status_code = 405
    code = "method_not_allowed"
    default_message = "Only POST is accepted."


# --- OpenAPI only: the body is read and parsed as raw bytes by the JPM adapter ---------------------------------------
class JpmCallbackExceptionSchema(serializers.Serializer):
    """JPM's wire names (camelCase) as sent."""

    errorCode = serializers.CharField(required=False, allow_null=True)
    errorDescription = serializers.CharField(required=False, allow_null=True)
    ruleDefinition = serializers.CharField(required=False, allow_null=True)
    externalCode = serializers.CharField(required=False, allow_null=True)


class JpmCallbackSchema(serializers.Serializer):
    endToEndId = serializers.CharField(help_text="the payment's confirmation id (our 32-hex reference)")
    firmRootId = serializers.CharField(required=False, allow_null=True)
    createDateTime = serializers.DateTimeField(required=False, allow_null=True)
    paymentStatus = serializers.ChoiceField(
        choices=["PENDING", "ACCEPTED", "HOLD", "CLEARED", "COMPLETED", "REJECTED", "RETURNED"])
    exceptions = JpmCallbackExceptionSchema(many=True, required=False)


class JpmCallbackMessageInput(serializers.Serializer):
    callbacks = JpmCallbackSchema(many=True, min_length=1, max_length=50)


class JpmWebhookReceiptOutput(serializers.Serializer):
    received = serializers.IntegerField(help_text="callbacks in the message")
    duplicate = serializers.BooleanField(help_text="this exact body was received before (stored once)")


class JpmWebhookView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [JpmWebhookThrottle]
    parser_classes: list = []

    def throttled(self, request, wait):
        self._audit(request, reason="throttled", status=429)
        super().throttled(request, wait)

    def http_method_not_allowed(self, request, *args, **kwargs):
        self._authenticated_body(request)
        self._audit(request, reason="method_not_allowed", status=405)
        raise MethodNotAllowedError()

    @extend_schema(
        operation_id="jpm_webhook", tags=TAGS, auth=[],
        summary="J.P. Morgan payment status callbacks.",
        description=(
            "Called by J.P. Morgan, not by API clients. Authenticated by `X-JPM-Signature: t=<unix>,v1=<hex "
            "HMAC-SHA256(secret, \"<t>.<raw body>\")>` (5-minute window) or by mTLS at the proxy (trusted header). "
            "The raw body is stored once (a repeat of the same body is acknowledged as a duplicate) and processed "
            "asynchronously; the answer is 200 as soon as it is stored."
        ),
        parameters=[OpenApiParameter(SIGNATURE_HEADER, str, OpenApiParameter.HEADER, required=False,
                                     description="t=<unix seconds>,v1=<hex HMAC-SHA256>")],
        request={"application/json": JpmCallbackMessageInput},
        responses={
            200: JpmWebhookReceiptOutput,
            400: error_response("`invalid_callback_message`: not 1 to 50 callbacks of known statuses."),
            401: error_response("`not_authenticated`, `invalid_signature` or `invalid_client_certificate`."),
            405: error_response("`method_not_allowed` (authenticated callers only)."),
            413: error_response("`payload_too_large`: over JPM_WEBHOOK_MAX_BYTES."),
            429: error_response("`throttled`: too many requests from this address."),
        },
    )
    def post(self, request):
        body, authenticated_by = self._authenticated_body(request)
        try:
            receipt = jpm_webhook_receive(body=body, authenticated_by=authenticated_by)
        except InvalidCallbackMessage:
            self._audit(request, reason="invalid_callback_message", status=400, body=body)
            raise
        return Response({"received": receipt.callbacks, "duplicate": receipt.duplicate})

    def _authenticated_body(self, request) -> tuple[bytes, str]:
        """Size, then authentication (the body is read only when its announced size is acceptable)."""
        limit = settings.JPM_WEBHOOK_MAX_BYTES
        if _content_length(request) > limit:
            self._audit(request, reason="payload_too_large", status=413)
            raise PayloadTooLarge(details={"max_bytes": limit})
        body = request.body
        if len(body) > limit:
            self._audit(request, reason="payload_too_large", status=413, body=body)
            raise PayloadTooLarge(details={"max_bytes": limit})
        try:
            return body, jpm_webhook_authenticate(headers=request.headers, body=body)
        except WebhookAuthenticationError as exc:
            self._audit(request, reason=exc.reason, status=401, body=body)
            raise

    def _audit(self, request, *, reason: str, status: int, body: bytes | None = None) -> None:
        logger.warning(
            "jpm webhook refused",
            extra={"reason": reason, "status": status, "content_length": _content_length(request),
                   "client_address": JpmWebhookThrottle().get_ident(request),
                   "body_sha256": hashlib.sha256(body).hexdigest() if body is not None else None},
        )


def _content_length(request) -> int:
    """The announced length (``BodySizeLimitMiddleware`` already refused a malformed or negative one)."""
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0
