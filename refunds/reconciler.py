"""The refund reconciler: resolves refunds left PROCESSING (a Usio timeout, a worker crash between the steps).

A refund is PROCESSING between step 1 and step 3 (``refunds.services``); its amount is held against the payment's
(or Usio transaction's) refundable balance meanwhile. Every refund PROCESSING for longer than
``PROCESSING_STUCK_MINUTES`` is resolved by asking Usio — what can be observed depends on the operation
(sandbox/usio.py, docs/processors.md):

**Credits** (``card_credit`` = PinlessCredit, ``ach_credit`` = SubmitACHPayment 22/32) carry our reference
(``refund.reference`` in ``AdditionalSearch``), so ``GetTransactionDetails(AdditionalSearch=…)`` on the refund's
merchant account finds them, as the payment reconciler does:
- found, a credit of the same amount → COMPLETED with its confirmation (``date_refunded`` = Usio's date); found but
  ``failed`` → FAILED (declined); ``returned`` → FAILED with the return code (the money came back);
- found but not fitting (another amount, several) → left PROCESSING, counted ``unresolved`` (support);
- not found and older than ``PROCESSING_GIVE_UP_MINUTES`` → FAILED ``not_submitted`` (Usio never recorded it);
  younger → left alone (``waiting``).

**Card refunds** (``card_refund`` = SubmitCCVoid) carry no reference of ours. Observable: the refunded card debit's
``RefundedAmount`` (``GetTransactionDetails(Confirmation=…)``), and each refund as its own ``credit`` transaction
with ``OriginalConfirmation`` in the ``transactions`` report (``GetTransactionList``). Per refunded transaction:
- each stuck refund (oldest first) takes the earliest refund transaction of that original with the same amount,
  dated within ``MATCH_WINDOW`` of the refund's creation and not recorded on any of our refunds → COMPLETED with
  that confirmation;
- for the others: if Usio's ``RefundedAmount`` is no more than our COMPLETED refunds of that transaction, nothing
  was refunded that we do not know of, so the refund did not happen → FAILED ``not_submitted`` once older than
  ``PROCESSING_GIVE_UP_MINUTES`` (``waiting`` before); if Usio has refunded more than we can attribute (a refund
  of another amount, one made outside this service, a report that does not show it) → left PROCESSING and
  counted ``unresolved``: support decides, it is never failed automatically.

Never: a refund failed because Usio could not be asked (``errors``: left PROCESSING), a refund sent again, a
refund that may have moved money failed. Every refund is finished in its own transaction through
``refund_finish`` (conditional on PROCESSING: re-running changes nothing; step 3 finishing late wins or loses
cleanly). A COMPLETED refund that completes its payment's refunds moves the payment to REFUNDED (source
``reconciler``). Idempotency records are left alone: a client retrying its key gets the refund's current state.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Sum

from core.jobs import job_clock
from integrations.errors import ProcessorError
from refunds.data import RefundOutcome
from refunds.models import Refund, RefundMethod, RefundStatus
from refunds.selectors import refund_stuck
from refunds.services import refund_finish

logger = logging.getLogger(__name__)

ACTOR = "reconciler"
#: A Usio refund transaction belongs to one of our refunds only if dated this close to the refund's creation (the
#: Usio call follows step 1 at once; the margin absorbs clock skew and the read timeout).
MATCH_WINDOW = timedelta(minutes=10)
MAX_PER_RUN = 1000
DEFAULT_TIME_BUDGET_SECONDS = 240.0


@dataclass
class RefundReconcileStats:
    """What one run did. ``examined`` = ``completed + failed + waiting + unresolved + errors + skipped +
    unchanged``."""

    examined: int = 0
    completed: int = 0  # found at Usio: COMPLETED
    failed: int = 0  # Usio refused it, or certainly never recorded it past the give-up age: FAILED
    waiting: int = 0  # not found, younger than the give-up age
    unresolved: int = 0  # Usio's records do not say: left PROCESSING for support
    errors: int = 0  # Usio could not be asked: left PROCESSING
    skipped: int = 0  # the time budget was spent: left for the next run
    unchanged: int = 0  # finished meanwhile by someone else (step 3, a parallel run)

    def as_dict(self) -> dict:
        return asdict(self)


class _Run:
    def __init__(self, *, now: datetime, deadline: float):
        self.now = now
        self.give_up_before = now - timedelta(minutes=settings.PROCESSING_GIVE_UP_MINUTES)
        self.deadline = deadline
        self.stats = RefundReconcileStats()

    def finish(self, refund: Refund, outcome: RefundOutcome, *, at: datetime | None = None) -> None:
        from payments.models import Source

        result = refund_finish(refund_id=refund.pk, outcome=outcome, source=Source.RECONCILER, actor=ACTOR, at=at)
        if not result.applied:
            self.stats.unchanged += 1
            return
        if result.refund.status == RefundStatus.COMPLETED:
            self.stats.completed += 1
        else:
            self.stats.failed += 1
        logger.info("reconciler resolved refund", extra={"refund_id": str(refund.pk),
                                                         "refund_status": result.refund.status})

    def not_found(self, refund: Refund) -> None:
        if refund.created_at < self.give_up_before:
            self.finish(refund, RefundOutcome("not_submitted", code="not_submitted",
                                              message="not found at Usio (reconciler)"))
        else:
            self.stats.waiting += 1

    def unresolved(self, refund: Refund, reason: str, **extra) -> None:
        self.stats.unresolved += 1
        logger.warning("reconciler cannot resolve refund; support must look",
                       extra={"refund_id": str(refund.pk), "reason": reason, **extra})

    def error(self, refunds: list[Refund], exc: ProcessorError) -> None:
        self.stats.errors += len(refunds)
        logger.warning("reconciler could not ask Usio", extra={"refund_ids": [str(r.pk) for r in refunds],
                                                                "error": type(exc).__name__})

    # --- credits: found by our reference ------------------------------------------------------------------------
    def credit(self, refund: Refund) -> None:
        from integrations.usio import usio_client

        try:
            answer = usio_client(refund.usio_account).get_transaction_details(reference=refund.reference)
        except ProcessorError as exc:
            self.error([refund], exc)
            return
        found = [t for t in answer.transactions if t.reference == refund.reference and not t.original_confirmation]
        if not found:
            self.not_found(refund)
            return
        if len(found) > 1 or found[0].transaction_type != "credit" or found[0].amount != refund.amount:
            self.unresolved(refund, "usio_record_does_not_fit",
                            confirmations=[t.confirmation for t in found])
            return
        record = found[0]
        if record.status == "failed":
            self.finish(refund, RefundOutcome("declined", code=record.return_code or "failed",
                                              message="failed at Usio (reconciler)"))
        elif record.status == "returned":
            self.finish(refund, RefundOutcome("declined", code=record.return_code or "returned",
                                              message="RETURNED"))
        else:
            self.finish(refund, RefundOutcome("approved", confirmation_id=record.confirmation),
                        at=record.transaction_date)

    # --- card refunds: matched through the original transaction ------------------------------------------------
    def card_refunds(self, usio_account: str, confirmation: str, refunds: list[Refund]) -> None:
        from integrations.usio import usio_client

        try:
            client = usio_client(usio_account)
            details = client.get_transaction_details(confirmation=confirmation)
            original = next((t for t in details.transactions if t.confirmation == confirmation), None)
            start = min(r.created_at for r in refunds) - MATCH_WINDOW
            end = max(r.created_at for r in refunds) + MATCH_WINDOW
            listing = client.get_transaction_list(start=start, end=end, report_type="transactions")
        except ProcessorError as exc:
            self.error(refunds, exc)
            return
        if original is None:
            for refund in refunds:
                self.unresolved(refund, "original_transaction_not_found", confirmation=confirmation)
            return
        candidates = [t for t in listing.transactions
                      if t.original_confirmation == confirmation and t.transaction_type == "credit"]
        recorded = set(Refund.objects.filter(refund_confirmation_id__in=[t.confirmation for t in candidates])
                       .values_list("refund_confirmation_id", flat=True))
        candidates = sorted((t for t in candidates if t.confirmation not in recorded),
                            key=lambda t: (t.transaction_date, t.confirmation))
        remaining = []
        for refund in refunds:
            match = next((t for t in candidates if t.amount == refund.amount
                          and abs(t.transaction_date - refund.created_at) <= MATCH_WINDOW), None)
            if match is None:
                remaining.append(refund)
                continue
            candidates.remove(match)
            self.finish(refund, RefundOutcome("approved", confirmation_id=match.confirmation),
                        at=match.transaction_date)
        if not remaining:
            return
        completed = Refund.objects.filter(confirmation_id=confirmation, status=RefundStatus.COMPLETED).aggregate(
            total=Sum("amount"))["total"] or Decimal("0.00")
        unaccounted = original.refunded_amount - completed
        for refund in remaining:
            if unaccounted > 0:
                self.unresolved(refund, "usio_refunded_more_than_recorded", confirmation=confirmation,
                                usio_refunded=str(original.refunded_amount), recorded=str(completed))
            else:
                self.not_found(refund)


def refund_reconcile_processing(*, as_of: date | datetime | None = None,
                                now: datetime | None = None) -> RefundReconcileStats:
    """Resolve refunds PROCESSING for longer than ``PROCESSING_STUCK_MINUTES`` by asking Usio (see the module).

    ``now`` (aware) is the clock ages are measured against (tests move it instead of sleeping); ``as_of`` as for
    the payment reconciler. At most ``MAX_PER_RUN`` refunds, oldest first, within
    ``REFUND_RECONCILER_TIME_BUDGET_SECONDS`` (240, under the ``default`` queue's limit); the rest wait for the
    next run. Side effects: per refund, at most ``refund_finish`` in its own transaction; Usio lookups only
    (read-only). Idempotent.
    """
    now = job_clock(as_of=as_of, now=now)
    stuck_before = now - timedelta(minutes=settings.PROCESSING_STUCK_MINUTES)
    budget = float(getattr(settings, "REFUND_RECONCILER_TIME_BUDGET_SECONDS", DEFAULT_TIME_BUDGET_SECONDS))
    run = _Run(now=now, deadline=time.monotonic() + budget)
    refunds = list(refund_stuck(created_before=stuck_before)[:MAX_PER_RUN])
    run.stats.examined = len(refunds)

    groups: dict[tuple[str, str], list[Refund]] = defaultdict(list)
    work: list[tuple[str, object]] = []
    for refund in refunds:
        if refund.method == RefundMethod.CARD_REFUND:
            key = (refund.usio_account, refund.confirmation_id)
            if key not in groups:
                work.append(("card", key))
            groups[key].append(refund)
        else:
            work.append(("credit", refund))
    for kind, item in work:
        if time.monotonic() >= run.deadline:
            run.stats.skipped += len(groups[item]) if kind == "card" else 1
            continue
        if kind == "card":
            run.card_refunds(item[0], item[1], groups[item])
        else:
            run.credit(item)
    logger.info("refund reconciler run finished", extra=run.stats.as_dict())
    return run.stats
