"""The Usio syncer (SPEC §7.3): ``usio_sync_window`` against the sandbox over real HTTP.

Payments are made through the API; the sandbox clock (``sandbox.advance``) makes returns appear, our clock is moved
with ``now=``. Events reach their consumers (blocklist, prenote account status) through ``outbox_relay_run()``.
"""

from __future__ import annotations

import json
from dataclasses import fields as dataclass_fields
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bank_accounts.selectors import bank_account_get
from blocklist.models import BlocklistRecord
from blocklist.selectors import blocklist_is_blocked
from core.business_days import CHICAGO, add_business_days, chicago_date
from core.outbox_relay import outbox_relay_run
from integrations.errors import ProcessorProtocolError
from integrations.usio import adapter as usio_adapter
from integrations.usio import usio_client
from payments.models import Payment, PaymentStatusChange, PrenoteRequest
from payments.prenotes import prenote_process_batch
from payments.transaction_service import ts_notifications_send_due
from syncing.models import UsioTransaction
from syncing.usio_sync import usio_sync_window
from tests.payments import conftest as payments_fixtures
from tests.payments.conftest import ACCOUNT_ID, ROUTING, USER
from tests.syncing.conftest_usio_sync import (
    RETURNED,
    SETTLES,
    around,
    card_payment,
    changes,
    events,
    float_ach,
    merchant_id,
    next_chicago_day_window,
    state,
    today_window,
)

pytestmark = pytest.mark.django_db

# The payments tests' fixtures, used here too.
bank_account = payments_fixtures.bank_account
debit_card = payments_fixtures.debit_card
caller = payments_fixtures.caller
service = payments_fixtures.service


def sync(job_type: str, window: tuple[datetime, datetime], account: str = "float_debit", **kwargs):
    start, end = window
    return usio_sync_window(account=account, job_type=job_type, start=start, end=end, **kwargs)


def counts(stats) -> dict:
    keys = ("fetched", "created", "updated", "unchanged", "matched", "unmatched", "applied", "not_applicable",
            "mismatched")
    return {key: getattr(stats, key) for key in keys}


def expect(**values) -> dict:
    base = dict.fromkeys(("fetched", "created", "updated", "unchanged", "matched", "unmatched", "applied",
                          "not_applicable", "mismatched"), 0)
    return {**base, **values}


# --- ACH returns ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "blocks"), [("02", True), ("16", True), ("01", False), ("10", False)])
def test_a_return_fails_the_payment_and_only_blocking_codes_block_the_user(sandbox, service, bank_account, code,
                                                                           blocks):
    payment = float_ach(service, bank_account, RETURNED + code)
    assert payment.payment_status == "ACHSENT"
    sandbox.advance(days=2)  # past 10:00 CT of the next Chicago day

    stats = sync("ach_returns", next_chicago_day_window())

    assert counts(stats) == expect(fetched=1, created=1, matched=1, applied=1)
    payment.refresh_from_db()
    row = UsioTransaction.objects.get()
    assert (payment.payment_status, payment.return_code, payment.return_info) == ("FAILED", f"R{code}", "RETURNED")
    assert payment.return_date == row.event_date and row.event_date is not None
    assert (row.confirmation, row.record_type, row.kind, row.status, row.return_code, row.payment_id,
            row.merchant_account, row.reference, row.amount) == (
        payment.confirmation_id, "return", "debit", "returned", f"R{code}", payment.pk, merchant_id("float_debit"),
        payment.reference, Decimal("25.00"))
    assert row.raw["confirmation"] == payment.confirmation_id and row.raw["amount"] == "25.00"
    assert events(payment) == ["FLOAT_DEBIT_RETURNED"]
    change = PaymentStatusChange.objects.filter(payment=payment).last()
    assert (change.from_status, change.to_status, change.source, change.actor, change.return_code,
            change.raw_payload_ref) == ("ACHSENT", "FAILED", "usio_sync", "usio_sync", f"R{code}",
                                        f"usio:float_debit:return:{payment.confirmation_id}")

    assert not blocklist_is_blocked(user_id=USER)  # the consumer acts through the outbox, not inline
    outbox_relay_run()
    assert blocklist_is_blocked(user_id=USER) is blocks
    records = BlocklistRecord.objects.filter(user_id=USER)
    if blocks:
        record = records.get()
        assert (record.status, record.return_code, record.payment_id) == ("BLOCKED", f"R{code}", payment.pk)
    else:
        assert not records.exists()


