"""Back-office actions on core records (issue 8): replay a dead letter, re-deliver an event — each with a reason.

Each action writes exactly one ``AuditEntry`` (actor = the staff username, the reason) in the same transaction as its
change, and sends its Celery work only after that transaction commits (nothing is sent for a refused or rolled-back
action). Nothing here makes an HTTP call: the consumers and push deliveries run later, in their own jobs.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from core.audit import audit_record
from core.dead_letters import dead_letter_replay
from core.errors import NotFoundError, ValidationError
from core.models import (
    DeadLetter,
    OutboxConsumption,
    OutboxConsumptionStatus,
    OutboxEvent,
    PushDelivery,
    PushDeliveryStatus,
    PushSubscription,
)

logger = logging.getLogger(__name__)

REASON_MAX_LENGTH = 2000
ACTION_DEAD_LETTER_REPLAY = "dead_letter.replay"
ACTION_EVENT_REDELIVER = "event.redeliver"


def clean_reason(reason: object) -> str:
    """A non-blank reason of at most 2,000 characters (422 ``reason_required`` / ``reason_too_long``)."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationError("A reason is required.", code="reason_required", details={"field": "reason"})
    reason = reason.strip()
    if len(reason) > REASON_MAX_LENGTH:
        raise ValidationError(f"The reason is longer than {REASON_MAX_LENGTH} characters.", code="reason_too_long",
                              details={"field": "reason", "max_length": REASON_MAX_LENGTH})
    return reason


def _clean_actor(actor: object) -> str:
    if not isinstance(actor, str) or not actor.strip():
        raise ValidationError("An actor is required.", code="actor_required")
    return actor.strip()[:150]


# --- Dead letters ---------------------------------------------------------------------------------------------------


def dead_letter_replay_with_reason(*, dead_letter_id: int, actor: str, reason: str) -> DeadLetter:
    """Replay dead letter ``dead_letter_id`` (``core.dead_letters.dead_letter_replay``: the job is sent again to its
    queue with a fresh attempt budget, after commit) and audit it (action ``dead_letter.replay``), in one transaction.

    Rules: ``reason`` required (422 ``reason_required``), 404 ``dead_letter_not_found``. A letter may be replayed
    again (jobs are idempotent); every replay is counted and audited. Returns the letter as updated.
    """
    reason = clean_reason(reason)
    actor = _clean_actor(actor)
    with transaction.atomic():
        letter = DeadLetter.objects.select_for_update().filter(pk=dead_letter_id).first()
        if letter is None:
            raise NotFoundError("No such dead letter.", code="dead_letter_not_found")
        dead_letter_replay(dead_letter=letter, actor=actor)
        letter.refresh_from_db()
        audit_record(actor=actor, action=ACTION_DEAD_LETTER_REPLAY, target_type="dead_letter", target_id=letter.pk,
                     reason=reason, changes={"task_name": letter.task_name, "queue": letter.queue,
                                             "replay_count": letter.replay_count})
    return letter


# --- Event re-delivery ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsumerTarget:
    """An in-process consumer registered for the event's type, and what it did with the event so far."""

    name: str
    status: str | None  # OutboxConsumptionStatus value, None = never handled
    last_error: str

    @property
    def handled(self) -> bool:
        return self.status == OutboxConsumptionStatus.DONE


@dataclass(frozen=True)
class SubscriptionTarget:
    """An active push subscription that wants the event's type, and its delivery of the event (if any)."""

    subscription_id: int
    name: str
    delivery_status: str | None  # PushDeliveryStatus value, None = no delivery yet
    attempts: int


@dataclass(frozen=True)
class RedeliveryTargets:
    consumers: list[ConsumerTarget]
    subscriptions: list[SubscriptionTarget]


@dataclass
class EventRedelivery:
    """What ``event_redeliver`` did: consumers queued for a replay, subscriptions with a delivery due now."""

    event: OutboxEvent
    consumers: list[str] = field(default_factory=list)
    subscriptions: list[int] = field(default_factory=list)


def event_redelivery_targets(*, event: OutboxEvent) -> RedeliveryTargets:
    """Where ``event`` can be delivered again: the consumers registered for its type (with their handling state)
    and the active push subscriptions that want its type (with their delivery state)."""
    from core.outbox_relay import consumers_for

    states = {row.consumer: row for row in OutboxConsumption.objects.filter(event_id=event.event_id)}
    consumers = [
        ConsumerTarget(name=c.name, status=states[c.name].status if c.name in states else None,
                       last_error=states[c.name].last_error if c.name in states else "")
        for c in consumers_for(event.type)
    ]
    deliveries = {d.subscription_id: d for d in PushDelivery.objects.filter(event=event)}
    subscriptions = [
        SubscriptionTarget(subscription_id=s.pk, name=s.name,
                           delivery_status=deliveries[s.pk].status if s.pk in deliveries else None,
                           attempts=deliveries[s.pk].attempts if s.pk in deliveries else 0)
        for s in PushSubscription.objects.filter(active=True).order_by("name")
        if s.wants(event.type)
    ]
    return RedeliveryTargets(consumers=consumers, subscriptions=subscriptions)


