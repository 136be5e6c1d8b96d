"""The Usio sync (SPEC §7.3, seed 004 "Usio Sync"): Usio has no webhooks, so its reports are polled.

Three reports, each read per merchant account (``USIO_SYNC_ACCOUNTS``) for a window ``[start, end)``:

| job type | report (``GetTransactionList`` ``ReportType``) | window | staged as |
|---|---|---|---|
| ``transactions`` | transactions submitted in the window, current status | the last 35 minutes | ``transaction`` |
| ``ach_returns`` | ACH returns by return time | the America/Chicago day of the run | ``return`` |
| ``chargebacks`` | chargebacks by chargeback time | the America/Chicago day of the run | ``chargeback`` |

``usio_sync_window`` reads one report (the client checks the whole answer first: a broken answer raises before
anything is written), then, page by page (``PAGE_SIZE`` records, ``USIO_SYNC_PAGE_SIZE``; a confirmation listed twice:
the last listing wins), upserts the page's records into ``UsioTransaction`` (set-based, one transaction per page: on
PostgreSQL ``COPY`` into a temporary table, matched and diffed there, new rows inserted and changed ones updated
in one statement each; elsewhere one SELECT of the keys, ``bulk_create``/``bulk_update``; identical rows untouched),
matches the records to payments (Usio ``Confirmation`` = ``payment.confirmation_id``, else our reference
``AdditionalSearch`` = ``payment.reference``), and applies what each record says through the status machine:

- **returned** (the returns report, or a transactions record with status ``returned``), ACH only → FAILED
  ``failure="returned"``, ``return_code`` = the NACHA code, ``return_info="RETURNED"``, dated at the return
  (``*_RETURNED`` / ``PRENOTE_RETURNED``); a PROCESSING payment is first moved to ACHSENT (it was submitted);
- **chargeback** (the chargebacks report, or a transactions record with status ``chargeback``), card/RTP only →
  CHARGED_BACK (``*_CHARGED_BACK``), a PROCESSING payment first to COMPLETED; an ACH payment is "not applicable"
  (the status machine has no chargeback for ACH): counted and logged;
- **settled** (transactions): PROCESSING → ACHSENT (ACH) / COMPLETED (card/RTP) with the confirmation id; an
  ACHSENT/CLEARED ACH **debit** → COMPLETED only once past the three-business-day gate (``core.business_days``),
  else unchanged (check-ach completes it; Usio's "settled" is not the end of the return window); an ACH **credit**
  → COMPLETED at once (check-ach never selects credits — seed 004: "credits are never cleared by this pipeline" —
  so this sync is what completes them; a later return still fails it: COMPLETED → FAILED is a late ACH return).
  Prenotes are never completed here (the prenote verifier owns PRENOTE_VERIFIED);
- **failed** (transactions) on a PROCESSING payment → FAILED (``rejected`` for ACH, ``declined`` for cards); on any
  other status: not applicable (counted and logged);
- **pending**: nothing.

A record for no known payment is staged with ``payment`` NULL (``unmatched``). A record whose amount, direction,
merchant account or processor does not fit the payment it matched (or that carries our reference while the
payment already has another confirmation) is staged with that payment but never applied (``mismatched``, logged
for support).

Idempotency: the staging upsert writes nothing for identical records, and every status change goes through the
status machine (a change already made is refused), so re-running a window changes nothing, and re-running it after
a crash in the middle completes the rest. A payment that needs one change (the usual case) is applied set-based,
500 per transaction (``payment_apply_status_many``); one that needs two (PROCESSING first moved on) gets its own
transaction (``payment_apply_status`` each step). No transaction is open during the HTTP call.

On PostgreSQL, called outside a transaction (the worker), the next pages are staged and matched in threads with their
own connections while the page before them is applied in the caller's (``_sync_pages_overlapped``): the same outcome
as one page after the other, the payments changed meanwhile being read again before a page is applied.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import Counter, deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from dataclasses import fields as dataclass_fields
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from core.business_days import CHICAGO, chicago_date, third_business_day_reached
from core.jobs import job_clock
from integrations.usio import UsioTransaction as UsioRecord
from integrations.usio import usio_client
from payments.models import Method, Payment, PaymentType, Provider, Purpose, Source, Status
from payments.status import payment_apply_status, payment_apply_status_many
from syncing.models import UsioRecordType, UsioTransaction

logger = logging.getLogger(__name__)

ACTOR = "usio_sync"
JOB_TYPES = ("transactions", "ach_returns", "chargebacks")
RECORD_TYPES = {
    "transactions": UsioRecordType.TRANSACTION,
    "ach_returns": UsioRecordType.RETURN,
    "chargebacks": UsioRecordType.CHARGEBACK,
}
#: Keys per ``IN (...)`` query: one query for any ordinary window, well under every database's parameter limit.
KEY_CHUNK = 900
#: Records read, staged and applied at a time (``USIO_SYNC_PAGE_SIZE`` overrides it): the worker's memory grows
#: with the page, not with the window, and every page costs the same few queries.
PAGE_SIZE = 5000
#: Pages staged at once, each in its own thread and connection, while the worker applies the page before them.
STAGING_THREADS = 2
#: Payments per set-based status transaction (``_apply_many``).
APPLY_CHUNK = 500
#: The staging fields compared (and rewritten) when a record is seen again.
_STAGED_FIELDS = ("kind", "merchant_account", "amount", "status", "return_code", "reference", "account_mask",
                  "transaction_date", "event_date", "payment_id", "raw")


@dataclass
class UsioSyncStats:
    """What one window of one merchant account did.

    ``fetched`` = ``created + updated + unchanged`` (staging) = ``matched + unmatched`` (payments);
    ``applied``, ``not_applicable`` and ``mismatched`` count matched records.
    """

    account: str
    job_type: str
    start: str
    end: str
    fetched: int = 0
    created: int = 0  # new staging rows
    updated: int = 0  # staging rows whose record changed (e.g. settled → returned)
    unchanged: int = 0  # staging rows already identical: not written
    matched: int = 0  # records of a known payment
    unmatched: int = 0  # records of no payment we know: staged with payment NULL
    applied: int = 0  # records that changed their payment's status
    not_applicable: int = 0  # records whose outcome has no meaning for the payment (an ACH chargeback, ...)
    mismatched: int = 0  # records that do not fit their payment (amount, direction, ...): staged, never applied

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Step:
    to_status: str
    failure: str | None = None
    return_code: str | None = None
    return_info: str | None = None
    at: datetime | None = None


# --- windows -----------------------------------------------------------------------------------------------------


def usio_chicago_day_window(day: date) -> tuple[datetime, datetime]:
    """``[00:00, next 00:00)`` of the America/Chicago calendar ``day``, in UTC (23, 24 or 25 hours: DST-correct)."""
    start = datetime.combine(day, time.min, tzinfo=CHICAGO)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=CHICAGO)
    return start.astimezone(UTC), end.astimezone(UTC)


def usio_sync_window_bounds(*, job_type: str, as_of: date | datetime | None = None,
                            now: datetime | None = None) -> tuple[datetime, datetime]:
    """The window a run of ``job_type`` covers (SPEC §7 schedules), as aware UTC datetimes ``(start, end)``.

    ``transactions``: the ``USIO_SYNC_TRANSACTIONS_WINDOW_MINUTES`` (35) minutes ending at the job's clock
    (``job_clock``: ``now``, else the end of the ``as_of`` Chicago day but never later than the real time).
    ``ach_returns`` / ``chargebacks``: the Chicago calendar day of ``as_of`` (a date), else of the job's clock.
    """
    _check_job_type(job_type)
    if job_type == "transactions":
        end = job_clock(as_of=as_of, now=now).astimezone(UTC)
        return end - timedelta(minutes=settings.USIO_SYNC_TRANSACTIONS_WINDOW_MINUTES), end
    if isinstance(as_of, date) and not isinstance(as_of, datetime) and now is None:
        day = as_of
    else:
        day = chicago_date(job_clock(as_of=as_of, now=now))
    return usio_chicago_day_window(day)


def usio_sync_accounts() -> list[str]:
    """The merchant accounts the sync covers (``USIO_SYNC_ACCOUNTS``, names of ``USIO_ACCOUNTS``)."""
    return list(settings.USIO_SYNC_ACCOUNTS)


# --- the syncer --------------------------------------------------------------------------------------------------


def usio_sync_window(*, account: str, job_type: str, start: datetime, end: datetime,
                     now: datetime | None = None) -> UsioSyncStats:
    """Read the ``job_type`` report of merchant ``account`` for ``[start, end)``, stage it and apply it (see the
    module docstring for the rules).

    ``now`` (aware; default: the real time) is the clock the three-business-day gate is measured against.

    Raises what the client raises, before anything is written: ``ProcessorProtocolError`` (the answer broke the
    protocol), ``ProcessorUnavailable`` / ``ProcessorTimeout`` (retry), ``ProcessorAuthError`` /
    ``ProcessorDeclined`` / ``ProcessorConfigurationError``. ``ValueError`` for a bad job type or window.

    Side effects: ``UsioTransaction`` rows created/updated (one transaction), then the status changes (history,
    outbox events): one-step changes 500 payments per transaction, two-step ones one transaction per payment.
    Idempotent: a second run writes nothing.
    """
    _check_job_type(job_type)
    if timezone.is_naive(start) or timezone.is_naive(end):
        raise ValueError("start and end must be timezone-aware")
    now = now or timezone.now()
    merchant_id = _merchant_id(account)
    record_type = RECORD_TYPES[job_type]
    stats = UsioSyncStats(account=account, job_type=job_type, start=start.isoformat(), end=end.isoformat())

    # The HTTP call, outside any transaction. The client has checked the whole answer before returning (a broken
    # answer raises here, before anything is written); its records are then read, staged and applied page by page.
    report = usio_client(account).get_transaction_report(start=start, end=end, report_type=job_type)
    stats.fetched = report.count
    context = _Window(account=account, job_type=job_type, record_type=record_type, merchant_id=merchant_id,
                      now=now, stats=stats)
    pages = (list(page) for page in report.pages(_page_size()))
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        _sync_pages_overlapped(pages, context)
    else:
        for records in pages:
            _apply_page(records, _stage_page(records, context), context)

    logger.info("usio sync window done", extra={"stats": stats.as_dict()})
    return stats


@dataclass
class _Window:
    account: str
    job_type: str
    record_type: str
    merchant_id: str
    now: datetime
    stats: UsioSyncStats


def _page_size() -> int:
    return max(1, int(getattr(settings, "USIO_SYNC_PAGE_SIZE", PAGE_SIZE)))


@dataclass
class _Staged:
    """One page staged (its own transaction, committed) and matched: confirmation → the matched payment, and the
    staging counts."""

    payments: dict
    created: int = 0
    updated: int = 0
    unchanged: int = 0


def _stage_page(records: list[UsioRecord], window: _Window) -> _Staged:
    """Stage one page of the report (one transaction) and match its records to payments. Touches no payment and
    no ``window.stats``: it may run in a staging thread (``_sync_pages_overlapped``)."""
    if connection.vendor == "postgresql":
        return _stage_and_match_pg(records, record_type=window.record_type, merchant_id=window.merchant_id)
    return _stage(records, payments=_match(records), record_type=window.record_type, merchant_id=window.merchant_id)


def _sync_pages_overlapped(pages: Iterable[list[UsioRecord]], window: _Window) -> None:
    """PostgreSQL, called outside any transaction: the pages in order, as ``_stage_page`` then ``_apply_page`` each,
    but the next ``STAGING_THREADS`` pages are staged in threads of their own (each with its own database connection,
    closed at the end) while the page before them is applied in this one. Staging a page is mostly PostgreSQL's work
    (``COPY``, the match, the upsert, the commit's foreign-key checks) and applying one mostly this process's, so they
    overlap on two cores (issue 10) instead of waiting for each other.

    The same outcome as one page after the other: the pages are applied in order and in this thread only; staging
    writes only staging rows (its own transaction, committed before its page is applied, as before), and pages list
    distinct confirmations; and the one thing a page's staging reads that the pages applied meanwhile may write — the
    matched payments' status and confirmation — is read again before it is applied, for every payment those pages
    changed or tried to (``_refresh``). Anything raised in a staging thread is raised here, at its page's turn; the
    threads' work in flight is waited for before this returns or raises.
    """
    def stage(records: list[UsioRecord]) -> _Staged:
        return _stage_page(records, window)

    stager = ThreadPoolExecutor(max_workers=STAGING_THREADS, thread_name_prefix="usio-sync-stage")
    pending: deque = deque()  # pages staged or being staged: (records, future, payments applied since submitted)

    def apply_next() -> None:
        records, future, stale = pending.popleft()
        touched = _apply_page(records, _refresh(future.result(), stale), window)
        for _, _, later in pending:  # their staging may have read these before this page changed them
            later.update(touched)

    try:
        for records in pages:
            pending.append((records, stager.submit(stage, records), set()))
            if len(pending) > STAGING_THREADS:
                apply_next()
        while pending:
            apply_next()
    finally:
        # Each staging thread closes its own connection (a barrier hands exactly one close to each).
        barrier = threading.Barrier(STAGING_THREADS)

        def close() -> None:
            barrier.wait()
            connection.close()

        for future in [stager.submit(close) for _ in range(STAGING_THREADS)]:
            future.result()
        stager.shutdown(wait=True)


def _refresh(staged: _Staged, touched: set) -> _Staged:
    """``staged`` with the payments in ``touched`` (which the pages applied since this one was submitted for staging
    changed or tried to, possibly after its staging read them) read again (PostgreSQL's ``_PaymentRow``s)."""
    stale = {payment.pk for payment in staged.payments.values()} & touched
    if stale:
        fresh = {row[0]: _PaymentRow(*row) for row in Payment.objects.filter(pk__in=stale).values_list(
            *(item.name for item in dataclass_fields(_PaymentRow)))}
        staged.payments = {confirmation: fresh.get(payment.pk, payment) if payment.pk in stale else payment
                           for confirmation, payment in staged.payments.items()}
    return staged


def _apply_page(records: list[UsioRecord], staged: _Staged, window: _Window) -> set:
    """Apply what the page's records say (see the module docstring) to their payments, after counting its staging.
    Reports list a confirmation once (the client keeps the last listing of a repeated one). Returns the ids of the
    payments it changed or tried to change."""
    account, job_type, record_type, merchant_id, stats = (window.account, window.job_type, window.record_type,
                                                          window.merchant_id, window.stats)
    payments = staged.payments
    stats.created += staged.created
    stats.updated += staged.updated
    stats.unchanged += staged.unchanged
    touched: set = set()
    records_per_payment = Counter(payment.pk for payment in payments.values())
    bulk: dict[str, dict] = {}  # to_status -> payment id -> (record, step): one-step changes, applied set-based
    for record in records:
        payment = payments.get(record.confirmation)
        if payment is None:
            stats.unmatched += 1
            continue
        stats.matched += 1
        problem = _misfit(payment, record, merchant_id)
        if problem:
            stats.mismatched += 1
            logger.warning("usio sync record does not fit its payment",
                           extra={"payment_id": str(payment.pk), "confirmation": record.confirmation,
                                  "account": account, "job_type": job_type, "reason": problem})
            continue
        steps = _steps(payment, record, job_type=job_type, now=window.now)
        if steps is None:
            stats.not_applicable += 1
            logger.warning("usio sync record not applicable to its payment",
                           extra={"payment_id": str(payment.pk), "confirmation": record.confirmation,
                                  "account": account, "job_type": job_type, "record_status": record.status,
                                  "payment_status": payment.payment_status, "method": payment.payment_method})
            continue
        if steps:
            touched.add(payment.pk)
        if steps and len(steps) == 1 and records_per_payment[payment.pk] == 1:
            bulk.setdefault(steps[0].to_status, {})[payment.pk] = (record, steps[0])
            continue
        if steps and _apply(payment, record, steps,
                            raw_payload_ref=f"usio:{account}:{record_type}:{record.confirmation}",
                            merchant_id=merchant_id):
            stats.applied += 1
    for to_status, changes in bulk.items():
        for chunk in _chunks(list(changes.items()), APPLY_CHUNK):
            stats.applied += _apply_many(to_status, chunk, account=account, record_type=record_type,
                                         merchant_id=merchant_id)
    return touched


# --- helpers -----------------------------------------------------------------------------------------------------


def _check_job_type(job_type: str) -> None:
    if job_type not in JOB_TYPES:
        raise ValueError(f"job_type must be one of {', '.join(JOB_TYPES)}, not {job_type!r}")


def _merchant_id(account: str) -> str:
    accounts = getattr(settings, "USIO_ACCOUNTS", {}) or {}
    entry = accounts.get(account)
    if not isinstance(entry, dict) or not entry.get("merchant_id"):
        raise ValueError(f"unknown Usio account {account!r}")
    return str(entry["merchant_id"])


def _chunks(items: list, size: int = KEY_CHUNK) -> Iterable[list]:
    for index in range(0, len(items), size):
        yield items[index:index + size]


def _reference_pk(reference: str | None) -> uuid.UUID | None:
    if not reference:
        return None
    try:
        return uuid.UUID(hex=reference.strip())
    except ValueError:
        return None


def _match(records: list[UsioRecord]) -> dict[str, Payment]:
    """Confirmation → payment, by ``confirmation_id`` first, else by our reference (read only for the records whose
    confirmation is unknown); one query per ``KEY_CHUNK`` keys."""
    by_confirmation: dict[str, Payment] = {}
    by_pk: dict[uuid.UUID, Payment] = {}
    fields = ("id", "confirmation_id", "purpose", "payment_method", "payment_type", "payment_provider",
              "merchant_account", "amount", "payment_status", "submit_date", "created_at")

    def load(condition: Q) -> None:
        for payment in Payment.objects.filter(condition).only(*fields):
            by_pk[payment.pk] = payment
            if payment.confirmation_id:
                by_confirmation[payment.confirmation_id] = payment

    for chunk in _chunks([r.confirmation for r in records]):
        load(Q(confirmation_id__in=chunk))
    # Our reference only for the records whose confirmation we do not know (not read twice for the others).
    references = {pk for r in records if r.confirmation not in by_confirmation
                  and (pk := _reference_pk(r.reference)) is not None and pk not in by_pk}
    for chunk in _chunks(sorted(references)):
        load(Q(pk__in=chunk))
    matched: dict[str, Payment] = {}
    for record in records:
        payment = by_confirmation.get(record.confirmation)
        if payment is None:
            pk = _reference_pk(record.reference)
            payment = by_pk.get(pk) if pk is not None else None
        if payment is not None:
            matched[record.confirmation] = payment
    return matched


#: ``"name": `` of each of the adapter's record fields, in order, as ``json.dumps`` writes a key (``_raw_json``).
_RAW_KEYS = tuple((item.name, json.dumps(item.name) + ": ") for item in dataclass_fields(UsioRecord))
_json_string = json.encoder.encode_basestring_ascii  # json.dumps' own string encoder (C)


def _raw_json(record: UsioRecord) -> str:
    """The record as the adapter gave it, as JSON text (amounts as strings, dates ISO): the staging ``raw`` of every
    record of every page. Usio reports carry no account numbers; ``account_mask`` is already masked. Written
    directly — no dict per record, no generic encoder: the text ``json.dumps`` gives the same object."""
    parts = []
    for name, key in _RAW_KEYS:  # flat fields: a shallow read (``asdict`` deep-copies, ~5x slower)
        value = getattr(record, name)
        if value is None:
            parts.append(key + "null")
        elif isinstance(value, str):
            parts.append(key + _json_string(value))
        elif isinstance(value, Decimal):
            parts.append(f'{key}"{value}"')  # digits, sign, point: nothing to escape
        elif isinstance(value, datetime):
            parts.append(f'{key}"{value.isoformat()}"')
        else:
            parts.append(key + json.dumps(value))
    return "{" + ", ".join(parts) + "}"


def _raw(record: UsioRecord) -> dict:
    """``_raw_json`` as an object (the staging rows written through the ORM, off PostgreSQL)."""
    return json.loads(_raw_json(record))


def _event_date(record: UsioRecord, record_type: str) -> datetime | None:
    if record_type == UsioRecordType.CHARGEBACK:
        return record.chargeback_date or record.return_date
    return record.return_date or record.chargeback_date


def _stage(records: list[UsioRecord], *, payments: dict[str, Payment], record_type: str,
           merchant_id: str) -> _Staged:
    """Upsert the records into ``UsioTransaction`` (keyed by confirmation + record type) in one transaction:
    new rows created, changed rows updated, identical rows not written."""
    staged = _Staged(payments=payments)
    wanted: dict[str, dict] = {}
    for record in records:
        payment = payments.get(record.confirmation)
        wanted[record.confirmation] = {
            "kind": record.transaction_type,
            "merchant_account": merchant_id,
            "amount": record.amount,
            "status": record.status,
            "return_code": record.return_code or "",
            "reference": (record.reference or "")[:64],
            "account_mask": (record.account_mask or "")[:32],
            "transaction_date": record.transaction_date,
            "event_date": _event_date(record, record_type),
            "payment_id": payment.pk if payment is not None else None,
            "raw": _raw(record),
        }
    with transaction.atomic():
        existing: dict[str, UsioTransaction] = {}
        for chunk in _chunks(list(wanted)):
            for row in UsioTransaction.objects.filter(record_type=record_type, confirmation__in=chunk):
                existing[row.confirmation] = row
        new_rows, changed_rows = [], []
        moment = timezone.now()
        for confirmation, values in wanted.items():
            row = existing.get(confirmation)
            if row is None:
                new_rows.append(UsioTransaction(confirmation=confirmation, record_type=record_type, **values))
                continue
            if all(_same(getattr(row, name), value) for name, value in values.items()):
                staged.unchanged += 1
                continue
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = moment  # bulk_update does not run auto_now
            changed_rows.append(row)
        if new_rows:
            # A parallel run of the same window may insert the same keys: theirs stands (same report, same data).
            _insert_new(new_rows)
        if changed_rows:
            UsioTransaction.objects.bulk_update(changed_rows, [*_STAGED_FIELDS, "updated_at"], batch_size=500)
    staged.created += len(new_rows)
    staged.updated += len(changed_rows)
    return staged


def _insert_new(rows: list[UsioTransaction]) -> None:
    """Insert new staging rows, skipping keys a parallel run inserted meanwhile (``ON CONFLICT DO NOTHING``).
    (PostgreSQL stages through ``_stage_and_match_pg``.)"""
    UsioTransaction.objects.bulk_create(rows, batch_size=500, ignore_conflicts=True)


@dataclass(slots=True)
class _PaymentRow:
    """The columns of a matched payment the rules read (``_misfit``, ``_steps``): no model instance per record."""

    pk: uuid.UUID
    confirmation_id: str | None
    purpose: str
    payment_method: str
    payment_type: str
    payment_provider: str
    merchant_account: str | None
    amount: Decimal
    payment_status: str
    submit_date: datetime | None


#: A matched payment's ``submit_date`` is read as microseconds since this instant (``_stage_and_match_pg``).
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: The staging columns a record sets, in the order of the page table (``payment_id`` filled by the match).
_PAGE_COLUMNS = ("confirmation", "kind", "amount", "status", "return_code", "reference", "account_mask",
                 "transaction_date", "event_date", "raw", "ref_pk")
#: Compared to decide "changed" (``_STAGED_FIELDS``); ``merchant_account`` is the window's.
_COMPARED = ("kind", "amount", "status", "return_code", "reference", "account_mask", "transaction_date",
             "event_date", "payment_id", "raw")


def _stage_and_match_pg(records: list[UsioRecord], *, record_type: str, merchant_id: str) -> _Staged:
    """PostgreSQL: one page staged and matched in SQL, in one transaction and a constant number of queries.

    The page is ``COPY``'d into a temporary table; its payments are matched there (``confirmation_id``, else our
    reference: ``_match``'s rule), new staging rows inserted (``ON CONFLICT DO NOTHING``: a parallel run's stand),
    changed ones updated (``IS DISTINCT FROM`` over ``_STAGED_FIELDS``: identical rows are not written — not even
    an ``UPDATE`` is sent when none changed). Returns the matched
    payments (confirmation → their columns) and the staging counts.
    """
    staging, payments = UsioTransaction._meta.db_table, Payment._meta.db_table
    compared_old = ", ".join(f"s.{name}" for name in _COMPARED)
    compared_new = ", ".join(f"t.{name}" for name in _COMPARED)
    differs = f"(s.merchant_account, {compared_old}) IS DISTINCT FROM (%(merchant)s, {compared_new})"
    params = {"record_type": record_type, "merchant": merchant_id, "moment": timezone.now()}
    matched: dict[str, _PaymentRow] = {}
    # identifiers below come from the models' metadata and constants; values only as parameters or through COPY
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE usio_sync_copy (confirmation varchar(64), kind varchar(8), "
            "amount numeric(12, 2), status varchar(16), return_code varchar(16), reference varchar(64), "
            "account_mask varchar(32), transaction_date timestamptz, event_date timestamptz, raw jsonb, "
            "ref_pk uuid) ON COMMIT DROP")
        # psycopg's own cursor (Django's has no COPY): its errors wrapped into Django's, as for any query
        with connection.wrap_database_errors, \
                cursor.cursor.copy(f"COPY usio_sync_copy ({', '.join(_PAGE_COLUMNS)}) FROM STDIN") as copy:
            write = copy.write_row
            for record in records:  # written as built: no list of rows
                write((record.confirmation, record.transaction_type, record.amount, record.status,
                       record.return_code or "", (record.reference or "")[:64], (record.account_mask or "")[:32],
                       record.transaction_date, _event_date(record, record_type), _raw_json(record),
                       _reference_pk(record.reference)))
        # matched as ``_match`` does: by confirmation, else by our reference (no write: a table made by a SELECT)
        cursor.execute(
            "CREATE TEMPORARY TABLE usio_sync_page ON COMMIT DROP AS SELECT t.*, coalesce("  # noqa: S608
            f"(SELECT c.id FROM {payments} c WHERE c.confirmation_id = t.confirmation), "
            f"(SELECT r.id FROM {payments} r WHERE r.id = t.ref_pk)) AS payment_id FROM usio_sync_copy t")
        # Joins to the big tables are LATERAL … LIMIT 1 (each key is unique there): one index probe per page row,
        # whatever the statistics say. A plain join was planned as a hash of the whole staging table per page once
        # it had outgrown its last ANALYZE (temporary tables have no statistics at all): quadratic in the window.
        cursor.execute(
            "SELECT t.confirmation, p.id, p.confirmation_id, p.purpose, p.payment_method, p.payment_type, "  # noqa: S608
            "p.payment_provider, p.merchant_account, p.amount, p.payment_status, "
            # microseconds since the epoch, exact (``extract`` is numeric since PostgreSQL 14): Django's
            # timestamptz loader is pure Python, the costliest column of this read by far
            "(extract(epoch FROM p.submit_date) * 1000000)::bigint "
            f"FROM usio_sync_page t CROSS JOIN LATERAL (SELECT * FROM {payments} c WHERE c.id = t.payment_id "
            "LIMIT 1) p")
        for confirmation, *columns, submitted in cursor.fetchall():
            matched[confirmation] = _PaymentRow(
                *columns, None if submitted is None else _EPOCH + timedelta(microseconds=submitted))
        cursor.execute(
            "SELECT count(*) FILTER (WHERE s.id IS NULL), "  # noqa: S608
            f"array_agg(s.id) FILTER (WHERE s.id IS NOT NULL AND {differs}) "
            f"FROM usio_sync_page t LEFT JOIN LATERAL (SELECT * FROM {staging} x WHERE x.confirmation = t.confirmation "
            "AND x.record_type = %(record_type)s LIMIT 1) s ON true", params)
        new, changed_ids = cursor.fetchone()
        changed = len(changed_ids or ())
        if new:  # rows already staged (a parallel run's) are left to ON CONFLICT
            cursor.execute(
                f"INSERT INTO {staging} (confirmation, record_type, merchant_account, {', '.join(_COMPARED)}, "  # noqa: S608
                f"first_seen_at, updated_at) SELECT t.confirmation, %(record_type)s, %(merchant)s, {compared_new}, "
                "%(moment)s, %(moment)s FROM usio_sync_page t "
                "ON CONFLICT (confirmation, record_type) DO NOTHING", params)
        if changed:
            assignments = ", ".join(f"{name} = t.{name}" for name in _COMPARED)
            cursor.execute(
                f"UPDATE {staging} s SET merchant_account = %(merchant)s, {assignments}, "  # noqa: S608
                "updated_at = %(moment)s FROM usio_sync_page t WHERE s.id = ANY(%(changed)s) "
                f"AND s.confirmation = t.confirmation AND {differs}", {**params, "changed": changed_ids})
        cursor.execute("DROP TABLE usio_sync_page, usio_sync_copy")
    return _Staged(payments=matched, created=new, updated=changed, unchanged=len(records) - new - changed)


def _same(current, wanted) -> bool:
    if isinstance(wanted, Decimal):
        return current is not None and Decimal(current) == wanted
    if isinstance(wanted, datetime) and isinstance(current, datetime):
        return current == wanted
    return current == wanted


def _misfit(payment: Payment, record: UsioRecord, merchant_id: str) -> str | None:
    """Why ``record`` cannot be applied to ``payment`` (support must look), or None."""
    if payment.payment_provider != Provider.USIO:
        return "payment is not a Usio payment"
    if record.transaction_type != payment.payment_type:
        return f"direction: record {record.transaction_type}, payment {payment.payment_type}"
    if record.amount != payment.amount:
        return f"amount: record {record.amount}, payment {payment.amount}"
    if payment.merchant_account and payment.merchant_account != merchant_id:
        return f"merchant account: record {merchant_id}, payment {payment.merchant_account}"
    if payment.confirmation_id and payment.confirmation_id != record.confirmation:
        return "record carries our reference but the payment has another confirmation"
    return None


def _steps(payment: Payment, record: UsioRecord, *, job_type: str, now: datetime) -> tuple[_Step, ...] | None:
    """The status changes ``record`` calls for: ``()`` nothing to do (now), ``None`` not applicable."""
    ach = payment.payment_method == Method.ACH
    processing = payment.payment_status == Status.PROCESSING
    status = {"ach_returns": "returned", "chargebacks": "chargeback"}.get(job_type, record.status)

    if status == "returned":
        if not ach:
            return None
        returned = _Step(Status.FAILED, failure="returned", return_code=record.return_code, return_info="RETURNED",
                         at=record.return_date or now)
        return (_Step(Status.ACHSENT), returned) if processing else (returned,)
    if status == "chargeback":
        if ach:
            return None
        charged_back = _Step(Status.CHARGED_BACK, return_code=record.return_code,
                             at=record.chargeback_date or now)
        return (_Step(Status.COMPLETED), charged_back) if processing else (charged_back,)
    if status == "settled":
        if not ach:
            return (_Step(Status.COMPLETED),) if processing else ()
        credit = payment.payment_type == PaymentType.CREDIT and payment.purpose != Purpose.PRENOTE
        if processing:
            return (_Step(Status.ACHSENT), _Step(Status.COMPLETED, at=now)) if credit else (_Step(Status.ACHSENT),)
        if payment.payment_status not in (Status.ACHSENT, Status.CLEARED) or payment.purpose == Purpose.PRENOTE:
            return ()  # already past this point; prenotes are the prenote verifier's
        if credit or (payment.submit_date is not None and third_business_day_reached(payment.submit_date, now)):
            return (_Step(Status.COMPLETED, at=now),)
        return ()  # a debit before the gate: check-ach completes it
    if status == "failed":
        if not processing:
            return () if payment.payment_status == Status.FAILED else None
        failure = "rejected" if ach else "declined"
        return (_Step(Status.FAILED, failure=failure, return_code=record.return_code,
                      return_info=record.return_code or failure),)
    return ()  # pending: nothing known yet


def _apply_many(to_status: str, chunk: list, *, account: str, record_type: str, merchant_id: str) -> int:
    """Apply one-step changes to ``to_status`` set-based (``payment_apply_status_many``: one transaction for the
    chunk, the same rows as ``_apply`` writes one by one). Returns how many payments changed."""
    details, refs = {}, {}
    for pk, (record, step) in chunk:
        details[pk] = {"failure": step.failure, "return_code": step.return_code, "return_info": step.return_info,
                       "at": step.at, "confirmation_id": record.confirmation, "merchant_account": merchant_id}
        refs[pk] = f"usio:{account}:{record_type}:{record.confirmation}"
    results = payment_apply_status_many(payment_ids=list(details), to_status=to_status, source=Source.USIO_SYNC,
                                        actor=ACTOR, raw_payload_refs=refs, details=details)
    return sum(1 for result in results.values() if result.applied)


def _apply(payment: Payment, record: UsioRecord, steps: tuple[_Step, ...], *, raw_payload_ref: str,
           merchant_id: str) -> bool:
    """Apply ``steps`` to ``payment`` in one transaction; True when any of them changed it. A step the status
    machine refuses (already applied, or the payment moved on) changes nothing."""
    applied = False
    with transaction.atomic():
        for step in steps:
            result = payment_apply_status(
                payment_id=payment.pk, to_status=step.to_status, source=Source.USIO_SYNC, actor=ACTOR,
                failure=step.failure, return_code=step.return_code, return_info=step.return_info,
                confirmation_id=record.confirmation, merchant_account=merchant_id,
                raw_payload_ref=raw_payload_ref, at=step.at,
            )
            applied = applied or result.applied
    return applied