def test_a_return_is_not_in_the_report_before_the_sandbox_reached_it(sandbox, service, bank_account):
    payment = float_ach(service, bank_account, RETURNED + "02")
    before = state()

    stats = sync("ach_returns", next_chicago_day_window())

    assert counts(stats) == expect()
    assert state() == before
    payment.refresh_from_db()
    assert payment.payment_status == "ACHSENT"


def test_rerunning_a_returns_window_changes_nothing(sandbox, service, bank_account):
    float_ach(service, bank_account, RETURNED + "02")
    float_ach(service, bank_account, RETURNED + "01", user_id="user-9")
    sandbox.advance(days=2)
    window = next_chicago_day_window()
    assert sync("ach_returns", window).applied == 2
    outbox_relay_run()
    before = state()

    again = sync("ach_returns", window)
    outbox_relay_run()

    assert counts(again) == expect(fetched=2, unchanged=2, matched=2)
    assert state() == before  # rows (updated_at included), payments, history and events identical


def test_a_record_that_changed_is_updated_in_place(sandbox, service, bank_account):
    payment = float_ach(service, bank_account, RETURNED + "02")
    window = around(payment)
    first = sync("transactions", window)
    assert counts(first) == expect(fetched=1, created=1, matched=1)  # settled, before the gate: unchanged
    row = UsioTransaction.objects.get()
    assert (row.record_type, row.status) == ("transaction", "settled")
    stamp = row.updated_at

    sandbox.advance(days=2)  # the same transaction is now reported returned
    second = sync("transactions", window)

    assert counts(second) == expect(fetched=1, updated=1, matched=1, applied=1)
    row.refresh_from_db()
    assert (row.status, row.return_code) == ("returned", "R02") and row.updated_at > stamp
    payment.refresh_from_db()
    assert (payment.payment_status, payment.return_code, payment.return_info) == ("FAILED", "R02", "RETURNED")
    assert events(payment) == ["FLOAT_DEBIT_RETURNED"]


# --- chargebacks ----------------------------------------------------------------------------------------------------


def test_a_chargeback_charges_the_card_payment_back_and_rerunning_changes_nothing(sandbox, service, debit_card):
    payment = card_payment(service, debit_card)
    assert payment.payment_status == "COMPLETED"
    sandbox.control("POST", "usio/chargeback", {"confirmation": payment.confirmation_id, "code": "4837"})

    stats = sync("chargebacks", today_window())

    assert counts(stats) == expect(fetched=1, created=1, matched=1, applied=1)
    payment.refresh_from_db()
    assert (payment.payment_status, payment.return_code) == ("CHARGED_BACK", "4837")
    assert events(payment) == ["FLOAT_DEBIT_COMPLETED", "FLOAT_DEBIT_CHARGED_BACK"]
    row = UsioTransaction.objects.get()
    assert (row.record_type, row.status, row.payment_id) == ("chargeback", "chargeback", payment.pk)
    assert row.event_date is not None
    before = state()

    again = sync("chargebacks", today_window())

    assert counts(again) == expect(fetched=1, unchanged=1, matched=1)
    assert state() == before


def test_a_chargeback_of_another_merchant_account_is_not_in_its_report(sandbox, service, debit_card):
    payment = card_payment(service, debit_card)
    sandbox.control("POST", "usio/chargeback", {"confirmation": payment.confirmation_id})

    stats = sync("chargebacks", today_window(), account="subscription")

    assert stats.fetched == 0
    payment.refresh_from_db()
    assert payment.payment_status == "COMPLETED"


# --- settled: the three-business-day gate --------------------------------------------------------------------------


