"""Concurrent status changes of one payment (SPEC §3): the row lock and the conditional update make them apply once.

Run with PostgreSQL for the real thing (``DATABASE_URL=postgres://…``): 50 threads, each with its own connection,
released together by a barrier. On SQLite the same tests pass because ``BEGIN IMMEDIATE`` serialises writers; they
assert the same outcome in both modes.
"""

from __future__ import annotations

import itertools
import threading

import pytest
from django.db import connection, transaction

from payments.models import Payment, Source
from payments.status import payment_apply_status
from tests.concurrency import run_concurrently
from tests.payments.test_status import events, history, make_payment, snapshot

THREADS = 50


@pytest.mark.django_db(transaction=True)
def test_fifty_identical_concurrent_transitions_apply_exactly_once():
    payment = make_payment(payment_method="pinless")

    results = run_concurrently(lambda i: payment_apply_status(
        payment_id=payment.pk, to_status="COMPLETED", source=Source.API, actor=f"thread-{i}"), THREADS)

    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(r.applied for r in results) == 1
    assert sorted(r.outcome for r in results) == ["applied"] + ["duplicate"] * (THREADS - 1)
    payment.refresh_from_db()
    assert (payment.payment_status, payment.version) == ("COMPLETED", 1)
    assert len(history(payment)) == 1
    [event] = events(payment)
    assert (event.type, event.sequence) == ("FLOAT_DEBIT_COMPLETED", 1)


@pytest.mark.django_db(transaction=True)
def test_fifty_conflicting_concurrent_transitions_apply_exactly_one():
    """COMPLETED vs FAILED on a card payment: whichever comes first wins, the other is refused (a card payment
    cannot fail after completing, nor complete after failing)."""
    payment = make_payment(payment_method="pinless")

    def change(i: int):
        if i % 2:
            return payment_apply_status(payment_id=payment.pk, to_status="COMPLETED", source=Source.API,
                                        actor=f"thread-{i}")
        return payment_apply_status(payment_id=payment.pk, to_status="FAILED", source=Source.USIO_SYNC,
                                    actor=f"thread-{i}", failure="declined", return_code="05")

    results = run_concurrently(change, THREADS)

    assert not [r for r in results if isinstance(r, Exception)], results
    [winner] = [r for r in results if r.applied]
    payment.refresh_from_db()
    assert payment.payment_status == winner.payment.payment_status
    assert payment.version == 1
    [row] = history(payment)
    assert (row.from_status, row.to_status) == ("PROCESSING", payment.payment_status)
    written = events(payment)
    assert [e.type for e in written] == [winner.event_type]
    assert written[0].data["payment_status"] == payment.payment_status
    losers = [r for r in results if not r.applied]
    assert all(r.outcome in ("duplicate", "disallowed") for r in losers)


@pytest.mark.django_db(transaction=True)
def test_concurrent_ach_updates_keep_a_consistent_history():
    """ACH: COMPLETED (check-ach) and FAILED (a return) race; FAILED may legitimately follow COMPLETED (late return)
    but never the other way round. Whatever interleaving happened, the history is one chain through the table."""
    payment = make_payment(status="ACHSENT")

    def change(i: int):
        to_status = ("COMPLETED", "FAILED", "CLEARED")[i % 3]
        return payment_apply_status(payment_id=payment.pk, to_status=to_status, source=Source.WEBHOOK,
                                    actor=f"thread-{i}", failure="returned" if to_status == "FAILED" else None,
                                    return_code="R01" if to_status == "FAILED" else None)

    results = run_concurrently(change, THREADS)

    assert not [r for r in results if isinstance(r, Exception)], results
    applied = [r for r in results if r.applied]
    rows = history(payment)
    payment.refresh_from_db()
    assert payment.payment_status == "FAILED"  # every interleaving ends there: FAILED is reachable from all
    assert payment.version == len(rows) == len(applied)
    assert rows[0].from_status == "ACHSENT"
    assert all(a.to_status == b.from_status for a, b in itertools.pairwise(rows))
    assert rows[-1].to_status == "FAILED"
    assert [e.type for e in events(payment)] == [r.event_type for r in rows if r.event_type]
    assert [e.sequence for e in events(payment)] == list(range(1, len(events(payment)) + 1))


@pytest.mark.django_db(transaction=True)
def test_a_change_rolled_back_while_another_waits_writes_no_event():
    """Thread A applies COMPLETED inside a transaction and rolls it back while thread B waits for the row; B then
    applies FAILED. Only B's change exists: no event, history row or version from A."""
    payment = make_payment(payment_method="pinless")
    a_applied = threading.Event()
    b_started = threading.Event()
    results: dict = {}

    class Rollback(Exception):
        pass

    def thread_a():
        try:
            with transaction.atomic():
                results["a"] = payment_apply_status(payment_id=payment.pk, to_status="COMPLETED", source=Source.API)
                a_applied.set()
                b_started.wait(timeout=10)
                threading.Event().wait(0.5)  # let B block on the row (PostgreSQL) or on BEGIN IMMEDIATE (SQLite)
                raise Rollback
        except Rollback:
            results["a_rolled_back"] = True
        except Exception as exc:
            results["a_error"] = exc
        finally:
            connection.close()

    def thread_b():
        try:
            a_applied.wait(timeout=10)
            b_started.set()
            results["b"] = payment_apply_status(payment_id=payment.pk, to_status="FAILED", source=Source.USIO_SYNC,
                                                failure="declined")
        except Exception as exc:
            results["b_error"] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert "a_error" not in results and "b_error" not in results, results
    assert results["a"].applied and results["a_rolled_back"]
    assert results["b"].applied and results["b"].outcome == "applied"
    payment.refresh_from_db()
    assert (payment.payment_status, payment.version, payment.completion_date) == ("FAILED", 1, None)
    [row] = history(payment)
    assert (row.from_status, row.to_status) == ("PROCESSING", "FAILED")
    [event] = events(payment)
    assert (event.type, event.sequence) == ("FLOAT_DEBIT_FAILED", 1)


@pytest.mark.django_db(transaction=True)
def test_rolled_back_transaction_leaves_nothing_behind_when_committed_for_real():
    """Outside the test's wrapping transaction: the rollback really happens at the database."""
    payment = make_payment(payment_method="pinless")
    before = snapshot(payment)
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        payment_apply_status(payment_id=payment.pk, to_status="COMPLETED", source=Source.API)
        1 / 0  # noqa: B018
    assert snapshot(payment) == before
    assert Payment.objects.get(pk=payment.pk).payment_status == "PROCESSING"
