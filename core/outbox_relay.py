"""The outbox relay (SPEC §4): publishes pending ``OutboxEvent`` rows, in order and at least once.

Publishing an event means, in one transaction per batch:

1. every in-process consumer registered for its type (``register_consumer``) handles it, in a savepoint together
   with its ``OutboxConsumption`` row (the de-duplication record: a redelivered event is skipped by the consumers
   that already handled it). A consumer registered with a ``batch_handler`` handles all the batch's events it still
   has to handle at once, set-based, in one savepoint with all their ``done`` rows (written in bulk); if that batch
   handler raises, its savepoint is rolled back and the consumer falls back to its per-event handler, one savepoint
   per event, so a bad event fails alone exactly as below. Other consumers handle one event per savepoint.
   Consumers run in registration order for each event (the batch's events are heads of different payments, so
   their relative order carries no guarantee);
2. a ``PushDelivery`` is created for each active push subscription that wants its type (``core.outbox_push`` sends
   them);
3. it is marked ``published_at`` and appended to the pull feed (``OutboxFeedEntry``).

Order. Only the *head* of each aggregate's (payment's) pending events is taken: an event is selected only when no
earlier event of its aggregate is still unpublished. An event is committed after every earlier event of its payment
(the writers serialise on the payment row), so the relay never publishes event #2 of a payment before #1, whichever
relay holds #1 and whatever happened to it. A burst of events of one payment therefore takes one batch per event;
the run goes on batch after batch while batches publish something.

Concurrency. On PostgreSQL the heads are locked with ``SELECT … FOR UPDATE SKIP LOCKED``: concurrent relays take
disjoint events, never wait for each other, and (heads only) never reorder a payment. On SQLite transactions begin
IMMEDIATE (``config.settings.base.tune_database``), so relays simply take turns.

Failures. A consumer that raises leaves the event unpublished, and so are the later events of its payment; the other
consumers of the event still run (and are skipped next time). The failure is recorded (``OutboxConsumption`` status
``failing``: attempts, redacted error) and the event is retried, by a later run (a run tries an event once), after
an exponential back-off (``OUTBOX_CONSUMER_BACKOFF_SECONDS`` * 2^(attempts-1), at most 15 minutes). After
``OUTBOX_CONSUMER_MAX_ATTEMPTS`` failures — or at once for a ``PermanentJobError`` — that consumer's handling is
dead-lettered
(``core.dead_letters.dead_letter_record``, task ``core.outbox_consumer_replay``: replaying it from the admin runs the
consumer again for that event), marked ``dead`` and the relay moves on. Nothing is dropped silently.

At least once. A crash before the batch commits rolls back the consumers' database effects with their
de-duplication rows; side effects outside the database (the Transaction Service notification) may then happen
again, which is why their receivers are idempotent on the event id.

Startup: importing this module registers the ``outbox_relay`` job (``run_job outbox_relay``), the Celery task
``core.outbox_relay`` (queue ``default``) and its every-minute beat schedule, and (through ``core.outbox_push``) the
push-delivery job, task and schedule. ``CoreConfig.ready`` imports it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from core.bulk import bulk_insert
from core.dead_letters import dead_letter_record
from core.errors import PermanentJobError
from core.jobs import register_job
from core.models import (
    OutboxConsumption,
    OutboxConsumptionStatus,
    OutboxEvent,
    OutboxFeedEntry,
)
from core.outbox import outbox_envelope
from core.outbox_push import coalesced_enqueue, kick_delay_seconds, push_deliveries_create, push_kick
from core.redaction import redact_text
from core.schedules import ScheduleSpec, register_schedule
from core.sql import AnyOf
from core.tasks import job

logger = logging.getLogger(__name__)

RELAY_TASK = "core.outbox_relay"
CONSUMER_REPLAY_TASK = "core.outbox_consumer_replay"
RELAY_TASK_MAX_SECONDS = 240  # the default queue's time limit is 300 s
MAX_CONSUMER_BACKOFF_SECONDS = 900
_KICK_KEY = "core:outbox-relay-kick"
# The pull feed's append lock (PostgreSQL advisory lock id).
_FEED_LOCK = int.from_bytes(hashlib.sha256(b"core.outbox.feed").digest()[:8], "big", signed=True)

Handler = Callable[[dict], None]
BatchHandler = Callable[[list[dict]], None]


# --- The consumer registry ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Consumer:
    name: str
    handler: Handler
    types: frozenset[str] | None  # None = every type
    batch_handler: BatchHandler | None = None

    def wants(self, event_type: str) -> bool:
        return self.types is None or event_type in self.types


_CONSUMERS: dict[str, Consumer] = {}


def register_consumer(name: str, handler: Handler, types: set[str] | frozenset[str] | None = None,
                      batch_handler: BatchHandler | None = None) -> Consumer:
    """Register ``handler(envelope)`` as in-process consumer ``name`` of the event types ``types`` (None = all).

    ``batch_handler(envelopes)``, optional, handles a list of envelopes at once with the same effect as ``handler``
    on each of them (set-based: the relay calls it once per batch, see the module docstring); it must raise rather
    than handle part of the list, and ``handler`` stays the path of a failed batch and of replays.

    Consumers run in registration order. ``name`` is the de-duplication key stored with each handled event: never
    rename a consumer in production (its events would be handled again). Registering another handler under a taken
    name is an error; registering the same one again is a no-op.
    """
    if not name or len(name) > 64:
        raise ValueError("a consumer name is 1-64 characters")
    existing = _CONSUMERS.get(name)
    consumer = Consumer(name=name, handler=handler, types=frozenset(types) if types is not None else None,
                        batch_handler=batch_handler)
    if existing is not None:
        if (existing.handler is not handler or existing.types != consumer.types
                or existing.batch_handler is not batch_handler):
            raise ValueError(f"consumer {name!r} is already registered by {existing.handler.__module__}")
        return existing
    _CONSUMERS[name] = consumer
    return consumer


def unregister_consumer(name: str) -> None:
    _CONSUMERS.pop(name, None)


def consumers_for(event_type: str) -> list[Consumer]:
    return [c for c in _CONSUMERS.values() if c.wants(event_type)]


def consumer_get(name: str) -> Consumer:
    try:
        return _CONSUMERS[name]
    except KeyError:
        raise KeyError(f"unknown outbox consumer {name!r}") from None


# --- The relay ----------------------------------------------------------------------------------------------------


@dataclass
class RelayStats:
    batches: int = 0
    selected: int = 0  # events taken (locked) by this run
    published: int = 0
    consumer_failures: int = 0  # failed consumer calls (the event waits for a retry)
    batch_fallbacks: int = 0  # batch handlers that raised (their events were handled one by one)
    dead_lettered: int = 0  # consumer handlings given up on (the event went on)
    push_deliveries: int = 0  # push deliveries created
    held: set = field(default_factory=set, repr=False)  # events that failed in this run: not retried in it

    def as_dict(self) -> dict:
        return {name: value for name, value in asdict(self).items() if name != "held"}


def consumer_max_attempts() -> int:
    return max(1, int(getattr(settings, "OUTBOX_CONSUMER_MAX_ATTEMPTS", 10)))


def consumer_backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failure of a consumer on one event."""
    base = float(getattr(settings, "OUTBOX_CONSUMER_BACKOFF_SECONDS", 30.0))
    return timedelta(seconds=min(MAX_CONSUMER_BACKOFF_SECONDS, base * 2 ** max(0, attempts - 1)))


