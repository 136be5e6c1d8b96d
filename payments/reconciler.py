"""The stuck-payment reconciler (SPEC §7.7): resolves payments left PROCESSING by asking the processor.

A payment is PROCESSING between step 1 and step 3 of the submission (SPEC §5). If the processor call timed out,
or the worker died between the steps, nobody knows the outcome — except the processor. Every payment PROCESSING
for longer than ``PROCESSING_STUCK_MINUTES`` is looked up there by our reference (``payment.reference``, the
32-hex payment id sent as Usio ``AdditionalSearch`` and JPM ``endToEndId``):

- **found** → the outcome the submission would have applied, through ``payment_apply_status`` (source
  ``reconciler``): ACH → ACHSENT with the processor's confirmation id; Usio card/RTP approved → COMPLETED;
  refused → FAILED (``rejected`` for ACH, ``declined`` for cards). When the processor already reports what
  happened next (JPM CLEARED/COMPLETED/RETURNED, a Usio return or chargeback), that is applied too, because the
  webhook or sync that would normally carry it may have come and gone while the payment was PROCESSING (a JPM
  callback for an endToEndId we had not confirmed yet is "unknown"; a Usio sync window does not come back).
- **not found**, and PROCESSING for longer than ``PROCESSING_GIVE_UP_MINUTES`` → FAILED, ``failure=
  "not_submitted"``, ``return_info="not_submitted"``;
- **not found**, younger → left alone (the processor may not have indexed it yet);
- **the processor could not be asked** (unreachable, timeout, an answer we cannot read, credentials refused, not
  configured) → left alone and counted. A payment is never failed because its processor was unreachable.

Every payment is resolved in its own transaction (its steps together); the processor lookup happens before it,
outside any transaction. Re-running changes nothing: a resolved payment is no longer PROCESSING, and every step
goes through the status machine's conditional update. Idempotency records are left alone: a client retrying a
stuck request gets ``Stale`` from ``core.idempotency`` and the submission view renders the payment as it is now.

Bounds: payments are read in chunks (keyset on ``created_at, id``; no per-row queries besides the lookups and the
status changes); after ``RECONCILER_MAX_CONSECUTIVE_ERRORS`` (3) consecutive failed lookups at one processor
account the rest of that account's payments are skipped for this run; after ``RECONCILER_TIME_BUDGET_SECONDS``
(240, under the ``default`` queue's 300 s limit) the remaining payments are skipped. Skipped payments are
examined by the next run (every 15 minutes).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Q

from core.jobs import job_clock
from integrations.errors import ProcessorError
from payments.jpm_status import StatusStep, UnexpectedJpmStatus, jpm_return_info, jpm_steps, status_steps_apply
from payments.models import Method, Payment, Provider, Purpose, Source, Status
from payments.routing import ROUTES

logger = logging.getLogger(__name__)

ACTOR = "reconciler"
NOT_SUBMITTED = "not_submitted"
CHUNK_SIZE = 200
DEFAULT_MAX_CONSECUTIVE_ERRORS = 3
DEFAULT_TIME_BUDGET_SECONDS = 240.0

# A prenote (SPEC §6) may have gone through either Usio account the prenote API allows: both are asked when the
# prenote does not name its merchant account. Payments follow the routing table (``payments.routing.ROUTES``).
_PRENOTE_USIO_ACCOUNTS = ("subscription", "float_debit")
# One status change to apply (or one non-status event to emit): the shared JPM mapping's step (payments/jpm_status).
_Step = StatusStep


@dataclass
class ReconcileStats:
    """What one run did. ``examined`` = ``resolved + given_up + waiting + errors + skipped + unchanged``."""

    examined: int = 0
    resolved: int = 0  # found at the processor; its outcome applied
    given_up: int = 0  # not found past the give-up age: FAILED not_submitted
    waiting: int = 0  # not found, younger than the give-up age: left PROCESSING
    errors: int = 0  # the processor could not be asked (or its answer did not fit the payment): left PROCESSING
    skipped: int = 0  # not asked this run (processor breaker open, time budget spent): left PROCESSING
    unchanged: int = 0  # resolved meanwhile by someone else (the submission's step 3, a parallel run)
    outcomes: dict[str, int] = field(default_factory=dict)  # final status → count, for resolved and given up

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ProcessorFinding:
    """The processor's answer about one payment: ``steps`` to apply when found (``found``; SPEC §7.1/§7.3's mapping,
    from PROCESSING), where the answer came from (``raw_payload_ref``) and what it said, in words (``answer``, e.g.
    ``"JPM: CLEARED"``; shown to support by "sync now")."""

    found: bool
    steps: tuple[_Step, ...] = ()
    raw_payload_ref: str = ""
    answer: str = ""


class ProcessorRecordMismatch(Exception):
    """The processor's record does not fit the payment (amount, direction): support must look."""


