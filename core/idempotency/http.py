"""The HTTP side of idempotency keys: the ``Idempotency-Key`` header, request fingerprints, replayed responses.

A view that creates something (``POST /api/v1/payments``) uses them like this::

    key = idempotency_key_from_request(request)          # 400 idempotency_key_missing / _invalid
    fingerprint = request_fingerprint(request)
    with transaction.atomic():
        outcome = idempotency_begin(client_id=request.user.client_id, key=key, fingerprint=fingerprint)
        if isinstance(outcome, Replay):
            return replay_response(outcome)
        ...
"""

import hashlib
import json
from decimal import Decimal
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.response import Response

from core.errors import BadRequest
from core.idempotency.services import MAX_KEY_LENGTH, Replay, validate_idempotency_key

HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotent-Replayed"

# For ``@extend_schema(parameters=[IDEMPOTENCY_KEY_PARAMETER])`` on views that require the header.
IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    name=HEADER,
    type=OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=True,
    description=(
        f"1 to {MAX_KEY_LENGTH} printable ASCII characters, unique per request and API client (a UUID is ideal). "
        "Retrying with the same key and body replays the first response; the same key with a different body is "
        "422 `idempotency_key_reused`; while the first request runs, 409 `idempotency_in_progress`. Kept 24 h."
    ),
)


def idempotency_key_from_request(request) -> str:
    """The request's ``Idempotency-Key``: absent → 400 ``idempotency_key_missing``; not 1 to 255 printable ASCII
    characters → 400 ``idempotency_key_invalid`` (``core.idempotency.validate_idempotency_key``)."""
    value = request.headers.get(HEADER)
    if value is None:
        raise BadRequest(
            "The Idempotency-Key header is required.",
            code="idempotency_key_missing",
            details={"header": HEADER},
        )
    return validate_idempotency_key(value)


def request_fingerprint(request) -> str:
    """SHA-256 of the method, the path and the canonical JSON of the parsed body (``fingerprint``).

    Reads ``request.data``, so a malformed JSON body raises DRF's ParseError (400 ``malformed_request``).
    """
    data = request.data
    if hasattr(data, "lists"):  # a QueryDict (form data): keep every value
        data = dict(data.lists())
    return fingerprint(method=request.method, path=request.path, body=data)


def fingerprint(*, method: str, path: str, body: Any) -> str:
    """SHA-256 (hex) of ``METHOD\\npath\\ncanonical-json(body)``.

    The canonical JSON sorts object keys and has no whitespace, so key order and spacing do not change the
    fingerprint; values, paths and methods do. The query string is not part of it. An empty body is ``{}``.
    """
    canonical = json.dumps(
        {} if body in (None, "") else body,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_canonical_default,
    )
    material = f"{method.upper()}\n{path}\n{canonical}"
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def _canonical_default(value):
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON data")


def replay_response(outcome: Replay) -> Response:
    """The stored response again: same status and body, marked ``Idempotent-Replayed: true``."""
    return Response(outcome.body, status=outcome.status_code, headers={REPLAY_HEADER: "true"})
