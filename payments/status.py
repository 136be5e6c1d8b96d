"""The payment status machine (SPEC §3): the only way a payment's status changes.

| from | to |
|---|---|
| PROCESSING | ACHSENT, COMPLETED, FAILED |
| ACHSENT | CLEARED, COMPLETED, FAILED |
| CLEARED | COMPLETED, FAILED |
| COMPLETED | FAILED (late ACH return, ACH only), CHARGED_BACK (card/RTP only), REFUNDED |
| FAILED, CHARGED_BACK, REFUNDED | — (final) |

``payment_apply_status`` locks the payment row, checks the table, applies the change with a conditional update
(``WHERE id = … AND payment_status IN (allowed sources)``), and in the same transaction writes the
``PaymentStatusChange`` row and the outbox event (SPEC §4), and sets the dates. A duplicate or disallowed change
(webhook replays, polling racing a webhook, out-of-order updates) changes nothing and is logged; a final status never
regresses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from django.db import models, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from core.bulk import bulk_insert
from core.models import OutboxEvent
from core.outbox import SOURCE as OUTBOX_SOURCE
from core.outbox import outbox_kick_relay, outbox_record, outbox_record_many
from core.sql import insert_row, select_one, update_where
from payments.models import Method, Payment, PaymentStatusChange, PaymentType, Purpose, Status
from payments.serializers import payment_render

logger = logging.getLogger(__name__)

S = Status
TRANSITIONS: dict[str, frozenset[str]] = {
    S.PROCESSING: frozenset({S.ACHSENT, S.COMPLETED, S.FAILED}),
    S.ACHSENT: frozenset({S.CLEARED, S.COMPLETED, S.FAILED}),
    S.CLEARED: frozenset({S.COMPLETED, S.FAILED}),
    S.COMPLETED: frozenset({S.FAILED, S.CHARGED_BACK, S.REFUNDED}),
    S.FAILED: frozenset(),
    S.CHARGED_BACK: frozenset(),
    S.REFUNDED: frozenset(),
}
FINAL_STATUSES = frozenset({S.FAILED, S.CHARGED_BACK, S.REFUNDED})

# How a payment failed: "returned" (by the receiving bank: return_date and the *_RETURNED event), "rejected" (by the
# processor before the network), "declined" (a card/RTP decline), "not_submitted" (the reconciler gave up).
Failure = Literal["returned", "rejected", "declined", "not_submitted"]

_PREFIXES = {
    (Purpose.SUBSCRIPTION, PaymentType.DEBIT): "SUBSCRIPTION",
    (Purpose.FLOAT, PaymentType.DEBIT): "FLOAT_DEBIT",
    (Purpose.FLOAT, PaymentType.CREDIT): "FLOAT_CREDIT",
    (Purpose.LOAN, PaymentType.DEBIT): "LOAN_DEBIT",
    (Purpose.LOAN, PaymentType.CREDIT): "LOAN_CREDIT",
}


def allowed_sources(to_status: str, payment_method: str) -> frozenset[str]:
    """The statuses a payment of ``payment_method`` may move to ``to_status`` from."""
    sources = {source for source, targets in TRANSITIONS.items() if to_status in targets}
    if to_status == S.FAILED and payment_method != Method.ACH:
        sources.discard(S.COMPLETED)  # only an ACH payment can be returned after completing
    if to_status == S.CHARGED_BACK and payment_method == Method.ACH:
        sources.clear()  # chargebacks are card/RTP
    return frozenset(sources)


def event_type_for(payment: Payment, to_status: str, failure: Failure | None = None) -> str | None:
    """The event a change writes (SPEC §4), or None. Entering ACHSENT writes none (prenotes excepted)."""
    if payment.purpose == Purpose.PRENOTE:
        if to_status == S.FAILED:
            # Only the bank's answer (a return or a rejection) says something about the account; a prenote the
            # reconciler gave up on (never submitted) must not mark the account failed.
            return "PRENOTE_RETURNED" if failure in ("returned", "rejected") else None
        return {S.ACHSENT: "PRENOTE_SUBMITTED", S.COMPLETED: "PRENOTE_VERIFIED"}.get(to_status)
    prefix = _PREFIXES.get((payment.purpose, payment.payment_type))
    if prefix is None:
        return None
    if to_status == S.CLEARED:
        return "SUBSCRIPTION_CLEARED" if prefix == "SUBSCRIPTION" else None
    if to_status == S.FAILED:
        return f"{prefix}_RETURNED" if failure == "returned" else f"{prefix}_FAILED"
    suffix = {S.COMPLETED: "COMPLETED", S.CHARGED_BACK: "CHARGED_BACK", S.REFUNDED: "REFUNDED"}.get(to_status)
    return f"{prefix}_{suffix}" if suffix else None


@dataclass(frozen=True)
class TransitionResult:
    applied: bool
    payment: Payment
    outcome: Literal["applied", "duplicate", "disallowed"]
    event_type: str | None = None


def payment_apply_status(
    *,
    payment_id,
    to_status: str,
    source: str,
    actor: str = "system",
    failure: Failure | None = None,
    return_code: str | None = None,
    return_info: str | None = None,
    confirmation_id: str | None = None,
    merchant_account: str | None = None,
    raw_payload_ref: str = "",
    at: datetime | None = None,
    savepoint: bool = True,
) -> TransitionResult:
    """Move a payment to ``to_status`` if SPEC §3 allows it from its current status; else change nothing.

    Side effects, all in one transaction: the conditional update (status, ``version`` + 1, dates, codes, the
    processor's ``confirmation_id`` when first known), one ``PaymentStatusChange`` row, and the event of
    ``event_type_for`` in the outbox. Idempotent: applying the same change twice applies it once.

    Inside a caller's transaction the change is a savepoint, so that a caller catching its error (an
    ``IntegrityError``: the processor id belongs to another payment) can go on with nothing of it applied.
    ``savepoint=False`` (two round trips fewer) only for a caller that never does: its error always ends the
    caller's whole transaction, which rolls back with it (the submission's step 3).
    """
    if to_status not in TRANSITIONS:
        raise ValueError(f"unknown status {to_status!r}")
    with transaction.atomic(savepoint=savepoint):
        # = Payment.objects.select_for_update().get(pk=payment_id), compiled by hand (core.sql: every submission)
        payment = select_one(Payment, where={"pk": payment_id}, for_update=True)
        at = at or timezone.now()  # after the lock: a change that waited for the row happened when it applied
        previous = payment.payment_status
        sources = allowed_sources(to_status, payment.payment_method)
        if previous not in sources:
            return _refused(payment, to_status, source)

        event_type = event_type_for(payment, to_status, failure)
        # updated_at is when we changed the row; ``at`` (possibly the processor's time) dates the change itself.
        values = _status_values(payment, to_status, failure, at, {
            "return_code": return_code, "return_info": return_info, "confirmation_id": confirmation_id,
            "merchant_account": merchant_account}, event_type)
        updates = {"payment_status": to_status, "version": F("version") + 1, "updated_at": timezone.now(), **values}
        # = Payment.objects.filter(pk=…, payment_status__in=sources).update(**updates), compiled by hand (core.sql)
        changed = update_where(Payment, where={"pk": payment.pk, "payment_status__in": sources}, values=updates)
        if changed != 1:  # cannot happen under the row lock; the condition is the backstop
            raise RuntimeError("conditional status update did not apply under lock")
        # What refresh_from_db would read back (the row is locked): the values just written, one query fewer.
        for name, value in updates.items():
            if name != "version":
                setattr(payment, name, value)
        payment.version += 1
        insert_row(PaymentStatusChange(  # = PaymentStatusChange.objects.create, compiled by hand (core.sql)
            payment=payment, from_status=previous, to_status=to_status, source=source, actor=actor,
            return_code=values.get("return_code"), raw_payload_ref=raw_payload_ref[:255], event_type=event_type, at=at,
        ))
        if event_type:
            outbox_record(type=event_type, subject=payment.confirmation_id or str(payment.pk),
                          aggregate_id=str(payment.pk), data=payment_render(payment), occurred_at=at)
    logger.info(
        "payment status changed",
        extra={"payment_id": str(payment.pk), "from_status": previous, "to_status": to_status, "source": source,
               "event_type": event_type},
    )
    return TransitionResult(True, payment, "applied", event_type)


def payment_apply_status_many(
    *,
    payment_ids,
    to_status: str,
    source: str,
    actor: str = "system",
    raw_payload_refs: dict | None = None,
    at: datetime | None = None,
    details: dict | None = None,
) -> dict:
    """``payment_apply_status`` for many payments moving to ``to_status``, set-based, in ONE transaction: the rows
    locked in one ``SELECT … FOR UPDATE`` (id order), the same SPEC §3 check per payment, one conditional update per
    group of payments setting the same columns (a value that differs between them: a ``CASE`` over their ids), the
    ``PaymentStatusChange`` rows and the outbox events written in
    bulk (``outbox_record_many``). Each payment gets exactly the values ``payment_apply_status`` gives it (status,
    ``version`` + 1, dates, codes, ``event_type``, ``updated_at``, a first ``confirmation_id`` / ``merchant_account``).
    ``raw_payload_refs``: payment id → reference for its history row; ``details``: payment id → the keyword
    arguments of ``payment_apply_status`` that differ per payment (``failure``, ``return_code``, ``return_info``,
    ``confirmation_id``, ``merchant_account``, ``at``). Query count: constant — one update per set of columns
    written (a few kinds at most: codes or not, a first confirmation id or not), never per payment or per value.

    Returns ``{payment_id: TransitionResult}`` for every id found (a payment whose change is refused: not applied).
    A payment id must appear once.
    """
    if to_status not in TRANSITIONS:
        raise ValueError(f"unknown status {to_status!r}")
    raw_payload_refs = raw_payload_refs or {}
    details = details or {}
    results: dict = {}
    applied: list[tuple[Payment, str, str | None, dict, datetime]] = []
    with transaction.atomic():
        payments = list(Payment.objects.select_for_update().filter(pk__in=list(payment_ids)).order_by("pk"))
        default_at = at or timezone.now()
        now = timezone.now()
        groups: dict[tuple, list] = {}
        for payment in payments:
            previous = payment.payment_status
            sources = allowed_sources(to_status, payment.payment_method)
            if previous not in sources:
                results[payment.pk] = _refused(payment, to_status, source)
                continue
            extra = details.get(payment.pk) or {}
            failure = extra.get("failure")
            payment_at = extra.get("at") or default_at
            event_type = event_type_for(payment, to_status, failure)
            updates = _status_values(payment, to_status, failure, payment_at, extra, event_type)
            groups.setdefault((tuple(sorted(updates)), sources), []).append((payment.pk, updates))
            applied.append((payment, previous, event_type, updates, payment_at))
        for (names, sources), rows in groups.items():
            pks = [pk for pk, _ in rows]
            changed = Payment.objects.filter(pk__in=pks, payment_status__in=sources).update(
                **{name: _per_row(name, rows) for name in names}, payment_status=to_status,
                version=F("version") + 1, updated_at=now)
            if changed != len(pks):  # cannot happen under the row locks; the condition is the backstop
                raise RuntimeError("conditional status update did not apply under lock")
        changes, events = [], []
        for payment, previous, event_type, updates, payment_at in applied:
            # what refresh_from_db would read back: the values the update above wrote
            payment.payment_status, payment.version, payment.updated_at = to_status, payment.version + 1, now
            for name, value in updates.items():
                setattr(payment, name, value)
            changes.append(PaymentStatusChange(
                payment=payment, from_status=previous, to_status=to_status, source=source, actor=actor,
                return_code=updates.get("return_code"), event_type=event_type, at=payment_at,
                raw_payload_ref=str(raw_payload_refs.get(payment.pk, ""))[:255]))
            if event_type:
                events.append({"type": event_type, "subject": payment.confirmation_id or str(payment.pk),
                               "aggregate_id": str(payment.pk), "data": payment_render(payment),
                               "occurred_at": payment_at})
            results[payment.pk] = TransitionResult(True, payment, "applied", event_type)
        bulk_insert(PaymentStatusChange, changes)
        outbox_record_many(events=events, occurred_at=default_at)
    if applied:
        logger.info("payment statuses changed",
                    extra={"to_status": to_status, "source": source, "count": len(applied),
                           "payment_ids": [str(payment.pk) for payment, *_ in applied]})
    return results


def payment_complete_many(*, payment_ids, source: str, actor: str = "system", raw_payload_refs: dict | None = None,
                          at: datetime | None = None) -> list:
    """``payment_apply_status_many(to_status=COMPLETED)`` without codes or details — check-ach's completions — as ONE
    SQL statement on PostgreSQL, with no per-payment Python: the rows in an allowed status locked in id order, the
    conditional ``UPDATE`` (status, ``version`` + 1, ``updated_at``, ``completion_date``, ``event_type``), the
    ``PaymentStatusChange`` rows and the outbox events (the next sequence of each payment, ``data`` rendered by the
    database as ``payment_render`` renders the stored row: ``_render_sql``) written from the ``UPDATE``'s ``RETURNING``.
    The same rows as ``payment_apply_status_many`` (asserted in ``tests/chaos/test_complete_many_sql.py``), one round
    trip whatever the batch size. A payment no longer in an allowed status (it moved meanwhile: the lock re-reads it)
    is left alone and logged as refused. Elsewhere (SQLite) it is ``payment_apply_status_many``.

    Returns the ids of the payments completed. ``raw_payload_refs``: payment id → reference for its history row.
    """
    raw_payload_refs = raw_payload_refs or {}
    ids = sorted(set(payment_ids))
    if transaction.get_connection().vendor != "postgresql":
        results = payment_apply_status_many(payment_ids=ids, to_status=S.COMPLETED, source=source, actor=actor,
                                            raw_payload_refs=raw_payload_refs, at=at)
        return [pk for pk, result in results.items() if result.applied]
    if not ids:
        return []
    at = at or timezone.now()
    now = timezone.now()
    sources = sorted({status for method in Method.values for status in allowed_sources(S.COMPLETED, method)})
    if len({allowed_sources(S.COMPLETED, method) for method in Method.values}) != 1:  # the SQL checks status only
        raise RuntimeError("completions allowed from different statuses per method: use payment_apply_status_many")
    with transaction.atomic(), transaction.get_connection().cursor() as cursor:
        cursor.execute(_complete_many_sql(), {
            "ids": ids, "refs": [str(raw_payload_refs.get(pk, ""))[:255] for pk in ids], "sources": sources,
            "to_status": S.COMPLETED, "at": at, "now": now, "source": source, "actor": actor,
            "event_source": OUTBOX_SOURCE})
        # (id, completed, its status before the statement) for every payment asked about that exists, in id order
        rows = cursor.fetchall()
        completed = [pk for pk, done, _ in rows if done]
        if completed:
            transaction.on_commit(outbox_kick_relay)
    for pk, done, previous in rows:
        if not done:  # as _refused logs it
            logger.info("payment status change refused",
                        extra={"payment_id": str(pk), "from_status": previous, "to_status": S.COMPLETED,
                               "source": source, "outcome": "duplicate" if previous == S.COMPLETED else "disallowed"})
    if completed:
        logger.info("payment statuses changed",
                    extra={"to_status": S.COMPLETED, "source": source, "count": len(completed),
                           "payment_ids": [str(pk) for pk in completed]})
    return completed


def _render_sql(row: str) -> str:
    """``jsonb_build_object`` of ``payment_render`` over the columns of ``row`` (an alias of a payments row): the
    serializer's fields in its order, each rendered as its DRF field renders it — text as it is, a UUID as text, the
    amount with its two decimals, an integer as a number, a date-time in UTC as ``isoformat()`` with ``Z`` (the
    microseconds only when there are some), None as null. A field of any other kind raises: this must follow the
    serializer (``tests/chaos/test_complete_many_sql.py`` compares it with ``payment_render``)."""
    from payments.serializers import PaymentOutput

    parts = []
    for name in PaymentOutput.Meta.fields:
        field = Payment._meta.get_field(name)
        column = f"{row}.{field.column}"
        if isinstance(field, models.DateTimeField):
            utc = f"({column} AT TIME ZONE 'UTC')"
            value = (f"to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN extract(microseconds FROM {column})"
                     f"::bigint %% 1000000 = 0 THEN '' ELSE to_char({utc}, '.US') END || 'Z'")
        elif isinstance(field, models.DecimalField):
            if field.decimal_places != PaymentOutput._declared_fields[name].decimal_places:
                raise NotImplementedError(f"{name}: the column's scale is not the one the API renders")
            value = f"{column}::text"
        elif isinstance(field, models.UUIDField):
            value = f"{column}::text"
        elif isinstance(field, models.CharField | models.IntegerField):
            value = column
        else:
            raise NotImplementedError(f"{name}: no SQL rendering for {type(field).__name__}")
        parts.append(f"'{name}', {value}")
    return f"jsonb_build_object({', '.join(parts)})"


def _event_type_sql(row: str) -> str:
    """``event_type_for(payment, COMPLETED)`` as a ``CASE`` over the purpose and type of ``row`` (built from the Python
    rule itself, for every purpose and type: one source of truth); NULL when the change writes no event."""
    branches = []
    for purpose in Purpose.values:
        for payment_type in PaymentType.values:
            event_type = event_type_for(Payment(purpose=purpose, payment_type=payment_type), S.COMPLETED)
            if event_type:
                branches.append(f"WHEN {row}.purpose = '{purpose}' AND {row}.payment_type = '{payment_type}' "
                                f"THEN '{event_type}'")
    return f"CASE {' '.join(branches)} END"


_COMPLETE_MANY_SQL: str | None = None


def _complete_many_sql() -> str:
    """The statement of ``payment_complete_many`` (built once from the models' metadata and the rules)."""
    global _COMPLETE_MANY_SQL
    if _COMPLETE_MANY_SQL is None:
        payments, changes = Payment._meta.db_table, PaymentStatusChange._meta.db_table
        events = OutboxEvent._meta.db_table
        _COMPLETE_MANY_SQL = f"""
WITH asked AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(refs)s::text[]) AS a(id, ref)
), locked AS (
    SELECT p.id, p.payment_status AS previous, a.ref
      FROM {payments} p JOIN asked a ON a.id = p.id
     WHERE p.payment_status = ANY(%(sources)s::text[])
     ORDER BY p.id
       FOR UPDATE OF p
), changed AS (
    UPDATE {payments} p
       SET payment_status = %(to_status)s, version = p.version + 1, updated_at = %(now)s,
           completion_date = %(at)s, event_type = COALESCE({_event_type_sql("p")}, p.event_type)
      FROM locked l
     WHERE p.id = l.id AND p.payment_status = ANY(%(sources)s::text[])
    RETURNING p.*, l.previous, l.ref, {_event_type_sql("p")} AS new_event
), history AS (
    INSERT INTO {changes} (payment_id, from_status, to_status, source, actor, return_code, raw_payload_ref,
                           event_type, at)
    SELECT c.id, c.previous, %(to_status)s, %(source)s, %(actor)s, NULL, c.ref, c.new_event, %(at)s
      FROM changed c ORDER BY c.id
), written AS (
    INSERT INTO {events} (event_id, type, source, subject, aggregate_id, sequence, data, occurred_at, created_at)
    SELECT gen_random_uuid(), c.new_event, %(event_source)s,
           COALESCE(NULLIF(c.confirmation_id, ''), c.id::text), c.id::text,
           COALESCE((SELECT e.sequence FROM {events} e WHERE e.aggregate_id = c.id::text
                      ORDER BY e.sequence DESC LIMIT 1), 0) + 1,
           {_render_sql("c")}, %(at)s, %(now)s
      FROM changed c WHERE c.new_event IS NOT NULL ORDER BY c.id
)
SELECT a.id, c.id IS NOT NULL, p.payment_status
  FROM asked a LEFT JOIN changed c ON c.id = a.id LEFT JOIN {payments} p ON p.id = a.id
 WHERE p.id IS NOT NULL ORDER BY a.id
"""  # noqa: S608 (table names from the models' metadata; the rules' constants; values are parameters)
    return _COMPLETE_MANY_SQL


def _per_row(name: str, rows: list[tuple]) -> object:
    """The value of column ``name`` for an UPDATE of ``rows`` ((payment id, its values)): the value itself when they
    all share it, else one ``CASE`` with a branch per distinct value over the ids that take it (one statement however
    many distinct values: a Usio window's returns each carry their own return date; a check-ach batch's completions
    take one of two event types — two branches, not one per payment)."""
    ids_by_value: dict = {}
    for pk, updates in rows:
        ids_by_value.setdefault(updates[name], []).append(pk)
    if len(ids_by_value) == 1:
        return next(iter(ids_by_value))
    field = Payment._meta.get_field(name)
    return Case(*[When(pk__in=pks, then=Value(value, output_field=field)) for value, pks in ids_by_value.items()],
                output_field=field)


def _refused(payment: Payment, to_status: str, source: str) -> TransitionResult:
    """A change SPEC §3 does not allow from the payment's status: logged, nothing written."""
    previous = payment.payment_status
    outcome = "duplicate" if previous == to_status else "disallowed"
    logger.info("payment status change refused",
                extra={"payment_id": str(payment.pk), "from_status": previous, "to_status": to_status,
                       "source": source, "outcome": outcome})
    return TransitionResult(False, payment, outcome)


def _status_values(payment: Payment, to_status: str, failure: Failure | None, at: datetime, extra: dict,
                   event_type: str | None) -> dict:
    """The columns besides status, version and ``updated_at`` that ``payment_apply_status`` writes for this change."""
    values: dict = {}
    if to_status == S.COMPLETED:
        values["completion_date"] = at
    elif to_status == S.CLEARED:
        values["cleared_date"] = at
    elif to_status == S.FAILED and failure == "returned":
        values["return_date"] = at
    if extra.get("return_code") is not None:
        values["return_code"] = extra["return_code"].strip()[:16]
    if extra.get("return_info") is not None:
        values["return_info"] = extra["return_info"][:255]
    if extra.get("confirmation_id") and not payment.confirmation_id:
        values["confirmation_id"] = extra["confirmation_id"]
    if extra.get("merchant_account") and not payment.merchant_account:
        values["merchant_account"] = extra["merchant_account"]
    if event_type:
        values["event_type"] = event_type
    return values


def payment_emit_event(*, payment_id, event_type: str, source: str, raw_payload_ref: str = "") -> bool:
    """Write an event that is not a status change (e.g. ``SUBSCRIPTION_SENT``: JPM forwarded it to the network).

    Idempotent per (payment, event type): a second call writes nothing and returns False.
    """
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        if OutboxEvent.objects.filter(aggregate_id=str(payment.pk), type=event_type).exists():
            return False
        Payment.objects.filter(pk=payment.pk).update(event_type=event_type, updated_at=timezone.now())
        payment.refresh_from_db()
        outbox_record(type=event_type, subject=payment.confirmation_id or str(payment.pk),
                      aggregate_id=str(payment.pk), data=payment_render(payment))
    logger.info("payment event written", extra={"payment_id": str(payment_id), "event_type": event_type,
                                                 "source": source})
    return True