def reconcile_processing(*, as_of: date | datetime | None = None, now: datetime | None = None) -> ReconcileStats:
    """Resolve every payment PROCESSING for longer than ``PROCESSING_STUCK_MINUTES`` (SPEC §7.7); see the module.

    ``now`` (aware) is the clock ages are measured against (tests move it instead of sleeping). Without it,
    ``as_of`` — a datetime, or a date meaning the end of that America/Chicago day — is used, but never later
    than the real time: an operator cannot make young payments look old and fail them.

    Side effects: per payment, at most its status changes (history, outbox events) in one transaction; processor
    lookups (read-only GETs/lookups, safe to repeat). Idempotent.
    """
    now = job_clock(as_of=as_of, now=now)
    stuck_before = now - timedelta(minutes=settings.PROCESSING_STUCK_MINUTES)
    give_up_before = now - timedelta(minutes=settings.PROCESSING_GIVE_UP_MINUTES)
    max_errors = int(getattr(settings, "RECONCILER_MAX_CONSECUTIVE_ERRORS", DEFAULT_MAX_CONSECUTIVE_ERRORS))
    budget = float(getattr(settings, "RECONCILER_TIME_BUDGET_SECONDS", DEFAULT_TIME_BUDGET_SECONDS))
    deadline = time.monotonic() + budget

    stats = ReconcileStats()
    outcomes: Counter[str] = Counter()
    consecutive_errors: Counter[str] = Counter()
    for payment in _stuck_payments(created_before=stuck_before):
        stats.examined += 1
        breaker = _breaker_key(payment)
        if time.monotonic() >= deadline or consecutive_errors[breaker] >= max_errors:
            stats.skipped += 1
            continue
        try:
            finding = payment_processor_lookup(payment)
        except (ProcessorError, ProcessorRecordMismatch) as exc:
            if isinstance(exc, ProcessorError):  # the processor is in trouble; a misfit record is not
                consecutive_errors[breaker] += 1
            stats.errors += 1
            logger.warning(
                "reconciler could not resolve payment",
                extra={"payment_id": str(payment.pk), "provider": payment.payment_provider,
                       "error": type(exc).__name__, "reason": str(exc)},
            )
            continue
        consecutive_errors[breaker] = 0

        if finding.found:
            final = _apply(payment, finding.steps, raw_payload_ref=finding.raw_payload_ref)
            kind = "resolved"
        elif payment.created_at < give_up_before:
            final = _apply(payment, (_Step(Status.FAILED, failure=NOT_SUBMITTED, return_info=NOT_SUBMITTED),),
                           raw_payload_ref=finding.raw_payload_ref)
            kind = "given_up"
        else:
            stats.waiting += 1
            continue
        if final is None:
            stats.unchanged += 1
            continue
        setattr(stats, kind, getattr(stats, kind) + 1)
        outcomes[final] += 1
        logger.info("reconciler resolved payment",
                    extra={"payment_id": str(payment.pk), "outcome": kind, "to_status": final})
    stats.outcomes = dict(sorted(outcomes.items()))
    logger.info("reconciler run finished", extra={"stats": stats.as_dict()})
    return stats


