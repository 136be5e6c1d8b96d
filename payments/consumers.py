"""In-process consumers of payment events (SPEC §4), run by the outbox relay (``core.outbox_relay``).

Registered at start-up (``PaymentsConfig.ready`` imports this module), in this order:

1. ``payments.blocklist_auto_block`` — ``SUBSCRIPTION_RETURNED`` and ``FLOAT_DEBIT_RETURNED`` only: asks the
   blocklist to block the user for the return (``blocklist_block_for_return``, which blocks only for a blocking code,
   SPEC §12, and at most once per payment).
2. ``payments.transaction_service_notifier`` — float payments leaving the ACH network's pending states (SPEC §7.2:
   "float payments leaving ACHSENT notify the Transaction Service"): a ``FLOAT_DEBIT_*`` / ``FLOAT_CREDIT_*``
   ``COMPLETED``, ``RETURNED`` or ``FAILED`` event whose status change came from ACHSENT — or from CLEARED, which
   is still in flight on the network and whose entry from ACHSENT wrote no event. It records a
   ``TransactionServiceNotification`` in the relay's transaction; ``payments.transaction_service`` POSTs it to
   ``/payments/status`` outside any transaction, with retries (the receiver is idempotent on the event id).

Each handler takes the event envelope (``core.outbox.outbox_envelope``) and must be idempotent on the event id:
the relay de-duplicates for them (``OutboxConsumption``), but a crash before its commit repeats side effects
outside the database. Both also have a batch handler (a list of envelopes, set-based, the same rows as the
per-event handler on each): the relay calls it once per batch and falls back to the per-event handler, event by
event, when it raises; replays use the per-event handler.
"""

from __future__ import annotations

from decimal import Decimal

from django.utils.dateparse import parse_datetime

from core.errors import PermanentJobError, ValidationError
from core.outbox_relay import register_consumer
from payments.models import PaymentStatusChange, Status

BLOCKLIST_CONSUMER = "payments.blocklist_auto_block"
TRANSACTION_SERVICE_CONSUMER = "payments.transaction_service_notifier"

BLOCKING_EVENT_TYPES = frozenset({"SUBSCRIPTION_RETURNED", "FLOAT_DEBIT_RETURNED"})
FLOAT_EXIT_EVENT_TYPES = frozenset(
    f"{prefix}_{outcome}"
    for prefix in ("FLOAT_DEBIT", "FLOAT_CREDIT")
    for outcome in ("COMPLETED", "RETURNED", "FAILED")
)
# The statuses of a payment still in flight on the ACH network; leaving them (with an event) notifies.
IN_FLIGHT_STATUSES = frozenset({Status.ACHSENT, Status.CLEARED})


def blocklist_on_return(envelope: dict) -> None:
    """Block the payment's user when the return code blocks (SPEC §2.5, §12). Idempotent per payment."""
    from blocklist.services import blocklist_block_for_return

    data = envelope["data"]
    try:
        blocklist_block_for_return(user_id=data["user_id"], return_code=data.get("return_code"),
                                   payment_id=data["id"], actor="system")
    except ValidationError as exc:  # a malformed user or payment id cannot become valid by retrying
        raise PermanentJobError(f"{exc.code}: {exc.message}") from exc


def blocklist_on_returns(envelopes: list[dict]) -> None:
    """``blocklist_on_return`` for many envelopes, set-based (``blocklist_block_for_returns``: the same records as
    one call per envelope in order, a constant number of queries). A malformed one raises and nothing is written:
    the relay then handles them one by one, and that one alone is dead-lettered."""
    from blocklist.services import blocklist_block_for_returns

    blocklist_block_for_returns(returns=[(e["data"]["user_id"], e["data"].get("return_code"), e["data"]["id"])
                                         for e in envelopes], actor="system")


def _change_key(envelope: dict) -> tuple[str, str, str]:
    data = envelope["data"]
    return str(data["id"]), data["payment_status"], envelope["type"]


