"""Push subscriptions (SPEC §4): events POSTed to configured URLs, HMAC-signed, retried with back-off, dead-lettered.

The relay creates one ``PushDelivery`` per (published event, active subscription that wants its type) in its own
transaction (``push_deliveries_create``). ``push_run`` (Celery task ``core.outbox_push``, every minute and kicked after
a relay commit that created deliveries; ``run_job outbox_push``) sends the due ones:

- body: the event envelope (``core.outbox.outbox_envelope``) as compact JSON with sorted keys;
- headers: ``X-Payments-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``,
  ``X-Payments-Event-Id`` (receivers de-duplicate on it: delivery is at least once), ``X-Payments-Event-Type``;
- timeouts ``OUTBOUND_CONNECT_TIMEOUT`` / ``OUTBOUND_READ_TIMEOUT``; redirects are not followed; any 2xx = delivered;
- a failure waits ``OUTBOX_PUSH_BACKOFF_SECONDS`` * 2^(attempts-1) (at most 6 h); after ``OUTBOX_PUSH_MAX_ATTEMPTS``
  attempts the delivery is ``dead`` and dead-lettered (task ``core.outbox_push_retry``: replaying it, or the admin's
  "retry" action, makes it pending again with a fresh budget).

Claiming: an attempt first moves ``next_attempt_at`` forward by a lease (a conditional update on a pending, due
row), so concurrent runs never send the same delivery at once and no lock is held during the HTTP call; a crash
mid-attempt leaves it to be sent again when the lease ends. A delivered delivery is never sent again.

Order: a delivery waits while an earlier event of the same payment is still pending for the same subscription, so a
subscriber sees each payment's events in order — unless one of them goes dead (it is then skipped, and visible).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from core.audit import audit_record
from core.dead_letters import dead_letter_record
from core.errors import NotFoundError, ValidationError
from core.jobs import register_job
from core.models import OutboxEvent, PushDelivery, PushDeliveryStatus, PushSubscription
from core.outbox import outbox_envelope
from core.redaction import redact_text
from core.schedules import ScheduleSpec, register_schedule
from core.signatures import hmac_signature, hmac_signature_verify
from core.tasks import job

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Payments-Signature"
EVENT_ID_HEADER = "X-Payments-Event-Id"
EVENT_TYPE_HEADER = "X-Payments-Event-Type"
PUSH_TASK = "core.outbox_push"
PUSH_RETRY_TASK = "core.outbox_push_retry"
PUSH_TASK_MAX_SECONDS = 240
MAX_PUSH_BACKOFF_SECONDS = 6 * 3600
MIN_SECRET_LENGTH = 16
_KICK_KEY = "core:outbox-push-kick"
_EVENT_TYPE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")


# --- Signing (core.signatures: the same scheme as the JPM webhook) -----------------------------------------------

push_signature = hmac_signature
push_signature_verify = hmac_signature_verify


def push_body(event: OutboxEvent) -> bytes:
    """The bytes POSTed (and signed) for ``event``."""
    return json.dumps(outbox_envelope(event), separators=(",", ":"), sort_keys=True).encode("utf-8")


# --- Subscriptions (admin) ---------------------------------------------------------------------------------------


def _clean_subscription(*, name: str, url: str, event_types, secret: str | None, secret_required: bool) -> dict:
    errors = {}
    name = (name or "").strip()
    if not name or len(name) > 100:
        errors["name"] = "A name of 1-100 characters is required."
    url = (url or "").strip()
    schemes = ["https"] if settings.ENVIRONMENT == "prod" else ["http", "https"]
    try:
        URLValidator(schemes=schemes)(url)
        if len(url) > 500:
            raise DjangoValidationError("too long")
    except DjangoValidationError:
        errors["url"] = f"A valid {' or '.join(schemes)} URL of at most 500 characters is required."
    if event_types in (None, ""):
        event_types = []
    if not isinstance(event_types, list) or not all(isinstance(t, str) and _EVENT_TYPE.match(t)
                                                    for t in event_types):
        errors["event_types"] = "A list of event type names (e.g. FLOAT_DEBIT_RETURNED); empty = every type."
    else:
        event_types = sorted(set(event_types))
    if secret is None or secret == "":
        if secret_required:
            errors["secret"] = f"A secret of at least {MIN_SECRET_LENGTH} characters is required."
        secret = None
    elif len(secret) < MIN_SECRET_LENGTH or len(secret) > 255:
        errors["secret"] = f"The secret must be {MIN_SECRET_LENGTH}-255 characters."
    if errors:
        raise ValidationError("The push subscription is invalid.", code="invalid_push_subscription", details=errors)
    return {"name": name, "url": url, "event_types": event_types, "secret": secret}


def push_subscription_validate(*, name: str, url: str, event_types, secret: str | None,
                               secret_required: bool) -> dict:
    """Check a subscription's fields (also used by the admin form). 422 ``invalid_push_subscription`` with a
    message per field. The URL must be http(s) (https in prod); the secret 16-255 characters."""
    return _clean_subscription(name=name, url=url, event_types=event_types, secret=secret,
                               secret_required=secret_required)


def push_subscription_create(
    *, name: str, url: str, secret: str, event_types: list[str] | None = None, active: bool = True, actor: str,
    reason: str = "Push subscription created.",
) -> PushSubscription:
    """Create a subscription (audited; the secret is never written to the audit entry). It receives events
    published from now on."""
    clean = _clean_subscription(name=name, url=url, event_types=event_types, secret=secret, secret_required=True)
    with transaction.atomic():
        if PushSubscription.objects.filter(name=clean["name"]).exists():
            raise ValidationError("The push subscription is invalid.", code="invalid_push_subscription",
                                  details={"name": "A subscription with this name exists."})
        subscription = PushSubscription.objects.create(active=bool(active), **clean)
        audit_record(actor=actor, action="push_subscription_create", target_type="push_subscription",
                     target_id=str(subscription.pk), reason=reason,
                     changes={"name": subscription.name, "event_types": subscription.event_types,
                              "active": subscription.active, "url_host": urlsplit(subscription.url).hostname})
    return subscription


def push_subscription_update(*, subscription_id: int, actor: str, name: str, url: str, event_types: list[str] | None,
                             active: bool, secret: str | None = None,
                             reason: str = "Push subscription changed.") -> PushSubscription:
    """Change a subscription; ``secret`` None or empty keeps the current one. Audited (never the secret itself:
    ``signing_key_replaced`` says whether it changed). Deactivating pauses it: no new deliveries, pending ones wait."""
    clean = _clean_subscription(name=name, url=url, event_types=event_types, secret=secret, secret_required=False)
    with transaction.atomic():
        try:
            subscription = PushSubscription.objects.select_for_update().get(pk=subscription_id)
        except PushSubscription.DoesNotExist:
            raise NotFoundError("No such push subscription.", code="push_subscription_not_found") from None
        if PushSubscription.objects.filter(name=clean["name"]).exclude(pk=subscription.pk).exists():
            raise ValidationError("The push subscription is invalid.", code="invalid_push_subscription",
                                  details={"name": "A subscription with this name exists."})
        fields = ["name", "url", "event_types", "active", "updated_at"]
        subscription.name, subscription.url = clean["name"], clean["url"]
        subscription.event_types, subscription.active = clean["event_types"], bool(active)
        if clean["secret"] is not None:
            subscription.secret = clean["secret"]
            fields.append("secret")
        subscription.save(update_fields=fields)
        audit_record(actor=actor, action="push_subscription_update", target_type="push_subscription",
                     target_id=str(subscription.pk), reason=reason,
                     changes={"name": subscription.name, "event_types": subscription.event_types,
                              "active": subscription.active, "url_host": urlsplit(subscription.url).hostname,
                              "signing_key_replaced": clean["secret"] is not None})
    return subscription


# --- Deliveries ---------------------------------------------------------------------------------------------------


@dataclass
class PushStats:
    attempted: int = 0
    delivered: int = 0
    failed: int = 0  # attempts that failed and will be retried
    dead: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def push_max_attempts() -> int:
    return max(1, int(settings.OUTBOX_PUSH_MAX_ATTEMPTS))


def push_backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: ``OUTBOX_PUSH_BACKOFF_SECONDS`` * 2^(attempts-1)."""
    seconds = float(settings.OUTBOX_PUSH_BACKOFF_SECONDS) * 2 ** max(0, attempts - 1)
    return timedelta(seconds=min(MAX_PUSH_BACKOFF_SECONDS, seconds))


