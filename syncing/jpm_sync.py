"""JPM transaction sync (SPEC §2.7, §7.5, seed 004 "JPM Transaction Sync"): a day's JPM transaction details
(``GET /tsapi/v3/transactions``, every page) upserted into ``syncing.models.JpmTransaction`` for audit and
reconciliation. It changes no payment.

Fetch first, then write: every page is read (outside any transaction) before anything is written, and the rows
are then written in ONE transaction. A processor error on any page (5xx, timeout, an answer that breaks the
protocol) therefore writes nothing at all; the error propagates and the job is retried by the ``default`` queue
(3 attempts), then dead-lettered with the raw answer. (Page-by-page upserts would also be safe to repeat — the
upsert is idempotent — but a half-synced day would look complete to a reader in between.)

Upsert, set-based, per chunk of ``WRITE_CHUNK_SIZE`` records: one SELECT of the existing ids, ``bulk_create`` of
the new ones, ``bulk_update`` of those whose values changed (JPM's status moves on: PENDING → COMPLETED →
RETURNED), identical rows untouched. ``raw`` is the record as received, passed through ``core.redaction.redact``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from core.business_days import chicago_date
from core.redaction import redact
from core.transactions import in_transaction

logger = logging.getLogger(__name__)

WRITE_CHUNK_SIZE = 500
#: The ``JpmTransaction`` columns a sync writes (all but the bookkeeping timestamps).
FIELDS = ("account_id", "transaction_date", "amount", "currency", "credit_debit_indicator", "status",
          "end_to_end_id", "firm_root_id", "payment_type", "description", "raw")
_MAX_LENGTHS = {"account_id": 64, "currency": 3, "credit_debit_indicator": 16, "status": 32, "end_to_end_id": 64,
                "firm_root_id": 64, "payment_type": 32, "description": 255}


@dataclass
class JpmSyncStats:
    day: str = ""
    fetched: int = 0  # records read from JPM (all pages)
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0  # the same transaction id on two pages (the last one wins)

    def as_dict(self) -> dict:
        return asdict(self)


def sync_day(*, as_of: date | datetime | None = None, now: datetime | None = None) -> date:
    """The Chicago day a run syncs: the day before ``as_of`` (a date: the day the run acts for, as the 13:00
    UTC run of that day would), else the day before ``now`` (default: the real time) in Chicago."""
    if isinstance(as_of, datetime):
        return chicago_date(as_of) - timedelta(days=1)
    if as_of is not None:
        return as_of - timedelta(days=1)
    return chicago_date(now or timezone.now()) - timedelta(days=1)


def _values(record) -> dict:
    """Our columns from an adapter ``JpmTransaction`` (blank instead of None; text cut to the column)."""
    values = {
        "account_id": record.account_id or "",
        "transaction_date": record.transaction_date,
        "amount": record.amount,
        "currency": record.currency or "",
        "credit_debit_indicator": record.credit_debit_indicator or "",
        "status": record.status or "",
        "end_to_end_id": record.end_to_end_id or "",
        "firm_root_id": record.firm_root_id or "",
        "payment_type": record.payment_type or "",
        "description": record.description or "",
        "raw": redact(dict(record.raw)),
    }
    for name, limit in _MAX_LENGTHS.items():
        values[name] = str(values[name])[:limit]
    return values


def _same(row, values: dict) -> bool:
    return all(getattr(row, name) == value for name, value in values.items())


def _upsert_chunk(chunk: dict[str, dict], stats: JpmSyncStats) -> None:
    from syncing.models import JpmTransaction

    existing = {row.transaction_id: row for row in JpmTransaction.objects.filter(transaction_id__in=list(chunk))}
    new, changed = [], []
    now = timezone.now()
    for transaction_id, values in chunk.items():
        row = existing.get(transaction_id)
        if row is None:
            new.append(JpmTransaction(transaction_id=transaction_id, **values))
        elif _same(row, values):
            stats.unchanged += 1
        else:
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = now  # auto_now is not applied by bulk_update
            changed.append(row)
    if new:
        JpmTransaction.objects.bulk_create(new)
    if changed:
        JpmTransaction.objects.bulk_update(changed, [*FIELDS, "updated_at"])
    stats.created += len(new)
    stats.updated += len(changed)


def jpm_transactions_sync(*, day: date | None = None, as_of: date | datetime | None = None,
                          now: datetime | None = None) -> JpmSyncStats:
    """Upsert JPM's transaction details dated ``day`` (default ``sync_day(as_of, now)``: the previous Chicago day)
    into ``JpmTransaction`` (module docstring). Reads every page of ``jpm_client().iter_transactions(start=day,
    end=day)`` before writing; then one transaction. Raises the client's ``ProcessorError`` (nothing written).
    Idempotent: a re-run with JPM unchanged writes nothing (every row ``unchanged``)."""
    from integrations.jpm import jpm_client

    if in_transaction():
        raise RuntimeError("jpm_transactions_sync calls JPM: it must not run inside a transaction")
    day = day or sync_day(as_of=as_of, now=now)
    stats = JpmSyncStats(day=day.isoformat())
    records: dict[str, dict] = {}
    for record in jpm_client().iter_transactions(start=day, end=day):
        stats.fetched += 1
        if record.transaction_id in records:
            stats.duplicates += 1
        records[record.transaction_id] = _values(record)
    ids = list(records)
    with transaction.atomic():
        for start in range(0, len(ids), WRITE_CHUNK_SIZE):
            _upsert_chunk({tid: records[tid] for tid in ids[start:start + WRITE_CHUNK_SIZE]}, stats)
    logger.info("jpm transactions synced", extra={"stats": stats.as_dict()})
    return stats
