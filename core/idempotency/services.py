"""Idempotency keys (SPEC §5; IETF draft "The Idempotency-Key HTTP Header Field").

A client sends ``Idempotency-Key`` with a POST. Keys are scoped per API client (``Principal.client_id``); the
request is identified by its fingerprint (``core.idempotency.http.request_fingerprint``). The lifecycle, in the
caller's three-step submission:

1. ``idempotency_begin`` inside the caller's ``transaction.atomic()`` (with the creation of the resource) →
   ``Claimed`` (go on), ``Replay`` (send the stored response), ``Stale`` (recover), or an error:
   409 ``idempotency_in_progress`` / 422 ``idempotency_key_reused``.
2. The caller does its work (e.g. the processor call) outside any transaction.
3. ``idempotency_complete`` in the caller's final transaction stores the response; or ``idempotency_release``
   when the request failed before any side effect, so that a corrected retry may use the same key.

Records are kept at least 24 h (``IDEMPOTENCY_RETENTION_HOURS``) and then purged (``idempotency_purge``).
"""

import json
import logging
import math
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework.utils.encoders import JSONEncoder

from core.errors import BadRequest, ConflictError, ValidationError
from core.models import IdempotencyKey, IdempotencyKeyStatus
from core.sql import insert_parts, mark_inserted, select_first, update_where

logger = logging.getLogger(__name__)

MAX_KEY_LENGTH = 255
MIN_RETENTION_HOURS = 24  # SPEC §5: keys are kept at least 24 h
DEFAULT_LEASE_SECONDS = 60
PURGE_BATCH_SIZE = 1000
# Claim attempts when the existing record vanishes between the failed insert and the lock (released or purged
# concurrently). Each retry is a fresh insert, so more than a couple means something else is wrong.
_CLAIM_ATTEMPTS = 3

_FINGERPRINT_RE = re.compile(r"^[0-9a-f]{64}$")
# Printable ASCII (space to tilde): no control characters, no DEL, nothing outside ASCII.
_KEY_RE = re.compile(rf"^[\x20-\x7e]{{1,{MAX_KEY_LENGTH}}}$")
# RFC 8941 sf-string: a quoted string whose only escapes are \" and \\ (the IETF draft's header type).
_SF_STRING_RE = re.compile(r'^"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"$')


@dataclass(frozen=True)
class Claimed:
    """A new key: the caller proceeds, and later completes or releases ``record``."""

    record: IdempotencyKey


@dataclass(frozen=True)
class Replay:
    """The same request already completed: send back exactly this status and body."""

    status_code: int
    body: Any
    resource_id: str | None = None

    @classmethod
    def of(cls, record: IdempotencyKey) -> "Replay":
        """The stored answer of a completed ``record``."""
        return cls(status_code=record.response_status_code, body=record.response_body, resource_id=record.resource_id)


@dataclass(frozen=True)
class Stale:
    """The first request never finished and its lease expired; the caller now holds ``record`` (lease renewed).

    ``record.resource_id`` says what the first request created, if it got that far. The caller recovers (e.g.
    renders the current state of that resource) and completes or releases the record.
    """

    record: IdempotencyKey


IdempotencyOutcome = Claimed | Replay | Stale


def validate_idempotency_key(value: str) -> str:
    """Return the key a header value carries, or raise 400 ``idempotency_key_invalid``.

    Rule: 1 to 255 printable ASCII characters (no control characters). The draft makes the header an RFC 8941
    string (``"abc"``); a plain token (``abc``) is accepted too, and both name the same key ``abc``.
    """
    if not isinstance(value, str):
        raise _invalid_key()
    quoted = _SF_STRING_RE.match(value)
    key = re.sub(r"\\(.)", r"\1", quoted.group(1)) if quoted else value
    if not _KEY_RE.match(key):
        raise _invalid_key()
    return key


def _invalid_key() -> BadRequest:
    return BadRequest(
        f"The Idempotency-Key header must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.",
        code="idempotency_key_invalid",
        details={"header": "Idempotency-Key", "max_length": MAX_KEY_LENGTH},
    )