def _event_user_id(event: OutboxEvent) -> str:
    user_id = event.data.get("user_id") if isinstance(event.data, dict) else None
    return str(user_id)[:64] if user_id else ""


def event_redeliver(
    *, event_id: uuid.UUID | str, consumers: Sequence[str] = (), subscription_ids: Sequence[int] = (), actor: str,
    reason: str,
) -> EventRedelivery:
    """Deliver event ``event_id`` again to the chosen in-process consumers and/or push subscriptions (audited).

    Consumers: a ``core.outbox_consumer_replay`` job is sent per consumer after commit (it runs the consumer for the
    event and marks it done; ``core.outbox_relay.outbox_consumer_replay``). Only a consumer registered for the
    event's type that has not handled it yet (no record, ``failing`` or ``dead``) can be chosen: a ``done`` record
    is the consumer's de-duplication and a replay would skip it (422 ``event_already_handled``).
    Subscriptions: only active ones that want the type (422 ``invalid_subscription``). Their delivery of the event
    is created, or made pending again with a fresh attempt budget and due now, whatever its state (a subscriber that
    lost a delivered event asks for it again; receivers de-duplicate on the event id); a push run is requested
    after commit.
    Rules: ``reason`` required (422 ``reason_required``); at least one target (422 ``nothing_to_redeliver``);
    unknown consumer 422 ``invalid_consumer``; 404 ``event_not_found``. Everything is checked before anything is
    written: a refused call changes nothing. One ``AuditEntry`` (action ``event.redeliver``) in the same transaction.
    """
    from core.outbox_push import push_kick
    from core.outbox_relay import consumers_for, outbox_consumer_replay_task

    reason = clean_reason(reason)
    actor = _clean_actor(actor)
    consumer_names = list(dict.fromkeys(str(name) for name in consumers))
    try:
        wanted_subscriptions = list(dict.fromkeys(int(pk) for pk in subscription_ids))
    except (TypeError, ValueError):
        raise ValidationError("Unknown push subscription.", code="invalid_subscription",
                              details={"field": "targets"}) from None
    if not consumer_names and not wanted_subscriptions:
        raise ValidationError("Choose at least one consumer or subscription.", code="nothing_to_redeliver",
                              details={"field": "targets"})
    try:
        event = OutboxEvent.objects.get(event_id=uuid.UUID(str(event_id)))
    except (OutboxEvent.DoesNotExist, ValueError):
        raise NotFoundError("No such event.", code="event_not_found") from None

    registered = {c.name for c in consumers_for(event.type)}
    unknown = [name for name in consumer_names if name not in registered]
    if unknown:
        raise ValidationError(f"No consumer {', '.join(unknown)} handles {event.type} events.",
                              code="invalid_consumer", details={"field": "targets", "consumers": unknown})

    with transaction.atomic():
        handled = sorted(OutboxConsumption.objects.select_for_update().filter(
            event_id=event.event_id, consumer__in=consumer_names, status=OutboxConsumptionStatus.DONE,
        ).values_list("consumer", flat=True))
        if handled:
            raise ValidationError(
                f"Already handled by {', '.join(handled)}: its de-duplication record would skip a replay.",
                code="event_already_handled", details={"field": "targets", "consumers": handled})
        subscriptions = {s.pk: s for s in PushSubscription.objects.filter(pk__in=wanted_subscriptions, active=True)}
        refused = [pk for pk in wanted_subscriptions
                   if pk not in subscriptions or not subscriptions[pk].wants(event.type)]
        if refused:
            raise ValidationError("A chosen push subscription is inactive, unknown or does not take this event type.",
                                  code="invalid_subscription", details={"field": "targets", "subscriptions": refused})

        now = timezone.now()
        previous: dict[str, str | None] = {}
        for pk in wanted_subscriptions:
            delivery = PushDelivery.objects.select_for_update().filter(subscription_id=pk, event=event).first()
            previous[subscriptions[pk].name] = delivery.status if delivery else None
            if delivery is None:
                PushDelivery.objects.create(subscription_id=pk, event=event, next_attempt_at=now)
            else:
                PushDelivery.objects.filter(pk=delivery.pk).update(
                    status=PushDeliveryStatus.PENDING, attempts=0, next_attempt_at=now, delivered_at=None,
                    last_status_code=None, last_error="", updated_at=now,
                )
        audit_record(
            actor=actor, action=ACTION_EVENT_REDELIVER, target_type="outbox_event", target_id=str(event.event_id),
            reason=reason, user_id=_event_user_id(event),
            changes={"event_type": event.type, "consumers": consumer_names,
                     "subscriptions": [{"name": name, "previous_status": status} for name, status in previous.items()]},
        )
        for name in consumer_names:
            transaction.on_commit(lambda name=name: outbox_consumer_replay_task.apply_async(
                kwargs={"consumer": name, "event_id": str(event.event_id)}))
        if wanted_subscriptions:
            transaction.on_commit(push_kick)
    logger.info("event re-delivered", extra={"event_id": str(event.event_id), "consumers": consumer_names,
                                             "subscription_ids": wanted_subscriptions, "actor": actor})
    return EventRedelivery(event=event, consumers=consumer_names, subscriptions=wanted_subscriptions)
