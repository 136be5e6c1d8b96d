"""The id of the request (or Celery task) being served, for log lines and response headers.

A ``ContextVar`` so that it is correct per thread and per asyncio task. Set by
``core.middleware.RequestIdMiddleware`` for HTTP requests and by ``core.celery_signals`` for tasks.
"""

import re
import uuid
from contextvars import ContextVar, Token

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# Incoming X-Request-ID values are accepted only if they are short and plain (no log injection).
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def new_request_id() -> str:
    return uuid.uuid4().hex


def clean_request_id(value: str | None) -> str:
    """Return ``value`` if it is a safe request id, else a freshly generated one."""
    if value and _VALID_REQUEST_ID.match(value):
        return value
    return new_request_id()


def get_request_id() -> str | None:
    return request_id_var.get()


def set_request_id(value: str | None) -> Token:
    return request_id_var.set(value)


def reset_request_id(token: Token) -> None:
    request_id_var.reset(token)