def test_a_settled_achsent_payment_completes_only_past_the_gate(sandbox, service, bank_account):
    payment = float_ach(service, bank_account, SETTLES)
    gate = datetime.combine(add_business_days(chicago_date(payment.submit_date), 3), datetime.min.time(),
                            tzinfo=CHICAGO)
    window = around(payment)
    before = state()

    stats = sync("transactions", window, now=gate - timedelta(seconds=1))

    assert counts(stats) == expect(fetched=1, created=1, matched=1)
    payment.refresh_from_db()
    assert payment.payment_status == "ACHSENT"
    assert state()["history"] == before["history"] and state()["events"] == before["events"]

    stats = sync("transactions", window, now=gate)

    assert counts(stats) == expect(fetched=1, unchanged=1, matched=1, applied=1)
    payment.refresh_from_db()
    assert payment.payment_status == "COMPLETED" and payment.completion_date == gate
    assert events(payment) == ["FLOAT_DEBIT_COMPLETED"]
    assert changes(payment)[-1] == ("ACHSENT", "COMPLETED", "usio_sync")
    after = state()
    assert counts(sync("transactions", window, now=gate + timedelta(days=3))) == expect(
        fetched=1, unchanged=1, matched=1)
    assert state() == after


def test_the_gate_reads_the_submission_time_to_the_microsecond(sandbox, service, bank_account):
    # A Wednesday's first and last microsecond (Chicago): read 1 µs off, either one falls on another day and its
    # gate moves by a business day (the matched payments' columns are read without model instances).
    day = datetime(2026, 3, 4).date()
    first = float_ach(service, bank_account, SETTLES)
    last = float_ach(service, bank_account, SETTLES)
    window = around(first)
    Payment.objects.filter(pk=first.pk).update(submit_date=datetime.combine(day, datetime.min.time(), tzinfo=CHICAGO))
    Payment.objects.filter(pk=last.pk).update(submit_date=datetime.combine(day, datetime.max.time(), tzinfo=CHICAGO))
    gate = datetime.combine(add_business_days(day, 3), datetime.min.time(), tzinfo=CHICAGO)

    assert counts(sync("transactions", window, now=gate - timedelta(microseconds=1))) == expect(
        fetched=2, created=2, matched=2)
    assert {p.payment_status for p in Payment.objects.filter(pk__in=[first.pk, last.pk])} == {"ACHSENT"}

    assert counts(sync("transactions", window, now=gate)) == expect(fetched=2, unchanged=2, matched=2, applied=2)
    assert {p.payment_status for p in Payment.objects.filter(pk__in=[first.pk, last.pk])} == {"COMPLETED"}


def test_the_staged_raw_is_the_record_as_listed(sandbox):
    # References are ours (AdditionalSearch): quotes, backslashes and non-ASCII must come back as they were sent.
    client = usio_client("float_debit")
    references = ['with "quotes"', "back\\slash", "caf\u00e9 \u2028 \U0001f600", "plain-0042"]
    for index, reference in enumerate(references):
        client.submit_ach_payment(routing_number=ROUTING, account_number=SETTLES, trans_code=27,
                                  amount=Decimal("5.10") + index, reference=reference, first_name="A", last_name="B")
    window = (timezone.now() - timedelta(minutes=5), timezone.now() + timedelta(minutes=5))

    assert sync("transactions", window).created == len(references)

    listed = client.get_transaction_list(start=window[0], end=window[1], report_type="transactions").transactions
    expected = {record.confirmation: {
        name: value.isoformat() if isinstance(value, datetime) else str(value) if isinstance(value, Decimal) else value
        for name, value in ((item.name, getattr(record, item.name)) for item in dataclass_fields(record))}
        for record in listed}
    assert {row.confirmation: row.raw for row in UsioTransaction.objects.all()} == expected
    assert sorted(raw["reference"] for raw in expected.values()) == sorted(references)


