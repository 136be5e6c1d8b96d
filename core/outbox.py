"""Writing events to the transactional outbox (SPEC §4), and reading the pull feed. Delivery is the relay's job
(``core.outbox_relay``).

``outbox_record`` must be called inside the transaction that makes the change the event describes: both commit
or neither does. Callers serialise per aggregate (the payment row is locked by its conditional update), so the
per-aggregate ``sequence`` is the next number; the unique constraint is the backstop. Once that transaction
commits, a relay run is requested (coalesced); nothing is requested for a transaction that rolls back.

The pull feed (``outbox_feed_page``) lists published events in the order the relay published them
(``OutboxFeedEntry``), behind an opaque cursor.
"""

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from core.bulk import bulk_insert
from core.errors import BadRequest
from core.models import OutboxEvent, OutboxFeedEntry
from core.sql import insert_parts, mark_inserted

SOURCE = "PaymentService"


def outbox_record(*, type: str, subject: str, aggregate_id: str, data: dict,
                  occurred_at: datetime | None = None) -> OutboxEvent:
    """Append one event for ``aggregate_id``. Requires an open transaction (raises otherwise).

    Side effect after commit: a relay run is requested (``core.outbox_relay.outbox_relay_kick``: coalesced, and a
    failure to enqueue is logged, never raised; the every-minute beat run is the safety net).
    """
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise RuntimeError("outbox_record must run inside the transaction of the change it describes")
    event = OutboxEvent(
        event_id=uuid.uuid4(), type=type, source=SOURCE, subject=subject, aggregate_id=str(aggregate_id),
        data=data, occurred_at=occurred_at or timezone.now(),
    )
    # The aggregate's next sequence is read by the INSERT itself (a scalar subquery: the same MAX + 1 as reading it
    # first, one round trip instead of two), and both the position and the sequence come back.
    quote = connection.ops.quote_name
    table, columns, values = insert_parts(event, connection, exclude=("sequence",))
    sequence = quote(OutboxEvent._meta.get_field("sequence").column)
    sql = (f"INSERT INTO {table} ({columns}, {sequence}) VALUES ({', '.join(['%s'] * len(values))}, "  # noqa: S608
           f"(SELECT COALESCE(MAX({sequence}), 0) + 1 FROM {table} WHERE {quote('aggregate_id')} = %s)) "
           f"RETURNING {quote(OutboxEvent._meta.pk.column)}, {sequence}")
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, event.aggregate_id])
        position, event.sequence = cursor.fetchone()
    mark_inserted(event, connection, position)
    transaction.on_commit(outbox_kick_relay)
    return event


#: Aggregate ids per ``IN (...)`` when ``outbox_record_many`` reads the last sequences.
_MANY_CHUNK = 1000


def _last_sequences(aggregates: list[str]) -> dict[str, int]:
    """Aggregate id → its last event's sequence (aggregates without events left out).

    PostgreSQL: one index probe per aggregate (``outbox_aggregate_sequence_unique``, newest first, LIMIT 1), whatever
    the table's statistics say — a ``GROUP BY`` over an ``IN`` list was planned as a parallel scan of the whole
    table once a bulk run had outgrown the last ANALYZE (0.5 s per check-ach job at 750,000 events).
    """
    if transaction.get_connection().vendor != "postgresql":
        return dict(OutboxEvent.objects.filter(aggregate_id__in=aggregates)
                    .values("aggregate_id").annotate(m=Max("sequence")).values_list("aggregate_id", "m"))
    table = OutboxEvent._meta.db_table
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(
            f"SELECT a.id, (SELECT e.sequence FROM {table} e WHERE e.aggregate_id = a.id "  # noqa: S608 (model table)
            "ORDER BY e.sequence DESC LIMIT 1) FROM unnest(%s::varchar[]) AS a(id)", [aggregates])
        return {aggregate: sequence for aggregate, sequence in cursor.fetchall() if sequence is not None}


