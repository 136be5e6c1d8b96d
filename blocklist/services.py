"""Blocklist services (SPEC §2.5, §8, §12): block, unblock, block for a return code, enqueue removal.

Rules:
- The log is append-only: a change of state inserts a ``BlocklistRecord``; nothing is updated or deleted.
- A call that would not change the state appends nothing: blocking a BLOCKED user or unblocking a user who is not
  blocked is a no-op that returns the current record (so retries and double clicks leave no duplicate rows).
- Changes of one user are serialised (``_lock_user``): concurrent block/unblock calls for the same user apply one
  after the other, each seeing the state the previous one left, so the log always alternates BLOCKED/NOTBLOCKED.
- Manual changes (support, admin) are also written to the audit trail with their actor and reason.
"""

import hashlib
import logging
import uuid
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from blocklist.codes import BLOCKING_RETURN_CODES, blocklist_code_is_blocking, normalise_return_code
from blocklist.models import BlocklistRecord, BlocklistSource, BlocklistStatus
from blocklist.selectors import blocklist_current_record, blocklist_current_records
from core.audit import audit_record
from core.errors import ValidationError
from core.validators import validate_user_id

__all__ = [
    "BLOCKING_RETURN_CODES",
    "SYSTEM_ACTOR",
    "BlocklistChange",
    "blocklist_block",
    "blocklist_block_for_return",
    "blocklist_block_for_returns",
    "blocklist_code_is_blocking",
    "blocklist_enqueue_removal",
    "blocklist_unblock",
]

logger = logging.getLogger(__name__)

SYSTEM_ACTOR = "system"
REASON_MAX_LENGTH = 2000
ACTOR_MAX_LENGTH = 150
_BLOCK_SOURCES = (BlocklistSource.MANUAL, BlocklistSource.AUTO)
_UNBLOCK_SOURCES = (BlocklistSource.MANUAL, BlocklistSource.BANK_ACCOUNT_UPDATE)


@dataclass(frozen=True)
class BlocklistChange:
    """The outcome of a block or unblock.

    ``record`` is the user's current record after the call (the new one if ``changed``; None only for an unblock of
    a user who was never on the blocklist). ``changed`` is True when this call appended a record.
    """

    record: BlocklistRecord | None
    changed: bool


def _clean_reason(reason: object) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationError("A reason is required.", code="reason_required")
    reason = reason.strip()
    if len(reason) > REASON_MAX_LENGTH:
        raise ValidationError(f"The reason is longer than {REASON_MAX_LENGTH} characters.", code="reason_too_long",
                              details={"max_length": REASON_MAX_LENGTH})
    return reason


def _clean_actor(actor: object) -> str:
    if not isinstance(actor, str) or not actor.strip():
        raise ValidationError("An actor is required.", code="actor_required")
    if len(actor.strip()) > ACTOR_MAX_LENGTH:
        raise ValidationError(f"The actor is longer than {ACTOR_MAX_LENGTH} characters.", code="invalid_actor")
    return actor.strip()


def _clean_source(source: object, allowed: tuple[str, ...]) -> str:
    if source not in allowed:
        raise ValidationError(f"source must be one of {', '.join(allowed)}.", code="invalid_source",
                              details={"allowed": list(allowed)})
    return str(source)


def _clean_payment_id(payment_id: object) -> uuid.UUID | None:
    if payment_id is None:
        return None
    try:
        return payment_id if isinstance(payment_id, uuid.UUID) else uuid.UUID(str(payment_id))
    except ValueError as exc:
        raise ValidationError("payment_id must be a UUID.", code="invalid_payment_id") from exc