def previous_status(envelope: dict) -> str | None:
    """The status the payment left in the change that wrote this event (its ``PaymentStatusChange``), or None.

    A payment enters each status at most once (SPEC §3 has no cycles), so (payment, new status, event type) names
    exactly one change; were there several, the latest (``at``, then ``id``) counts.
    """
    return previous_statuses([envelope]).get(envelope["id"])


def previous_statuses(envelopes: list[dict]) -> dict[str, str | None]:
    """``previous_status`` of each envelope (by event id), in one query."""
    if not envelopes:
        return {}
    keys = {_change_key(envelope) for envelope in envelopes}
    rows = (PaymentStatusChange.objects
            .filter(payment_id__in={key[0] for key in keys}, to_status__in={key[1] for key in keys},
                    event_type__in={key[2] for key in keys})
            .order_by("-at", "-id").values_list("payment_id", "to_status", "event_type", "from_status"))
    latest: dict[tuple[str, str, str], str | None] = {}
    for payment_id, to_status, event_type, from_status in rows:
        latest.setdefault((str(payment_id), to_status, event_type), from_status)  # the first row is the latest
    return {envelope["id"]: latest.get(_change_key(envelope)) for envelope in envelopes}


def float_exit_notification(envelope: dict, previous: str | None) -> dict | None:
    """The Transaction Service notification body for a float event whose change left ``previous``, or None when it
    does not notify (it did not leave ACHSENT or CLEARED). Raises ``PermanentJobError`` when the event's status
    change is not on record (``previous`` None): retrying cannot make it appear."""
    if previous is None:
        raise PermanentJobError(f"no status change recorded for event {envelope['id']}")
    if previous not in IN_FLIGHT_STATUSES:
        return None
    data = envelope["data"]
    return {
        "event_id": envelope["id"],
        "confirmation_id": data.get("confirmation_id") or envelope["subject"],
        "user_id": data["user_id"],
        "payment_status": data["payment_status"],
        "previous_status": previous,
        "amount": f"{Decimal(str(data['amount'])):.2f}",
        "occurred_at": parse_datetime(envelope["occurred_at"]).isoformat(),
    }


def _is_float(envelope: dict) -> bool:
    return envelope["data"].get("purpose") == "float"


def transaction_service_on_float_exit(envelope: dict) -> None:
    """Record the Transaction Service notification of a float payment leaving ACHSENT (or CLEARED); other events:
    nothing. The HTTP call happens later, outside the relay's transaction (``payments.transaction_service``)."""
    from payments.transaction_service import ts_notification_record

    if not _is_float(envelope):
        return
    body = float_exit_notification(envelope, previous_status(envelope))
    if body is not None:
        ts_notification_record(event_id=envelope["id"], payment_id=envelope["data"]["id"], body=body)


def transaction_service_on_float_exits(envelopes: list[dict]) -> None:
    """``transaction_service_on_float_exit`` for many envelopes: one status-change read, one bulk insert of the
    notifications (an existing one is left alone, as the per-event path does). Raises, and records nothing, when
    any event cannot be handled (the relay then handles them one by one)."""
    from payments.transaction_service import ts_notification_record_many

    floats = [envelope for envelope in envelopes if _is_float(envelope)]
    previous = previous_statuses(floats)
    notifications = []
    for envelope in floats:
        body = float_exit_notification(envelope, previous[envelope["id"]])
        if body is not None:
            notifications.append((envelope["id"], envelope["data"]["id"], body))
    ts_notification_record_many(notifications=notifications)


register_consumer(BLOCKLIST_CONSUMER, blocklist_on_return, types=BLOCKING_EVENT_TYPES,
                  batch_handler=blocklist_on_returns)
register_consumer(TRANSACTION_SERVICE_CONSUMER, transaction_service_on_float_exit, types=FLOAT_EXIT_EVENT_TYPES,
                  batch_handler=transaction_service_on_float_exits)