def _lease() -> timedelta:
    return timedelta(seconds=settings.OUTBOUND_CONNECT_TIMEOUT + settings.OUTBOUND_READ_TIMEOUT + 30)


def push_deliveries_create(*, events: Iterable[OutboxEvent], now: datetime | None = None) -> int:
    """Create the deliveries of ``events`` for the active subscriptions that want them (inside the relay's
    transaction). Idempotent: an existing (subscription, event) delivery is left alone. Returns how many were due.
    Secrets are not read (a key problem must not stop the relay)."""
    now = now or timezone.now()
    subscriptions = list(PushSubscription.objects.filter(active=True).values_list("pk", "event_types"))
    rows = [
        PushDelivery(subscription_id=pk, event=event, next_attempt_at=now)
        for event in events
        for pk, types in subscriptions
        if not types or event.type in types
    ]
    if rows:
        PushDelivery.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def _due(batch_size: int, now: datetime) -> list[int]:
    earlier_pending = PushDelivery.objects.filter(
        subscription_id=OuterRef("subscription_id"),
        event__aggregate_id=OuterRef("event__aggregate_id"),
        event__position__lt=OuterRef("event__position"),
        status=PushDeliveryStatus.PENDING,
    )
    return list(
        PushDelivery.objects.filter(status=PushDeliveryStatus.PENDING, next_attempt_at__lte=now,
                                    subscription__active=True)
        .exclude(Exists(earlier_pending))
        .order_by("event__position", "pk")
        .values_list("pk", flat=True)[:batch_size]
    )