def test_a_settled_ach_credit_completes_at_once_and_notifies_the_transaction_service(sandbox, service,
                                                                                      bank_account):
    # check-ach never selects credits (seed 004): the transactions sync is what completes a float ACH credit.
    payment = float_ach(service, bank_account, SETTLES, payment_type="credit")
    assert (payment.payment_status, payment.payment_type, payment.merchant_account) == (
        "ACHSENT", "credit", merchant_id("float_credit"))

    stats = sync("transactions", around(payment), account="float_credit")

    assert counts(stats) == expect(fetched=1, created=1, matched=1, applied=1)
    payment.refresh_from_db()
    assert payment.payment_status == "COMPLETED" and payment.completion_date is not None
    assert events(payment) == ["FLOAT_CREDIT_COMPLETED"]
    assert changes(payment)[-1] == ("ACHSENT", "COMPLETED", "usio_sync")
    outbox_relay_run()
    ts_notifications_send_due()
    notified = [n for n in sandbox.received("transactions") if n["confirmation_id"] == payment.confirmation_id]
    assert [(n["previous_status"], n["payment_status"]) for n in notified] == [("ACHSENT",
                                                                                                "COMPLETED")]
    after = state()
    assert counts(sync("transactions", around(payment), account="float_credit")) == expect(
        fetched=1, unchanged=1, matched=1)
    assert state() == after


# --- PROCESSING payments -------------------------------------------------------------------------------------------


def test_a_processing_card_payment_found_settled_completes_with_its_confirmation(sandbox, service, debit_card):
    payment = card_payment(service, debit_card, token="timeout")
    assert (payment.payment_status, payment.confirmation_id) == ("PROCESSING", None)
    [entry] = sandbox.control("GET", "usio/ledger")["transactions"]

    stats = sync("transactions", around(payment))

    assert counts(stats) == expect(fetched=1, created=1, matched=1, applied=1)
    payment.refresh_from_db()
    assert (payment.payment_status, payment.confirmation_id) == ("COMPLETED", entry["confirmation"])
    assert events(payment) == ["FLOAT_DEBIT_COMPLETED"]
    assert UsioTransaction.objects.get().payment_id == payment.pk  # matched by our reference


def test_a_processing_ach_payment_found_returned_is_sent_then_failed(sandbox, service, bank_account):
    sandbox.fault("usio.SubmitACHPayment", "timeout")
    payment = float_ach(service, bank_account, RETURNED + "03")
    assert payment.payment_status == "PROCESSING"
    sandbox.advance(days=2)

    stats = sync("transactions", around(payment))

    assert stats.applied == 1
    payment.refresh_from_db()
    [entry] = sandbox.control("GET", "usio/ledger")["transactions"]
    assert (payment.payment_status, payment.confirmation_id, payment.return_code, payment.return_info) == (
        "FAILED", entry["confirmation"], "R03", "RETURNED")
    assert changes(payment)[-2:] == [("PROCESSING", "ACHSENT", "usio_sync"), ("ACHSENT", "FAILED", "usio_sync")]
    assert events(payment) == ["FLOAT_DEBIT_RETURNED"]


def test_a_processing_ach_payment_found_settled_is_achsent(sandbox, service, bank_account):
    sandbox.fault("usio.SubmitACHPayment", "timeout")
    payment = float_ach(service, bank_account, SETTLES)
    assert payment.payment_status == "PROCESSING"

    assert sync("transactions", around(payment)).applied == 1

    payment.refresh_from_db()
    assert payment.payment_status == "ACHSENT" and payment.confirmation_id
    assert events(payment) == []  # entering ACHSENT writes no event (SPEC §4)


# --- prenotes -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "account_status"), [("02", "failed"), ("01", "verified")])
def test_a_usio_prenote_return_is_prenote_returned(sandbox, service, bank_account, code, account_status):
    bank_account(account_number=RETURNED + code)
    response = service.post("/api/v1/prenotes", {"user_id": USER, "account_id": ACCOUNT_ID, "provider": "usio",
                                                 "usio_account": "float_debit"}, format="json")
    assert response.status_code in (200, 202), response.content
    prenote_process_batch()
    payment = PrenoteRequest.objects.get(pk=response.json()["id"]).payment
    assert payment.payment_status == "ACHSENT"
    sandbox.advance(days=2)

    stats = sync("ach_returns", next_chicago_day_window())
    outbox_relay_run()

    assert stats.applied == 1
    payment.refresh_from_db()
    assert (payment.payment_status, payment.return_code, payment.return_info) == ("FAILED", f"R{code}", "RETURNED")
    assert events(payment) == ["PRENOTE_SUBMITTED", "PRENOTE_RETURNED"]
    assert bank_account_get(user_id=USER, account_id=ACCOUNT_ID).prenote_status == account_status
    assert not blocklist_is_blocked(user_id=USER)


