"""Logging plumbing: request-id stamping, redaction of secrets, and one-JSON-object-per-line output.

Wired up by ``LOGGING`` in ``config.settings.base`` (handler ``console``: filters ``request_id`` then
``redact``, formatter ``json``). Celery workers use the same configuration (``core.celery_signals``).

- ``RequestIdFilter`` sets ``record.request_id`` from ``core.request_context`` ("-" if none).
- ``RedactionFilter`` makes the record safe *before* any formatter sees it: the message is rendered
  (``%``-args merged) and masked, ``extra=`` attributes are masked, and tracebacks / stack info are
  rendered to text, masked and the raw ``exc_info`` dropped. See ``core.redaction`` for the rules.
- ``JsonFormatter`` writes ``timestamp``, ``level``, ``logger``, ``message``, ``request_id``, the
  extra fields, and ``exc_info`` / ``stack_info`` when present.

Nothing here imports Django, so these classes work in scripts and Celery workers alike.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonEncoder
from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from core.redaction import REDACTED, is_sensitive_key, redact, redact_text
from core.request_context import get_request_id

__all__ = ["JsonFormatter", "RedactionFilter", "RequestIdFilter"]

#: Attribute names every ``LogRecord`` has (plus the two that ``Formatter.format`` adds). Anything
#: else on a record came from ``extra=`` or from a filter.
STANDARD_RECORD_ATTRS: frozenset[str] = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__
) | {"message", "asctime"}

NO_REQUEST_ID = "-"

# Set on a record once RedactionFilter has processed it (leading "_": never emitted as a field).
_REDACTED_MARK = "_core_redacted"

_plain_formatter = logging.Formatter()


class RequestIdFilter(logging.Filter):
    """Stamp ``record.request_id`` with the current request / task id, or ``"-"`` if none."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = get_request_id() or NO_REQUEST_ID
        return True


class RedactionFilter(logging.Filter):
    """Mask secrets and account numbers on the record itself, before any formatter runs.

    - ``record.msg`` becomes the rendered, redacted message and ``record.args`` ``None`` (a ``dict``
      message without args stays a dict, redacted with ``redact``).
    - Every non-standard attribute (``extra=`` fields, ``request_id``) is passed through ``redact``;
      one whose *name* is a sensitive key (e.g. ``routing_number``) becomes ``"[REDACTED]"``.
    - ``exc_info`` is rendered to text, redacted into ``record.exc_text`` and set to ``None``, so no
      formatter can re-render the raw traceback; ``stack_info`` is redacted in place.

    Idempotent (a record may pass through several handlers) and never raises: logging must not
    break the code that logs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            self._redact_record(record)
        except Exception:  # a logging filter must never raise into the caller
            record.msg = "[log record could not be redacted; message suppressed]"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
            for name in [n for n in vars(record) if n not in STANDARD_RECORD_ATTRS]:
                if not name.startswith("_") and name != "request_id":
                    setattr(record, name, REDACTED)
        setattr(record, _REDACTED_MARK, True)
        return True

    @staticmethod
    def _redact_record(record: logging.LogRecord) -> None:
        if isinstance(record.msg, dict) and not record.args:
            record.msg = redact(record.msg)
        else:
            try:
                message = record.getMessage()
            except Exception:  # bad %-args: keep what we can, masked
                message = f"{record.msg!s} (unmergeable log args: {record.args!r})"
            record.msg = redact_text(message)
        record.args = None

        for name, value in list(vars(record).items()):
            if name in STANDARD_RECORD_ATTRS or name.startswith("_"):
                continue
            if hasattr(value, "META") and hasattr(value, "path") and hasattr(value, "method"):
                # Django's request logger attaches the request; its repr carries the query string.
                value = f"{value.method} {value.path}"
            record.__dict__[name] = REDACTED if is_sensitive_key(name) else redact(value)

        if record.exc_info:
            record.exc_text = redact_text(_plain_formatter.formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)

        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)


_fallback_filter = RedactionFilter()


class _RedactingJsonEncoder(JsonEncoder):
    """python-json-logger's encoder, with whatever it makes of non-JSON objects redacted too.

    ``extra={"request": request}`` would otherwise be written as ``str(request)``, URL query and all.
    """

    def default(self, o: Any) -> Any:
        return redact(super().default(o))


class JsonFormatter(_BaseJsonFormatter):
    """One JSON object per line.

    Keys: ``timestamp`` (ISO 8601 UTC, milliseconds, ``Z``), ``level``, ``logger``, ``message``,
    ``request_id``, then the ``extra=`` fields (an extra field named like a core key is emitted as
    ``extra_<key>``), then ``exc_info`` / ``stack_info`` when the record has them.

    Redaction is ``RedactionFilter``'s job; as defence in depth, a record that reaches this formatter
    without having passed the filter (a handler configured without it) is run through it here, and
    non-JSON objects are redacted after conversion to JSON types.
    """

    CORE_KEYS = ("timestamp", "level", "logger", "message", "request_id")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("json_encoder", _RedactingJsonEncoder)
        kwargs.setdefault("reserved_attrs", sorted(STANDARD_RECORD_ATTRS | {"request_id"}))
        super().__init__(*args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        if not getattr(record, _REDACTED_MARK, False):
            _fallback_filter.filter(record)
        # After RedactionFilter, exc_info is None: the base class then emits the redacted exc_text.
        return super().format(record)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["timestamp"] = self.format_timestamp(record.created)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.message
        request_id = getattr(record, "request_id", None)
        if not request_id:  # handler configured without RequestIdFilter
            request_id = redact_text(get_request_id() or NO_REQUEST_ID)
        log_data["request_id"] = request_id

        extra: dict[str, Any] = {}
        super().add_fields(extra, record, {})  # static fields, defaults and extra= attributes
        extra.pop("message", None)  # the base class's default fmt "%(message)s" adds it; emitted above
        extra.pop("timestamp", None)  # only present if someone passes timestamp=True
        for key, value in extra.items():
            log_data[f"extra_{key}" if key in self.CORE_KEYS else key] = value

        # A dict message's keys, plus exc_info / stack_info added by the base class's format().
        message_dict = dict(message_dict)
        if not log_data["message"] and isinstance(message_dict.get("message"), str):
            log_data["message"] = message_dict.pop("message")
        for key, value in message_dict.items():
            log_data[f"extra_{key}" if key in self.CORE_KEYS else key] = value

    @staticmethod
    def format_timestamp(created: float) -> str:
        """``2026-11-21T10:00:00.123Z``"""
        return datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"

    def formatException(self, ei: Any) -> str:
        # Only reached if exc_info survived to the formatter (it does not after RedactionFilter).
        return redact_text(logging.Formatter.formatException(self, ei))

    def formatStack(self, stack_info: str) -> str:
        return redact_text(stack_info)
