"""Request-level plumbing: request ids and the body size limit."""

from django.conf import settings

from core.exception_handler import error_response
from core.request_context import clean_request_id, reset_request_id, set_request_id

REQUEST_ID_HEADER = "X-Request-ID"


class RequestIdMiddleware:
    """Gives every request an id (the caller's ``X-Request-ID`` if it is safe, else a new one).

    The id is in every log line written while serving the request (``core.logging.RequestIdFilter``),
    in the response header, and travels with any Celery task enqueued by the request.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = clean_request_id(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id
        token = set_request_id(request_id)
        try:
            response = self.get_response(request)
        finally:
            reset_request_id(token)
        response[REQUEST_ID_HEADER] = request_id
        return response


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
