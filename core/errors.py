"""The error hierarchy every domain raises.

Services raise these (never DRF exceptions); ``core.exception_handler`` renders them as
``{"error": {"code", "message", "details"}}`` with the class's HTTP status. ``code`` is a stable,
machine-readable snake_case string that clients may branch on; ``message`` is for humans and must
never carry account numbers, tokens or card data.
"""

from typing import Any


class ServiceError(Exception):
    """Base of every error the service raises on purpose."""

    status_code = 500
    code = "internal_error"
    default_message = "An internal error occurred."

    def __init__(self, message: str | None = None, *, code: str | None = None, details: Any = None):
        self.message = message or self.default_message
        if code:
            self.code = code
        self.details = details if details is not None else {}
        super().__init__(self.message)

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "details": self.details}


class BadRequest(ServiceError):
    status_code = 400
    code = "bad_request"
    default_message = "The request is malformed."


class AuthenticationError(ServiceError):
    status_code = 401
    code = "not_authenticated"
    default_message = "Authentication credentials were missing or invalid."


class PermissionDeniedError(ServiceError):
    status_code = 403
    code = "permission_denied"
    default_message = "You do not have permission to perform this action."


class NotFoundError(ServiceError):
    status_code = 404
    code = "not_found"
    default_message = "Not found."


class ConflictError(ServiceError):
    status_code = 409
    code = "conflict"
    default_message = "The request conflicts with the current state."


class PayloadTooLarge(ServiceError):
    status_code = 413
    code = "payload_too_large"
    default_message = "The request body is too large."


class ValidationError(ServiceError):
    """The request is well-formed but breaks a business rule (422)."""

    status_code = 422
    code = "validation_error"
    default_message = "The request is invalid."


class ServiceUnavailableError(ServiceError):
    """A dependency (database, broker) is down; the caller may retry later."""

    status_code = 503
    code = "service_unavailable"
    default_message = "The service is temporarily unavailable. Retry later."


class PermanentJobError(ServiceError):
    """Raised by a background job when retrying cannot help: the job goes straight to DeadLetter."""

    code = "permanent_job_error"
    default_message = "The job cannot succeed; retrying would not help."