def push_run(*, batch_size: int = 100, max_batches: int | None = None, max_seconds: float | None = None) -> PushStats:
    """Attempt every due delivery (see the module docstring), batch after batch, until none is due."""
    deadline = time.monotonic() + max_seconds if max_seconds is not None else None
    stats = PushStats()
    batches = 0
    while max_batches is None or batches < max_batches:
        batches += 1
        due = _due(batch_size, timezone.now())
        outcomes = [push_attempt(delivery_id=pk) for pk in due]
        for outcome in filter(None, outcomes):
            stats.attempted += 1
            if outcome == PushDeliveryStatus.DELIVERED:
                stats.delivered += 1
            elif outcome == PushDeliveryStatus.DEAD:
                stats.dead += 1
            else:
                stats.failed += 1
        if not any(outcomes) or (deadline is not None and time.monotonic() >= deadline):
            break
    if stats.attempted:
        logger.info("push deliveries run", extra={"push": stats.as_dict()})
    return stats


def _safe_error(text: str, url: str) -> str:
    parts = urlsplit(url)
    for piece in (url, f"{parts.path}?{parts.query}" if parts.query else "", parts.path if len(parts.path) > 1 else ""):
        if piece:
            text = text.replace(piece, "<url>")
    return redact_text(text)[:2000]


def push_attempt(*, delivery_id: int) -> str | None:
    """One attempt of one delivery, if it is pending and due: claim it, POST, record the outcome.

    Returns the delivery's status after the attempt (``delivered``, ``pending`` = will retry, ``dead``), or None
    when it was not attempted (not due, not pending, or another run holds it).
    """
    now = timezone.now()
    # Every condition on the delivery's own row, no join: Django turns a filter through a join into
    # "id IN (SELECT ...)", whose rows PostgreSQL does not re-check after waiting for a concurrent claim's update,
    # so two runs could both claim (and send) the same delivery.
    claimed = PushDelivery.objects.filter(
        pk=delivery_id, status=PushDeliveryStatus.PENDING, next_attempt_at__lte=now,
        subscription_id__in=PushSubscription.objects.filter(active=True).values("pk"),
    ).update(next_attempt_at=now + _lease(), updated_at=now)
    if not claimed:
        return None
    delivery = PushDelivery.objects.select_related("subscription", "event").get(pk=delivery_id)
    url = delivery.subscription.url
    status_code, error = None, ""
    try:
        secret = delivery.subscription.secret
        body = push_body(delivery.event)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "PaymentsService-Push/1",
            EVENT_ID_HEADER: str(delivery.event.event_id),
            EVENT_TYPE_HEADER: delivery.event.type,
            SIGNATURE_HEADER: push_signature(secret=secret, body=body, timestamp=int(time.time())),
        }
        response = requests.post(url, data=body, headers=headers, allow_redirects=False,
                                 timeout=(settings.OUTBOUND_CONNECT_TIMEOUT, settings.OUTBOUND_READ_TIMEOUT))
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except Exception as exc:  # network errors, an undecryptable secret: a failed attempt, never a crash of the run
        error = _safe_error(f"{type(exc).__name__}: {exc}", url)
    return _record_attempt(delivery_id, status_code=status_code, error=error)


def _record_attempt(delivery_id: int, *, status_code: int | None, error: str) -> str:
    now = timezone.now()
    with transaction.atomic():
        delivery = PushDelivery.objects.select_for_update().get(pk=delivery_id)
        if delivery.status != PushDeliveryStatus.PENDING:
            return delivery.status  # another attempt (lease expired) finished first
        delivery.attempts += 1
        delivery.last_status_code = status_code
        delivery.last_error = error
        extra = {"push_delivery_id": delivery.pk, "subscription_id": delivery.subscription_id,
                 "event_id": str(delivery.event_id), "attempts": delivery.attempts, "status_code": status_code}
        if not error:
            delivery.status, delivery.delivered_at = PushDeliveryStatus.DELIVERED, now
            logger.info("push delivered", extra=extra)
        elif delivery.attempts >= push_max_attempts():
            delivery.status, delivery.next_attempt_at = PushDeliveryStatus.DEAD, now
            dead_letter_record(task_name=PUSH_RETRY_TASK, task_id=str(delivery.pk), queue="default", args=[],
                               kwargs={"delivery_id": delivery.pk}, error=RuntimeError(error),
                               attempts=delivery.attempts)
            logger.error("push delivery dead after its attempts", extra={**extra, "error": error})
        else:
            delivery.next_attempt_at = now + push_backoff(delivery.attempts)
            logger.warning("push delivery failed; will retry", extra={**extra, "error": error})
        delivery.save(update_fields=["attempts", "last_status_code", "last_error", "status", "delivered_at",
                                     "next_attempt_at", "updated_at"])
    return delivery.status


