"""Celery plumbing: request-id propagation into tasks, and the project's logging config in workers.

- ``before_task_publish``: the outgoing message gets a ``request_id`` header carrying the current
  request id (when there is one and the caller did not set the header itself).
- ``task_prerun``: the task's request id becomes the ``request_id`` header if it is a valid id,
  else -- for an eager task run inside a request -- the caller's id, else ``task:<task_id>``.
- ``task_postrun``: the previous value is restored.
- ``task_prerun`` / ``task_postrun`` (not for an eager task: it runs inside its caller's connection use):
  ``close_old_connections``, Django's rule at a request's start and end — a connection that is broken, left
  outside autocommit or older than ``CONN_MAX_AGE`` is closed, a healthy one is kept for the next task (with
  ``CELERY_DB_REUSE_MAX`` set, Celery's fixup no longer closes every connection around every task).
- ``setup_logging``: connecting a receiver stops Celery from installing its own handlers and
  formatter; the receiver applies Django's ``LOGGING`` instead, so workers write the same redacted
  JSON lines as the web process.

Imported at the end of ``config.celery``.
"""

from __future__ import annotations

import logging
import logging.config
from contextvars import Token
from typing import Any

from celery.signals import before_task_publish, setup_logging, task_postrun, task_prerun

from core.request_context import (
    clean_request_id,
    get_request_id,
    request_id_var,
    reset_request_id,
    set_request_id,
)

REQUEST_ID_HEADER = "request_id"

# task id -> token returned by set_request_id in task_prerun, consumed by task_postrun.
_tokens: dict[str, Token] = {}


def _is_valid_request_id(value: Any) -> bool:
    return isinstance(value, str) and clean_request_id(value) == value


@before_task_publish.connect(dispatch_uid="core.celery_signals.add_request_id_header")
def add_request_id_header(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    request_id = get_request_id()
    if request_id and headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id)


def _request_id_for(task: Any, task_id: str) -> str:
    request = getattr(task, "request", None)
    # Custom message headers become attributes of task.request (and also land in request.headers).
    candidate = getattr(request, REQUEST_ID_HEADER, None)
    if candidate is None:
        candidate = (getattr(request, "headers", None) or {}).get(REQUEST_ID_HEADER)
    if _is_valid_request_id(candidate):
        return candidate
    current = get_request_id()
    if getattr(request, "is_eager", False) and current:
        return current  # task.apply() / eager mode: no message, same request
    return f"task:{task_id}"


@task_prerun.connect(dispatch_uid="core.celery_signals.bind_task_request_id")
def bind_task_request_id(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    if task_id is None:
        return
    _tokens[task_id] = set_request_id(_request_id_for(task, task_id))


@task_postrun.connect(dispatch_uid="core.celery_signals.unbind_task_request_id")
def unbind_task_request_id(task_id: str | None = None, **kwargs: Any) -> None:
    token = _tokens.pop(task_id, None) if task_id is not None else None
    if token is None:
        return
    try:
        reset_request_id(token)
    except (ValueError, RuntimeError):  # token from another context or reused: do not leak the id
        request_id_var.set(None)


def recycle_db_connections(task: Any = None, **kwargs: Any) -> None:
    """Close the database connections a worker should not reuse (``close_old_connections``); keep the others."""
    if task is None or getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


task_prerun.connect(recycle_db_connections, dispatch_uid="core.celery_signals.recycle_db_connections_before")
task_postrun.connect(recycle_db_connections, dispatch_uid="core.celery_signals.recycle_db_connections_after")


@setup_logging.connect(dispatch_uid="core.celery_signals.configure_worker_logging")
def configure_worker_logging(**kwargs: Any) -> None:
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
