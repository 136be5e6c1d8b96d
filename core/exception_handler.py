"""One error format for every 4xx/5xx: ``{"error": {"code", "message", "details"}}``.

Used by DRF (``EXCEPTION_HANDLER``) and by the Django-level handlers in ``core.views`` (404/500 outside
DRF, oversized bodies), so a client sees the same shape whichever layer refused it. Unexpected
exceptions become a generic 500 (logged with the request id, no stack trace in the response);
database outages become 503.
"""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

from core.errors import (
    NotFoundError,
    PermissionDeniedError,
    ServiceError,
    ServiceUnavailableError,
)

logger = logging.getLogger(__name__)

# DRF's own codes renamed where ours read better; anything else keeps DRF's default_code.
_DRF_CODES = {
    drf_exceptions.ParseError: "malformed_request",
    drf_exceptions.NotAuthenticated: "not_authenticated",
    drf_exceptions.AuthenticationFailed: "authentication_failed",
    drf_exceptions.PermissionDenied: "permission_denied",
    drf_exceptions.NotFound: "not_found",
    drf_exceptions.MethodNotAllowed: "method_not_allowed",
    drf_exceptions.NotAcceptable: "not_acceptable",
    drf_exceptions.UnsupportedMediaType: "unsupported_media_type",
    drf_exceptions.Throttled: "throttled",
    drf_exceptions.ValidationError: "validation_error",
}


def error_body(code: str, message: str, details=None) -> dict:
    return {"error": {"code": code, "message": message, "details": details if details is not None else {}}}


def error_response(code: str, message: str, status: int, details=None, headers=None) -> JsonResponse:
    """A plain-Django JSON error response (for middleware and URL-level handlers)."""
    response = JsonResponse(error_body(code, message, details), status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _drf_error(exc: drf_exceptions.APIException) -> tuple[str, str, object]:
    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), exc.default_code)
    if isinstance(exc, drf_exceptions.ValidationError):
        return code, "The request is invalid.", exc.detail
    if isinstance(exc, drf_exceptions.Throttled):
        return code, "Too many requests.", {"retry_after_seconds": exc.wait}
    if isinstance(exc, drf_exceptions.ParseError):
        # DRF's detail echoes the parser's message (position only, no payload content).
        return code, "The request body is not valid JSON.", {"reason": str(exc.detail)}
    return code, str(exc.detail), {}


def api_exception_handler(exc, context):
    """DRF exception handler: every error, expected or not, in the one format."""
    if isinstance(exc, Http404):
        exc = NotFoundError()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = PermissionDeniedError()
    elif isinstance(exc, (OperationalError, InterfaceError)):
        logger.warning("database unavailable: %s", type(exc).__name__)
        exc = ServiceUnavailableError()

    if isinstance(exc, ServiceError):
        if exc.status_code >= 500:
            logger.error("service error %s: %s", exc.code, exc.message)
        return Response({"error": exc.as_dict()}, status=exc.status_code)

    if isinstance(exc, drf_exceptions.APIException):
        code, message, details = _drf_error(exc)
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None) is not None:
            headers["Retry-After"] = str(int(exc.wait))
        return Response(error_body(code, message, details), status=exc.status_code, headers=headers)

    if isinstance(exc, DatabaseError):
        logger.exception("database error")
    else:
        logger.exception("unhandled error in %s", type(context.get("view")).__name__)
    return Response(error_body("internal_error", "An internal error occurred."), status=500)
