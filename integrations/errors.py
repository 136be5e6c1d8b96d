"""Typed processor errors (ARCHITECTURE.md §4). Callers decide by type, never by message text.

| error | meaning | what the caller does |
|---|---|---|
| ``ProcessorUnavailable`` | connection refused / not established, or HTTP 5xx | retryable: nothing happened |
| ``ProcessorTimeout`` | the request may have been received but no answer came | outcome unknown: reconcile |
| ``ProcessorDeclined`` | the processor answered "no" (``code``, ``message``) | final for this request |
| ``ProcessorAuthError`` | credentials refused | terminal until configuration is fixed |
| ``ProcessorProtocolError`` | the answer does not match the protocol | outcome unknown: reconcile |

Every error carries the redacted ``exchange`` (request/response) for audit when there was one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from integrations.http import Exchange


def _rebuild_processor_error(cls, message: str, state: dict) -> ProcessorError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class ProcessorError(Exception):
    retryable = False

    def __reduce__(self):
        # Celery pickles a failed task's exception before ``on_failure`` sees it; the default reduction calls
        # ``cls(*args)`` and loses the keyword-only fields (the exchange that dead letters keep as the raw answer).
        return (_rebuild_processor_error, (type(self), self.message, self.__dict__.copy()))

    def __init__(self, message: str, *, processor: str, operation: str, exchange: Exchange | None = None):
        super().__init__(message)
        self.message = message
        self.processor = processor
        self.operation = operation
        self.exchange = exchange

    def __str__(self) -> str:
        return f"{self.processor}.{self.operation}: {self.message}"


class ProcessorUnavailable(ProcessorError):
    """Nothing was processed (connection refused, connect timeout, 5xx): safe to try again later."""

    retryable = True


class ProcessorTimeout(ProcessorError):
    """The request may have been processed: never resubmit blindly; look it up by our reference."""


class ProcessorDeclined(ProcessorError):
    """The processor refused the request; ``code`` is its code (Usio numeric, JPM error code)."""

    def __init__(self, message: str, *, code: str, **kwargs):
        super().__init__(message, **kwargs)
        self.code = code

    def __str__(self) -> str:
        return f"{self.processor}.{self.operation}: declined {self.code}: {self.message}"


class ProcessorAuthError(ProcessorError):
    """Credentials were refused (bad login, expired/invalid client assertion, certificate)."""


class ProcessorProtocolError(ProcessorError):
    """The answer could not be understood (malformed JSON, missing fields, unexpected status)."""


class ProcessorConfigurationError(ProcessorError):
    """The client is not configured (missing base URL, credentials or key): fix the settings."""