def outbox_relay_run(*, batch_size: int | None = None, max_batches: int | None = None,
                     max_seconds: float | None = None) -> RelayStats:
    """Publish pending events (see the module docstring), batch after batch, until a batch publishes nothing.

    ``batch_size`` defaults to ``OUTBOX_BATCH_SIZE``; ``max_batches`` / ``max_seconds`` bound the run (the beat
    task uses a time budget under its queue's time limit). Safe to run concurrently with itself. Returns counts.
    """
    batch_size = batch_size or settings.OUTBOX_BATCH_SIZE
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    deadline = time.monotonic() + max_seconds if max_seconds is not None else None
    stats = RelayStats()
    while max_batches is None or stats.batches < max_batches:
        published = _relay_batch(batch_size, stats)
        if published == 0 or (deadline is not None and time.monotonic() >= deadline):
            break
    if stats.published or stats.consumer_failures or stats.dead_lettered:
        logger.info("outbox relay run", extra={"relay": stats.as_dict()})
    return stats


def _pending_heads(batch_size: int, now: datetime, held: set) -> list[OutboxEvent]:
    earlier_pending = OutboxEvent.objects.filter(
        aggregate_id=OuterRef("aggregate_id"), published_at__isnull=True, position__lt=OuterRef("position")
    )
    backing_off = OutboxConsumption.objects.filter(
        event_id=OuterRef("event_id"), status=OutboxConsumptionStatus.FAILING, next_attempt_at__gt=now
    )
    queryset = (
        OutboxEvent.objects.filter(published_at__isnull=True)
        .exclude(Exists(earlier_pending))
        .exclude(Exists(backing_off))
        # published_at is NULL in every row taken, so this is position order; it lets PostgreSQL walk
        # outbox_pending_idx (published_at, position) instead of the primary key past every published event.
        .order_by("published_at", "position")
    )
    if held:
        queryset = queryset.exclude(pk__in=held)
    if connection.features.has_select_for_update_skip_locked:
        queryset = queryset.select_for_update(skip_locked=True)
    return list(queryset[:batch_size])


