"""Blocklist jobs (SPEC §7: queue ``blocklist-remove``, 10 attempts, 540 s)."""

from blocklist.models import BlocklistSource
from blocklist.services import SYSTEM_ACTOR, blocklist_unblock
from core.errors import PermanentJobError, ValidationError
from core.tasks import job


@job(name="blocklist.remove_for_user", queue="blocklist-remove")
def remove_for_user(user_id: str, reason: str) -> bool:
    """Unblock ``user_id`` after a bank account change (``blocklist_unblock``, source ``bank_account_update``).

    Idempotent: a user who is not blocked (never was, or already unblocked by an earlier run) is left as is.
    Returns whether a record was appended. Invalid arguments cannot succeed on retry: they are dead-lettered at once.
    """
    try:
        change = blocklist_unblock(
            user_id=user_id, reason=reason, actor=SYSTEM_ACTOR, source=BlocklistSource.BANK_ACCOUNT_UPDATE
        )
    except ValidationError as exc:
        raise PermanentJobError(f"{exc.code}: {exc.message}") from exc
    return change.changed