def idempotency_begin(
    *, client_id: str, key: str, fingerprint: str, lease_seconds: int = DEFAULT_LEASE_SECONDS,
    resource_id: str | None = None,
) -> IdempotencyOutcome:
    """Claim ``key`` for ``client_id``, or say what became of the request that claimed it first.

    Must run inside the caller's ``transaction.atomic()`` (raises ``RuntimeError`` otherwise): the claim commits or
    rolls back with whatever the caller creates in that transaction. Hold no lock across anything but DB work.

    Rules, checked in this order against an existing record of the same client and key:
    - a different ``fingerprint`` → 422 ``idempotency_key_reused`` (whatever the record's state);
    - completed → ``Replay`` of the stored status and body;
    - in progress with a live lease → 409 ``idempotency_in_progress`` (``details.retry_after_seconds``);
    - in progress with an expired lease → ``Stale``: the caller takes the record over, its lease renewed for
      ``lease_seconds`` (so a concurrent retry now gets 409).
    No record → a new one, in progress, leased for ``lease_seconds`` → ``Claimed``.

    ``resource_id``: the id of what the caller will create in this same transaction, linked to a NEW record at once
    (what ``idempotency_attach`` does, one UPDATE fewer); an existing record keeps its own. A caller that then
    creates nothing completes the record with ``no_resource=True`` (or its transaction rolls the claim back).

    Race safety: the claim is an ``INSERT … ON CONFLICT DO NOTHING`` under the (client_id, key) unique constraint.
    A concurrent second INSERT blocks until the first transaction ends (PostgreSQL; SQLite serialises writers),
    then inserts nothing and reads the committed record under ``select_for_update`` — exactly one caller gets
    ``Claimed``. If the first transaction rolled back, the second INSERT succeeds and that caller claims.
    Side effects: inserts or locks-and-updates one ``IdempotencyKey`` row in the caller's transaction; errors
    change nothing.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("idempotency_begin must run inside the caller's transaction.atomic()")
    if not client_id:
        raise ValueError("client_id is required")
    if not _FINGERPRINT_RE.match(fingerprint or ""):
        raise ValueError("fingerprint must be a lowercase hex SHA-256")
    if lease_seconds <= 0:
        raise ValueError("lease_seconds must be positive")
    key = validate_idempotency_key(key)
    lease = timedelta(seconds=lease_seconds)

    for _ in range(_CLAIM_ATTEMPTS):
        record = IdempotencyKey(client_id=client_id, key=key, fingerprint=fingerprint,
                                status=IdempotencyKeyStatus.IN_PROGRESS, lease_expires_at=timezone.now() + lease,
                                resource_id=str(resource_id) if resource_id else None)
        if _insert_unless_taken(record):
            return Claimed(record)
        # = IdempotencyKey.objects.select_for_update().filter(client_id=…, key=…).first(), compiled by hand
        # (core.sql: every replay reads it)
        record = select_first(IdempotencyKey, where={"client_id": client_id, "key": key}, order_by=("pk",),
                              for_update=True)
        if record is not None:
            return _existing_outcome(record, fingerprint=fingerprint, lease=lease)
        # Released or purged between our INSERT and the lock: claim again.
    raise ConflictError(
        "A request with this Idempotency-Key is still being processed. Retry later.",
        code="idempotency_in_progress",
        details={"retry_after_seconds": 1},
    )


def idempotency_replay(*, client_id: str, key: str, fingerprint: str) -> Replay | None:
    """The stored answer when ``key`` of ``client_id`` is completed for this same request (``fingerprint``): what
    ``idempotency_begin`` would replay, read with one indexed SELECT, no lock and no transaction — a completed record
    never changes (completion is conditional on the record being in progress; only the purge deletes it). None for
    anything else (no record, in progress, another request's body): the caller goes on to ``idempotency_begin``, which
    decides those cases under its lock. ``key`` is a validated key (``validate_idempotency_key``)."""
    # = IdempotencyKey.objects.filter(client_id=…, key=…).first(), compiled by hand (core.sql: every submission)
    record = select_first(IdempotencyKey, where={"client_id": client_id, "key": key}, order_by=("pk",))
    if record is None or record.status != IdempotencyKeyStatus.COMPLETED or record.fingerprint != fingerprint:
        return None
    return Replay.of(record)


def _insert_unless_taken(record: IdempotencyKey) -> bool:
    """INSERT ``record`` unless its (client_id, key) exists: True (``record.pk`` set) when inserted.

    One round trip, ``INSERT … ON CONFLICT (client_id, key) DO NOTHING RETURNING id`` (PostgreSQL and SQLite
    ≥ 3.35), instead of an INSERT in a savepoint that catches the duplicate (three). The conflict is handled like
    the unique violation was: on PostgreSQL the INSERT waits for a concurrent uncommitted claim of the same key,
    then inserts (it rolled back) or does nothing (it committed).
    """
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    table, columns, values = insert_parts(record, connection)
    placeholders = ", ".join(["%s"] * len(values))
    sql = (f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) "  # noqa: S608 (model metadata, quoted)
           f"ON CONFLICT ({quote('client_id')}, {quote('key')}) DO NOTHING "
           f"RETURNING {quote(IdempotencyKey._meta.pk.column)}")
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone()
    if row is None:
        return False
    mark_inserted(record, connection, row[0])
    return True


def _existing_outcome(record: IdempotencyKey, *, fingerprint: str, lease: timedelta) -> IdempotencyOutcome:
    if record.fingerprint != fingerprint:
        raise ValidationError(
            "This Idempotency-Key was already used for a different request.",
            code="idempotency_key_reused",
            details={"header": "Idempotency-Key"},
        )
    if record.status == IdempotencyKeyStatus.COMPLETED:
        return Replay.of(record)
    now = timezone.now()  # after the lock: we may have waited for it
    if record.lease_expires_at > now:
        raise ConflictError(
            "A request with this Idempotency-Key is still being processed. Retry later.",
            code="idempotency_in_progress",
            details={"retry_after_seconds": max(1, math.ceil((record.lease_expires_at - now).total_seconds()))},
        )
    # Stale: the first request's process probably died. This caller takes the record over.
    record.lease_expires_at = now + lease
    record.save(update_fields=["lease_expires_at", "updated_at"])
    logger.warning(
        "idempotency key taken over after its lease expired",
        extra={"idempotency_key_id": record.pk, "resource_id": record.resource_id},
    )
    return Stale(record)


def idempotency_attach(*, record: IdempotencyKey, resource_id: str) -> bool:
    """Link an in-progress record to the resource its request created (e.g. the payment id).

    Call it in the transaction that creates the resource, so a ``Stale`` record can be recovered. Returns False
    (and changes nothing) when the record is no longer in progress.
    """
    if not resource_id:
        raise ValueError("resource_id is required")
    updated = IdempotencyKey.objects.filter(pk=record.pk, status=IdempotencyKeyStatus.IN_PROGRESS).update(
        resource_id=str(resource_id), updated_at=timezone.now()
    )
    if updated:
        record.resource_id = str(resource_id)
    return bool(updated)


def idempotency_complete(
    *, record: IdempotencyKey, status_code: int, body: Any, resource_id: str | None = None,
    no_resource: bool = False,
) -> bool:
    """Store the response for replay and mark the record completed (call in the caller's final transaction).

    ``body`` is stored as the JSON the client received (DRF's encoder: Decimal → number, datetime → ISO string),
    so a replay is the same document
    (the same JSON; PostgreSQL's jsonb may reorder object keys). Conditional on the record being in progress: the first
    completion wins; a later one (e.g. the original request finishing after a ``Stale`` takeover completed it)
    returns False and changes nothing. ``no_resource``: the request created nothing — the record's ``resource_id``
    (one given to ``idempotency_begin``) is cleared.
    """
    if not isinstance(status_code, int) or not 100 <= status_code <= 599:
        raise ValueError("status_code must be an HTTP status (100 to 599)")
    if no_resource and resource_id is not None:
        raise ValueError("no_resource and resource_id exclude each other")
    stored = json.loads(json.dumps(body, cls=JSONEncoder))
    now = timezone.now()
    fields = {
        "status": IdempotencyKeyStatus.COMPLETED,
        "response_status_code": status_code,
        "response_body": stored,
        "completed_at": now,
        "updated_at": now,
    }
    if resource_id is not None:
        fields["resource_id"] = str(resource_id)
    elif no_resource:
        fields["resource_id"] = None
    # = IdempotencyKey.objects.filter(pk=…, status=IN_PROGRESS).update(**fields), compiled by hand (core.sql: once
    # per payment submission)
    updated = update_where(IdempotencyKey, where={"pk": record.pk, "status": IdempotencyKeyStatus.IN_PROGRESS},
                           values=fields)
    if not updated:
        logger.warning("idempotency key not completed: no longer in progress", extra={"idempotency_key_id": record.pk})
        return False
    for name, value in fields.items():
        setattr(record, name, value)
    return True


def idempotency_release(*, record: IdempotencyKey) -> bool:
    """Forget an in-progress claim whose request failed before any side effect, so that a retry with the same key
    (even with a corrected body) is a new request. A completed record is never released (returns False)."""
    deleted, _ = IdempotencyKey.objects.filter(pk=record.pk, status=IdempotencyKeyStatus.IN_PROGRESS).delete()
    return bool(deleted)


def idempotency_retention_hours() -> int:
    """``IDEMPOTENCY_RETENTION_HOURS`` (default 24); refuses anything below the 24 h SPEC §5 guarantees."""
    return _checked_retention(getattr(settings, "IDEMPOTENCY_RETENTION_HOURS", MIN_RETENTION_HOURS))


def _checked_retention(hours) -> int:
    if isinstance(hours, bool) or not isinstance(hours, int) or hours < MIN_RETENTION_HOURS:
        raise ValidationError(
            f"Idempotency keys must be kept at least {MIN_RETENTION_HOURS} hours.",
            code="idempotency_retention_too_short",
            details={"older_than_hours": hours, "minimum": MIN_RETENTION_HOURS},
        )
    return hours


def idempotency_purge(*, older_than_hours: int | None = None, batch_size: int = PURGE_BATCH_SIZE) -> int:
    """Delete the records nobody can need any more; return how many were deleted.

    Purged: completed records completed more than ``older_than_hours`` ago, and stale records (in progress, lease
    expired) created more than ``older_than_hours`` ago. In-progress records with a live lease are kept whatever
    their age. ``older_than_hours`` defaults to ``IDEMPOTENCY_RETENTION_HOURS`` and may not be below 24
    (422 ``idempotency_retention_too_short``, nothing deleted). Deletes in batches of ``batch_size``, one short
    transaction each; the condition is re-checked by the DELETE itself, so a record taken over meanwhile stays.
    Idempotent: a second run deletes nothing new.
    """
    hours = idempotency_retention_hours() if older_than_hours is None else _checked_retention(older_than_hours)
    if batch_size <= 0:
        raise ValueError("batch_size must be positive")
    now = timezone.now()
    cutoff = now - timedelta(hours=hours)
    purgeable = Q(status=IdempotencyKeyStatus.COMPLETED, completed_at__lt=cutoff) | Q(
        status=IdempotencyKeyStatus.IN_PROGRESS, created_at__lt=cutoff, lease_expires_at__lt=now
    )
    total = 0
    while True:
        with transaction.atomic():
            batch = IdempotencyKey.objects.filter(purgeable).order_by("pk").values_list("pk", flat=True)
            ids = list(batch[:batch_size])
            if not ids:
                break
            deleted, _ = IdempotencyKey.objects.filter(purgeable, pk__in=ids).delete()
        total += deleted
        if deleted == 0:
            break
    if total:
        logger.info("idempotency keys purged", extra={"deleted": total, "older_than_hours": hours})
    return total
