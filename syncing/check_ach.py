"""Check ACH (SPEC §7.2, seed 004): the daily resolution of ACH debits still in flight.

- **Scheduler** (``check_ach_schedule``): selects at the source every payment ACHSENT / CLEARED with
  ``payment_type != credit`` and ``purpose != prenote`` — no submit-date cutoff: the worker applies the gate —
  reading ids and providers only (``values_list``, keyset pagination on ``id`` in chunks of ``SELECT_CHUNK_SIZE``;
  never a per-row query, never a model instance) and hands them to ``enqueue`` in batches of one kind: JPM payments
  ``CHECK_ACH_JPM_JOB_SIZE`` at a time (a look-up each), the others (Usio) ``CHECK_ACH_JOB_SIZE`` at a time.
  Prenotes are left to the prenote verifier (``payments.prenotes.prenote_verify_due``, 17:05 UTC, same gate):
  it also moves the bank account's ``prenote_status``.
- **Worker** (``check_ach_process``): loads its batch in one query and, for each payment whose third business day
  after submission has begun (``core.business_days.third_business_day_reached``, SPEC §11; applied by the batch's
  query as one cut-off instant, ``third_business_day_cutoff``):
  Usio → COMPLETED (its returns were written by the 16:30 returns sweep); JPM → asked first
  (``get_payment_status``, outside any transaction): RETURNED → FAILED ``returned``, REJECTED → FAILED
  ``rejected`` (code and ``"CODE: description"``), anything else → COMPLETED. A job's JPM look-ups run concurrently
  (``CHECK_ACH_JPM_CONCURRENCY`` threads, default 8, kept by the worker process from job to job with their
  kept-alive connections, each asking with a client of its own; ``_jpm_lookups``) yet make exactly the
  look-ups, in the same order of starts, that one after the other would: the breaker is counted in id order and a
  look-up is started only when the ones before it cannot already have tripped it (those still in flight counted as
  errors) — in practice about ``MAX_CONSECUTIVE_ERRORS`` look-ups in flight. The database work stays in the job's
  thread. The JPM payments a job has no time to ask about (a slow JPM) are handed to a new job
  (``continue_with``), unless JPM gave the job no answer at all or the breaker is open: then they wait for the next
  day, as before.
- **run_job** (``check_ach_run``): the same selection, every batch processed inline.

Every change goes through the status machine (source ``check_ach``, actor ``check_ach``): a batch's completions in
ONE set-based statement (``payments.status.payment_complete_many``: row locks, the conditional update, history rows,
outbox events, with no per-payment Python on PostgreSQL; ``payment_apply_status_many`` elsewhere), a JPM return /
rejection in its own ``payment_apply_status`` transaction (it carries its codes). The outbox consumer
``payments.transaction_service_notifier`` notifies the Transaction Service of float payments leaving ACHSENT.
Re-running changes nothing: a resolved payment is no longer ACHSENT / CLEARED, and a change that lost a race is
refused by the status machine (counted ``unchanged``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime

from django.conf import settings
from django.db.models import BooleanField, ExpressionWrapper, F, Q, QuerySet

from core.business_days import third_business_day_cutoff
from core.dead_letters import dead_letter_record
from core.jobs import job_clock
from core.sql import AnyOf
from integrations.errors import ProcessorError, ProcessorProtocolError
from payments.jpm_status import jpm_gate_verdict
from payments.models import Payment, PaymentType, Provider, Purpose, Source, Status
from payments.status import payment_apply_status, payment_complete_many

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


@dataclass
class CheckAchStats:
    """What one worker run (or the sum of several) did, per payment id given to it:
    ``examined`` = ``not_due + completed + failed + unchanged + errors + skipped + dead_lettered + continued``."""

    examined: int = 0
    not_due: int = 0  # the third business day after submission has not begun: left for a later run
    completed: int = 0  # → COMPLETED
    failed: int = 0  # JPM said RETURNED / REJECTED → FAILED
    unchanged: int = 0  # no longer ACHSENT / CLEARED (moved meanwhile, or not selectable): nothing to do
    errors: int = 0  # JPM could not be asked, or does not know the payment: left for the next run
    skipped: int = 0  # not examined this run (time budget spent, JPM breaker open): left for the next run
    dead_lettered: int = 0  # JPM's answer broke the protocol: the payment is in DeadLetter, unchanged
    continued: int = 0  # JPM payments whose look-up the job had no time to start: handed to a new job, unchanged

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
    """``CHECK_ACH_JOB_SIZE`` (1000): payment ids per worker job of payments that need no processor call (Usio): a
    job is its batch read and one completion statement, so a larger job spends less per payment on the job itself."""
    return max(1, _setting("CHECK_ACH_JOB_SIZE", 1000))


def jpm_job_size() -> int:
    """``CHECK_ACH_JPM_JOB_SIZE`` (200): payment ids per worker job of JPM payments, each needing a JPM look-up.
    With ~3 look-ups in flight (``_jpm_lookups``) and none started after ``jpm_deadline`` (~11 s into the job), all
    200 start from ~160 ms a look-up; at a slower JPM (~600 ms) a job asks about ~50 and hands the rest to a new job
    (``check_ach_process(continue_with=)``). Fewer, larger jobs: less of each job's own cost (its message, batch read
    and completion statement) per payment."""
    return max(1, _setting("CHECK_ACH_JPM_JOB_SIZE", 200))


def time_budget() -> float:
    """``CHECK_ACH_TIME_BUDGET_SECONDS`` (45, under the check-ach queue's 54 s limit)."""
    return _setting("CHECK_ACH_TIME_BUDGET_SECONDS", 45.0)


# --- scheduler --------------------------------------------------------------------------------------------------


def check_ach_candidates() -> QuerySet[Payment]:
    """The payments check-ach resolves (SPEC §7.2): ACHSENT / CLEARED, not credits, not prenotes. No date filter."""
    return (Payment.objects.filter(payment_status__in=IN_FLIGHT)
            .exclude(payment_type=PaymentType.CREDIT)
            .exclude(purpose=Purpose.PRENOTE))


def check_ach_candidate_ids(*, chunk_size: int = SELECT_CHUNK_SIZE) -> Iterator[list[tuple[str, str]]]:
    """The candidates' ``(id, payment_provider)`` (the id as a string), ``chunk_size`` per SELECT, in id order
    (keyset pagination: a row that changes status while we read can neither make us skip nor repeat another).
    ``ceil(N / chunk_size)`` queries (one more when N is a multiple of it)."""
    base = check_ach_candidates().order_by("id")
    last = None
    while True:
        query = base if last is None else base.filter(id__gt=last)
        chunk = list(query.values_list("id", "payment_provider")[:chunk_size])
        if chunk:
            yield [(str(pk), provider) for pk, provider in chunk]
        if len(chunk) < chunk_size:
            return
        last = chunk[-1][0]


def check_ach_schedule(*, enqueue: Callable[[list[str]], object], size: int | None = None,
                       jpm_size: int | None = None, chunk_size: int = SELECT_CHUNK_SIZE) -> CheckAchScheduleStats:
    """Select the candidates (``check_ach_candidate_ids``) and call ``enqueue(ids)`` once per batch: JPM payments
    in batches of ``jpm_size`` ids (``CHECK_ACH_JPM_JOB_SIZE``), every other payment (Usio: no processor call) in
    batches of ``size`` (``CHECK_ACH_JOB_SIZE``); each batch in id order and of one kind, handed over as soon as it
    is full, the rest at the end. Every id is handed over exactly once. Reads only; ``enqueue`` decides what a batch
    becomes (a Celery job, or an inline run for ``run_job``). Returns (selected, jobs)."""
    sizes = {True: jpm_size or jpm_job_size(), False: size or job_size()}  # keyed by "is a JPM payment"
    stats = CheckAchScheduleStats()
    pending: dict[bool, list[str]] = {True: [], False: []}
    for chunk in check_ach_candidate_ids(chunk_size=chunk_size):
        stats.selected += len(chunk)
        for pk, provider in chunk:
            jpm = provider == Provider.JPM
            pending[jpm].append(pk)
            if len(pending[jpm]) >= sizes[jpm]:
                enqueue(pending[jpm])
                stats.jobs += 1
                pending[jpm] = []
    for batch in pending.values():
        if batch:
            enqueue(batch)
            stats.jobs += 1
    logger.info("check-ach selection finished", extra={"stats": stats.as_dict()})
    return stats


# --- worker -----------------------------------------------------------------------------------------------------


def _parse_ids(payment_ids: Iterable) -> list[uuid.UUID]:
    if isinstance(payment_ids, (str, bytes)) or not isinstance(payment_ids, Iterable):
        raise TypeError("payment_ids must be a list of payment ids")
    return [pk if isinstance(pk, uuid.UUID) else uuid.UUID(str(pk)) for pk in payment_ids]  # ValueError if not


#: Seconds kept, after the last JPM look-up could end, for the job's database work (its batch's completions and
#: failures) before the task's soft limit.
DB_WORK_MARGIN_SECONDS = 5.0


def _jpm_call_seconds() -> float:
    """The longest one JPM lookup can take before its client gives up (connect + read timeouts)."""
    return float(getattr(settings, "JPM_CONNECT_TIMEOUT", 3.05)) + float(getattr(settings, "JPM_READ_TIMEOUT", 30.0))


def jpm_concurrency() -> int:
    """``CHECK_ACH_JPM_CONCURRENCY`` (8): JPM look-ups a job may have in flight at once (threads, one client each)."""
    return max(1, _setting("CHECK_ACH_JPM_CONCURRENCY", 8))


@dataclass(frozen=True)
class _Lookup:
    """One JPM look-up's outcome: ``verdict`` (an answer: a ``GateVerdict``, or None = JPM does not know the
    payment), ``protocol`` / ``error`` (the ``ProcessorError`` raised), or never started: ``skipped`` (the breaker
    tripped) or ``out_of_time`` (the job's time to start look-ups ran out)."""

    kind: str
    verdict: object = None
    error: Exception | None = None


_SKIPPED = _Lookup("skipped")
_OUT_OF_TIME = _Lookup("out_of_time")


def _breaker_run(run: int, outcome: _Lookup | None) -> int:
    """The consecutive-error count after one more payment (in the payments' order), as the sequential loop kept it:
    an error (or, pessimistically, a look-up still in flight: None) adds one, an answer resets it, a protocol error
    or a skipped payment leaves it."""
    if outcome is None or outcome.kind == "error":
        return run + 1
    return 0 if outcome.kind == "verdict" else run


class _LookupThreads:
    """The worker process's JPM look-up threads, kept from one job to the next: each thread's kept-alive
    connections to JPM (``integrations.http._thread_manager``) then serve every job of the process, instead of a
    new TCP connection and new threads per job. Built lazily in the process that uses it (a forked child builds its
    own) and rebuilt when ``CHECK_ACH_JPM_CONCURRENCY`` changes; a job interrupted with look-ups still in flight
    discards it (``discard``): those threads end with their own timeouts and the next job gets fresh ones.

    A thread takes ``(lookup, payment, position, answers)`` from the pool's inbox and puts ``(position, outcome)``
    in ``answers``, the queue of the job that asked: a job waits on its own queue only. (A ``ThreadPoolExecutor``
    waited on with ``concurrent.futures.wait`` cost ~25 µs more CPU per look-up: a Future and its Condition each,
    and waiters installed on and removed from every future in flight at each wait.) Threads start as a job first
    has that many look-ups in flight, and are daemons: a look-up writes nothing, so a process may exit under one."""

    _lock = threading.Lock()
    _current: tuple[int, int, _LookupThreads] | None = None  # (pid, concurrency, pool)

    def __init__(self) -> None:
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def submit(self, lookup: Callable, payment: Payment, position: int, answers: queue.SimpleQueue, *,
               in_flight: int) -> None:
        """Start ``lookup(payment)``, its outcome to be put in ``answers`` as ``(position, outcome)``; ``in_flight``:
        the job's look-ups in flight with this one (a thread is started when there are fewer threads)."""
        if len(self._threads) < in_flight:
            thread = threading.Thread(target=self._serve, name=f"check-ach-jpm_{len(self._threads)}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._inbox.put((lookup, payment, position, answers))

    def _serve(self) -> None:
        while (task := self._inbox.get()) is not None:
            lookup, payment, position, answers = task
            try:
                outcome = lookup(payment)  # it returns an Exception as an outcome already
            except BaseException as exc:  # re-raised in the job's thread; this thread serves on
                outcome = _Lookup("raised", error=exc)
            answers.put((position, outcome))

    def _close(self) -> None:
        """End the threads once they are free (a look-up in flight finishes first)."""
        for _ in self._threads:
            self._inbox.put(None)

    @classmethod
    def get(cls, concurrency: int) -> _LookupThreads:
        with cls._lock:
            current = cls._current
            if current is None or current[0] != os.getpid() or current[1] != concurrency:
                if current is not None and current[0] == os.getpid():
                    current[2]._close()
                current = cls._current = (os.getpid(), concurrency, cls())
            return current[2]

    @classmethod
    def discard(cls, pool: _LookupThreads) -> None:
        with cls._lock:
            if cls._current is not None and cls._current[2] is pool:
                cls._current = None
        pool._close()


def _jpm_lookups(payments: list[Payment], *, deadline: float, jpm_deadline: float | None,
                 concurrency: int) -> Iterator[tuple[Payment, _Lookup]]:
    """Ask JPM about ``payments`` (``jpm_gate_verdict``) with up to ``concurrency`` look-ups in flight, and yield
    ``(payment, outcome)`` in the payments' order, each as soon as it and every one before it is known (the caller
    does its database work meanwhile, in its own thread: the look-up threads never touch the ORM).

    Exactly the look-ups the sequential loop would make, no more: look-ups start in order, and one is started only
    when the payments before it cannot already hold ``MAX_CONSECUTIVE_ERRORS`` consecutive errors, counting every
    look-up still in flight as an error; so once the breaker trips nothing more is started (the rest: skipped), and
    when it does not, nothing is left out. None is started at or after ``deadline`` (the time budget) or
    ``jpm_deadline`` (it could outlive the task's soft limit): it and the rest are ``out_of_time``. The look-ups run
    on the process's look-up threads (``_LookupThreads``); each thread asks with a ``JpmClient`` of its own built for
    this job (so settings are read per job), through the thread's kept-alive connections. Anything but a
    ``ProcessorError`` is raised here, at that payment's turn (the job fails as before)."""
    from integrations.jpm import jpm_client

    count = len(payments)
    if not count:
        return
    outcomes: list[_Lookup | None] = [None] * count
    clients: dict[int, object] = {}  # thread id -> this job's client for that thread

    def lookup(payment: Payment) -> _Lookup:
        try:
            client = clients.get(threading.get_ident())
            if client is None:
                client = clients[threading.get_ident()] = jpm_client()
            return _Lookup("verdict", verdict=jpm_gate_verdict(payment, client=client))
        except ProcessorProtocolError as exc:
            return _Lookup("protocol", error=exc)
        except ProcessorError as exc:
            return _Lookup("error", error=exc)
        except Exception as exc:  # re-raised in the job's thread at this payment's turn
            return _Lookup("raised", error=exc)

    pool = _LookupThreads.get(concurrency)
    answers: queue.SimpleQueue = queue.SimpleQueue()  # (position, outcome) of this job's look-ups
    in_flight = started = emitted = run = 0  # run: consecutive errors up to ``emitted`` (the payments handed out)
    try:
        while emitted < count:
            # Start what the sequential loop would certainly have reached.
            while started < count and in_flight < concurrency:
                if time.monotonic() >= deadline or (jpm_deadline is not None and time.monotonic() >= jpm_deadline):
                    outcomes[started:] = [_OUT_OF_TIME] * (count - started)
                    started = count
                    break
                pessimistic = run
                for position in range(emitted, started):
                    pessimistic = _breaker_run(pessimistic, outcomes[position])
                if pessimistic >= MAX_CONSECUTIVE_ERRORS:
                    break  # wait for the look-ups in flight
                in_flight += 1
                pool.submit(lookup, payments[started], started, answers, in_flight=in_flight)
                started += 1
            if outcomes[emitted] is None:
                if not in_flight:  # cannot happen: the next payment's look-up is always startable or skipped
                    raise RuntimeError("check-ach look-up scheduler stalled")
                position, outcome = answers.get()
                while True:  # this answer and any others already in
                    outcomes[position] = outcome
                    in_flight -= 1
                    try:
                        position, outcome = answers.get_nowait()
                    except queue.Empty:
                        break
            while emitted < count and outcomes[emitted] is not None:
                outcome = outcomes[emitted]
                if outcome.kind == "raised":
                    raise outcome.error
                run = _breaker_run(run, outcome)
                yield payments[emitted], outcome
                emitted += 1
                if run >= MAX_CONSECUTIVE_ERRORS:  # the breaker trips (nothing after it was started): no more
                    outcomes[started:] = [_SKIPPED] * (count - started)
                    started = count
    finally:
        # Normally nothing is in flight here. When the job is interrupted (an exception, the soft time limit), do
        # not wait for look-ups still in flight: they end by their own timeouts and write nothing; their threads are
        # left to them, and the next job gets new ones.
        if in_flight:
            _LookupThreads.discard(pool)
        else:
            for client in clients.values():
                client.close()


def _batch(ids: list[uuid.UUID], *, cutoff: datetime) -> list[tuple[uuid.UUID, str, bool]]:
    """The job's payments still to resolve (ACHSENT / CLEARED, not credits, not prenotes) as ``(id, provider,
    due)`` in id order, in ONE query: ``due`` is the three-business-day gate applied by the database to the
    submission instant (``submit_date``, else ``created_at``) with the gate's cut-off (``third_business_day_cutoff``),
    so no timestamp is read and no model instance built; the ids go to PostgreSQL as one array (``AnyOf``)."""
    due = ExpressionWrapper(Q(submit_date__lt=cutoff) | Q(submit_date__isnull=True, created_at__lt=cutoff),
                            output_field=BooleanField())
    return list(check_ach_candidates().filter(AnyOf(F("id"), ids)).annotate(due=due)
                .values_list("id", "payment_provider", "due").order_by("id"))


def check_ach_process(*, payment_ids: Sequence, now: datetime | None = None, time_limit: float | None = None,
                      continue_with: Callable[[list[str]], object] | None = None) -> CheckAchStats:
    """Resolve the batch's payments that passed the three-business-day gate (SPEC §7.2, §11); see the module.

    Reads the batch in ONE query (``_batch``: id, provider and the gate; ids no longer ACHSENT / CLEARED, credits
    and prenotes are not loaded: ``unchanged``). Per due payment: Usio → COMPLETED; JPM → ``get_payment_status``
    outside any transaction, then FAILED (RETURNED / REJECTED, with code and ``"CODE: description"``) or COMPLETED.
    Not due → nothing (``not_due``). JPM not knowing the payment → left (``errors``, warning). JPM unreachable,
    timing out, refusing credentials or the request → left for tomorrow (``errors``); after
    ``MAX_CONSECUTIVE_ERRORS`` in a row (in the payments' id order) the remaining JPM payments are ``skipped``. An
    answer that breaks the protocol → that payment alone is written to ``DeadLetter`` (task ``WORKER_TASK``,
    ``args=[[payment_id]]``, the raw answer) and left unchanged; the others go on. No payment is examined after
    ``CHECK_ACH_TIME_BUDGET_SECONDS`` (``skipped``). With ``time_limit`` (the Celery task passes its soft time
    limit) no JPM lookup is started that could still be waiting for JPM when the limit strikes (connect + read
    timeouts, plus ``DB_WORK_MARGIN_SECONDS`` for the database work after it): those payments are ``skipped`` too,
    instead of the job being killed. The JPM look-ups run ``CHECK_ACH_JPM_CONCURRENCY`` at a time in threads
    (``_jpm_lookups``: the same look-ups and outcomes as one after the other); all database work stays in this
    thread.

    ``continue_with(ids)`` (the Celery task: publish a new job with them): the JPM payments whose look-up was not
    started because the job's time for look-ups ran out are handed on, in id order, once the job's own work is
    done (``continued``) — so a slow JPM delays them by a job, not by a day — provided that the job got at least one
    answer or error from JPM and the breaker is not open; otherwise (JPM down, or no time for even one look-up:
    handing them on could go on forever), or when handing on fails, they are ``skipped``, for the next run.

    Side effects: the batch's completions in one ``payment_complete_many`` statement, each failure in its
    own ``payment_apply_status`` transaction (history row, outbox event, ``completion_date`` / ``return_date``);
    JPM GETs (read-only). Idempotent: running it again changes nothing.
    ``now`` (aware) is the gate's clock (default: now). A malformed id raises (the job is dead-lettered whole).
    """
    now = job_clock(as_of=None, now=now)
    ids = _parse_ids(payment_ids)
    started = time.monotonic()
    deadline = started + time_budget()
    jpm_deadline = (started + time_limit - _jpm_call_seconds() - DB_WORK_MARGIN_SECONDS if time_limit is not None
                    else None)
    stats = CheckAchStats(examined=len(ids))
    rows = _batch(ids, cutoff=third_business_day_cutoff(now))
    stats.unchanged += len(ids) - len(rows)
    to_complete: dict = {}  # payment id -> raw payload reference
    to_ask: list[Payment] = []  # due JPM payments, in id order
    for pk, provider, due in rows:
        if time.monotonic() >= deadline:
            stats.skipped += 1
            continue
        if not due:
            stats.not_due += 1
        elif provider == Provider.JPM:
            to_ask.append(Payment(id=pk, payment_provider=provider))  # what a look-up reads: the reference
        else:
            to_complete[pk] = "check_ach:usio_auto_complete"  # applied together at the end
    jpm_errors = asked = 0
    out_of_time: list[str] = []  # JPM payments whose look-up was never started for lack of time, in id order
    lookups = _jpm_lookups(to_ask, deadline=deadline, jpm_deadline=jpm_deadline, concurrency=jpm_concurrency())
    with contextlib.closing(lookups):  # the look-up threads end with the loop, even when it raises
        for payment, outcome in lookups:
            extra = {"payment_id": str(payment.pk), "provider": payment.payment_provider}
            if outcome.kind == "skipped":
                stats.skipped += 1
                continue
            if outcome.kind == "out_of_time":
                out_of_time.append(str(payment.pk))
                continue
            asked += 1
            if outcome.kind == "protocol":
                # Not the processor being down: an answer we cannot read. Keep it (raw) for an operator; a replay
                # of the dead letter re-runs just this payment through the same task.
                dead_letter_record(task_name=WORKER_TASK, task_id="", queue=QUEUE, args=[[str(payment.pk)]],
                                   kwargs={}, error=outcome.error, attempts=1)
                stats.dead_lettered += 1
                continue
            if outcome.kind == "error":
                jpm_errors += 1
                stats.errors += 1
                logger.warning("check-ach could not ask JPM; left for the next run",
                               extra={**extra, "error": type(outcome.error).__name__,
                                      "consecutive_errors": jpm_errors})
                continue
            jpm_errors = 0
            verdict = outcome.verdict
            if verdict is None:
                stats.errors += 1
                logger.warning("check-ach: JPM does not know the payment; left as it is", extra=extra)
                continue
            raw_payload_ref = f"jpm:payment_status:{payment.reference}"
            if (verdict.to_status == Status.COMPLETED and verdict.failure is None and verdict.return_code is None
                    and verdict.return_info is None):
                to_complete[payment.pk] = raw_payload_ref  # applied together at the end
                continue
            result = payment_apply_status(
                payment_id=payment.pk, to_status=verdict.to_status, source=Source.CHECK_ACH, actor=ACTOR,
                failure=verdict.failure, return_code=verdict.return_code, return_info=verdict.return_info,
                raw_payload_ref=raw_payload_ref,
            )
            if not result.applied:
                stats.unchanged += 1
            elif verdict.to_status == Status.COMPLETED:
                stats.completed += 1
            else:
                stats.failed += 1
    if to_complete:
        # One set-based statement for the batch's completions (the same rows as one payment_apply_status each).
        completed = payment_complete_many(payment_ids=to_complete, source=Source.CHECK_ACH, actor=ACTOR,
                                          raw_payload_refs=to_complete)
        stats.completed += len(completed)
        stats.unchanged += len(to_complete) - len(completed)
    if out_of_time:
        _hand_on(out_of_time, stats, continue_with=continue_with,
                 jpm_answering=asked > 0 and jpm_errors < MAX_CONSECUTIVE_ERRORS)
    if stats.skipped:
        logger.warning("check-ach job stopped early; the rest waits for the next run",
                       extra={"stats": stats.as_dict(), "breaker_open": jpm_errors >= MAX_CONSECUTIVE_ERRORS})
    logger.info("check-ach job finished", extra={"stats": stats.as_dict()})
    return stats


def _hand_on(ids: list[str], stats: CheckAchStats, *, continue_with: Callable[[list[str]], object] | None,
             jpm_answering: bool) -> None:
    """``continue_with(ids)`` (``continued``) when JPM is answering (the job got at least one answer or error, and its
    breaker is closed); without ``continue_with``, when JPM is not answering, or when it fails: ``skipped``."""
    if continue_with is not None and jpm_answering:
        try:
            continue_with(ids)
        except Exception as exc:  # the broker refused: these payments wait for the next run, as skipped ones do
            logger.warning("check-ach could not hand on the payments it had no time to ask about",
                           extra={"count": len(ids), "error": type(exc).__name__})
        else:
            stats.continued += len(ids)
            logger.info("check-ach handed on the payments it had no time to ask about", extra={"count": len(ids)})
            return
    stats.skipped += len(ids)


# --- run_job ----------------------------------------------------------------------------------------------------


def check_ach_run(*, as_of: date | datetime | None = None, now: datetime | None = None,
                  size: int | None = None, chunk_size: int = SELECT_CHUNK_SIZE) -> dict:
    """The whole pipeline inline, without a broker (``manage.py run_job check_ach [--as-of DATE]``): the
    scheduler's selection, each batch processed at once with ``check_ach_process`` as at ``job_clock(as_of, now)``
    (the end of that Chicago day, never later than now), the payments a batch hands on (``continued``) processed
    right after it. Returns ``selected``, ``jobs`` and the summed stats."""
    moment = job_clock(as_of=as_of, now=now)
    total = CheckAchStats()
    handed_on: list[list[str]] = []

    def process(ids: list[str]) -> None:
        handed_on.append(ids)
        while handed_on:
            total.add(check_ach_process(payment_ids=handed_on.pop(), now=moment, continue_with=handed_on.append))

    schedule = check_ach_schedule(enqueue=process, size=size, chunk_size=chunk_size)
    return {**schedule.as_dict(), **total.as_dict()}
