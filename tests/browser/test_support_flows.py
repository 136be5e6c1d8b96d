"""A support user's day in a real browser: find a user, open their page, refund a payment (and be refused a refund
above the balance), block and unblock the user. Refunds reach the sandbox's Usio over HTTP."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from blocklist.models import BlocklistRecord
from core.models import AuditEntry
from payments.models import Payment
from refunds.models import Refund
from tests.browser.conftest import screenshot
from tests.refunds.conftest import USER, refund_calls

pytestmark = pytest.mark.browser


def _snapshot(sandbox) -> dict:
    """What a refused action must leave unchanged."""
    return {
        "refunds": list(Refund.objects.order_by("pk").values()),
        "payments": list(Payment.objects.order_by("pk").values()),
        "audit": list(AuditEntry.objects.order_by("pk").values()),
        "blocklist": list(BlocklistRecord.objects.order_by("pk").values()),
        "usio_refund_calls": len(refund_calls(sandbox)),
    }


def test_support_finds_a_user_and_sees_their_payments(page, login, card_payment):
    first = card_payment("50.00")
    second = card_payment("12.34", purpose="loan")
    login("support")

    page.goto("/admin/")
    page.click("#link-user-search")  # the admin home's "Back office" box
    expect(page).to_have_url(re.compile(r"/admin/users/$"))
    page.fill("#id_user_id", USER)
    screenshot(page, "user-search")
    page.click("#user-search-submit")

    expect(page).to_have_url(re.compile(rf"/admin/users/{USER}/$"))
    rows = page.locator("#payments tbody tr")
    expect(rows).to_have_count(2)
    for payment in (first, second):
        row = page.locator(f"#payment-{payment.pk}")
        expect(row).to_contain_text(str(payment.amount))
        expect(row).to_contain_text("COMPLETED")
        expect(row).to_contain_text(payment.confirmation_id)
        # a COMPLETED Usio debit offers support a refund
        expect(row.locator(f"#action-refund-{payment.pk}")).to_be_visible()
    screenshot(page, "user-page")


def test_user_search_refuses_an_invalid_user_id(page, login):
    login("support")
    page.goto("/admin/users/")
    page.fill("#id_user_id", "not a valid id!")
    page.click("#user-search-submit")
    expect(page.locator(".errorlist, #user-search-error").first).to_be_visible()
    assert "/admin/users/not" not in page.url


def test_support_refunds_a_payment_from_the_user_page(page, login, card_payment, sandbox):
    payment = card_payment("50.00")
    user = login("support")
    page.goto(f"/admin/users/{USER}/")
    page.click(f"#action-refund-{payment.pk}")

    expect(page.locator("#refundable-balance")).to_contain_text("50.00")
    page.fill("#id_amount", "20.00")
    page.fill("#id_description", "Duplicate charge")
    page.fill("#id_reason", "Customer called: charged twice (ticket 1234)")
    page.click("input[name=_confirm]")

    success = page.locator(".messagelist .success")
    expect(success).to_contain_text("COMPLETED")
    refund = Refund.objects.get(payment=payment)
    assert (refund.status, refund.amount, refund.support_name) == ("COMPLETED", Decimal("20.00"), user.username)
    assert refund.refund_confirmation_id
    calls = [c for c in refund_calls(sandbox) if c["operation"] == "usio.SubmitCCVoid"]
    assert len(calls) == 1
    assert calls[0]["body"]["ConfirmationID"] == payment.confirmation_id
    entries = AuditEntry.objects.filter(target_type="refund", target_id=str(refund.pk))
    assert [(e.actor, e.action, e.reason) for e in entries] == [
        (user.username, "refund.create", "Customer called: charged twice (ticket 1234)")]
    assert AuditEntry.objects.count() == 1
    # back on the payment page, with its action buttons
    assert f"/admin/payments/payment/{payment.pk}/" in page.url
    expect(page.locator("#payment-refund-link")).to_be_visible()
    expect(page.locator("#payment-sync-link")).to_be_visible()
    expect(page.locator("#payment-mark-failed-link")).to_have_count(0)  # admin only
    screenshot(page, "payment-page")

    # the refund shows on the user's page
    page.goto(f"/admin/users/{USER}/")
    expect(page.locator("#refunds tbody tr")).to_have_count(1)
    expect(page.locator("#refunds")).to_contain_text("20.00")


def test_refund_above_the_balance_is_refused_and_changes_nothing(page, login, card_payment, sandbox):
    payment = card_payment("50.00")
    login("support")
    page.goto(f"/admin/payments/payment/{payment.pk}/")
    page.click("#payment-refund-link")
    before = _snapshot(sandbox)

    page.fill("#id_amount", "50.01")
    page.fill("#id_description", "Too much")
    page.fill("#id_reason", "Testing the balance")
    page.click("input[name=_confirm]")

    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator(".field-amount .errorlist")).to_contain_text("refund_exceeds_balance")
    expect(page.locator("#refundable-balance")).to_contain_text("50.00")
    assert _snapshot(sandbox) == before
    screenshot(page, "refund-error")

    # the same form without a reason: refused too, nothing changed
    page.fill("#id_amount", "5.00")
    page.fill("#id_description", "Goodwill")
    page.fill("#id_reason", "")
    page.click("input[name=_confirm]")
    expect(page.locator(".field-reason .errorlist")).to_be_visible()
    assert _snapshot(sandbox) == before


def test_support_blocks_and_unblocks_a_user(page, login, card_payment):
    card_payment("50.00")
    user = login("support")
    page.goto(f"/admin/users/{USER}/")
    expect(page.locator("#blocklist-status")).to_have_text("NOT BLOCKED")

    # block: a reason is required
    page.click("#action-block")
    expect(page.locator("#id_reason")).to_be_visible()
    page.click("input[name=_confirm]")
    expect(page.locator(".errornote")).to_be_visible()
    assert BlocklistRecord.objects.count() == 0 and AuditEntry.objects.count() == 0

    page.fill("#id_reason", "Suspected account takeover (ticket 77)")
    page.click("input[name=_confirm]")
    expect(page.locator(".messagelist .success")).to_contain_text("blocked")
    expect(page).to_have_url(re.compile(rf"/admin/users/{USER}/$"))
    expect(page.locator("#blocklist-status")).to_have_text("BLOCKED")
    expect(page.locator("#blocklist-history tbody tr").first).to_contain_text("BLOCKED")

    # unblock
    page.click("#action-unblock")
    page.fill("#id_reason", "Identity verified by phone")
    page.click("input[name=_confirm]")
    expect(page.locator(".messagelist .success")).to_contain_text("unblocked")
    expect(page.locator("#blocklist-status")).to_have_text("NOT BLOCKED")
    expect(page.locator("#blocklist-history tbody tr").first).to_contain_text("NOTBLOCKED")

    records = list(BlocklistRecord.objects.filter(user_id=USER).order_by("created_at", "id"))
    assert [(r.status, r.source, r.actor) for r in records] == [
        ("BLOCKED", "manual", user.username), ("NOTBLOCKED", "manual", user.username)]
    entries = list(AuditEntry.objects.order_by("at", "id"))
    assert [(e.action, e.actor, e.user_id, e.reason) for e in entries] == [
        ("blocklist.block", user.username, USER, "Suspected account takeover (ticket 77)"),
        ("blocklist.unblock", user.username, USER, "Identity verified by phone"),
    ]
    expect(page.locator("#audit-entries tbody tr")).to_have_count(2)


def test_support_cannot_open_mark_failed(page, login, card_payment, sandbox):
    """Mark failed is admin-only: no button for support, and the URL typed by hand is 403 with nothing changed."""
    payment = card_payment("50.00")
    login("support")
    before = _snapshot(sandbox)
    response = page.goto(f"/admin/payments/payment/{payment.pk}/mark-failed/")
    assert response.status == 403
    assert _snapshot(sandbox) == before


def test_dashboard_renders_its_charts(page, login, card_payment, ach_payment):
    from django.core.management import call_command

    from core.models import DeadLetter
    from payments.status import payment_apply_status

    card_payment("50.00")
    card_payment("20.00", purpose="loan")
    ach = [ach_payment("80.00", complete=False) for _ in range(3)]
    # one ACH debit of three returned with an administrative code: 33% overall, 33% administrative (both red)
    payment_apply_status(payment_id=ach[0].pk, to_status="FAILED", source="usio_sync", failure="returned",
                         return_code="R02", return_info="RETURNED")
    DeadLetter.objects.create(task_name="payments.check_ach", task_id="demo", queue="payments", args=[],
                              kwargs={}, last_error="UsioUnavailable: no answer", attempts=5)
    call_command("setup_schedules", verbosity=0)
    login("support")

    response = page.goto("/admin/dashboard/")
    assert response.status == 200
    expect(page.locator("#chart-by-status svg")).to_have_count(1)
    expect(page.locator("#chart-by-method svg")).to_have_count(1)
    expect(page.locator("#status-total-COMPLETED")).to_have_text("2")
    expect(page.locator("#status-total-ACHSENT")).to_have_text("2")
    expect(page.locator("#status-total-FAILED")).to_have_text("1")
    expect(page.locator("#chart-rate-overall svg")).to_have_count(1)
    expect(page.locator("#return-rates td.bo-over").first).to_be_visible()  # over the SPEC §12 threshold
    expect(page.locator("#dead-letters tbody tr")).to_have_count(1)
    expect(page.locator("#jobs tbody tr").first).to_be_visible()
    # no external resources: every script, stylesheet and image comes from the live server
    external = page.evaluate(
        "() => [...document.querySelectorAll('script[src], link[href], img[src]')]"
        ".map(e => e.src || e.href).filter(u => !u.startsWith(location.origin))")
    assert external == []
    screenshot(page, "dashboard")


def test_support_overrides_a_card_from_the_user_page(page, login, card_payment):
    from cards.models import DebitCard

    card_payment("50.00")
    user = login("support")
    page.goto(f"/admin/users/{USER}/")
    expect(page.locator("#card-validity")).to_contain_text("valid")
    page.click("#action-card-override")

    # nothing changed on the form: refused, nothing written
    page.fill("#id_reason", "No change")
    page.click("input[name=_confirm]")
    expect(page.locator(".errornote")).to_be_visible()
    assert AuditEntry.objects.count() == 0

    page.goto(page.url)  # the form afresh
    page.check("input[name=is_valid][value=invalid]")
    page.fill("#id_reason", "Card reported stolen by the customer")
    screenshot(page, "card-override")
    page.click("input[name=_confirm]")
    expect(page.locator(".messagelist .success")).to_contain_text("invalid")

    card = DebitCard.objects.get(user_id=USER)
    assert (card.is_valid, card.invalid_reason) == (False, "admin_override")
    assert [(e.action, e.actor, e.reason) for e in AuditEntry.objects.all()] == [
        ("debit_card.admin_update", user.username, "Card reported stolen by the customer")]
    page.goto(f"/admin/users/{USER}/")
    expect(page.locator("#card-validity")).to_contain_text("invalid")