def _relay_batch(batch_size: int, stats: RelayStats) -> int:
    now = timezone.now()
    with transaction.atomic():
        events = _pending_heads(batch_size, now, stats.held)
        stats.batches += 1
        if not events:
            return 0
        stats.selected += len(events)
        consumers = list(_CONSUMERS.values())
        consumed = [e.event_id for e in events if any(c.wants(e.type) for c in consumers)]
        states = {
            (row.event_id, row.consumer): row
            for row in OutboxConsumption.objects.filter(event_id__in=consumed)
        } if consumed else {}
        envelopes = {event.pk: outbox_envelope(event) for event in events}
        blocked: set[int] = set()  # events a consumer failed on (not dead-lettered): not published
        for consumer in consumers:
            todo = [event for event in events if consumer.wants(event.type) and not _handled(
                states.get((event.event_id, consumer.name)))]
            if not todo:
                continue
            if consumer.batch_handler is not None and _consume_batch(consumer, todo, envelopes, states, stats):
                continue
            for event in todo:
                if not _consume(consumer, event, envelopes[event.pk], states, now, stats):
                    blocked.add(event.pk)
        published = [event for event in events if event.pk not in blocked]
        stats.held.update(blocked)
        if published:
            # the batch's positions as one array (AnyOf): with a placeholder each, compiling and binding the
            # statement was ~12 % of a relay process's CPU
            OutboxEvent.objects.filter(AnyOf(F("position"), [e.pk for e in published])).update(published_at=now)
            created = push_deliveries_create(events=published, now=now)
            stats.push_deliveries += created
            if created:
                transaction.on_commit(push_kick)
            _feed_append(published, now)  # last: it holds the feed lock until commit
        stats.published += len(published)
    return len(published)


def _handled(state: OutboxConsumption | None) -> bool:
    return state is not None and state.status in (OutboxConsumptionStatus.DONE, OutboxConsumptionStatus.DEAD)


def _consume_batch(consumer: Consumer, events: list[OutboxEvent], envelopes: dict, states: dict,
                   stats: RelayStats) -> bool:
    """Run ``consumer``'s batch handler on ``events`` in one savepoint with all their ``done`` rows. False (nothing
    kept) when it raised: the caller then handles the events one by one."""
    try:
        with transaction.atomic():
            consumer.batch_handler([envelopes[event.pk] for event in events])
            _mark_done_many(consumer.name, events, states)
    except Exception as exc:
        stats.batch_fallbacks += 1
        logger.warning("outbox batch consumer failed; handling its events one by one",
                       extra={"consumer": consumer.name, "events": len(events),
                              "error": redact_text(f"{type(exc).__name__}: {exc}")[:500]}, exc_info=exc)
        return False
    return True


def _consume(consumer: Consumer, event: OutboxEvent, envelope: dict, states: dict, now: datetime,
             stats: RelayStats) -> bool:
    """Run ``consumer`` on ``event`` in its own savepoint. True when the event may be published (handled, or the
    handling was dead-lettered)."""
    state = states.get((event.event_id, consumer.name))
    try:
        with transaction.atomic():
            consumer.handler(envelope)
            _mark_done(consumer.name, event.event_id, state)
    except Exception as exc:
        stats.consumer_failures += 1
        if _record_failure(consumer.name, event, state, exc, now):
            stats.dead_lettered += 1
        else:
            return False
    return True


def _mark_done(consumer: str, event_id, state: OutboxConsumption | None) -> None:
    if state is None:
        OutboxConsumption.objects.create(consumer=consumer, event_id=event_id, status=OutboxConsumptionStatus.DONE)
    else:
        OutboxConsumption.objects.filter(pk=state.pk).update(
            status=OutboxConsumptionStatus.DONE, next_attempt_at=None, updated_at=timezone.now()
        )


def _mark_done_many(consumer: str, events: list[OutboxEvent], states: dict) -> None:
    """``_mark_done`` for many events: one INSERT of the new rows, one UPDATE of the failing ones."""
    new, failing = [], []
    for event in events:
        state = states.get((event.event_id, consumer))
        if state is None:
            new.append(OutboxConsumption(consumer=consumer, event_id=event.event_id,
                                         status=OutboxConsumptionStatus.DONE))
        else:
            failing.append(state.pk)
    if new:
        bulk_insert(OutboxConsumption, new)
    if failing:
        OutboxConsumption.objects.filter(pk__in=failing).update(
            status=OutboxConsumptionStatus.DONE, next_attempt_at=None, updated_at=timezone.now()
        )


