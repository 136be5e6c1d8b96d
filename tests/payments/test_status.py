"""The payment status machine (SPEC §3, §4): ``payments.status.payment_apply_status`` and ``payment_emit_event``.

The expected behaviour is written here from the SPEC, independently of ``payments.status`` (its ``TRANSITIONS`` and
``event_type_for`` are never used to compute an expectation): the whole table is exercised — every from x to x
method — and a refused change must leave the payment row, its history and the outbox exactly as they were.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.models import OutboxEvent
from payments.models import Method, Payment, PaymentStatusChange, Provider, Purpose, Source, Status
from payments.serializers import payment_render
from payments.status import payment_apply_status, payment_emit_event

pytestmark = pytest.mark.django_db

STATUSES = [s.value for s in Status]
FINAL = {"FAILED", "CHARGED_BACK", "REFUNDED"}
METHODS = [m.value for m in Method]

# SPEC §3, as written there.
SPEC_TABLE: dict[str, set[str]] = {
    "PROCESSING": {"ACHSENT", "COMPLETED", "FAILED"},
    "ACHSENT": {"CLEARED", "COMPLETED", "FAILED"},
    "CLEARED": {"COMPLETED", "FAILED"},
    "COMPLETED": {"FAILED", "CHARGED_BACK", "REFUNDED"},  # FAILED: late ACH return, ACH only; CHARGED_BACK: card/RTP
    "FAILED": set(),
    "CHARGED_BACK": set(),
    "REFUNDED": set(),
}


def spec_allows(from_status: str, to_status: str, method: str) -> bool:
    if to_status not in SPEC_TABLE[from_status]:
        return False
    if from_status == "COMPLETED" and to_status == "FAILED":
        return method == "ach"
    if to_status == "CHARGED_BACK":
        return method != "ach"
    return True


# (purpose, payment_type) → the event prefix of SPEC §4.
PREFIXES = {
    ("subscription", "debit"): "SUBSCRIPTION",
    ("float", "debit"): "FLOAT_DEBIT",
    ("float", "credit"): "FLOAT_CREDIT",
    ("loan", "debit"): "LOAN_DEBIT",
    ("loan", "credit"): "LOAN_CREDIT",
}
# SPEC §4's catalogue (+ <PREFIX>_FAILED, "a payment FAILED at submission (rejected)").
SPEC_EVENT_TYPES = (
    {f"{p}_{s}" for p in PREFIXES.values() for s in ("COMPLETED", "RETURNED", "CHARGED_BACK", "REFUNDED", "FAILED")}
    | {"SUBSCRIPTION_CLEARED", "SUBSCRIPTION_SENT", "PRENOTE_SUBMITTED", "PRENOTE_RETURNED", "PRENOTE_VERIFIED"}
)


def make_payment(
    *,
    status: str = "PROCESSING",
    purpose: str = "float",
    payment_type: str = "debit",
    payment_method: str = "ach",
    provider: str | None = None,
    user_id: str = "user-1",
    **fields,
) -> Payment:
    """A payment row in any status (test setup: the machine never creates payments)."""
    ach = payment_method == Method.ACH
    values = {
        "user_id": user_id,
        "purpose": purpose,
        "payment_type": payment_type,
        "payment_method": payment_method,
        "payment_provider": provider or (Provider.JPM if purpose == Purpose.SUBSCRIPTION and ach else Provider.USIO),
        "amount": Decimal("0.00") if purpose == Purpose.PRENOTE else Decimal("42.50"),
        "payment_status": status,
        "submit_date": timezone.now() - timedelta(minutes=1),
        "account_id": "acc-1" if ach else None,
        "masked_account_number": "6789" if ach else None,
        "masked_card_number": None if ach else "4242",
        "client_id": "test-client",
    }
    values.update(fields)
    return Payment.objects.create(**values)


def history(payment: Payment) -> list[PaymentStatusChange]:
    return list(PaymentStatusChange.objects.filter(payment=payment).order_by("at", "id"))


def events(payment: Payment) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(aggregate_id=str(payment.pk)).order_by("sequence"))


def snapshot(payment: Payment) -> dict:
    """Everything that a refused change must leave as it was."""
    return {
        "row": Payment.objects.filter(pk=payment.pk).values().get(),
        "history": PaymentStatusChange.objects.filter(payment=payment).count(),
        "events": OutboxEvent.objects.filter(aggregate_id=str(payment.pk)).count(),
        "all_events": OutboxEvent.objects.count(),
    }


def apply(payment: Payment, to_status: str, **kwargs):
    kwargs.setdefault("source", Source.WEBHOOK)
    kwargs.setdefault("actor", "tester")
    return payment_apply_status(payment_id=payment.pk, to_status=to_status, **kwargs)


def _kind_for(method: str) -> dict:
    return {"purpose": "float", "payment_type": "credit" if method == "rtp" else "debit", "payment_method": method}


# --- the whole table ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("to_status", STATUSES)
@pytest.mark.parametrize("from_status", STATUSES)
def test_every_transition_of_the_table(from_status, to_status, method):
    payment = make_payment(status=from_status, **_kind_for(method))
    before = snapshot(payment)

    result = apply(payment, to_status, source=Source.API, actor="table")

    if spec_allows(from_status, to_status, method):
        assert (result.applied, result.outcome) == (True, "applied")
        payment.refresh_from_db()
        assert payment.payment_status == to_status
        assert payment.version == 1
        [change] = history(payment)
        assert (change.from_status, change.to_status, change.source, change.actor) == (
            from_status, to_status, "api", "table")
        assert change.event_type == result.event_type
        written = events(payment)
        assert [e.type for e in written] == ([result.event_type] if result.event_type else [])
        assert result.payment.payment_status == to_status and result.payment.version == 1
    else:
        assert result.applied is False
        assert result.outcome == ("duplicate" if from_status == to_status else "disallowed")
        assert result.event_type is None
        assert result.payment.payment_status == from_status
        assert snapshot(payment) == before  # nothing changed: row (version, dates, ...), history, outbox


def test_the_table_has_the_expected_shape():
    """Guards the parametrisation above: 147 cases, of which these are allowed."""
    allowed = {(f, t, m) for f, t, m in itertools.product(STATUSES, STATUSES, METHODS) if spec_allows(f, t, m)}
    assert len(allowed) == 3 * 3 + 3 * 3 + 2 * 3 + (1 + 2 + 3)
    assert ("COMPLETED", "FAILED", "ach") in allowed and ("COMPLETED", "FAILED", "pinless") not in allowed
    assert ("COMPLETED", "CHARGED_BACK", "rtp") in allowed and ("COMPLETED", "CHARGED_BACK", "ach") not in allowed
    assert not any(f in FINAL for f, _, _ in allowed)
    assert not any(t == "PROCESSING" for _, t, _ in allowed)


def test_unknown_status_is_an_error_and_changes_nothing():
    payment = make_payment()
    before = snapshot(payment)
    with pytest.raises(ValueError):
        apply(payment, "SETTLED")
    assert snapshot(payment) == before


def test_unknown_payment_raises():
    with pytest.raises(Payment.DoesNotExist):
        payment_apply_status(payment_id="00000000-0000-0000-0000-000000000000", to_status="COMPLETED",
                             source=Source.API)


# --- dates, codes, processor references ---------------------------------------------------------------------

AT = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)


def test_completed_sets_the_completion_date_only():
    payment = make_payment(status="ACHSENT")
    submitted = payment.submit_date
    apply(payment, "COMPLETED", source=Source.CHECK_ACH, at=AT)
    payment.refresh_from_db()
    assert payment.completion_date == AT
    assert (payment.cleared_date, payment.return_date) == (None, None)
    assert payment.submit_date == submitted
    assert payment.updated_at > AT  # when we changed the row, not the (past) time of the change
    assert payment.status_changes.last().at == AT


def test_cleared_sets_the_cleared_date_only():
    payment = make_payment(status="ACHSENT", purpose="subscription")
    apply(payment, "CLEARED", at=AT)
    payment.refresh_from_db()
    assert payment.cleared_date == AT
    assert (payment.completion_date, payment.return_date) == (None, None)


def test_failed_by_a_return_sets_the_return_date_and_codes():
    payment = make_payment(status="ACHSENT")
    apply(payment, "FAILED", failure="returned", return_code="R02", return_info="RETURNED", at=AT)
    payment.refresh_from_db()
    assert payment.return_date == AT
    assert (payment.return_code, payment.return_info) == ("R02", "RETURNED")
    assert payment.completion_date is None


@pytest.mark.parametrize("failure", [None, "rejected", "declined", "not_submitted"])
def test_failed_otherwise_sets_no_return_date(failure):
    payment = make_payment(status="PROCESSING", payment_method="pinless")
    apply(payment, "FAILED", failure=failure, return_code="05", return_info="Do not honor", at=AT)
    payment.refresh_from_db()
    assert payment.payment_status == "FAILED"
    assert (payment.return_date, payment.completion_date, payment.cleared_date) == (None, None, None)
    assert (payment.return_code, payment.return_info) == ("05", "Do not honor")


def test_a_late_return_keeps_the_earlier_dates():
    payment = make_payment(status="ACHSENT", purpose="subscription")
    t1, t2, t3 = AT, AT + timedelta(hours=1), AT + timedelta(days=3)
    apply(payment, "CLEARED", at=t1)
    apply(payment, "COMPLETED", source=Source.CHECK_ACH, at=t2)
    apply(payment, "FAILED", failure="returned", return_code="AC04", at=t3)
    payment.refresh_from_db()
    assert (payment.cleared_date, payment.completion_date, payment.return_date) == (t1, t2, t3)
    assert payment.version == 3
    assert [(c.from_status, c.to_status) for c in history(payment)] == [
        ("ACHSENT", "CLEARED"), ("CLEARED", "COMPLETED"), ("COMPLETED", "FAILED")]


def test_the_default_time_is_now():
    payment = make_payment(payment_method="pinless")
    before = timezone.now()
    apply(payment, "COMPLETED")
    payment.refresh_from_db()
    assert before <= payment.completion_date <= timezone.now()
    assert events(payment)[0].occurred_at == payment.completion_date


def test_the_history_row_records_the_time_of_the_change():
    payment = make_payment(status="ACHSENT")
    apply(payment, "COMPLETED", at=AT)
    assert history(payment)[0].at == AT


def test_return_info_is_cut_to_the_column():
    payment = make_payment(payment_method="pinless")
    apply(payment, "FAILED", failure="declined", return_info="x" * 400)
    payment.refresh_from_db()
    assert payment.return_info == "x" * 255


def test_codes_are_kept_when_a_change_does_not_give_them():
    payment = make_payment(status="COMPLETED", return_code="51", return_info="soft decline earlier")
    apply(payment, "REFUNDED", source=Source.ADMIN)
    payment.refresh_from_db()
    assert (payment.return_code, payment.return_info) == ("51", "soft decline earlier")


def test_confirmation_id_and_merchant_account_are_set_once_and_never_overwritten():
    payment = make_payment()
    apply(payment, "ACHSENT", confirmation_id="U0001", merchant_account="29063402")
    apply(payment, "COMPLETED", confirmation_id="U0002", merchant_account="99999999")
    payment.refresh_from_db()
    assert (payment.confirmation_id, payment.merchant_account) == ("U0001", "29063402")
    already = make_payment(confirmation_id="U0003", merchant_account="29111679")
    apply(already, "ACHSENT", confirmation_id="U0004", merchant_account="29063402")
    already.refresh_from_db()
    assert (already.confirmation_id, already.merchant_account) == ("U0003", "29111679")


def test_history_keeps_source_actor_code_and_payload_reference():
    payment = make_payment(status="ACHSENT", purpose="subscription")
    apply(payment, "FAILED", source=Source.WEBHOOK, actor="jpm", failure="returned", return_code="AC04",
          raw_payload_ref="webhook:123:" + "r" * 300)
    [change] = history(payment)
    assert (change.source, change.actor, change.return_code) == ("webhook", "jpm", "AC04")
    assert change.raw_payload_ref == ("webhook:123:" + "r" * 300)[:255]
    assert change.event_type == "SUBSCRIPTION_RETURNED"


# --- events (SPEC §4) -----------------------------------------------------------------------------------------

# (to_status, failure) → the status it comes from in these tests.
CHANGES = [
    ("ACHSENT", None, "PROCESSING"),
    ("CLEARED", None, "ACHSENT"),
    ("COMPLETED", None, "ACHSENT"),
    ("COMPLETED", None, "PROCESSING"),
    ("FAILED", "returned", "ACHSENT"),
    ("FAILED", "returned", "COMPLETED"),
    ("FAILED", "rejected", "PROCESSING"),
    ("FAILED", "declined", "PROCESSING"),
    ("FAILED", "not_submitted", "PROCESSING"),
    ("FAILED", None, "PROCESSING"),
    ("CHARGED_BACK", None, "COMPLETED"),
    ("REFUNDED", None, "COMPLETED"),
]


def expected_event(purpose: str, payment_type: str, to_status: str, failure: str | None) -> str | None:
    if purpose == "prenote":
        if to_status == "FAILED":
            return "PRENOTE_RETURNED" if failure in ("returned", "rejected") else None
        return {"ACHSENT": "PRENOTE_SUBMITTED", "COMPLETED": "PRENOTE_VERIFIED"}.get(to_status)
    prefix = PREFIXES[(purpose, payment_type)]
    if to_status == "ACHSENT":
        return None  # "Submitting an ACH payment writes no event"
    if to_status == "CLEARED":
        return "SUBSCRIPTION_CLEARED" if prefix == "SUBSCRIPTION" else None
    if to_status == "FAILED":
        return f"{prefix}_RETURNED" if failure == "returned" else f"{prefix}_FAILED"
    return f"{prefix}_{to_status}"


KINDS = [*PREFIXES, ("prenote", "debit")]


# A prenote is an ACH entry: it cannot be charged back (the table test covers the refusal).
EVENT_CASES = [(purpose, payment_type, *change) for purpose, payment_type in KINDS for change in CHANGES
               if not (purpose == "prenote" and change[0] == "CHARGED_BACK")]


@pytest.mark.parametrize(("purpose", "payment_type", "to_status", "failure", "from_status"), EVENT_CASES)
def test_event_type_of_every_purpose_type_and_status(purpose, payment_type, to_status, failure, from_status):
    # Chargebacks are card/RTP, late returns ACH: pick the method that allows the change.
    method = "pinless" if to_status == "CHARGED_BACK" else "ach"
    payment = make_payment(status=from_status, purpose=purpose, payment_type=payment_type, payment_method=method,
                           confirmation_id=f"C-{purpose}-{payment_type}-{to_status}-{failure}-{from_status}")
    result = apply(payment, to_status, failure=failure, at=AT)
    assert result.applied
    expected = expected_event(purpose, payment_type, to_status, failure)
    assert result.event_type == expected
    payment.refresh_from_db()
    written = events(payment)
    if expected is None:
        assert written == []
        assert payment.event_type is None
        return
    [event] = written
    assert payment.event_type == expected
    assert history(payment)[0].event_type == expected
    assert (event.type, event.source, event.subject, event.aggregate_id, event.sequence) == (
        expected, "PaymentService", payment.confirmation_id, str(payment.pk), 1)
    assert event.occurred_at == AT
    assert event.data == payment_render(payment)
    assert event.data["payment_status"] == to_status and event.data["event_type"] == expected
    assert event.data["version"] == 1


def test_every_spec_event_type_is_written_by_some_change():
    produced = {expected_event(p, t, to, f) for p, t in KINDS for to, f, _ in CHANGES} - {None}
    produced.add("SUBSCRIPTION_SENT")  # payment_emit_event, below
    assert produced == SPEC_EVENT_TYPES


def test_a_credit_to_a_subscription_writes_no_event():
    """Not a route (SPEC §5), so no prefix: the status changes, no event is invented."""
    payment = make_payment(purpose="subscription", payment_type="credit", provider="usio")
    result = apply(payment, "COMPLETED")
    assert result.applied and result.event_type is None and events(payment) == []


def test_subject_is_the_payment_id_until_the_processor_id_is_known():
    payment = make_payment(payment_method="pinless")
    apply(payment, "COMPLETED")
    assert events(payment)[0].subject == str(payment.pk)
    other = make_payment(payment_method="pinless")
    apply(other, "COMPLETED", confirmation_id="U-known")
    assert events(other)[0].subject == "U-known"


def test_events_of_one_payment_are_numbered_in_order():
    payment = make_payment(purpose="subscription")
    apply(payment, "ACHSENT", confirmation_id="e2e-1")  # no event
    apply(payment, "CLEARED")
    payment_emit_event(payment_id=payment.pk, event_type="SUBSCRIPTION_SENT", source=Source.WEBHOOK)
    apply(payment, "COMPLETED", source=Source.CHECK_ACH)
    apply(payment, "FAILED", failure="returned", return_code="AC04")
    written = events(payment)
    assert [(e.sequence, e.type) for e in written] == [
        (1, "SUBSCRIPTION_CLEARED"), (2, "SUBSCRIPTION_SENT"), (3, "SUBSCRIPTION_COMPLETED"),
        (4, "SUBSCRIPTION_RETURNED")]
    assert [e.position for e in written] == sorted(e.position for e in written)
    assert len({e.event_id for e in written}) == 4
    assert all(e.subject == "e2e-1" for e in written)
    assert [e.data["payment_status"] for e in written] == ["CLEARED", "CLEARED", "COMPLETED", "FAILED"]


def test_emit_event_is_idempotent_and_changes_no_status():
    payment = make_payment(status="ACHSENT", purpose="subscription", confirmation_id="e2e-2")
    assert payment_emit_event(payment_id=payment.pk, event_type="SUBSCRIPTION_SENT", source=Source.WEBHOOK) is True
    after_first = snapshot(payment)
    assert payment_emit_event(payment_id=payment.pk, event_type="SUBSCRIPTION_SENT", source=Source.WEBHOOK) is False
    assert snapshot(payment) == after_first
    payment.refresh_from_db()
    assert (payment.payment_status, payment.version, payment.event_type) == ("ACHSENT", 0, "SUBSCRIPTION_SENT")
    assert history(payment) == []
    [event] = events(payment)
    assert event.type == "SUBSCRIPTION_SENT" and event.data == payment_render(payment)


# --- duplicates and out-of-order updates ------------------------------------------------------------------------


def test_webhook_replays_and_late_callbacks_never_move_a_payment_back():
    payment = make_payment(status="ACHSENT", purpose="subscription")
    replies = [apply(payment, s).outcome for s in ("CLEARED", "CLEARED", "ACHSENT")]
    assert replies == ["applied", "duplicate", "disallowed"]
    assert apply(payment, "COMPLETED", source=Source.CHECK_ACH).applied
    for late in ("CLEARED", "ACHSENT", "COMPLETED", "PROCESSING"):  # nothing leads back to PROCESSING either
        assert apply(payment, late).applied is False
    payment.refresh_from_db()
    assert (payment.payment_status, payment.version) == ("COMPLETED", 2)
    assert len(history(payment)) == 2 and len(events(payment)) == 2


@pytest.mark.parametrize("final", sorted(FINAL))
def test_a_final_status_never_changes(final):
    method = "ach" if final != "CHARGED_BACK" else "pinless"
    payment = make_payment(status=final, payment_method=method)
    before = snapshot(payment)
    for to_status, failure in itertools.product(STATUSES, [None, "returned"]):
        result = apply(payment, to_status, failure=failure)
        assert result.applied is False
        assert result.outcome == ("duplicate" if to_status == final else "disallowed")
    assert snapshot(payment) == before


def test_a_returned_payment_is_not_completed_by_a_late_check_ach():
    payment = make_payment(status="ACHSENT")
    assert apply(payment, "FAILED", failure="returned", return_code="R01", source=Source.USIO_SYNC).applied
    before = snapshot(payment)
    assert apply(payment, "COMPLETED", source=Source.CHECK_ACH).outcome == "disallowed"
    assert apply(payment, "FAILED", failure="returned", return_code="R01", source=Source.USIO_SYNC).outcome == (
        "duplicate")
    assert snapshot(payment) == before


def test_duplicate_applies_once_whatever_the_source():
    payment = make_payment(payment_method="pinless")
    results = [apply(payment, "COMPLETED", source=source) for source in Source.values]
    assert [r.applied for r in results] == [True] + [False] * (len(Source.values) - 1)
    assert {r.outcome for r in results[1:]} == {"duplicate"}
    payment.refresh_from_db()
    assert payment.version == 1 and len(history(payment)) == 1 and len(events(payment)) == 1


def test_refused_changes_are_logged(json_lines):
    payment = make_payment(status="FAILED")
    apply(payment, "COMPLETED", source=Source.USIO_SYNC)
    lines = [line for line in json_lines() if line["message"] == "payment status change refused"]
    assert len(lines) == 1
    assert {k: lines[0][k] for k in ("payment_id", "from_status", "to_status", "source", "outcome")} == {
        "payment_id": str(payment.pk), "from_status": "FAILED", "to_status": "COMPLETED", "source": "usio_sync",
        "outcome": "disallowed"}


def test_applied_changes_are_logged(json_lines):
    payment = make_payment(payment_method="pinless")
    apply(payment, "COMPLETED", source=Source.API)
    [line] = [line for line in json_lines() if line["message"] == "payment status changed"]
    assert (line["payment_id"], line["from_status"], line["to_status"], line["event_type"]) == (
        str(payment.pk), "PROCESSING", "COMPLETED", "FLOAT_DEBIT_COMPLETED")


# --- rolled-back transactions write nothing ---------------------------------------------------------------------


class Boom(Exception):
    pass


def test_no_event_for_a_rolled_back_transaction():
    payment = make_payment(payment_method="pinless")
    before = snapshot(payment)
    with pytest.raises(Boom), transaction.atomic():
        assert apply(payment, "COMPLETED").applied
        assert len(events(payment)) == 1  # written inside the transaction...
        raise Boom
    assert snapshot(payment) == before  # ...and gone with it, with the status change and the history row


def test_a_failure_inside_the_change_rolls_all_of_it_back():
    """A real database error in the middle of the change (the processor id belongs to another payment: unique)."""
    make_payment(confirmation_id="U-taken", payment_method="pinless")
    payment = make_payment(payment_method="pinless")
    before = snapshot(payment)
    with pytest.raises(IntegrityError):
        apply(payment, "COMPLETED", confirmation_id="U-taken")
    assert snapshot(payment) == before
    # ...and the payment can still be changed afterwards.
    assert apply(payment, "COMPLETED", confirmation_id="U-mine").applied
