"""The card-data guard: card endpoints refuse anything that looks like a full card number or a CVV (SPEC §2.2).

``CardDataGuardMixin`` scans the query string (before authentication) and the parsed JSON body (after
authentication, permissions and throttling, before the handler) — every key and value at any depth — and answers
422 ``card_data_not_allowed`` before a serializer or service sees the data, so nothing of it can be stored. The
response names the field path only (a key that itself looks like a card number is shown as ``*``); the log line
says that a request was refused and where (``body``/``query``), never what it held, and Django's own 4xx log line
(which would quote the query string) is suppressed for these responses.

What counts as card data is ``core.card_data`` (shared with the fraud checks).
"""

from __future__ import annotations

import logging
from typing import Any

from core.card_data import find_card_data
from core.errors import ValidationError

logger = logging.getLogger(__name__)

def _query_as_dict(query) -> dict[str, list[str]]:
    return {key: query.getlist(key) for key in query}


class CardDataNotAllowed(ValidationError):
    """422 ``card_data_not_allowed``: a card number or CVV reached a card endpoint."""

    code = "card_data_not_allowed"
    default_message = (
        "Card numbers and security codes must never be sent to this service; send the last 4 digits and the "
        "Usio tokens."
    )


def _refuse(payload: Any, location: str) -> None:
    field = find_card_data(payload)
    if field is not None:
        logger.warning("card data refused on a card endpoint", extra={"location": location})
        raise CardDataNotAllowed(details={"location": location, "field": field})


def refuse_card_data_in_query(request) -> None:
    """Raise ``CardDataNotAllowed`` when the query string holds card data (keys or values)."""
    _refuse(_query_as_dict(request.query_params), "query")


def refuse_card_data_in_body(request) -> None:
    """Raise ``CardDataNotAllowed`` when the parsed body holds card data (any key or value, any depth)."""
    payload = request.data
    if hasattr(payload, "getlist"):  # an empty body parses to an empty QueryDict
        payload = _query_as_dict(payload)
    _refuse(payload, "body")


class CardDataGuardMixin:
    """The guard on a DRF view.

    The query string is checked first, before authentication: Django's request logger writes the request's
    repr — path *and query string* — for every 4xx/5xx response, so a card number in the query must be refused
    by us (and that response marked as logged, see ``handle_exception``) whatever else is wrong with the request.
    The body is checked after authentication, permissions and throttling and before the handler: an anonymous
    caller gets 401 without us parsing its body, and no log line ever carries a body.
    """

    def initial(self, request, *args, **kwargs):
        refuse_card_data_in_query(request)
        super().initial(request, *args, **kwargs)
        refuse_card_data_in_body(request)

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        if isinstance(exc, CardDataNotAllowed):
            # Keep Django's "Unprocessable Entity: ..." line (with the request repr) out of the logs; our own
            # warning above already records the refusal without the data. ``_has_been_logged`` is how Django
            # marks a response it must not log again (django.utils.log.log_response).
            response._has_been_logged = True
        return response