def _record_failure(consumer: str, event: OutboxEvent, state: OutboxConsumption | None, exc: Exception,
                    now: datetime) -> bool:
    """Record a failed attempt. True when the handling was dead-lettered (the relay moves on)."""
    attempts = (state.attempts if state is not None else 0) + 1
    error = redact_text(f"{type(exc).__name__}: {exc}")[:2000]
    dead = isinstance(exc, PermanentJobError) or attempts >= consumer_max_attempts()
    values = {
        "attempts": attempts,
        "last_error": error,
        "status": OutboxConsumptionStatus.DEAD if dead else OutboxConsumptionStatus.FAILING,
        "next_attempt_at": None if dead else now + consumer_backoff(attempts),
    }
    OutboxConsumption.objects.update_or_create(consumer=consumer, event_id=event.event_id, defaults=values)
    extra = {"consumer": consumer, "event_id": str(event.event_id), "event_type": event.type,
             "aggregate_id": event.aggregate_id, "attempts": attempts}
    if dead:
        dead_letter_record(task_name=CONSUMER_REPLAY_TASK, task_id=str(event.event_id), queue="default", args=[],
                           kwargs={"consumer": consumer, "event_id": str(event.event_id)}, error=exc,
                           attempts=attempts)
        logger.error("outbox consumer gave up on an event; dead-lettered", extra=extra, exc_info=exc)
    else:
        logger.warning("outbox consumer failed; the event will be retried", extra=extra, exc_info=exc)
    return dead


def _feed_append(events: list[OutboxEvent], now: datetime) -> None:
    """Append to the pull feed under a lock held until commit, so feed positions become visible in order."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_FEED_LOCK])
    bulk_insert(OutboxFeedEntry,
                [OutboxFeedEntry(event=event, published_at=now) for event in sorted(events, key=lambda e: e.position)])


def outbox_consumer_replay(*, consumer: str, event_id: str) -> bool:
    """Run consumer ``consumer`` for event ``event_id`` again (the replay of a dead-lettered handling).

    Skips it (False) when the consumer has handled the event since; on success marks it ``done`` (True). A failure
    raises (the Celery job retries, then dead-letters it again). The event's publication is not affected.
    """
    handler = consumer_get(consumer)
    event = OutboxEvent.objects.get(event_id=event_id)
    with transaction.atomic():
        state = (OutboxConsumption.objects.select_for_update()
                 .filter(consumer=consumer, event_id=event.event_id).first())
        if state is not None and state.status == OutboxConsumptionStatus.DONE:
            return False
        handler.handler(outbox_envelope(event))
        _mark_done(consumer, event.event_id, state)
    logger.info("outbox consumer replayed", extra={"consumer": consumer, "event_id": str(event_id)})
    return True


# --- Kick after commit, job, task, schedule ---------------------------------------------------------------------


def outbox_relay_kick() -> bool:
    """Ask for a relay run soon (called after an outbox write commits). Coalesced; never raises."""
    return coalesced_enqueue(outbox_relay_task, key=_KICK_KEY, delay=kick_delay_seconds())


@job(name=RELAY_TASK, queue="default")
def outbox_relay_task() -> dict:
    """Beat (every minute) and after-commit kicks: one relay run within the queue's time limit."""
    return outbox_relay_run(max_seconds=RELAY_TASK_MAX_SECONDS).as_dict()


@job(name=CONSUMER_REPLAY_TASK, queue="default")
def outbox_consumer_replay_task(consumer: str, event_id: str) -> bool:
    """Replay of a dead-lettered consumer handling (``outbox_consumer_replay``)."""
    try:
        return outbox_consumer_replay(consumer=consumer, event_id=event_id)
    except (KeyError, OutboxEvent.DoesNotExist) as exc:
        raise PermanentJobError(f"cannot replay: {exc}") from exc


def _relay_arguments(parser) -> None:
    parser.add_argument("--batch-size", type=int, default=None, help="Events per batch (default OUTBOX_BATCH_SIZE).")
    parser.add_argument("--max-batches", type=int, default=None, help="Stop after this many batches.")


@register_job("outbox_relay", help="Publish pending outbox events to consumers, push subscriptions and the feed.",
              add_arguments=_relay_arguments)
def outbox_relay_job(*, as_of: date | None = None, batch_size: int | None = None,
                     max_batches: int | None = None) -> dict:
    """``as_of`` is accepted for the job interface and ignored: the relay publishes whatever is pending."""
    return outbox_relay_run(batch_size=batch_size, max_batches=max_batches).as_dict()


register_schedule(ScheduleSpec(name="outbox relay", task=RELAY_TASK, every_seconds=60))
