"""Writing events to the transactional outbox (SPEC §4). Delivery is the relay's job.

``outbox_record`` must be called inside the transaction that makes the change the event describes: both commit
or neither does. Callers serialise per aggregate (the payment row is locked by its conditional update), so the
per-aggregate ``sequence`` is the next number; the unique constraint is the backstop.
"""

import uuid
from datetime import datetime

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from core.models import OutboxEvent

SOURCE = "PaymentService"


def outbox_record(*, type: str, subject: str, aggregate_id: str, data: dict,
                  occurred_at: datetime | None = None) -> OutboxEvent:
    """Append one event for ``aggregate_id``. Requires an open transaction (raises otherwise)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("outbox_record must run inside the transaction of the change it describes")
    last = OutboxEvent.objects.filter(aggregate_id=aggregate_id).aggregate(m=Max("sequence"))["m"] or 0
    return OutboxEvent.objects.create(
        event_id=uuid.uuid4(), type=type, source=SOURCE, subject=subject, aggregate_id=str(aggregate_id),
        sequence=last + 1, data=data, occurred_at=occurred_at or timezone.now(),
    )


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