def push_delivery_retry(*, delivery_id: int, actor: str, reason: str = "Dead push delivery retried.") -> bool:
    """Make a dead delivery pending again with a fresh attempt budget, due now (audited). False (nothing changed)
    when it is not dead — a delivered one is never sent again."""
    with transaction.atomic():
        try:
            delivery = PushDelivery.objects.select_for_update().get(pk=delivery_id)
        except PushDelivery.DoesNotExist:
            raise NotFoundError("No such push delivery.", code="push_delivery_not_found") from None
        if delivery.status != PushDeliveryStatus.DEAD:
            return False
        PushDelivery.objects.filter(pk=delivery.pk).update(
            status=PushDeliveryStatus.PENDING, attempts=0, next_attempt_at=timezone.now(), updated_at=timezone.now()
        )
        audit_record(actor=actor, action="push_delivery_retry", target_type="push_delivery",
                     target_id=str(delivery.pk), reason=reason, changes={"status": PushDeliveryStatus.PENDING})
        transaction.on_commit(push_kick)
    logger.info("push delivery retried", extra={"push_delivery_id": delivery_id, "actor": actor})
    return True


# --- Kicks, job, tasks, schedule --------------------------------------------------------------------------------


_BROKER_DOWN_KEY = "core:kicks-paused:broker-down"


def coalesced_enqueue(task, *, key: str, delay: float) -> bool:
    """Send ``task`` to run in ``delay`` seconds unless one was sent less than ``delay`` seconds ago (cache flag).

    Trailing edge: whatever commits before the flag expires is still there when the task runs, so coalescing
    strands nothing. Never raises: a broker failure is logged (the beat schedule is the safety net), and this
    process's kicks are then paused for ``OUTBOX_KICK_PAUSE_SECONDS`` (30) so that an outage costs one write the
    broker's timeout, not every write.
    """
    try:
        if cache.get(_BROKER_DOWN_KEY) or not cache.add(key, 1, timeout=max(1, int(delay + 0.999))):
            return False
        task.apply_async(countdown=delay, retry=False)
        return True
    except Exception:
        logger.warning("could not enqueue %s; the beat schedule will run it", task.name, exc_info=True)
        try:
            pause = float(getattr(settings, "OUTBOX_KICK_PAUSE_SECONDS", 30.0))
            if pause > 0:
                cache.set(_BROKER_DOWN_KEY, 1, timeout=pause)
        except Exception:  # the cache is down too: nothing more to do
            logger.debug("could not pause kicks")
        return False


def kick_delay_seconds() -> float:
    return float(getattr(settings, "OUTBOX_KICK_SECONDS", 1.0))


def push_kick() -> bool:
    """Ask for a push run soon (after a relay commit that created deliveries). Coalesced; never raises."""
    return coalesced_enqueue(outbox_push_task, key=_KICK_KEY, delay=kick_delay_seconds())


@job(name=PUSH_TASK, queue="default")
def outbox_push_task() -> dict:
    """Beat (every minute) and kicks: send the due push deliveries within the queue's time limit."""
    return push_run(max_seconds=PUSH_TASK_MAX_SECONDS).as_dict()


@job(name=PUSH_RETRY_TASK, queue="default")
def outbox_push_retry_task(delivery_id: int) -> bool:
    """The replay of a dead-lettered delivery: the same as the admin's "retry" action."""
    return push_delivery_retry(delivery_id=delivery_id, actor="dead-letter replay",
                               reason="Dead-lettered push delivery replayed.")


def _push_arguments(parser) -> None:
    parser.add_argument("--max-batches", type=int, default=None, help="Stop after this many batches of 100.")


@register_job("outbox_push", help="Send the due push-subscription deliveries of published events.",
              add_arguments=_push_arguments)
def outbox_push_job(*, as_of: date | None = None, max_batches: int | None = None) -> dict:
    """``as_of`` is accepted for the job interface and ignored."""
    return push_run(max_batches=max_batches).as_dict()


register_schedule(ScheduleSpec(name="outbox push deliveries", task=PUSH_TASK, every_seconds=60))
