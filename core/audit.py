"""The audit trail: record a support/admin action with actor and reason (``AuditEntry``)."""

from core.errors import ValidationError
from core.models import AuditEntry
from core.redaction import redact


def audit_record(
    *, actor: str, action: str, target_type: str, target_id: str, reason: str, user_id: str = "",
    changes: dict | None = None,
) -> AuditEntry:
    """Append one entry. A reason is required (support staff must say why). Call inside the caller's transaction
    so that the entry and the change commit together."""
    if not reason or not reason.strip():
        raise ValidationError("A reason is required.", code="reason_required")
    if not actor:
        raise ValidationError("An actor is required.", code="actor_required")
    return AuditEntry.objects.create(
        actor=actor, action=action, target_type=target_type, target_id=str(target_id), user_id=user_id,
        reason=reason.strip()[:2000], changes=redact(changes or {}),
    )
