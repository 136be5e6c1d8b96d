"""Check ACH (SPEC §7.2, seed 004): the daily resolution of ACH debits still in flight.

- **Scheduler** (``check_ach_schedule``): selects at the source every payment ACHSENT / CLEARED with
  ``payment_type != credit`` and ``purpose != prenote`` — no submit-date cutoff: the worker applies the gate —
  reading ids only (``values_list``, keyset pagination on ``id`` in chunks of ``SELECT_CHUNK_SIZE``; never a
  per-row query, never a model instance) and hands them to ``enqueue`` in batches of ``CHECK_ACH_JOB_SIZE``.
  Prenotes are left to the prenote verifier (``payments.prenotes.prenote_verify_due``, 17:05 UTC, same gate):
  it also moves the bank account's ``prenote_status``.
- **Worker** (``check_ach_process``): loads its batch in one query and, for each payment whose third business day
  after submission has begun (``core.business_days.third_business_day_reached``, SPEC §11):
  Usio → COMPLETED (its returns were written by the 16:30 returns sweep); JPM → asked first
  (``get_payment_status``, outside any transaction): RETURNED → FAILED ``returned``, REJECTED → FAILED
  ``rejected`` (code and ``"CODE: description"``), anything else → COMPLETED.
- **run_job** (``check_ach_run``): the same selection, every batch processed inline.

Every change goes through the status machine (source ``check_ach``, actor ``check_ach``): a batch's completions in
ONE set-based transaction (``payments.status.payment_apply_status_many``: row locks, conditional updates, history
rows, outbox events — a constant number of queries per job), a JPM return / rejection in its own
``payment_apply_status`` transaction (it carries its codes). The outbox consumer
``payments.transaction_service_notifier`` notifies the Transaction Service of float payments leaving ACHSENT.
Re-running changes nothing: a resolved payment is no longer ACHSENT / CLEARED, and a change that lost a race is
refused by the status machine (counted ``unchanged``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime

from django.conf import settings
from django.db.models import QuerySet

from core.business_days import third_business_day_reached
from core.dead_letters import dead_letter_record
from core.jobs import job_clock
from integrations.errors import ProcessorError, ProcessorProtocolError
from payments.jpm_status import jpm_gate_verdict
from payments.models import Payment, PaymentType, Provider, Purpose, Source, Status
from payments.status import payment_apply_status, payment_apply_status_many

logger = logging.getLogger(__name__)

#: Celery task names (declared in ``syncing.check_ach_jobs``; named here because the worker dead-letters a single
#: payment under its own task name, so that a replay re-runs just that payment).
SCHEDULER_TASK = "syncing.check_ach_schedule"
WORKER_TASK = "syncing.check_ach_process"
QUEUE = "check-ach"
ACTOR = "check_ach"
#: Ids read per SELECT by the scheduler (keyset pagination on ``id``).
SELECT_CHUNK_SIZE = 5000
#: Consecutive failed JPM lookups after which the job's remaining JPM payments are skipped (like the reconciler).
MAX_CONSECUTIVE_ERRORS = 3
IN_FLIGHT = (Status.ACHSENT, Status.CLEARED)
#: The columns the worker reads (one query per job).
WORKER_FIELDS = ("id", "purpose", "payment_type", "payment_method", "payment_provider", "payment_status",
                 "submit_date", "created_at")


@dataclass
class CheckAchStats:
    """What one worker run (or the sum of several) did, per payment id given to it:
    ``examined`` = ``not_due + completed + failed + unchanged + errors + skipped + dead_lettered``."""

    examined: int = 0
    not_due: int = 0  # the third business day after submission has not begun: left for a later run
    completed: int = 0  # → COMPLETED
    failed: int = 0  # JPM said RETURNED / REJECTED → FAILED
    unchanged: int = 0  # no longer ACHSENT / CLEARED (moved meanwhile, or not selectable): nothing to do
    errors: int = 0  # JPM could not be asked, or does not know the payment: left for the next run
    skipped: int = 0  # not examined this run (time budget spent, JPM breaker open): left for the next run
    dead_lettered: int = 0  # JPM's answer broke the protocol: the payment is in DeadLetter, unchanged

    def as_dict(self) -> dict:
        return asdict(self)

    def add(self, other: CheckAchStats) -> CheckAchStats:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))
        return self


@dataclass
class CheckAchScheduleStats:
    selected: int = 0  # payment ids read
    jobs: int = 0  # batches handed to ``enqueue``

    def as_dict(self) -> dict:
        return asdict(self)


def _setting(name: str, default):
    return type(default)(getattr(settings, name, default))


def job_size() -> int:
    """``CHECK_ACH_JOB_SIZE`` (50): payment ids per worker job."""
    return max(1, _setting("CHECK_ACH_JOB_SIZE", 50))


def time_budget() -> float:
    """``CHECK_ACH_TIME_BUDGET_SECONDS`` (45, under the check-ach queue's 54 s limit)."""
    return _setting("CHECK_ACH_TIME_BUDGET_SECONDS", 45.0)


# --- scheduler --------------------------------------------------------------------------------------------------


def check_ach_candidates() -> QuerySet[Payment]:
    """The payments check-ach resolves (SPEC §7.2): ACHSENT / CLEARED, not credits, not prenotes. No date filter."""
    return (Payment.objects.filter(payment_status__in=IN_FLIGHT)
            .exclude(payment_type=PaymentType.CREDIT)
            .exclude(purpose=Purpose.PRENOTE))


def check_ach_candidate_ids(*, chunk_size: int = SELECT_CHUNK_SIZE) -> Iterator[list[str]]:
    """The candidates' ids (strings), ``chunk_size`` per SELECT, in id order (keyset pagination: a row that
    changes status while we read can neither make us skip nor repeat another). ``ceil(N / chunk_size)`` queries
    (one more when N is a multiple of it)."""
    base = check_ach_candidates().order_by("id")
    last = None
    while True:
        query = base if last is None else base.filter(id__gt=last)
        chunk = list(query.values_list("id", flat=True)[:chunk_size])
        if chunk:
            yield [str(pk) for pk in chunk]
        if len(chunk) < chunk_size:
            return
        last = chunk[-1]


def check_ach_schedule(*, enqueue: Callable[[list[str]], object], size: int | None = None,
                       chunk_size: int = SELECT_CHUNK_SIZE) -> CheckAchScheduleStats:
    """Select the candidates (``check_ach_candidate_ids``) and call ``enqueue(ids)`` once per batch of ``size``
    ids (``CHECK_ACH_JOB_SIZE``); every id is handed over exactly once. Reads only; ``enqueue`` decides what a
    batch becomes (a Celery job, or an inline run for ``run_job``). Returns (selected, jobs)."""
    size = size or job_size()
    stats = CheckAchScheduleStats()
    pending: list[str] = []
    for chunk in check_ach_candidate_ids(chunk_size=chunk_size):
        stats.selected += len(chunk)
        pending.extend(chunk)
        while len(pending) >= size:
            enqueue(pending[:size])
            stats.jobs += 1
            pending = pending[size:]
    if pending:
        enqueue(pending)
        stats.jobs += 1
    logger.info("check-ach selection finished", extra={"stats": stats.as_dict()})
    return stats


# --- worker -----------------------------------------------------------------------------------------------------


def _parse_ids(payment_ids: Iterable) -> list[uuid.UUID]:
    if isinstance(payment_ids, (str, bytes)) or not isinstance(payment_ids, Iterable):
        raise TypeError("payment_ids must be a list of payment ids")
    return [pk if isinstance(pk, uuid.UUID) else uuid.UUID(str(pk)) for pk in payment_ids]  # ValueError if not


def _jpm_call_seconds() -> float:
    """The longest one JPM lookup can take before its client gives up (connect + read timeouts)."""
    return float(getattr(settings, "JPM_CONNECT_TIMEOUT", 3.05)) + float(getattr(settings, "JPM_READ_TIMEOUT", 30.0))


def check_ach_process(*, payment_ids: Sequence, now: datetime | None = None,
                      time_limit: float | None = None) -> CheckAchStats:
    """Resolve the batch's payments that passed the three-business-day gate (SPEC §7.2, §11); see the module.

    Reads the batch in ONE query (``only(WORKER_FIELDS)``; ids no longer ACHSENT / CLEARED, credits and prenotes
    are not loaded: ``unchanged``). Per due payment: Usio → COMPLETED; JPM → ``get_payment_status`` outside any
    transaction, then FAILED (RETURNED / REJECTED, with code and ``"CODE: description"``) or COMPLETED. Not due →
    nothing (``not_due``). JPM not knowing the payment → left (``errors``, warning). JPM unreachable, timing out,
    refusing credentials or the request → left for tomorrow (``errors``); after ``MAX_CONSECUTIVE_ERRORS`` in a row
    the remaining JPM payments are ``skipped``. An answer that breaks the protocol → that payment alone is written
    to ``DeadLetter`` (task ``WORKER_TASK``, ``args=[[payment_id]]``, the raw answer) and left unchanged; the others
    go on. No payment is examined after ``CHECK_ACH_TIME_BUDGET_SECONDS`` (``skipped``). With ``time_limit`` (the
    Celery task passes its soft time limit) no JPM lookup is started that could still be waiting for JPM when the
    limit strikes (connect + read timeouts): those payments are ``skipped`` too, instead of the job being killed.

    Side effects: the batch's completions in one ``payment_apply_status_many`` transaction, each failure in its
    own ``payment_apply_status`` transaction (history row, outbox event, ``completion_date`` / ``return_date``);
    JPM GETs (read-only). Idempotent: running it again changes nothing.
    ``now`` (aware) is the gate's clock (default: now). A malformed id raises (the job is dead-lettered whole).
    """
    now = job_clock(as_of=None, now=now)
    ids = _parse_ids(payment_ids)
    started = time.monotonic()
    deadline = started + time_budget()
    jpm_deadline = started + time_limit - _jpm_call_seconds() if time_limit is not None else None
    stats = CheckAchStats(examined=len(ids))
    payments = list(check_ach_candidates().filter(pk__in=ids).only(*WORKER_FIELDS).order_by("id"))
    stats.unchanged += len(ids) - len(payments)
    jpm_errors = 0
    to_complete: dict = {}  # payment id -> raw payload reference
    for payment in payments:
        extra = {"payment_id": str(payment.pk), "provider": payment.payment_provider}
        if time.monotonic() >= deadline:
            stats.skipped += 1
            continue
        submitted = payment.submit_date or payment.created_at
        if not third_business_day_reached(submitted, now):
            stats.not_due += 1
            continue
        is_jpm = payment.payment_provider == Provider.JPM
        to_status, failure, code, info = Status.COMPLETED, None, None, None
        if is_jpm:
            if jpm_errors >= MAX_CONSECUTIVE_ERRORS or (jpm_deadline is not None and time.monotonic() >= jpm_deadline):
                stats.skipped += 1
                continue
            try:
                verdict = jpm_gate_verdict(payment)
            except ProcessorProtocolError as exc:
                # Not the processor being down: an answer we cannot read. Keep it (raw) for an operator; a replay
                # of the dead letter re-runs just this payment through the same task.
                dead_letter_record(task_name=WORKER_TASK, task_id="", queue=QUEUE, args=[[str(payment.pk)]],
                                   kwargs={}, error=exc, attempts=1)
                stats.dead_lettered += 1
                continue
            except ProcessorError as exc:
                jpm_errors += 1
                stats.errors += 1
                logger.warning("check-ach could not ask JPM; left for the next run",
                               extra={**extra, "error": type(exc).__name__, "consecutive_errors": jpm_errors})
                continue
            jpm_errors = 0
            if verdict is None:
                stats.errors += 1
                logger.warning("check-ach: JPM does not know the payment; left as it is", extra=extra)
                continue
            to_status, failure, code, info = (verdict.to_status, verdict.failure, verdict.return_code,
                                              verdict.return_info)
        raw_payload_ref = f"jpm:payment_status:{payment.reference}" if is_jpm else "check_ach:usio_auto_complete"
        if to_status == Status.COMPLETED and failure is None and code is None and info is None:
            to_complete[payment.pk] = raw_payload_ref  # applied together after the loop
            continue
        result = payment_apply_status(
            payment_id=payment.pk, to_status=to_status, source=Source.CHECK_ACH, actor=ACTOR, failure=failure,
            return_code=code, return_info=info, raw_payload_ref=raw_payload_ref,
        )
        if not result.applied:
            stats.unchanged += 1
        elif to_status == Status.COMPLETED:
            stats.completed += 1
        else:
            stats.failed += 1
    if to_complete:
        # One set-based transaction for the batch's completions (the same rows as one payment_apply_status each).
        results = payment_apply_status_many(payment_ids=list(to_complete), to_status=Status.COMPLETED,
                                            source=Source.CHECK_ACH, actor=ACTOR, raw_payload_refs=to_complete)
        completed = sum(1 for result in results.values() if result.applied)
        stats.completed += completed
        stats.unchanged += len(to_complete) - completed
    if stats.skipped:
        logger.warning("check-ach job stopped early; the rest waits for the next run",
                       extra={"stats": stats.as_dict(), "breaker_open": jpm_errors >= MAX_CONSECUTIVE_ERRORS})
    logger.info("check-ach job finished", extra={"stats": stats.as_dict()})
    return stats


# --- run_job ----------------------------------------------------------------------------------------------------


def check_ach_run(*, as_of: date | datetime | None = None, now: datetime | None = None,
                  size: int | None = None, chunk_size: int = SELECT_CHUNK_SIZE) -> dict:
    """The whole pipeline inline, without a broker (``manage.py run_job check_ach [--as-of DATE]``): the
    scheduler's selection, each batch processed at once with ``check_ach_process`` as at ``job_clock(as_of, now)``
    (the end of that Chicago day, never later than now). Returns ``selected``, ``jobs`` and the summed stats."""
    moment = job_clock(as_of=as_of, now=now)
    total = CheckAchStats()
    schedule = check_ach_schedule(enqueue=lambda ids: total.add(check_ach_process(payment_ids=ids, now=moment)),
                                  size=size, chunk_size=chunk_size)
    return {**schedule.as_dict(), **total.as_dict()}