def _stuck_payments(*, created_before: datetime) -> Iterator[Payment]:
    """PROCESSING payments created before ``created_before``, oldest first, read in chunks (keyset pagination:
    rows resolved while we iterate cannot make us skip or repeat one). A payment is PROCESSING from its creation
    (no transition leads back to it), so ``created_at`` is when it entered PROCESSING."""
    fields = ("id", "purpose", "payment_method", "payment_type", "payment_provider", "merchant_account", "amount",
              "created_at", "payment_status")
    base = Payment.objects.filter(payment_status=Status.PROCESSING, created_at__lt=created_before)
    last: tuple[datetime, object] | None = None
    while True:
        query = base
        if last is not None:
            query = base.filter(Q(created_at__gt=last[0]) | Q(created_at=last[0], id__gt=last[1]))
        chunk = list(query.only(*fields).order_by("created_at", "id")[:CHUNK_SIZE])
        if not chunk:
            return
        yield from chunk
        last = (chunk[-1].created_at, chunk[-1].id)
        if len(chunk) < CHUNK_SIZE:
            return


def _breaker_key(payment: Payment) -> str:
    if payment.payment_provider == Provider.JPM:
        return "jpm"
    return f"usio:{payment.merchant_account or payment.purpose}"


# --- lookups ------------------------------------------------------------------------------------------------------


def payment_processor_lookup(payment: Payment) -> ProcessorFinding:
    """Ask the payment's processor about it by our reference (``payment.reference``): JPM ``get_payment_status``,
    Usio ``GetTransactionDetails`` on the payment's merchant account (or its route's). Read-only and safe to repeat;
    call it outside any transaction (an HTTP call).

    Returns the finding (``found`` with the steps that lead to the processor's status from PROCESSING, or not
    found). Raises the client's ``ProcessorError`` (unreachable, timeout, unreadable answer, credentials,
    configuration) and ``ProcessorRecordMismatch`` (the processor's record does not fit the payment). Used by the
    reconciler and by the back office's "sync now" (``payments.backoffice``)."""
    if payment.payment_provider == Provider.JPM:
        return _look_up_jpm(payment)
    return _look_up_usio(payment)


def _usio_account_names(payment: Payment) -> tuple[str, ...]:
    """The configured account(s) to ask: the one whose merchant id the payment recorded, else those of its
    route. A recorded merchant id that no configured account has is an error: asking the wrong account would
    answer "not found" and fail a payment that may have moved money."""
    if payment.merchant_account:
        accounts = getattr(settings, "USIO_ACCOUNTS", {}) or {}
        for name, account in accounts.items():
            if name != "master" and str((account or {}).get("merchant_id") or "") == payment.merchant_account:
                return (name,)
        for name, account in accounts.items():  # the master account only if no payment account matches
            if str((account or {}).get("merchant_id") or "") == payment.merchant_account:
                return (name,)
        raise ProcessorRecordMismatch(
            f"merchant account {payment.merchant_account!r} is not a configured Usio account")
    if payment.purpose == Purpose.PRENOTE:
        return _PRENOTE_USIO_ACCOUNTS
    entry = ROUTES.get((payment.purpose, payment.payment_type, payment.payment_method))
    if entry is None:
        raise ProcessorRecordMismatch(
            f"no Usio account for a {payment.purpose} {payment.payment_type} {payment.payment_method}")
    return (entry.usio_account,)


