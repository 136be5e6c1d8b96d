"""Request-level plumbing: request ids, the access log and the body size limit."""

import logging
import time

from django.conf import settings

from core.exception_handler import error_response
from core.request_context import clean_request_id, get_request_id, set_request_id

REQUEST_ID_HEADER = "X-Request-ID"
access_logger = logging.getLogger("payments.access")


class RequestIdMiddleware:
    """Gives every request an id (the caller's ``X-Request-ID`` if it is safe, else a new one).

    The id is in every log line written while serving the request (``core.logging.RequestIdFilter``),
    in the response header, and travels with any Celery task enqueued by the request. One access-log
    line per request (path without the query string) replaces gunicorn's, which has no request id.

    The id is bound on ``request_started`` and cleared on ``request_finished`` (``bind_request_id``
    below) rather than here, because Django logs 4xx/5xx responses ("Internal Server Error: ...")
    after the middleware chain has returned; those lines must carry the id too.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = get_request_id()
        if request_id is None:  # a handler that sent no request_started signal
            request_id = clean_request_id(request.headers.get(REQUEST_ID_HEADER))
            set_request_id(request_id)
        request.request_id = request_id
        started = time.perf_counter()
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        access_logger.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return response


def bind_request_id(sender, environ=None, scope=None, **kwargs) -> None:
    """``request_started``: the caller's X-Request-ID if it is safe, else a new id (WSGI or ASGI)."""
    header = None
    if environ is not None:
        header = environ.get("HTTP_X_REQUEST_ID")
    elif scope is not None:
        header = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1") or None
    set_request_id(clean_request_id(header))


def unbind_request_id(sender, **kwargs) -> None:
    """``request_finished``: no id outside a request."""
    set_request_id(None)


class BodySizeLimitMiddleware:
    """Refuses bodies over ``MAX_REQUEST_BODY_BYTES`` with 413 before anything reads them.

    DRF reads the WSGI stream directly and so bypasses Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``;
    this check covers every view. Without a Content-Length Django reads no body at all.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        raw = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw)
        except ValueError:
            return error_response("bad_request", "Content-Length is not a number.", 400)
        if length < 0:
            return error_response("bad_request", "Content-Length is negative.", 400)
        if length > settings.MAX_REQUEST_BODY_BYTES:
            return error_response(
                "payload_too_large",
                "The request body is too large.",
                413,
                {"max_bytes": settings.MAX_REQUEST_BODY_BYTES},
            )
        return self.get_response(request)