# --- records that are not applied -----------------------------------------------------------------------------------


def test_a_record_of_no_known_payment_is_staged_unmatched(sandbox):
    usio_client("float_debit").submit_ach_payment(
        routing_number=ROUTING, account_number=RETURNED + "02", trans_code=27, amount=Decimal("12.00"),
        reference="not-one-of-ours", first_name="A", last_name="B")
    sandbox.advance(days=2)

    stats = sync("ach_returns", next_chicago_day_window())

    assert counts(stats) == expect(fetched=1, created=1, unmatched=1)
    row = UsioTransaction.objects.get()
    assert (row.payment_id, row.reference, row.status) == (None, "not-one-of-ours", "returned")
    assert Payment.objects.count() == 0


def test_a_record_that_does_not_fit_its_payment_is_staged_but_not_applied(sandbox, service, bank_account):
    payment = float_ach(service, bank_account, SETTLES)
    # Another Usio transaction carrying our reference, for another amount, later returned.
    usio_client("float_debit").submit_ach_payment(
        routing_number=ROUTING, account_number=RETURNED + "02", trans_code=27, amount=Decimal("99.00"),
        reference=payment.reference, first_name="A", last_name="B")
    sandbox.advance(days=2)
    before = state()

    stats = sync("ach_returns", next_chicago_day_window())

    assert counts(stats) == expect(fetched=1, created=1, matched=1, mismatched=1)
    payment.refresh_from_db()
    assert payment.payment_status == "ACHSENT"
    after = state()
    assert (after["payments"], after["history"], after["events"]) == (
        before["payments"], before["history"], before["events"])
    assert UsioTransaction.objects.get().payment_id == payment.pk  # support sees which payment it claims