def outbox_record_many(*, events: list[dict], occurred_at: datetime | None = None) -> int:
    """``outbox_record`` for many events at once (each a dict of ``type``, ``subject``, ``aggregate_id``, ``data``,
    optionally ``occurred_at``):
    the same rows, with the same per-aggregate sequences (several events of one aggregate follow each other in list
    order), written with one sequence read per 1,000 aggregates and one bulk insert (``core.bulk.bulk_insert``:
    ``COPY`` on PostgreSQL, positions in list order); one relay kick after commit. Returns how many. Same rule:
    inside the transaction of the changes they describe, the aggregates serialised by the caller.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("outbox_record_many must run inside the transaction of the changes it describes")
    if not events:
        return 0
    aggregates = sorted({str(e["aggregate_id"]) for e in events})
    last: dict[str, int] = {}
    for start in range(0, len(aggregates), _MANY_CHUNK):
        last.update(_last_sequences(aggregates[start:start + _MANY_CHUNK]))
    moment = occurred_at or timezone.now()
    rows = []
    for event in events:
        aggregate = str(event["aggregate_id"])
        last[aggregate] = last.get(aggregate, 0) + 1
        rows.append(OutboxEvent(event_id=uuid.uuid4(), type=event["type"], source=SOURCE, subject=event["subject"],
                                aggregate_id=aggregate, sequence=last[aggregate], data=event["data"],
                                occurred_at=event.get("occurred_at") or moment))
    bulk_insert(OutboxEvent, rows)
    transaction.on_commit(outbox_kick_relay)
    return len(rows)


def outbox_envelope(event: OutboxEvent) -> dict:
    """The event as consumers and the feed see it (SPEC §4)."""
    return {
        "id": str(event.event_id),
        "type": event.type,
        "source": event.source,
        "subject": event.subject,
        "sequence": event.sequence,
        "occurred_at": event.occurred_at.isoformat(),
        "data": event.data,
    }


def outbox_kick_relay() -> None:
    """Ask the relay to publish soon (after the commit of a transaction that wrote events)."""
    from core.outbox_relay import outbox_relay_kick  # the relay imports this module

    outbox_relay_kick()


# --- The pull feed ------------------------------------------------------------------------------------------------

FEED_DEFAULT_LIMIT = 100
FEED_MAX_LIMIT = 500
_CURSOR_PREFIX = "f1:"


def feed_cursor_encode(position: int) -> str:
    """The opaque cursor naming feed position ``position`` (URL-safe, no padding)."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{position}".encode()).decode("ascii").rstrip("=")


def feed_cursor_decode(cursor: str) -> int:
    """The feed position of ``cursor``; 400 ``invalid_cursor`` when it is not one this service issued."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError, UnicodeError):
        text = ""
    number = text[len(_CURSOR_PREFIX):] if text.startswith(_CURSOR_PREFIX) else ""
    if not number.isascii() or not number.isdigit() or len(number) > 19:
        raise BadRequest("The cursor is not one this feed issued.", code="invalid_cursor")
    return int(number)


@dataclass(frozen=True)
class FeedPage:
    events: list[dict]
    next_cursor: str | None
    has_more: bool


def outbox_feed_page(*, after: str | None = None, limit: int = FEED_DEFAULT_LIMIT) -> FeedPage:
    """Published events after the cursor ``after`` (from the beginning when None), oldest first, at most ``limit``.

    ``next_cursor`` names the last event returned (or is ``after`` again when there is nothing new: poll with it
    later). Only events whose relay transaction committed are listed, and a position becomes visible only after
    every smaller one has (``OutboxFeedEntry``), so following ``next_cursor`` never skips an event. At-least-once:
    a client that loses its cursor re-reads events it has seen; de-duplicate on the event ``id``.
    """
    if not 1 <= limit <= FEED_MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {FEED_MAX_LIMIT}.", code="invalid_limit")
    start = feed_cursor_decode(after) if after is not None else 0
    entries = list(OutboxFeedEntry.objects.filter(position__gt=start).select_related("event")
                   .order_by("position")[: limit + 1])
    has_more = len(entries) > limit
    entries = entries[:limit]
    next_cursor = feed_cursor_encode(entries[-1].position) if entries else after
    return FeedPage(events=[outbox_envelope(entry.event) for entry in entries], next_cursor=next_cursor,
                    has_more=has_more)
