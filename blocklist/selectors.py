"""Blocklist reads: the current state of a user (their newest record) and their history."""

from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import QuerySet

from blocklist.models import BlocklistRecord, BlocklistStatus
from core.sql import select_first
from core.validators import validate_user_id

# Newest first; ``id`` breaks ties between records written in the same instant.
NEWEST_FIRST = ("-created_at", "-id")


@dataclass(frozen=True)
class BlocklistState:
    """A user's current blocklist state as the API renders it.

    A user with no record is ``NOTBLOCKED`` with every other field None (never blocked is not blocked).
    """

    user_id: str
    status: str
    reason: str | None
    source: str | None
    return_code: str | None
    since: datetime | None


def blocklist_current_record(*, user_id: str) -> BlocklistRecord | None:
    """The newest record of ``user_id`` (its current state), or None when the user was never on the blocklist."""
    # = BlocklistRecord.objects.filter(user_id=user_id).order_by(*NEWEST_FIRST).first(), compiled by hand (core.sql:
    # every ACH submission asks)
    return select_first(BlocklistRecord, where={"user_id": user_id}, order_by=NEWEST_FIRST)


def blocklist_current_records(*, user_ids) -> dict[str, BlocklistRecord]:
    """``blocklist_current_record`` of many users: user id → newest record (users never on the blocklist left out).
    One query on PostgreSQL (``DISTINCT ON``); one per user elsewhere."""
    user_ids = sorted(set(user_ids))
    if not user_ids:
        return {}
    if connection.features.can_distinct_on_fields:
        rows = (BlocklistRecord.objects.filter(user_id__in=user_ids)
                .order_by("user_id", *NEWEST_FIRST).distinct("user_id"))
        return {record.user_id: record for record in rows}
    records = {user_id: blocklist_current_record(user_id=user_id) for user_id in user_ids}
    return {user_id: record for user_id, record in records.items() if record is not None}


def blocklist_is_blocked(*, user_id: str) -> bool:
    """True when the newest record of ``user_id`` is BLOCKED. Raises 422 ``invalid_user_id`` for a malformed id.

    A database error propagates: a caller deciding whether money may move must not read "not blocked" from a failure.
    """
    validate_user_id(user_id)
    record = blocklist_current_record(user_id=user_id)
    return record is not None and record.status == BlocklistStatus.BLOCKED


def blocklist_status(*, user_id: str) -> BlocklistState:
    """The current state of ``user_id``: status, and the reason, source, return code and time of the newest record."""
    validate_user_id(user_id)
    record = blocklist_current_record(user_id=user_id)
    if record is None:
        return BlocklistState(user_id=user_id, status=BlocklistStatus.NOTBLOCKED, reason=None, source=None,
                              return_code=None, since=None)
    return BlocklistState(user_id=user_id, status=record.status, reason=record.reason, source=record.source,
                          return_code=record.return_code, since=record.created_at)


def blocklist_history(*, user_id: str) -> QuerySet[BlocklistRecord]:
    """Every record of ``user_id``, newest first (empty for a user never on the blocklist)."""
    validate_user_id(user_id)
    return BlocklistRecord.objects.filter(user_id=user_id).order_by(*NEWEST_FIRST)


def blocklist_block_count(*, user_id: str) -> int:
    """How many times ``user_id`` was blocked (BLOCKED records, whatever the current state): fraud history."""
    return BlocklistRecord.objects.filter(user_id=user_id, status=BlocklistStatus.BLOCKED).count()