def _lock_key(user_id: str) -> int:
    """A signed 64-bit advisory lock key for ``user_id`` (a collision only serialises two users needlessly)."""
    digest = hashlib.blake2b(f"blocklist:{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _lock_user(user_id: str) -> None:
    """Serialise blocklist changes of ``user_id`` until the current transaction ends.

    Locking the newest record with SELECT ... FOR UPDATE is not enough: a user with no record has no row to lock,
    and two first blocks would both append. PostgreSQL: a transaction-scoped advisory lock on the user. SQLite:
    transactions begin IMMEDIATE (``config.settings.base.tune_database``), so writers are already serialised.
    """
    _lock_users({user_id})


def _lock_users(user_ids: set[str]) -> None:
    """``_lock_user`` for several users in one statement, in lock-key order (two such calls never deadlock)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(k) FROM (SELECT unnest(%s::bigint[]) AS k ORDER BY 1) keys",
                           [sorted(_lock_key(user_id) for user_id in user_ids)])


def _new_record(
    *, user_id: str, status: str, reason: str, source: str, actor: str, current: BlocklistRecord | None,
    return_code: str | None = None, payment_id: uuid.UUID | None = None,
) -> BlocklistRecord:
    """The user's new current record, unsaved. Build it under ``_lock_user`` with ``current`` read under that lock."""
    now = timezone.now()
    if current is not None and current.created_at > now:
        # Clocks of two hosts may disagree; the newest record must stay the one appended last.
        now = current.created_at
    return BlocklistRecord(
        user_id=user_id, status=status, reason=reason, source=source, actor=actor, return_code=return_code,
        payment_id=payment_id, created_at=now,
    )


def _append(**fields) -> BlocklistRecord:
    """Insert the user's new current record (``_new_record``'s arguments). Call under ``_lock_user``."""
    record = _new_record(**fields)
    record.save(force_insert=True)
    return record


def blocklist_block(*, user_id: str, reason: str, actor: str, source: str = BlocklistSource.MANUAL) -> BlocklistChange:
    """Block ``user_id`` (payments are refused while blocked).

    ``source`` is ``manual`` (support/admin; also written to the audit trail) or ``auto``. Idempotent: a user who is
    already BLOCKED gets no new record (``changed=False``; the current record is returned, with its original reason).
    Raises 422 ``invalid_user_id``, ``reason_required``, ``reason_too_long``, ``actor_required``, ``invalid_source``.
    """
    validate_user_id(user_id)
    reason = _clean_reason(reason)
    actor = _clean_actor(actor)
    source = _clean_source(source, _BLOCK_SOURCES)
    with transaction.atomic():
        _lock_user(user_id)
        current = blocklist_current_record(user_id=user_id)
        if current is not None and current.status == BlocklistStatus.BLOCKED:
            return BlocklistChange(record=current, changed=False)
        record = _append(user_id=user_id, status=BlocklistStatus.BLOCKED, reason=reason, source=source, actor=actor,
                         current=current)
        if source == BlocklistSource.MANUAL:
            audit_record(actor=actor, action="blocklist.block", target_type="blocklist_record", target_id=record.pk,
                         reason=reason, user_id=user_id, changes={"status": BlocklistStatus.BLOCKED})
    logger.info("user blocked", extra={"user_id": user_id, "source": source, "blocklist_record_id": record.pk})
    return BlocklistChange(record=record, changed=True)


def blocklist_unblock(*, user_id: str, reason: str, actor: str, source: str) -> BlocklistChange:
    """Unblock ``user_id``.

    ``source`` is ``manual`` (support/admin; also written to the audit trail) or ``bank_account_update`` (the user
    saved, changed or deleted a bank account). No-op for a user who is not blocked (``changed=False``; ``record`` is
    the current record, None for a user never on the blocklist). Raises 422 like ``blocklist_block``.
    """
    validate_user_id(user_id)
    reason = _clean_reason(reason)
    actor = _clean_actor(actor)
    source = _clean_source(source, _UNBLOCK_SOURCES)
    with transaction.atomic():
        _lock_user(user_id)
        current = blocklist_current_record(user_id=user_id)
        if current is None or current.status != BlocklistStatus.BLOCKED:
            return BlocklistChange(record=current, changed=False)
        record = _append(user_id=user_id, status=BlocklistStatus.NOTBLOCKED, reason=reason, source=source,
                         actor=actor, current=current)
        if source == BlocklistSource.MANUAL:
            audit_record(actor=actor, action="blocklist.unblock", target_type="blocklist_record", target_id=record.pk,
                         reason=reason, user_id=user_id, changes={"status": BlocklistStatus.NOTBLOCKED})
    logger.info("user unblocked", extra={"user_id": user_id, "source": source, "blocklist_record_id": record.pk})
    return BlocklistChange(record=record, changed=True)


def blocklist_block_for_return(
    *, user_id: str, return_code: str | None, payment_id: uuid.UUID | str | None, actor: str = SYSTEM_ACTOR
) -> bool:
    """Block ``user_id`` automatically because their payment ``payment_id`` was returned with ``return_code``.

    Blocks only when the code is blocking (SPEC §12, ``blocklist_code_is_blocking``); returns True when this call
    appended a BLOCKED record (source ``auto``, the normalised code, the payment id). Appends nothing and returns
    False when the code does not block, when the user is already BLOCKED, or when an automatic block for this
    payment is already on record (a redelivered return event must not re-block a user support has since
    unblocked). Raises 422 ``invalid_user_id`` / ``invalid_payment_id``.
    """
    return blocklist_block_for_returns(returns=[(user_id, return_code, payment_id)], actor=actor) == 1


def blocklist_block_for_returns(*, returns, actor: str = SYSTEM_ACTOR) -> int:
    """``blocklist_block_for_return`` for many ``(user_id, return_code, payment_id)``, in one transaction and a
    constant number of queries (the outbox relay's batch of return events): the same records as one call per item
    in list order — a user blocked by an earlier item is not blocked again, a payment already on record blocks
    nothing. Returns how many records were appended. Every item is validated first: one malformed item raises
    (422 ``invalid_user_id`` / ``invalid_payment_id``) and nothing is written.
    """
    actor = _clean_actor(actor)
    items = []
    for user_id, return_code, payment_id in returns:
        validate_user_id(user_id)
        payment_uuid = _clean_payment_id(payment_id)
        code = normalise_return_code(return_code)
        if blocklist_code_is_blocking(code):
            items.append((user_id, code, payment_uuid))
    if not items:
        return 0
    with transaction.atomic():
        _lock_users({user_id for user_id, _, _ in items})
        payments = {payment for _, _, payment in items if payment is not None}
        recorded = set(BlocklistRecord.objects.filter(source=BlocklistSource.AUTO, payment_id__in=payments)
                       .values_list("payment_id", flat=True)) if payments else set()
        current = blocklist_current_records(user_ids={user_id for user_id, _, _ in items})
        appended = []
        for user_id, code, payment in items:
            previous = current.get(user_id)
            if (payment is not None and payment in recorded) or (
                    previous is not None and previous.status == BlocklistStatus.BLOCKED):
                continue
            record = _new_record(user_id=user_id, status=BlocklistStatus.BLOCKED,
                                 reason=f"Payment returned with blocking code {code}.", source=BlocklistSource.AUTO,
                                 actor=actor, current=previous, return_code=code, payment_id=payment)
            current[user_id] = record
            if payment is not None:
                recorded.add(payment)
            appended.append(record)
        BlocklistRecord.objects.bulk_create(appended)
    for record in appended:
        logger.info("user blocked for a return", extra={"user_id": record.user_id, "return_code": record.return_code,
                                                         "blocklist_record_id": record.pk})
    return len(appended)


def _send_removal(user_id: str, reason: str) -> None:
    from blocklist.tasks import remove_for_user  # the task module imports this one

    try:
        remove_for_user.apply_async(kwargs={"user_id": user_id, "reason": reason})
    except Exception:
        # The caller's change is committed; failing its request now would report a saved account as an error.
        # The line below is what an operator needs to replay it (manage.py / admin unblock).
        logger.exception("could not enqueue blocklist removal", extra={"user_id": user_id})


def blocklist_enqueue_removal(*, user_id: str, reason: str) -> None:
    """After the caller's transaction commits, send the ``blocklist.remove_for_user`` job (queue
    ``blocklist-remove``) that unblocks ``user_id`` with source ``bank_account_update`` if they are BLOCKED then.

    Called by ``bank_accounts`` on every save, update and delete of an account (SPEC §8). Nothing is sent if the
    caller's transaction rolls back; outside a transaction the job is sent at once. The job is idempotent, so
    enqueueing for a user who is not blocked is harmless. Raises 422 ``invalid_user_id`` / ``reason_required`` at
    once (in the caller's transaction) rather than letting a job fail later.
    """
    validate_user_id(user_id)
    reason = _clean_reason(reason)
    transaction.on_commit(lambda: _send_removal(user_id, reason))