def _look_up_usio(payment: Payment) -> ProcessorFinding:
    from integrations.usio import usio_client

    reference = payment.reference
    for name in _usio_account_names(payment):
        result = usio_client(name).get_transaction_details(reference=reference)
        candidates = [t for t in result.transactions
                      if t.reference == reference and t.original_confirmation is None]
        if not candidates:
            continue
        candidates.sort(key=lambda t: (t.status == "failed", t.transaction_date))
        found = candidates[0]
        if found.transaction_type != payment.payment_type or Decimal(found.amount) != payment.amount:
            raise ProcessorRecordMismatch(f"Usio {found.confirmation} is a {found.transaction_type} of {found.amount}, "
                                          f"the payment a {payment.payment_type} of {payment.amount}")
        code = f" {found.return_code}" if found.return_code else ""
        return ProcessorFinding(True, _usio_steps(payment, found),
                                raw_payload_ref=f"usio:{name}:GetTransactionDetails:{found.confirmation}",
                                answer=f"Usio ({name}): {found.status}{code}, confirmation {found.confirmation}")
    return ProcessorFinding(False, raw_payload_ref=f"usio:GetTransactionDetails:{reference}:not_found",
                            answer=f"Usio: not found ({', '.join(_usio_account_names(payment))})")


def _usio_steps(payment: Payment, found) -> tuple[_Step, ...]:
    ach = payment.payment_method == Method.ACH
    if found.status == "failed":
        return (_Step(Status.FAILED, failure="rejected" if ach else "declined", return_code=found.return_code,
                      return_info=found.return_code or ("rejected" if ach else "declined"),
                      confirmation_id=found.confirmation),)
    steps = [_Step(Status.ACHSENT if ach else Status.COMPLETED, confirmation_id=found.confirmation)]
    if ach and found.status == "returned":  # SPEC §7.3: return_info RETURNED, *_RETURNED event
        steps.append(_Step(Status.FAILED, failure="returned", return_code=found.return_code,
                           return_info="RETURNED"))
    elif not ach and found.status == "chargeback":
        steps.append(_Step(Status.CHARGED_BACK, return_code=found.return_code))
    return tuple(steps)


def _look_up_jpm(payment: Payment) -> ProcessorFinding:
    from integrations.jpm import jpm_client

    reference = payment.reference
    answer = jpm_client().get_payment_status(reference)
    if not answer.found:
        return ProcessorFinding(False, raw_payload_ref=f"jpm:payment_status:{reference}:not_found",
                                answer="JPM: not found")
    code = f" {answer.return_code}" if answer.return_code else ""
    return ProcessorFinding(True, _jpm_steps(payment, answer), raw_payload_ref=f"jpm:payment_status:{reference}",
                            answer=f"JPM: {answer.status}{code}")


def _jpm_steps(payment: Payment, answer) -> tuple[_Step, ...]:
    """JPM status → our steps: SPEC §7.1's mapping from PROCESSING, shared with the webhook
    (``payments.jpm_status.jpm_steps``): accepted → ACHSENT (endToEndId as the confirmation id); CLEARED → also
    CLEARED; COMPLETED → also CLEARED and, for a subscription, the ``SUBSCRIPTION_SENT`` event; REJECTED → FAILED
    rejected; RETURNED → ACHSENT, then FAILED returned."""
    try:
        return jpm_steps(payment=payment, status=answer.status, end_to_end_id=payment.reference,
                         return_code=answer.return_code,
                         return_info=jpm_return_info(return_code=answer.return_code, exceptions=answer.exceptions))
    except UnexpectedJpmStatus as exc:  # the adapter only passes known statuses
        raise ProcessorRecordMismatch(str(exc)) from exc


# --- applying -----------------------------------------------------------------------------------------------------


def _apply(payment: Payment, steps: tuple[_Step, ...], *, raw_payload_ref: str) -> str | None:
    """Apply ``steps`` in one transaction. Returns the payment's status after them, or None when the first step
    was refused (the payment left PROCESSING meanwhile: whoever moved it knew the outcome; nothing is applied)."""
    result = status_steps_apply(payment=payment, steps=steps, source=Source.RECONCILER, actor=ACTOR,
                                raw_payload_ref=raw_payload_ref, stop_if_first_refused=True)
    return None if result.first_refused else result.status
