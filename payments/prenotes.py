"""Prenotes (SPEC §6): zero-dollar ACH entries that prove a bank account before its first ACH debit.

Flow:

- **Request** (``prenote_request``, ``POST /api/v1/prenotes``): one transaction. The bank account must exist for the
  user (422 ``bank_account_not_found``); its ``prenote_status`` becomes ``pending`` (which also locks the account
  row, so concurrent requests for one account are serialised); a ``PrenoteRequest`` (``requested``) is written and,
  after commit, the prenote job is kicked. A request for an account that has a prenote pending for the same
  numbers (``requested``, or ``submitted`` with its payment PROCESSING / ACHSENT / CLEARED) is answered with that
  one (200), and nothing is written or sent.
- **Submission** (``prenote_process_batch``, Celery queue ``prenotes``): per request, the three steps of SPEC §5:
  (1) one transaction: lock the request (``SKIP LOCKED`` on PostgreSQL), create its ``Payment`` (purpose
  ``prenote``, amount 0, ACH debit, PROCESSING, first history row), link it, ``submitted``; (2) outside any
  transaction, once: JPM ``submit_ach_payment(prenote=True, amount=0)`` / Usio ``SubmitACHPayment`` with trans code
  28 (checking) or 38 (savings), our reference ``payment.reference``; (3) ``payment_apply_status``: ACHSENT
  (``PRENOTE_SUBMITTED``), FAILED ``rejected`` (``PRENOTE_RETURNED``), FAILED ``not_submitted`` (no event; the
  request goes back to the job for another attempt), or nothing when the outcome is unknown (the stuck-payment
  reconciler resolves the PROCESSING payment). A request is ``submitted`` as soon as its payment exists, so it is
  never sent twice.
- **Outcome** (``prenote_account_outcome``, run by the outbox consumer ``payments.prenote_account_status`` for every
  ``PRENOTE_RETURNED`` / ``PRENOTE_VERIFIED``, whoever wrote it — the submission, the reconciler, the returns sync,
  the JPM webhook, check-ach): the account becomes ``failed`` on a return — except R01 (ISO ``AM04``), which banks
  wrongly send on prenotes: the account becomes ``verified`` — and ``verified`` on ``PRENOTE_VERIFIED``.
- **Verification** (``prenote_verify_due``, daily): an ACHSENT / CLEARED prenote whose third business day after
  submission has begun without a return COMPLETES (``PRENOTE_VERIFIED``); JPM prenotes are asked at JPM first
  (SPEC §7.2: RETURNED / REJECTED → FAILED).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from core.auth.permissions import ensure_user_access
from core.auth.principal import Principal
from core.business_days import third_business_day_cutoff, third_business_day_reached
from core.errors import ConflictError, NotFoundError, ValidationError
from core.jobs import job_clock
from core.validators import validate_user_id
from integrations.errors import ProcessorDeclined, ProcessorError
from payments.jpm_status import jpm_gate_verdict
from payments.models import (
    Method,
    Payment,
    PaymentStatusChange,
    PaymentType,
    PrenoteRequest,
    PrenoteRequestStatus,
    PrenoteUsioAccount,
    Provider,
    Purpose,
    Source,
    Status,
)
from payments.prenote_serializers import prenote_render
from payments.submission_data import ProcessorOutcome

logger = logging.getLogger(__name__)

HTTP_OK = 200
HTTP_ACCEPTED = 202
AMOUNT = Decimal("0.00")
#: NACHA transaction codes of a prenote debit entry, by account type.
TRANS_CODES = {"checking": "28", "savings": "38"}
JOB_ACTOR = "prenoter"
VERIFIER_ACTOR = "prenote_verifier"
PRENOTE_EVENT_TYPES = frozenset({"PRENOTE_RETURNED", "PRENOTE_VERIFIED"})
PROCESSOR_REFUSED = "processor_refused"
#: Why a submission never reached the processor, when another attempt cannot do better: the request fails at once.
#: Any other reason (the processor unreachable, credentials refused, not configured, the reconciler giving up on a
#: payment its processor never received, numbers unreadable with the current keys) is retried.
FINAL_REASONS = frozenset({"bank_account_not_found", "bank_account_changed", "invalid_processor_request",
                           PROCESSOR_REFUSED})
#: A prenote payment still in flight: a request whose payment has one of these is pending.
IN_FLIGHT = (Status.PROCESSING, Status.ACHSENT, Status.CLEARED)

DEFAULT_BATCH_SIZE = 50
DEFAULT_MAX_ATTEMPTS = 10
DEFAULT_BATCH_TIME_BUDGET_SECONDS = 10.0  # the prenotes queue's time limit is 30 s (SPEC §7)
DEFAULT_RETRY_BACKOFF_SECONDS = 60.0
MAX_RETRY_BACKOFF_SECONDS = 3600.0
DEFAULT_VERIFY_TIME_BUDGET_SECONDS = 40.0  # the check-ach queue's time limit is 54 s
VERIFY_CHUNK_SIZE = 200
VERIFY_MAX_CONSECUTIVE_ERRORS = 3


def _setting(name: str, default):
    return type(default)(getattr(settings, name, default))


def max_attempts() -> int:
    """``PRENOTE_MAX_ATTEMPTS`` (10, the prenotes queue's attempts): submissions started per request."""
    return max(1, _setting("PRENOTE_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS))


def retry_backoff(attempts: int) -> timedelta:
    """The wait before a request whose ``attempts``-th submission never reached the processor is tried again."""
    base = _setting("PRENOTE_RETRY_BACKOFF_SECONDS", DEFAULT_RETRY_BACKOFF_SECONDS)
    return timedelta(seconds=min(MAX_RETRY_BACKOFF_SECONDS, base * 2 ** max(0, attempts - 1)))


def is_bank_return_code(code: str | None) -> bool:
    """A NACHA ``Rnn`` or a JPM/ISO code with a NACHA equivalent (SPEC §12): an answer about the account."""
    from integrations.jpm.codes import nacha_for

    return nacha_for(code) is not None


def is_r01(return_code: str | None) -> bool:
    """R01 (insufficient funds), as Usio (``R01``) or JPM (ISO ``AM04``) reports it."""
    from integrations.jpm.codes import nacha_for

    return nacha_for(return_code) == "R01"


# --- the request (API) --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrenoteInput:
    user_id: str
    account_id: str
    provider: str
    usio_account: str | None


@dataclass(frozen=True)
class PrenoteResult:
    """The HTTP answer. ``created``: a new request was accepted (202); else the pending one is returned (200)."""

    status_code: int
    body: dict
    created: bool = False
    replayed: bool = False
    prenote_id: str | None = None


def prenote_validate(*, principal: Principal, data: dict) -> PrenoteInput:
    """Check a prenote request's body (pure: reads and writes nothing), in this order: the caller may act for the
    user (403 ``not_your_user``), ``user_id`` (422 ``invalid_user_id``), ``account_id`` (422
    ``invalid_account_id``), ``usio_account`` given for Usio (422 ``usio_account_required``) and only for Usio (422
    ``usio_account_not_allowed``). ``data`` is the input serializer's validated data (enum values checked)."""
    from bank_accounts.validation import validate_account_id

    user_id = data.get("user_id")
    ensure_user_access(principal, str(user_id))
    validate_user_id(user_id)
    account_id = data.get("account_id")
    validate_account_id(account_id)
    provider = data.get("provider")
    usio_account = data.get("usio_account") or None
    if provider == Provider.USIO and usio_account is None:
        raise ValidationError("usio_account (subscription or float_debit) is required for a Usio prenote.",
                              code="usio_account_required", details={"field": "usio_account"})
    if provider == Provider.JPM and usio_account is not None:
        raise ValidationError("usio_account applies to Usio prenotes only.", code="usio_account_not_allowed",
                              details={"field": "usio_account"})
    if provider not in Provider.values or (usio_account is not None and usio_account not in
                                           PrenoteUsioAccount.values):
        raise ValidationError("Unknown provider or usio_account.", code="unsupported_route")
    return PrenoteInput(user_id=user_id, account_id=account_id, provider=provider, usio_account=usio_account)


def _pending(*, user_id: str, account_id: str, account_routing_hash: str) -> PrenoteRequest | None:
    """The newest request for the account's current numbers that is waiting for the job or in flight."""
    return (PrenoteRequest.objects.select_related("payment")
            .filter(user_id=user_id, account_id=account_id, account_routing_hash=account_routing_hash)
            .filter(Q(status=PrenoteRequestStatus.REQUESTED)
                    | Q(status=PrenoteRequestStatus.SUBMITTED, payment__payment_status__in=IN_FLIGHT))
            .order_by("-created_at", "-id").first())


def prenote_request(*, principal: Principal, data: dict, idempotency_key: str | None = None,
                    fingerprint: str | None = None) -> PrenoteResult:
    """Ask for a prenote of the bank account (``user_id``, ``account_id``) through ``provider`` (SPEC §6).

    Validation as ``prenote_validate`` (nothing written). Then ONE transaction:

    - with an ``idempotency_key`` (optional; ``fingerprint`` required with it), ``core.idempotency``: a completed
      key replays its answer, a different body is 422 ``idempotency_key_reused``; the answer is stored on the key
      in this transaction (a refusal is not: it rolls back with everything else, so a corrected retry may reuse
      the key);
    - the account's ``prenote_status`` → ``pending`` (``bank_account_set_prenote_status``: locks the account row,
      a ``prenote_status`` history row when it changed); no such account → 422 ``bank_account_not_found``;
    - requests for older numbers of the account still waiting for the job fail (``bank_account_changed``), and
      requests whose submission never reached the processor are given back to the job (``prenote_release_unsent``);
    - a pending request for the account's current numbers → 200 with it (nothing new written, nothing sent);
      else a new ``PrenoteRequest`` (``requested``) → 202 with it, and after commit the job is kicked.

    A BLOCKED user may be prenoted (a prenote moves no money, and it is how a new account gets proven).
    """
    from bank_accounts.selectors import bank_account_get
    from bank_accounts.services import bank_account_set_prenote_status
    from core.idempotency import Replay, Stale, idempotency_begin, idempotency_complete

    request = prenote_validate(principal=principal, data=data)
    with transaction.atomic():
        record = None
        if idempotency_key is not None:
            outcome = idempotency_begin(client_id=principal.client_id, key=idempotency_key, fingerprint=fingerprint)
            if isinstance(outcome, Replay):
                return PrenoteResult(outcome.status_code, outcome.body, replayed=True,
                                     prenote_id=outcome.resource_id)
            record = outcome.record
            if isinstance(outcome, Stale) and record.resource_id:  # cannot outlive this transaction; a backstop
                prenote = PrenoteRequest.objects.select_related("payment").get(pk=record.resource_id)
                body = prenote_render(prenote)
                idempotency_complete(record=record, status_code=HTTP_OK, body=body, resource_id=str(prenote.pk))
                return PrenoteResult(HTTP_OK, body, replayed=True, prenote_id=str(prenote.pk))
        try:
            bank_account_set_prenote_status(user_id=request.user_id, account_id=request.account_id,
                                            prenote_status="pending", actor=str(principal)[:150])
        except NotFoundError:
            raise ValidationError("The user has no bank account with this account_id.",
                                  code="bank_account_not_found", details={"field": "account_id"}) from None
        account = bank_account_get(user_id=request.user_id, account_id=request.account_id)
        _supersede(user_id=request.user_id, account_id=request.account_id,
                   account_routing_hash=account.account_routing_hash)
        prenote_release_unsent(user_id=request.user_id, account_id=request.account_id)

        prenote = _pending(user_id=request.user_id, account_id=request.account_id,
                           account_routing_hash=account.account_routing_hash)
        created = prenote is None
        if created:
            try:
                with transaction.atomic():  # a savepoint: the unique constraint is the backstop of the row lock
                    prenote = PrenoteRequest.objects.create(
                        user_id=request.user_id, account_id=request.account_id,
                        account_routing_hash=account.account_routing_hash, masked_account_number=account.last4,
                        provider=request.provider, usio_account=request.usio_account,
                        requested_by=str(principal)[:150], client_id=principal.client_id[:64])
            except IntegrityError:
                prenote = _pending(user_id=request.user_id, account_id=request.account_id,
                                   account_routing_hash=account.account_routing_hash)
                if prenote is None:
                    raise
                created = False
        if created:
            transaction.on_commit(_kick)
        status_code = HTTP_ACCEPTED if created else HTTP_OK
        body = prenote_render(prenote)
        if record is not None:
            idempotency_complete(record=record, status_code=status_code, body=body, resource_id=str(prenote.pk))
    logger.info("prenote requested" if created else "prenote already pending",
                extra={"prenote_id": str(prenote.pk), "user_id": request.user_id, "account_id": request.account_id,
                       "provider": request.provider, "last4": prenote.masked_account_number})
    return PrenoteResult(status_code, body, created=created, prenote_id=str(prenote.pk))


def _kick() -> None:
    from payments.prenote_jobs import prenote_kick

    prenote_kick()


def _supersede(*, user_id: str, account_id: str, account_routing_hash: str) -> int:
    """Requests for other numbers of this account that the job has not taken: failed (``bank_account_changed``)."""
    return (PrenoteRequest.objects
            .filter(user_id=user_id, account_id=account_id, status=PrenoteRequestStatus.REQUESTED)
            .exclude(account_routing_hash=account_routing_hash)
            .update(status=PrenoteRequestStatus.FAILED, last_error="bank_account_changed",
                    next_attempt_at=None, updated_at=timezone.now()))


# --- the job: submission in three steps ---------------------------------------------------------------------------


@dataclass
class PrenoteClaim:
    """Step 1's result: ``payment`` is the new PROCESSING payment, or None when the request was refused (its
    account is gone or changed: the request is ``failed``)."""

    prenote: PrenoteRequest
    payment: Payment | None


@dataclass
class PrenoteBatchStats:
    released: int = 0  # given back to the job after a submission that never reached the processor
    claimed: int = 0  # payments created and sent (or attempted)
    refused: int = 0  # requests failed at step 1 (account gone or changed)
    outcomes: dict[str, int] = field(default_factory=dict)  # sent / rejected / not_submitted / unknown
    more: bool = False  # stopped by the batch size or the time budget: requests may be waiting

    def as_dict(self) -> dict:
        return asdict(self)


def _skip_locked(queryset):
    """Lock the requests selected (not the payments a filter may join), skipping those another job holds."""
    features = connection.features
    if features.has_select_for_update_skip_locked:
        return queryset.select_for_update(skip_locked=True, of=("self",) if features.has_select_for_update_of else ())
    return queryset.select_for_update()  # SQLite: ignored; IMMEDIATE transactions serialise writers


def _fail(prenote: PrenoteRequest, reason: str) -> None:
    PrenoteRequest.objects.filter(pk=prenote.pk).update(
        status=PrenoteRequestStatus.FAILED, last_error=reason[:255], next_attempt_at=None, updated_at=timezone.now())
    prenote.status, prenote.last_error = PrenoteRequestStatus.FAILED, reason[:255]
    logger.warning("prenote request failed", extra={"prenote_id": str(prenote.pk), "reason": reason})


def prenote_claim_next(*, now: datetime | None = None) -> PrenoteClaim | None:
    """Step 1: in ONE transaction, take the oldest due ``requested`` request (``next_attempt_at`` passed or unset;
    ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, so concurrent jobs take different ones) and create its
    payment: purpose ``prenote``, amount 0, ACH debit, its provider (Usio: the chosen account's merchant id; JPM:
    ``confirmation_id`` = our reference at once), PROCESSING, ``submit_date`` now, masked account number, with its
    first history row (``None → PROCESSING``, source ``api``, no event); the request becomes ``submitted`` with
    ``attempts`` + 1. A request whose account is gone (``bank_account_not_found``) or whose numbers changed since
    it was made (``bank_account_changed``) becomes ``failed`` instead (no payment). None when nothing is due.
    """
    from bank_accounts.selectors import bank_account_get
    from payments.routing import usio_merchant_id

    now = now or timezone.now()
    with transaction.atomic():
        due = (PrenoteRequest.objects.filter(status=PrenoteRequestStatus.REQUESTED)
               .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
               .order_by("created_at", "id"))
        prenote = _skip_locked(due).first()
        if prenote is None:
            return None
        try:
            account = bank_account_get(user_id=prenote.user_id, account_id=prenote.account_id)
        except NotFoundError:
            _fail(prenote, "bank_account_not_found")
            return PrenoteClaim(prenote, None)
        if account.account_routing_hash != prenote.account_routing_hash:
            _fail(prenote, "bank_account_changed")
            return PrenoteClaim(prenote, None)

        payment = Payment(
            user_id=prenote.user_id, purpose=Purpose.PRENOTE, payment_method=Method.ACH,
            payment_type=PaymentType.DEBIT, payment_provider=prenote.provider, amount=AMOUNT,
            account_id=prenote.account_id, masked_account_number=account.last4, payment_status=Status.PROCESSING,
            submit_date=timezone.now(), client_id=prenote.client_id,
        )
        if prenote.provider == Provider.USIO:
            payment.merchant_account = usio_merchant_id(prenote.usio_account)
        else:
            payment.confirmation_id = payment.reference  # JPM's endToEndId is ours
        payment.save(force_insert=True)
        PaymentStatusChange.objects.create(payment=payment, from_status=None, to_status=Status.PROCESSING,
                                           source=Source.API, actor=prenote.requested_by[:150])
        prenote.payment = payment
        prenote.status = PrenoteRequestStatus.SUBMITTED
        prenote.attempts += 1
        prenote.next_attempt_at = None
        prenote.save(update_fields=["payment", "status", "attempts", "next_attempt_at", "updated_at"])
    logger.info("prenote payment created", extra={"prenote_id": str(prenote.pk), "payment_id": str(payment.pk),
                                                  "provider": prenote.provider, "attempt": prenote.attempts})
    return PrenoteClaim(prenote, payment)


def prenote_call_processor(*, claim: PrenoteClaim) -> ProcessorOutcome:
    """Step 2: send the zero-dollar prenote once, outside any transaction (``RuntimeError`` inside one).

    Re-reads the account (numbers decrypted in memory only): gone → ``not_submitted`` (``bank_account_not_found``),
    other numbers than the request's → ``not_submitted`` (``bank_account_changed``), unreadable →
    ``not_submitted`` (``bank_account_unreadable``). JPM: ``submit_ach_payment(prenote=True, amount=0,
    direction="DEBIT", end_to_end_id=payment.reference)``; Usio (the request's account): ``SubmitACHPayment``
    with trans code 28 (checking) / 38 (savings), amount 0, our reference. JPM accepted / Usio confirmation →
    ``sent``; an immediate refusal → ``rejected`` with its code; errors otherwise as the payment submission
    classifies them (``not_submitted`` only when the request certainly never reached the processor, else
    ``unknown``). Never retried.
    """
    from bank_accounts.selectors import bank_account_get
    from core.encryption import DecryptionError
    from core.transactions import in_transaction
    from integrations.jpm import jpm_client
    from integrations.usio import usio_client
    from payments.processor_call import ach_execution_date, outcome_from_error
    from payments.services import DEFAULT_FIRST_NAME, DEFAULT_LAST_NAME

    if in_transaction():
        raise RuntimeError("prenote_call_processor must not run inside a transaction (SPEC §5 step 2)")
    prenote, payment = claim.prenote, claim.payment
    if payment is None:
        raise ValueError("this claim has no payment to submit")
    try:
        account = bank_account_get(user_id=prenote.user_id, account_id=prenote.account_id, with_numbers=True)
        if account.account_routing_hash != prenote.account_routing_hash:
            return ProcessorOutcome("not_submitted", message="bank_account_changed")
        account_number, routing_number = account.account_number, account.routing_number
    except NotFoundError:
        return ProcessorOutcome("not_submitted", message="bank_account_not_found")
    except DecryptionError:
        logger.error("prenote account numbers unreadable", extra={"prenote_id": str(prenote.pk)})
        return ProcessorOutcome("not_submitted", message="bank_account_unreadable")

    checking = account.account_type != "savings"
    try:
        if payment.payment_provider == Provider.JPM:
            submission = jpm_client().submit_ach_payment(
                end_to_end_id=payment.reference, amount=AMOUNT, direction="DEBIT", account_number=account_number,
                routing_number=routing_number, account_type=account.account_type,
                name=f"{DEFAULT_FIRST_NAME} {DEFAULT_LAST_NAME}", requested_execution_date=ach_execution_date(),
                prenote=True)
            return ProcessorOutcome("sent", confirmation_id=payment.reference,
                                    raw_payload_ref=f"jpm.payments:{submission.firm_root_id}")
        result = usio_client(prenote.usio_account).submit_ach_payment(
            routing_number=routing_number, account_number=account_number,
            trans_code=TRANS_CODES["checking" if checking else "savings"], amount=AMOUNT,
            reference=payment.reference, first_name=DEFAULT_FIRST_NAME, last_name=DEFAULT_LAST_NAME)
        return ProcessorOutcome("sent", confirmation_id=result.confirmation,
                                raw_payload_ref=f"usio.SubmitACHPayment:{result.confirmation}")
    except ProcessorDeclined as exc:
        code = str(exc.code)[:16]
        if is_bank_return_code(code):  # the bank's (or the network's) answer about the account
            return ProcessorOutcome("rejected", code=code, message=exc.message or str(exc),
                                    raw_payload_ref=f"{exc.processor}.{exc.operation}")
        # The processor refused our request (validation, configuration): nothing was processed and nothing is
        # known about the account, so no event and no account change; retrying would be refused the same way.
        return ProcessorOutcome("not_submitted", code=code, message=PROCESSOR_REFUSED, error=str(exc),
                                raw_payload_ref=f"{exc.processor}.{exc.operation}")
    except ProcessorError as exc:
        return outcome_from_error(exc, ach=True)
    except ValueError as exc:  # the client refused the arguments before sending anything
        return ProcessorOutcome("not_submitted", message="invalid_processor_request", error=str(exc))


_STATUS_FOR = {
    "sent": (Status.ACHSENT, None),
    "rejected": (Status.FAILED, "rejected"),
    "not_submitted": (Status.FAILED, "not_submitted"),
}


def prenote_apply_outcome(*, claim: PrenoteClaim, outcome: ProcessorOutcome, now: datetime | None = None) -> Payment:
    """Step 3. ``unknown`` → the payment stays PROCESSING (the reconciler resolves it; ``last_error`` says
    ``outcome_unknown``). Else ONE transaction: ``payment_apply_status`` (source ``api``, actor ``prenoter``):
    ``sent`` → ACHSENT with the confirmation (``PRENOTE_SUBMITTED``); ``rejected`` → FAILED ``rejected`` with the
    code (``PRENOTE_RETURNED``: the account's status follows through the outbox); ``not_submitted`` → FAILED
    ``not_submitted`` (no event: it says nothing about the account) and the request is given back to the job
    (``_give_back``). A change refused by the status machine (the reconciler got there first) changes nothing.
    Returns the payment as it now is."""
    from payments.status import payment_apply_status

    prenote, payment = claim.prenote, claim.payment
    if payment is None:
        raise ValueError("this claim has no payment")
    if outcome.kind == "unknown":
        PrenoteRequest.objects.filter(pk=prenote.pk).update(last_error=f"outcome_unknown: {outcome.message}"[:255],
                                                            updated_at=timezone.now())
        logger.warning("prenote outcome unknown; left PROCESSING for the reconciler",
                       extra={"prenote_id": str(prenote.pk), "payment_id": str(payment.pk), "error": outcome.message})
        return Payment.objects.get(pk=payment.pk)
    if outcome.kind not in _STATUS_FOR:
        raise ValueError(f"unexpected outcome {outcome.kind!r} for a prenote")
    to_status, failure = _STATUS_FOR[outcome.kind]
    with transaction.atomic():
        result = payment_apply_status(
            payment_id=payment.pk, to_status=to_status, source=Source.API, actor=JOB_ACTOR, failure=failure,
            return_code=outcome.code if to_status == Status.FAILED else None,
            return_info=outcome.message if to_status == Status.FAILED else None,
            confirmation_id=outcome.confirmation_id or None, raw_payload_ref=outcome.raw_payload_ref)
        if outcome.kind == "not_submitted" and result.applied:
            reason = outcome.message or "not_submitted"
            _give_back(prenote, payment_id=payment.pk, reason=reason, now=now,
                       detail=f"{reason} {outcome.code}" if outcome.code else reason)
        elif outcome.kind == "rejected":
            PrenoteRequest.objects.filter(pk=prenote.pk).update(
                last_error=f"rejected {outcome.code}"[:255], updated_at=timezone.now())
    logger.info("prenote submitted", extra={"prenote_id": str(prenote.pk), "payment_id": str(payment.pk),
                                            "outcome": outcome.kind, "code": outcome.code,
                                            "payment_status": result.payment.payment_status})
    return result.payment


def _give_back(prenote: PrenoteRequest, *, payment_id, reason: str, now: datetime | None,
               detail: str | None = None, wait: bool = True) -> str:
    """A submission that never reached the processor: the request is ``requested`` again (``payment`` unlinked —
    the FAILED payment stays as the record of the attempt — not before ``retry_backoff``), or ``failed`` at once for
    a ``FINAL_REASONS`` reason or once ``max_attempts`` payments were made for it. Conditional on the request still
    holding that payment; ``wait=False`` makes it due at once. Returns its new status ("" when it had moved on)."""
    now = now or timezone.now()
    detail = detail or reason
    current = PrenoteRequest.objects.filter(pk=prenote.pk).values_list("attempts", flat=True).first() or 0
    values = {"last_error": detail[:255], "updated_at": timezone.now(), "payment": None}
    if reason in FINAL_REASONS:
        values.update(status=PrenoteRequestStatus.FAILED, next_attempt_at=None)
    elif current >= max_attempts():
        values.update(status=PrenoteRequestStatus.FAILED, next_attempt_at=None,
                      last_error=f"{detail} (after {current} attempts)"[:255])
    else:
        values.update(status=PrenoteRequestStatus.REQUESTED,
                      next_attempt_at=now + retry_backoff(current) if wait else None)
    try:
        with transaction.atomic():
            changed = PrenoteRequest.objects.filter(pk=prenote.pk, status=PrenoteRequestStatus.SUBMITTED,
                                                    payment_id=payment_id).update(**values)
    except IntegrityError:  # another request for the account is waiting already: this one is not needed
        values.update(status=PrenoteRequestStatus.FAILED, next_attempt_at=None,
                      last_error=f"{reason} (superseded)"[:255])
        changed = PrenoteRequest.objects.filter(pk=prenote.pk, status=PrenoteRequestStatus.SUBMITTED,
                                                payment_id=payment_id).update(**values)
    if changed:
        logger.info("prenote request given back", extra={"prenote_id": str(prenote.pk), "reason": reason,
                                                         "status": values["status"], "attempts": current})
    return values["status"] if changed else ""


def prenote_release_unsent(*, now: datetime | None = None, user_id: str | None = None,
                           account_id: str | None = None) -> int:
    """Give back to the job (``_give_back``) every ``submitted`` request whose payment FAILED without ever
    reaching the processor: a prenote payment FAILED with no event written — the submission's own
    ``not_submitted`` is handled at step 3; this catches the reconciler giving up on a payment whose processor
    never heard of it (a job that died between steps 1 and 2). Optionally for one account. Returns how many."""
    queryset = PrenoteRequest.objects.filter(status=PrenoteRequestStatus.SUBMITTED,
                                             payment__payment_status=Status.FAILED,
                                             payment__event_type__isnull=True)
    if user_id is not None:
        queryset = queryset.filter(user_id=user_id, account_id=account_id)
    released = 0
    with transaction.atomic():
        for prenote in _skip_locked(queryset.order_by("created_at", "id"))[:DEFAULT_BATCH_SIZE * 4]:
            reason = prenote.payment.return_info or "not_submitted"
            # No back-off: the reconciler gave up on it PROCESSING_GIVE_UP_MINUTES after it was created.
            if _give_back(prenote, payment_id=prenote.payment_id, reason=reason, now=now, wait=False):
                released += 1
    return released


def prenote_process_batch(*, limit: int | None = None, now: datetime | None = None) -> PrenoteBatchStats:
    """The prenote job: give back requests whose submission never reached the processor, then submit up to
    ``limit`` (``PRENOTE_BATCH_SIZE``, 50) due requests, each in the three steps (``prenote_claim_next`` →
    ``prenote_call_processor`` → ``prenote_apply_outcome``), oldest first. No new request is started after
    ``PRENOTE_BATCH_TIME_BUDGET_SECONDS`` (10; the queue's limit is 30 s); ``more`` says the run stopped early.

    Safe to run twice or concurrently: a request is claimed in the transaction that creates its payment and
    becomes ``submitted``, so no request is ever sent twice; a run that dies after step 1 leaves a PROCESSING
    payment for the stuck-payment reconciler. ``now`` (aware) only moves the retry clock (tests).
    """
    limit = limit or max(1, _setting("PRENOTE_BATCH_SIZE", DEFAULT_BATCH_SIZE))
    budget = _setting("PRENOTE_BATCH_TIME_BUDGET_SECONDS", DEFAULT_BATCH_TIME_BUDGET_SECONDS)
    deadline = time.monotonic() + budget
    stats = PrenoteBatchStats(released=prenote_release_unsent(now=now))
    outcomes: Counter[str] = Counter()
    while True:
        if stats.claimed + stats.refused >= limit or time.monotonic() >= deadline:
            stats.more = True
            break
        claim = prenote_claim_next(now=now)
        if claim is None:
            break
        if claim.payment is None:
            stats.refused += 1
            continue
        stats.claimed += 1
        outcome = prenote_call_processor(claim=claim)
        prenote_apply_outcome(claim=claim, outcome=outcome, now=now)
        outcomes[outcome.kind] += 1
    stats.outcomes = dict(sorted(outcomes.items()))
    if stats.claimed or stats.refused or stats.released:
        logger.info("prenote batch finished", extra={"stats": stats.as_dict()})
    return stats


# --- outcome → the bank account (outbox consumer) -----------------------------------------------------------------


def prenote_account_outcome(*, payment_id: str, event_type: str, return_code: str | None = None) -> str:
    """Apply a prenote's outcome to its bank account's ``prenote_status`` (SPEC §6). Returns what happened.

    ``PRENOTE_VERIFIED`` → ``verified``; ``PRENOTE_RETURNED`` → ``failed``, except R01 (``R01`` / ISO ``AM04``:
    banks wrongly return it on prenotes; it is recorded on the payment) → ``verified``: an R01 means the bank found
    the account. Through ``bank_account_set_prenote_status`` (history row, row lock).

    Ignored (logged, no error, so the relay does not retry what cannot change): a payment with no prenote request
    (``no_prenote_request``), an account deleted since (``account_deleted``) or whose numbers changed since the
    request (``account_changed``: the outcome is about numbers it no longer has), and a move the account's status
    table refuses (``transition_refused``: e.g. ``failed`` → ``verified``; a return is never undone by a late
    verification). Setting the status it already has changes nothing. Idempotent.
    """
    from bank_accounts.selectors import bank_account_get
    from bank_accounts.services import bank_account_set_prenote_status

    if event_type not in PRENOTE_EVENT_TYPES:
        raise ValueError(f"not a prenote outcome event: {event_type!r}")
    extra = {"payment_id": str(payment_id), "event_type": event_type, "return_code": return_code}
    prenote = PrenoteRequest.objects.filter(payment_id=payment_id).first()
    if prenote is None:
        logger.warning("prenote outcome ignored: no prenote request", extra=extra)
        return "ignored:no_prenote_request"
    extra.update(prenote_id=str(prenote.pk), user_id=prenote.user_id, account_id=prenote.account_id)
    try:
        account = bank_account_get(user_id=prenote.user_id, account_id=prenote.account_id)
    except NotFoundError:
        logger.info("prenote outcome ignored: account deleted", extra=extra)
        return "ignored:account_deleted"
    if account.account_routing_hash != prenote.account_routing_hash:
        logger.info("prenote outcome ignored: account numbers changed", extra=extra)
        return "ignored:account_changed"
    r01 = event_type == "PRENOTE_RETURNED" and is_r01(return_code)
    target = "verified" if event_type == "PRENOTE_VERIFIED" or r01 else "failed"
    try:
        bank_account_set_prenote_status(user_id=prenote.user_id, account_id=prenote.account_id,
                                        prenote_status=target, actor=f"prenote {payment_id}"[:150])
    except NotFoundError:
        logger.info("prenote outcome ignored: account deleted", extra=extra)
        return "ignored:account_deleted"
    except ConflictError as exc:
        logger.warning("prenote outcome ignored: transition refused",
                       extra={**extra, "code": exc.code, "details": exc.details})
        return "ignored:transition_refused"
    logger.info("prenote outcome applied to the account", extra={**extra, "prenote_status": target, "r01": r01})
    return target


# --- verification: three business days without a return ----------------------------------------------------------


@dataclass
class PrenoteVerifyStats:
    """``examined`` = ``completed + failed + errors + skipped + unchanged``."""

    examined: int = 0
    completed: int = 0  # → COMPLETED (PRENOTE_VERIFIED)
    failed: int = 0  # JPM said RETURNED / REJECTED → FAILED (PRENOTE_RETURNED)
    errors: int = 0  # JPM could not be asked / did not know it: left as it is
    skipped: int = 0  # not examined this run (time budget, JPM breaker open)
    unchanged: int = 0  # moved meanwhile by someone else

    def as_dict(self) -> dict:
        return asdict(self)


def _due_prenotes(cutoff: datetime):
    base = Payment.objects.filter(purpose=Purpose.PRENOTE, payment_status__in=(Status.ACHSENT, Status.CLEARED),
                                  submit_date__lt=cutoff)
    last = None
    while True:
        query = base if last is None else base.filter(
            Q(submit_date__gt=last[0]) | Q(submit_date=last[0], id__gt=last[1]))
        chunk = list(query.only("id", "payment_provider", "payment_status", "submit_date", "confirmation_id")
                     .order_by("submit_date", "id")[:VERIFY_CHUNK_SIZE])
        yield from chunk
        if len(chunk) < VERIFY_CHUNK_SIZE:
            return
        last = (chunk[-1].submit_date, chunk[-1].id)


def prenote_verify_due(*, as_of: date | datetime | None = None, now: datetime | None = None) -> PrenoteVerifyStats:
    """Complete every prenote that passed three business days without a return (SPEC §6, §11).

    Selects at the source ACHSENT / CLEARED prenotes submitted before ``third_business_day_cutoff`` (keyset chunks,
    oldest first; each re-checked with ``third_business_day_reached``). Usio → COMPLETED (its returns are written by the
    returns sync). JPM → asked first (``get_payment_status``, outside any transaction; SPEC §7.2): RETURNED /
    REJECTED → FAILED with its code (``PRENOTE_RETURNED``), anything else → COMPLETED; JPM unreachable or not
    knowing the payment → left for the next run (after ``VERIFY_MAX_CONSECUTIVE_ERRORS`` failed lookups the other
    JPM prenotes are skipped this run). COMPLETED writes ``completion_date`` and ``PRENOTE_VERIFIED``; the account
    follows through the outbox. Source ``check_ach``, actor ``prenote_verifier``; one transaction per payment
    (``payment_apply_status``), so re-running changes nothing. Stops examining after
    ``PRENOTE_VERIFY_TIME_BUDGET_SECONDS`` (40).
    """
    from payments.status import payment_apply_status

    now = job_clock(as_of=as_of, now=now)
    cutoff = third_business_day_cutoff(now)
    deadline = time.monotonic() + _setting("PRENOTE_VERIFY_TIME_BUDGET_SECONDS", DEFAULT_VERIFY_TIME_BUDGET_SECONDS)
    stats = PrenoteVerifyStats()
    jpm_errors = 0
    for payment in _due_prenotes(cutoff):
        stats.examined += 1
        if not third_business_day_reached(payment.submit_date, now):  # cannot happen: the cutoff is exact
            stats.skipped += 1
            continue
        is_jpm = payment.payment_provider == Provider.JPM
        if time.monotonic() >= deadline or (is_jpm and jpm_errors >= VERIFY_MAX_CONSECUTIVE_ERRORS):
            stats.skipped += 1
            continue
        to_status, failure, code, info = Status.COMPLETED, None, None, None
        if is_jpm:
            try:
                verdict = jpm_gate_verdict(payment)
                if verdict is None:
                    raise LookupError("JPM does not know this prenote")
                to_status, failure, code, info = (verdict.to_status, verdict.failure, verdict.return_code,
                                                  verdict.return_info)
            except (ProcessorError, LookupError) as exc:
                jpm_errors += isinstance(exc, ProcessorError)
                stats.errors += 1
                logger.warning("prenote verification could not ask JPM",
                               extra={"payment_id": str(payment.pk), "error": type(exc).__name__})
                continue
            jpm_errors = 0
        result = payment_apply_status(payment_id=payment.pk, to_status=to_status, source=Source.CHECK_ACH,
                                      actor=VERIFIER_ACTOR, failure=failure, return_code=code, return_info=info,
                                      raw_payload_ref=f"jpm:payment_status:{payment.reference}" if is_jpm else "")
        if not result.applied:
            stats.unchanged += 1
        elif to_status == Status.COMPLETED:
            stats.completed += 1
        else:
            stats.failed += 1
    if stats.examined:
        logger.info("prenote verification finished", extra={"stats": stats.as_dict()})
    return stats