def test_staging_and_matching_are_set_based(sandbox):
    client = usio_client("float_debit")

    def submit(count: int) -> None:
        for index in range(count):
            client.submit_ach_payment(routing_number=ROUTING, account_number=SETTLES, trans_code=27,
                                      amount=Decimal("5.00") + index, reference=f"external-{count}-{index}",
                                      first_name="A", last_name="B")

    window = (timezone.now() - timedelta(minutes=5), timezone.now() + timedelta(minutes=5))
    submit(2)
    with CaptureQueriesContext(connection) as small:
        assert sync("transactions", window).created == 2
    with CaptureQueriesContext(connection) as small_again:
        assert sync("transactions", window).unchanged == 2
    submit(6)
    with CaptureQueriesContext(connection) as large:
        assert counts(sync("transactions", window)) == expect(fetched=8, created=6, unchanged=2, unmatched=8)
    with CaptureQueriesContext(connection) as large_again:
        assert sync("transactions", window).unchanged == 8

    assert len(large) == len(small)  # the number of queries does not grow with the records
    assert len(large_again) == len(small_again)
    assert not any(q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE")) for q in large_again)


# --- protocol errors ------------------------------------------------------------------------------------------------


def test_a_malformed_report_fails_the_sync_and_changes_nothing(sandbox, service, bank_account):
    payment = float_ach(service, bank_account, RETURNED + "02")
    sandbox.advance(days=2)
    sandbox.fault("usio.GetTransactionList", "malformed")
    before = state()

    with pytest.raises(ProcessorProtocolError) as caught:
        sync("ach_returns", next_chicago_day_window())

    assert caught.value.exchange is not None
    assert state() == before and UsioTransaction.objects.count() == 0
    payment.refresh_from_db()
    assert payment.payment_status == "ACHSENT"
    # The next run (the retry) reads a good answer and applies the return.
    assert sync("ach_returns", next_chicago_day_window()).applied == 1


# --- set-based application (issue 10: no query per payment) ---------------------------------------------------------


def test_returns_are_applied_set_based_each_payment_with_its_own_rows(sandbox, service, bank_account):
    def returns_sync(n: int) -> tuple[int, list[Payment]]:
        sandbox.reset()  # a fresh ledger and clock: only this round's payments are in the report
        payments = [float_ach(service, bank_account, RETURNED + "02") for _ in range(n)]
        sandbox.advance(days=2)
        with CaptureQueriesContext(connection) as captured:
            stats = sync("ach_returns", next_chicago_day_window())
        assert counts(stats) == expect(fetched=n, created=n, matched=n, applied=n)
        return len(captured), payments

    few, first = returns_sync(2)
    many, second = returns_sync(7)
    assert few == many  # one status transaction for the window's returns, whatever their number

    for payment in [*first, *second]:
        payment.refresh_from_db()
        assert (payment.payment_status, payment.return_code, payment.return_info) == ("FAILED", "R02", "RETURNED")
        assert payment.return_date is not None and payment.version == 2  # PROCESSING→ACHSENT, ACHSENT→FAILED
        assert changes(payment)[-1] == ("ACHSENT", "FAILED", "usio_sync")
        assert PaymentStatusChange.objects.filter(payment=payment, source="usio_sync").get().return_code == "R02"
        assert events(payment) == ["FLOAT_DEBIT_RETURNED"]
        assert UsioTransaction.objects.get(payment=payment).status == "returned"
    assert PaymentStatusChange.objects.filter(source="usio_sync").count() == 9


# --- a large window, page by page (issue 10: memory grows with the page, not the window) ---------------------------


def test_a_window_of_several_pages_is_staged_and_applied_page_by_page(sandbox, service, bank_account, settings):
    settings.USIO_SYNC_PAGE_SIZE = 2

    def returns_sync(n: int) -> int:
        sandbox.reset()
        payments = [float_ach(service, bank_account, RETURNED + "02") for _ in range(n)]
        sandbox.advance(days=2)
        with CaptureQueriesContext(connection) as captured:
            stats = sync("ach_returns", next_chicago_day_window())
        assert counts(stats) == expect(fetched=n, created=n, matched=n, applied=n)
        for payment in payments:
            payment.refresh_from_db()
            assert (payment.payment_status, payment.return_code) == ("FAILED", "R02")
            assert events(payment) == ["FLOAT_DEBIT_RETURNED"]
            assert UsioTransaction.objects.get(payment=payment).status == "returned"
        return len(captured)

    one, two, three = returns_sync(2), returns_sync(4), returns_sync(6)
    assert two > one  # a page more is a few queries more...
    assert three - two == two - one  # ...and always the same few, whatever the window
    assert UsioTransaction.objects.count() == 12

    # Rerunning the last window (three pages) writes nothing.
    before = state()
    assert counts(sync("ach_returns", next_chicago_day_window())) == expect(fetched=6, unchanged=6, matched=6)
    assert state() == before


def _report_text(items: list) -> str:
    return json.dumps({"Confirmation": "", "Message": "", "Status": "success", "Transactions": items}, indent=1)


def _wire(confirmation: str, status: str = "settled", amount: str = "10.00") -> dict:
    return {"Confirmation": confirmation, "TransactionType": "debit", "Amount": amount, "Status": status,
            "TransactionDate": "2026-03-02T15:00:00+00:00", "AdditionalSearch": f"ref-{confirmation}"}


def test_a_paged_report_keeps_the_last_listing_of_a_repeated_confirmation_in_report_order():
    text = _report_text([_wire("A"), _wire("B"), _wire("A", "returned"), _wire("C"), _wire("B", "failed"),
                         _wire("D")])

    report = usio_adapter.transaction_report(text, operation="GetTransactionList", exchange=None)

    assert report.count == 4
    pages = [[(r.confirmation, r.status) for r in page] for page in report.pages(2)]
    assert pages == [[("A", "returned"), ("C", "settled")], [("B", "failed"), ("D", "settled")]]
    listed = usio_adapter.transaction_list(json.loads(text), operation="GetTransactionList", exchange=None)
    assert [r for page in report.pages(3) for r in page] == list(listed.transactions[2:])  # the same records


@pytest.mark.parametrize("text", [
    _report_text([_wire("A"), _wire("B"), _wire("C", amount="ten")]),  # a bad record at the very end
    _report_text([_wire("A"), {"Confirmation": "B"}]),
    _report_text([_wire("A")])[:-3],  # truncated
    _report_text([_wire("A")]) + " x",  # trailing data
    json.dumps({"Status": "failure", "Message": "5030: Unable to locate record", "Transactions": [{"bad": 1}]}),
    json.dumps({"Status": "failure", "Message": "1001: Invalid credentials"}),
    json.dumps({"Status": "success", "Transactions": None}),
    json.dumps({"Status": "ok", "Transactions": []}),
    json.dumps([_wire("A")]),
    "",
])
def test_a_paged_report_raises_what_the_whole_report_raises_before_any_page_is_read(text):
    def outcome(read):
        try:
            read()
        except Exception as exc:  # the type and message are what is compared
            return type(exc).__name__, str(exc)
        return None

    def whole():
        try:
            data = json.loads(text)
        except ValueError as exc:  # what the client's json_body says of it
            raise ProcessorProtocolError("answer is not valid JSON", processor="usio",
                                         operation="GetTransactionList") from exc
        usio_adapter.transaction_list(data, operation="GetTransactionList", exchange=None)

    expected = outcome(whole)
    assert expected is not None
    assert outcome(lambda: usio_adapter.transaction_report(text, operation="GetTransactionList",
                                                           exchange=None)) == expected
    for size in (1, 3, 64):  # the same answer streamed in chunks (UsioClient): the same error
        assert outcome(lambda size=size: usio_adapter.transaction_report(
            _chunks(text, size), operation="GetTransactionList", exchange=None)) == expected


def _chunks(text: str, size: int) -> list[str]:
    return [text[index:index + size] for index in range(0, len(text), size)]


def test_a_report_streamed_in_chunks_gives_the_records_of_the_whole_text():
    # Numbers that a chunk may cut (a member of the envelope, and Amount as a JSON number), whitespace everywhere,
    # text beyond ASCII, a repeated confirmation, members after the array.
    items = [{**_wire("A"), "Amount": 12.5}, _wire("B\u00e9\u2028"), {**_wire("A", "returned"), "Amount": 1000},
             _wire("C")]
    body = {"Count": 1234567, "Transactions": items, "Confirmation": "", "Message": "ok", "Status": "success"}
    texts = [json.dumps(body), json.dumps(body, indent=3), " \n" + json.dumps(body, separators=(",", ":")) + " \n"]
    listed = usio_adapter.transaction_list(body, operation="GetTransactionList", exchange=None).transactions
    expected = [listed[1], listed[2], listed[3]]
    assert [(r.confirmation, r.amount) for r in expected] == [("B\u00e9\u2028", Decimal("10.00")),
                                                               ("A", Decimal("1000.00")), ("C", Decimal("10.00"))]
    for text in texts:
        assert _records(text) == expected
        for size in (1, 2, 5, 64, 4096):
            assert _records(_chunks(text, size)) == expected, size


def test_a_record_longer_than_the_retry_span_is_read_whole():
    long = {**_wire("L"), "AdditionalSearch": "r" * (usio_adapter._RETRY_SPAN * 3)}
    text = _report_text([_wire("A"), long, _wire("B")])
    expected = _records(text)
    assert [(r.confirmation, len(r.reference)) for r in expected] == [
        ("A", 5), ("L", usio_adapter._RETRY_SPAN * 3), ("B", 5)]
    for size in (4096, 1 << 16):
        assert _records(_chunks(text, size)) == expected, size


def _records(text) -> list:
    report = usio_adapter.transaction_report(text, operation="GetTransactionList", exchange=None)
    return [record for page in report.pages(2) for record in page]
