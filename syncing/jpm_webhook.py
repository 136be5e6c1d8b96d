"""JPM webhook intake and processing (SPEC §7.1, §10; seed 004 "JPM Webhooks").

Intake (``POST /webhooks/jpm``, ``syncing.jpm_webhook_views``): the view refuses oversized, throttled and
unauthenticated requests (``jpm_webhook_authenticate``) before anything is parsed; ``jpm_webhook_receive`` parses
the message (1 to 50 callbacks of known statuses), stores the raw body once (``JpmWebhookMessage``, unique on the
SHA-256 of the raw bytes) and enqueues ``syncing.process_jpm_webhook`` after commit. No processor call and no
payment lookup happen in the request.

Processing (``jpm_webhook_process``): the stored body is parsed again, the callbacks are sorted (createDateTime,
then JPM's status order) and applied payment by payment — each payment's callbacks in one transaction — through
the shared JPM mapping (``payments.jpm_status``) and the status machine. A callback whose endToEndId matches no
JPM payment (neither as ``confirmation_id`` nor, for a 32-hex reference, as our payment id) is recorded in
``JpmUnknownCallback`` (``times_seen`` grows on repeats) and reported in the log; it never fails the message.

When a message is queued: on its first delivery; on a repeat delivery only while no job has started on it
(``status == received`` and ``attempts == 0``); and by the sweeper when it is still ``received`` and either never
started and older than ``JPM_WEBHOOK_SWEEP_MINUTES`` (the enqueue after commit was lost) or started but silent for
longer than a whole attempt plus the longest back-off (``STARTED_STALE_SECONDS``: its Celery message was lost, e.g.
a broker that forgot it). A job that is merely between retries is never doubled.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from config.queues import QUEUES
from core.errors import AuthenticationError, BadRequest, PermanentJobError
from core.jobs import job_clock
from core.redaction import redact_text
from core.signatures import hmac_signature_verify
from core.tasks import MAX_BACKOFF_SECONDS
from integrations.errors import ProcessorProtocolError
from integrations.jpm.adapter import JpmCallback, parse_callback_message
from payments.jpm_status import JPM_STATUS_RANK, jpm_return_info, jpm_steps, status_steps_apply
from payments.models import Payment, Provider, Source
from syncing.models import JpmUnknownCallback, JpmWebhookMessage, WebhookMessageStatus

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-JPM-Signature"
ACTOR = "jpm_webhook"
CHUNK_SIZE = 200
# A started message silent for longer than one attempt's time limit plus the longest retry back-off has lost its
# job (jpm-webhooks: 540 s limit; core.tasks.MAX_BACKOFF_SECONDS 300 s), with a minute of slack.
STARTED_STALE_SECONDS = QUEUES["jpm-webhooks"].time_limit + MAX_BACKOFF_SECONDS + 60
_REFERENCE = re.compile(r"[0-9a-f]{32}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_OUTCOMES = ("applied", "duplicate", "stale", "unknown")


class WebhookAuthenticationError(AuthenticationError):
    """401: the caller is not JPM. ``reason`` is for the audit line only (never in the answer)."""

    def __init__(self, message: str, *, code: str, reason: str):
        super().__init__(message, code=code)
        self.reason = reason


class InvalidCallbackMessage(BadRequest):
    """400: an authenticated body that is not a JPM callback message (SPEC §7.1)."""

    code = "invalid_callback_message"
    default_message = "The body is not a valid JPM callback message."


@dataclass(frozen=True)
class WebhookReceipt:
    message_id: int
    callbacks: int
    duplicate: bool
    enqueued: bool


@dataclass
class ProcessStats:
    """One processing of a message: a count per callback outcome (``applied``: something changed; ``duplicate``:
    already applied; ``stale``: the payment is past it; ``unknown``: no such JPM payment, recorded)."""

    message_id: int
    callbacks: int = 0
    payments: int = 0
    applied: int = 0
    duplicate: int = 0
    stale: int = 0
    unknown: int = 0
    skipped: bool = False  # the message was processed already: nothing done

    def as_dict(self) -> dict:
        return asdict(self)

    def outcome(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _OUTCOMES}


@dataclass
class RunStats:
    """``run_job jpm_webhooks``: every ``received`` message processed now."""

    examined: int = 0
    processed: int = 0
    skipped: int = 0
    failed: int = 0
    outcome: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SweepStats:
    examined: int = 0
    enqueued: int = 0
    enqueue_failed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


# --- intake -------------------------------------------------------------------------------------------------------


def jpm_webhook_authenticate(*, headers: Mapping[str, str], body: bytes, now: float | None = None) -> str:
    """Who sent this (SPEC §10): ``"mtls"`` when the trusted mTLS header is configured
    (``JPM_WEBHOOK_MTLS_HEADER``) and carries ``JPM_WEBHOOK_MTLS_VALUE``; ``"signature"`` when ``X-JPM-Signature``
    verifies with ``JPM_WEBHOOK_SECRET`` within ``JPM_WEBHOOK_TOLERANCE_SECONDS`` (either direction). Anything
    else raises ``WebhookAuthenticationError``: ``not_authenticated`` (no credentials, or nothing configured to
    check them against), ``invalid_signature``, ``invalid_client_certificate``. No side effects."""
    mtls_header = settings.JPM_WEBHOOK_MTLS_HEADER
    mtls_value = settings.JPM_WEBHOOK_MTLS_VALUE
    mtls_refused = False
    if mtls_header and mtls_value and mtls_header in headers:
        if hmac.compare_digest(str(headers[mtls_header]).encode(), mtls_value.encode()):
            return "mtls"
        mtls_refused = True
    signature = headers.get(SIGNATURE_HEADER)
    if signature:
        if not settings.JPM_WEBHOOK_SECRET:
            raise WebhookAuthenticationError("The webhook signature cannot be verified.", code="invalid_signature",
                                             reason="secret_not_configured")
        if hmac_signature_verify(secret=settings.JPM_WEBHOOK_SECRET, header=signature, body=body, now=now,
                                 tolerance_seconds=settings.JPM_WEBHOOK_TOLERANCE_SECONDS):
            return "signature"
        raise WebhookAuthenticationError("The webhook signature is invalid or expired.", code="invalid_signature",
                                         reason="signature_invalid")
    if mtls_refused:
        raise WebhookAuthenticationError("The client certificate was not verified.",
                                         code="invalid_client_certificate", reason="mtls_invalid")
    raise WebhookAuthenticationError("Authentication credentials were missing or invalid.",
                                     code="not_authenticated", reason="credentials_missing")


def jpm_webhook_receive(*, body: bytes, authenticated_by: str) -> WebhookReceipt:
    """Store an authenticated JPM message once and queue its processing (SPEC §7.1).

    Raises ``InvalidCallbackMessage`` (nothing stored, nothing queued) when ``body`` is not a message of 1 to 50
    callbacks with known statuses. Otherwise, in one transaction: the message row (new), or ``deliveries + 1`` and
    ``last_delivered_at`` on the existing row with the same SHA-256 (a repeat; concurrent repeats meet on the
    unique constraint, never an IntegrityError). After commit, ``syncing.process_jpm_webhook`` is enqueued for a
    new message, and for a repeat only while no job has started on it; a broker failure is logged, not raised
    (the sweeper queues it later). Idempotent per body.
    """
    try:
        callbacks = parse_callback_message(body)
        text = body.decode("utf-8")
    except (ProcessorProtocolError, UnicodeDecodeError) as exc:
        reason = str(exc) if isinstance(exc, ProcessorProtocolError) else "the body is not UTF-8"
        raise InvalidCallbackMessage(details={"reason": reason}) from exc
    content_hash = hashlib.sha256(body).hexdigest()
    now = timezone.now()
    with transaction.atomic():
        message, created = JpmWebhookMessage.objects.get_or_create(
            content_hash=content_hash,
            defaults={"body": text, "callbacks": len(callbacks), "authenticated_by": authenticated_by},
        )
        if not created:
            JpmWebhookMessage.objects.filter(pk=message.pk).update(deliveries=F("deliveries") + 1,
                                                                   last_delivered_at=now)
            message = JpmWebhookMessage.objects.only("id", "status", "attempts").get(pk=message.pk)
        enqueue = message.status == WebhookMessageStatus.RECEIVED and message.attempts == 0
        if enqueue:
            transaction.on_commit(partial(_enqueue, message.pk))
    logger.info("jpm webhook message received",
                extra={"message_id": message.pk, "callbacks": len(callbacks), "duplicate": not created,
                       "enqueued": enqueue, "authenticated_by": authenticated_by})
    return WebhookReceipt(message_id=message.pk, callbacks=len(callbacks), duplicate=not created, enqueued=enqueue)


def _enqueue(message_id: int) -> bool:
    """Send the processing job. Never raises: the message is stored and the sweeper queues it again."""
    from syncing.jpm_webhook_jobs import process_jpm_webhook_task

    try:
        process_jpm_webhook_task.apply_async(args=[message_id], retry=False)
        return True
    except Exception as exc:  # any broker failure; the stored message is the record
        logger.error("could not enqueue jpm webhook message; the sweeper will",
                     extra={"message_id": message_id, "error": type(exc).__name__})
        return False


# --- processing ---------------------------------------------------------------------------------------------------


def jpm_webhook_process(*, message_id: int) -> ProcessStats:
    """Apply every callback of a stored message (see the module) and mark it ``processed`` with its outcome counts.

    Counts the start in ``attempts`` (a message already ``processed`` is skipped: a redelivered or duplicate job).
    Each payment's callbacks are applied in one transaction, sorted by createDateTime then JPM's status order;
    stale, duplicate and out-of-order callbacks change nothing (status machine). A database error propagates (the
    task retries; what committed stays, and re-applying it is a no-op). A stored body that no longer parses raises
    ``PermanentJobError`` (dead-lettered at once). Idempotent.
    """
    started = JpmWebhookMessage.objects.filter(pk=message_id).exclude(
        status=WebhookMessageStatus.PROCESSED).update(attempts=F("attempts") + 1, last_attempt_at=timezone.now())
    if not started:
        if JpmWebhookMessage.objects.filter(pk=message_id).exists():
            logger.info("jpm webhook message already processed", extra={"message_id": message_id})
            return ProcessStats(message_id=message_id, skipped=True)
        raise PermanentJobError(f"JPM webhook message {message_id} does not exist")
    message = JpmWebhookMessage.objects.only("id", "body").get(pk=message_id)
    try:
        callbacks = parse_callback_message(message.body)
        raw_callbacks = json.loads(message.body)["callbacks"]
    except (ProcessorProtocolError, ValueError, KeyError, TypeError) as exc:
        raise PermanentJobError(f"the stored body of JPM webhook message {message_id} cannot be parsed: {exc}") from exc

    stats = ProcessStats(message_id=message_id, callbacks=len(callbacks))
    ordered = sorted(zip(callbacks, raw_callbacks, strict=True), key=lambda pair: _order_key(pair[0]))
    by_payment: dict[str, list[tuple[JpmCallback, dict]]] = {}
    for callback, raw in ordered:
        by_payment.setdefault(callback.end_to_end_id, []).append((callback, raw))
    raw_payload_ref = f"jpm_webhook:{message_id}"
    for end_to_end_id, group in by_payment.items():
        with transaction.atomic():
            payment = _find_payment(end_to_end_id)
            if payment is None:
                for callback, raw in group:
                    _record_unknown(callback, raw, message_id=message_id)
                stats.unknown += len(group)
                continue
            stats.payments += 1
            for callback, _raw in group:
                steps = jpm_steps(
                    payment=payment, status=callback.payment_status, end_to_end_id=end_to_end_id,
                    return_code=callback.return_code,
                    return_info=jpm_return_info(return_code=callback.return_code, exceptions=callback.exceptions),
                )
                result = status_steps_apply(payment=payment, steps=steps, source=Source.WEBHOOK, actor=ACTOR,
                                            raw_payload_ref=raw_payload_ref, at=callback.create_date_time)
                setattr(stats, result.outcome, getattr(stats, result.outcome) + 1)
    JpmWebhookMessage.objects.filter(pk=message_id).update(
        status=WebhookMessageStatus.PROCESSED, processed_at=timezone.now(), outcome=stats.outcome(), last_error="")
    logger.info("jpm webhook message processed", extra={"stats": stats.as_dict()})
    return stats


def _order_key(callback: JpmCallback) -> tuple[datetime, int]:
    return callback.create_date_time or _EPOCH, JPM_STATUS_RANK.get(callback.payment_status, 99)


def _find_payment(end_to_end_id: str) -> Payment | None:
    """The JPM payment a callback is about: by ``confirmation_id`` (= endToEndId), else by our id when the
    endToEndId is our 32-hex reference (a callback may arrive while the payment is still PROCESSING)."""
    jpm = Payment.objects.filter(payment_provider=Provider.JPM)
    payment = jpm.filter(confirmation_id=end_to_end_id).first()
    if payment is None and _REFERENCE.fullmatch(end_to_end_id):
        payment = jpm.filter(pk=uuid.UUID(hex=end_to_end_id)).first()
    return payment


def _record_unknown(callback: JpmCallback, raw: dict, *, message_id: int) -> None:
    """Upsert the unknown callback (one row per endToEndId, status and time; ``times_seen`` counts repeats) and
    report it in the log. Not retried: support resolves it in the admin."""
    row, created = JpmUnknownCallback.objects.get_or_create(
        end_to_end_id=callback.end_to_end_id[:64], payment_status=callback.payment_status,
        create_date_time=callback.create_date_time,
        defaults={"firm_root_id": (callback.firm_root_id or "")[:64], "return_code": (callback.return_code or "")[:16],
                  "callback": raw, "message_id": message_id},
    )
    if not created:
        JpmUnknownCallback.objects.filter(pk=row.pk).update(times_seen=F("times_seen") + 1)
    logger.warning("jpm callback for an unknown payment (reported)",
                   extra={"unknown_callback_id": row.pk, "end_to_end_id": callback.end_to_end_id[:64],
                          "payment_status": callback.payment_status, "message_id": message_id,
                          "first_seen": created})


def jpm_webhook_record_failure(*, message_id: int, error: BaseException, final: bool) -> None:
    """Note a failed processing attempt on the message (``last_error``, redacted); ``final`` (attempts spent or a
    permanent error: the job is dead-lettered) also marks it ``failed``. A processed message is left alone.
    Never raises (the database may be what failed): the dead letter and the log are the record then."""
    values = {"last_error": redact_text(f"{type(error).__name__}: {error}")[:2000]}
    if final:
        values["status"] = WebhookMessageStatus.FAILED
    try:
        JpmWebhookMessage.objects.filter(pk=message_id).exclude(
            status=WebhookMessageStatus.PROCESSED).update(**values)
    except Exception:  # the database is down too
        logger.exception("could not record the jpm webhook failure", extra={"message_id": message_id})
    logger.warning("jpm webhook processing failed",
                   extra={"message_id": message_id, "final": final, "error": type(error).__name__})


# --- operators and the sweeper ------------------------------------------------------------------------------------


def jpm_webhook_process_received() -> RunStats:
    """Process every ``received`` message now, oldest first, synchronously (``run_job jpm_webhooks``). A message
    that fails is recorded (``last_error``) and left ``received`` for its job or the next run; the others go on.
    Side effects: those of ``jpm_webhook_process``. Idempotent."""
    stats = RunStats()
    outcome: Counter[str] = Counter()
    for message_id in _received_ids():
        stats.examined += 1
        try:
            result = jpm_webhook_process(message_id=message_id)
        except Exception as exc:  # one bad message must not stop the others; recorded and counted
            jpm_webhook_record_failure(message_id=message_id, error=exc, final=False)
            stats.failed += 1
            continue
        if result.skipped:
            stats.skipped += 1
            continue
        stats.processed += 1
        outcome.update(result.outcome())
    stats.outcome = {name: outcome[name] for name in _OUTCOMES}
    logger.info("jpm webhook run finished", extra={"stats": stats.as_dict()})
    return stats


def _received_ids(*, received_before: datetime | None = None, started_before: datetime | None = None,
                  abandoned_only: bool = False) -> Iterator[int]:
    """Ids of ``received`` messages, oldest first, in chunks (keyset on ``received_at, id``). ``abandoned_only``:
    never started and received before ``received_before``, or started but last attempted before
    ``started_before``."""
    base = JpmWebhookMessage.objects.filter(status=WebhookMessageStatus.RECEIVED)
    if abandoned_only:
        base = base.filter(Q(attempts=0, received_at__lt=received_before)
                           | Q(attempts__gt=0, last_attempt_at__lt=started_before))
    elif received_before is not None:
        base = base.filter(received_at__lt=received_before)
    last: tuple[datetime, int] | None = None
    while True:
        query = base
        if last is not None:
            query = base.filter(Q(received_at__gt=last[0]) | Q(received_at=last[0], id__gt=last[1]))
        chunk = list(query.order_by("received_at", "id").values_list("received_at", "id")[:CHUNK_SIZE])
        if not chunk:
            return
        for _, message_id in chunk:
            yield message_id
        last = chunk[-1]
        if len(chunk) < CHUNK_SIZE:
            return


def jpm_webhook_sweep(*, now: datetime | None = None) -> SweepStats:
    """Queue again every message still ``received`` that nobody is working on (see the module): never started and
    received more than ``JPM_WEBHOOK_SWEEP_MINUTES`` ago (its enqueue after commit was lost: broker down), or started
    but not attempted for ``STARTED_STALE_SECONDS`` (its job was lost). "Nothing is lost."
    Stops at the first enqueue that fails (the broker is down; the next sweep goes on).
    Side effects: broker messages only. Idempotent (the job skips a message processed meanwhile)."""
    now = job_clock(as_of=None, now=now)
    cutoff = now - timedelta(minutes=settings.JPM_WEBHOOK_SWEEP_MINUTES)
    stats = SweepStats()
    started_before = now - timedelta(seconds=STARTED_STALE_SECONDS)
    for message_id in _received_ids(received_before=cutoff, started_before=started_before, abandoned_only=True):
        stats.examined += 1
        if _enqueue(message_id):
            stats.enqueued += 1
        else:  # the broker is down: the rest would fail the same way; the next sweep tries again
            stats.enqueue_failed += 1
            break
    if stats.examined:
        logger.warning("jpm webhook sweeper queued stored messages again", extra={"stats": stats.as_dict()})
    return stats
