"""The back-office user page (issue 8): ``/admin/users/`` and ``/admin/users/<user_id>/``.

Seeded through the services where they exist (card, bank account, blocklist, audit) and the ORM otherwise; the
page is read-only, so nothing here calls a processor. Action links are checked against a URL conf that holds the
agreed action URL names (the real views when they exist, stand-ins otherwise): the page must offer exactly the
actions the user's group allows.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.http import HttpResponse
from django.test import override_settings
from django.urls import path
from django.utils import timezone

from backoffice.urls import admin_site_urls
from backoffice.views import optional_url
from bank_accounts.services import bank_account_save
from blocklist.services import blocklist_block, blocklist_unblock
from cards.services import card_save
from core.audit import audit_record
from fraud.models import FraudCheck, FraudResult
from payments.models import Payment
from refunds.models import Refund
from tests.backoffice.conftest import login

pytestmark = pytest.mark.django_db

USER = "bo-user-1"
ACCOUNT_NUMBER = "739146285017"
ROUTING = "026009593"
DEBIT_TOKEN = "tok_debit_secret_000000000001"
CREDIT_TOKEN = "tok_credit_secret_000000000001"
CARD_EXP = f"12{timezone.now().year + 3}"
PASSWORD = "bo-password-12345"


# --- URL conf with every agreed action name (stand-ins only where the owning view does not exist yet) -----------
def _stand_in(request, *args, **kwargs):
    return HttpResponse("stand-in")


_ACTION_URLS = [
    path("payments/payment/<path:object_id>/refund/", _stand_in, name="payments_payment_refund"),
    path("payments/payment/<path:object_id>/sync/", _stand_in, name="payments_payment_sync"),
    path("payments/payment/<path:object_id>/mark-failed/", _stand_in, name="payments_payment_mark_failed"),
    path("blocklist/blocklistrecord/block/", _stand_in, name="blocklist_blocklistrecord_block"),
    path("blocklist/blocklistrecord/unblock/", _stand_in, name="blocklist_blocklistrecord_unblock"),
    path("cards/debitcard/<path:object_id>/override/", _stand_in, name="cards_debitcard_override"),
    path("core/deadletter/<path:object_id>/replay/", _stand_in, name="core_deadletter_replay"),
    path("core/outboxevent/<path:object_id>/redeliver/", _stand_in, name="core_outboxevent_redeliver"),
]
_patterns, _app_name, _namespace = admin_site_urls(admin.site)
# Real patterns first: where an owner's view exists it resolves; the stand-ins only fill the missing names.
urlpatterns = [path("admin/", ([*_patterns, *_ACTION_URLS], _app_name, _namespace))]
with_action_urls = override_settings(ROOT_URLCONF=__name__)


# --- helpers ----------------------------------------------------------------------------------------------------
def staff_client(client, group: str | None, username: str | None = None):
    return login(client, username or f"staff-{group or 'none'}", group)


def make_payment(*, user_id: str = USER, status: str = "COMPLETED", provider: str = "usio", method: str = "pinless",
                 payment_type: str = "debit", purpose: str = "float", amount: str = "25.00", **fields) -> Payment:
    fields.setdefault("submit_date", timezone.now())
    fields.setdefault("merchant_account", None if provider == "jpm" else "29063402")
    if method == "ach":
        fields.setdefault("masked_account_number", "5017")
        fields.setdefault("account_id", "acc-1")
    else:
        fields.setdefault("masked_card_number", "4242")
    return Payment.objects.create(
        user_id=user_id, purpose=purpose, payment_method=method, payment_type=payment_type, payment_provider=provider,
        amount=Decimal(amount), payment_status=status, **fields)


def seed_user(user_id: str = USER) -> dict:
    """A user with something in every section."""
    completed = make_payment(user_id=user_id, confirmation_id=f"CONF-{user_id}-1")
    returned = make_payment(user_id=user_id, status="FAILED", provider="jpm", method="ach", purpose="subscription",
                            return_code="AC04", return_info="AC04: Closed account", confirmation_id=f"E2E-{user_id}",
                            return_date=timezone.now(), submit_date=timezone.now() - timedelta(days=4))
    card, _ = card_save(user_id=user_id, masked_card_number="4242", card_exp=CARD_EXP,
                        transaction_reference_id=CREDIT_TOKEN, debit_transaction_reference_id=DEBIT_TOKEN,
                        actor="service:test")
    bank_account_save(user_id=user_id, account_id="acc-1", account_number=ACCOUNT_NUMBER, routing_number=ROUTING,
                      actor="service:test")
    refund = Refund.objects.create(
        user_id=user_id, amount=Decimal("5.00"), description="goodwill", account_type="debit", target="payment",
        method="card_refund", payment=completed, confirmation_id=completed.confirmation_id,
        usio_account="float_debit", merchant_account="29063402", masked_card_number="4242", support_name="mx-alice",
        status="COMPLETED", refund_confirmation_id=f"RF-{user_id}", date_refunded=timezone.now())
    blocklist_block(user_id=user_id, reason="returned AC04 (test)", actor="mx-alice")
    check = FraudCheck.objects.create(user_id=user_id, window_hours=24, signals=[], verdict="review",
                                      fired=["install_id"], requested_by="service:test", created_at=timezone.now())
    FraudResult.objects.create(user_id=user_id, verdict="suspicious", score=Decimal("0.7300"), flags=["velocity"],
                               source="risk-review", fraud_check=check, created_by="service:test")
    audit_record(actor="mx-alice", action="blocklist.block", target_type="user", target_id=user_id,
                 reason="called in: closed account", user_id=user_id)
    return {"completed": completed, "returned": returned, "card": card, "refund": refund, "check": check}


def page(client, user_id: str = USER):
    response = client.get(f"/admin/users/{user_id}/")
    return response, response.content.decode()


# --- the page shows every section -------------------------------------------------------------------------------
def test_user_page_gathers_every_section_for_a_support_user(client):
    seeded = seed_user()
    response, html = page(staff_client(client, "support"))
    assert response.status_code == 200
    for section in ("section-payments", "section-card", "section-bank-accounts", "section-refunds",
                    "section-blocklist", "section-fraud", "section-audit"):
        assert f'id="{section}"' in html
    assert 'id="user-not-found"' not in html
    # payments: newest first, with status, return code/info, confirmation id and links to the change page
    assert html.index(f"payment-{seeded['completed'].pk}") < html.index(f"payment-{seeded['returned'].pk}")
    assert f"/admin/payments/payment/{seeded['completed'].pk}/change/" in html
    assert "CONF-bo-user-1-1" in html and "E2E-bo-user-1" in html
    assert "AC04 — AC04: Closed account" in html
    # card: last 4, expiry, validity, tokens refreshed; bank account: id, last 4, prenote status
    assert "•••• 4242" in html and f"12/{CARD_EXP[2:]}" in html
    assert 'id="card-validity"><span class="bo-ok">valid</span>' in html
    assert "acc-1" in html and "…5017" in html and "prenote-none" in html
    # refunds, blocklist (current + history), fraud, audit
    assert "RF-bo-user-1" in html and "goodwill" in html
    assert 'id="blocklist-status">BLOCKED' in html and "returned AC04 (test)" in html
    assert "install_id" in html and "Suspicious" in html and "velocity" in html
    assert "called in: closed account" in html


def test_user_page_never_shows_account_numbers_or_tokens(client):
    seed_user()
    _, html = page(staff_client(client, "admin"))
    for secret in (ACCOUNT_NUMBER, ROUTING, DEBIT_TOKEN, CREDIT_TOKEN, "tok_"):
        assert secret not in html


def test_invalid_card_shows_why(client):
    seed_user()
    from cards.services import card_admin_update

    card_admin_update(user_id=USER, actor="mx-bob", reason="chargeback fraud", is_valid=False)
    _, html = page(staff_client(client, "support"))
    assert '<span class="bo-over">invalid</span>' in html and "admin_override" in html


def test_blocklist_history_newest_first_and_current_state(client):
    blocklist_block(user_id=USER, reason="first block", actor="mx-alice")
    blocklist_unblock(user_id=USER, reason="bank account fixed", actor="mx-bob", source="manual")
    _, html = page(staff_client(client, "support"))
    assert 'id="blocklist-status">NOT BLOCKED' in html
    assert html.index("bank account fixed") < html.index("first block")


# --- unknown, invalid, search -------------------------------------------------------------------------------------
def test_unknown_user_shows_not_found_and_empty_sections(client):
    seed_user()  # someone else's data must not leak into an unknown id's page
    response, html = page(staff_client(client, "support"), "nobody-here")
    assert response.status_code == 200
    assert 'id="user-not-found"' in html
    for empty in ("No payments.", "No debit card on file.", "No bank accounts.", "No refunds.",
                  "No blocklist history.", "No fraud checks.", "No fraud results.", "No back-office actions recorded."):
        assert empty in html
    assert "CONF-bo-user-1-1" not in html
    assert 'id="blocklist-status">NOT BLOCKED' in html


def test_malformed_user_id_is_refused_with_the_api_message(client):
    response, html = page(staff_client(client, "support"), "bad id!")
    assert response.status_code == 404
    assert "user_id must be 1-64 characters" in html


def test_search_redirects_to_the_user_page(client):
    c = staff_client(client, "support")
    response = c.get("/admin/users/", {"user_id": "  bo-user-1 "})
    assert response.status_code == 302 and response["Location"] == "/admin/users/bo-user-1/"
    form = c.get("/admin/users/")
    assert form.status_code == 200 and 'id="id_user_id"' in form.content.decode()


def test_search_with_a_malformed_id_shows_the_error_inline(client):
    response = staff_client(client, "support").get("/admin/users/", {"user_id": "no/slashes"})
    assert response.status_code == 200
    assert "user_id must be 1-64 characters" in response.content.decode()


# --- permissions --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["/admin/users/", "/admin/users/bo-user-1/", "/admin/users/?user_id=bo-user-1"])
def test_staff_without_a_group_gets_403(client, url):
    seed_user()
    response = staff_client(client, None).get(url)
    assert response.status_code == 403
    assert "CONF-bo-user-1-1" not in response.content.decode()


@pytest.mark.parametrize("url", ["/admin/users/", "/admin/users/bo-user-1/"])
def test_anonymous_is_sent_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_admin_group_sees_the_page(client):
    seed_user()
    response, _ = page(staff_client(client, "admin"))
    assert response.status_code == 200


def test_admin_index_links_to_the_user_search_and_dashboard(client):
    html = staff_client(client, "support").get("/admin/").content.decode()
    assert 'href="/admin/users/"' in html and 'href="/admin/dashboard/"' in html


def test_admin_index_hides_the_links_from_staff_without_the_permission(client):
    html = staff_client(client, None).get("/admin/").content.decode()
    assert 'id="backoffice-module"' not in html


# --- action links -------------------------------------------------------------------------------------------------
@with_action_urls
def test_support_gets_the_support_actions_only(client):
    seeded = seed_user()
    achsent = make_payment(status="ACHSENT", method="ach", submit_date=timezone.now() - timedelta(days=1))
    _, html = page(staff_client(client, "support"))
    completed, returned = seeded["completed"].pk, seeded["returned"].pk
    assert f'href="/admin/payments/payment/{completed}/refund/" id="action-refund-{completed}"' in html
    assert f"action-refund-{achsent.pk}" not in html  # not completed yet
    assert f"action-refund-{returned}" not in html  # JPM, failed
    assert f'id="action-sync-{achsent.pk}"' in html and f'id="action-sync-{completed}"' in html
    assert f"action-sync-{returned}" not in html  # final
    assert "action-mark-failed" not in html  # admin only
    assert 'href="/admin/blocklist/blocklistrecord/unblock/?user_id=bo-user-1" id="action-unblock"' in html
    assert 'id="action-block"' not in html  # already blocked
    assert f'href="/admin/cards/debitcard/{seeded["card"].pk}/override/" id="action-card-override"' in html


@with_action_urls
def test_admin_also_gets_mark_failed(client):
    seed_user()
    achsent = make_payment(status="ACHSENT", method="ach")
    _, html = page(staff_client(client, "admin"))
    assert f'href="/admin/payments/payment/{achsent.pk}/mark-failed/" id="action-mark-failed-{achsent.pk}"' in html


@with_action_urls
def test_a_user_not_blocked_gets_a_block_button(client):
    make_payment()
    _, html = page(staff_client(client, "support"))
    assert 'href="/admin/blocklist/blocklistrecord/block/?user_id=bo-user-1" id="action-block"' in html


@with_action_urls
def test_a_group_without_action_permissions_gets_no_action_links(client):
    seed_user()
    user = get_user_model().objects.create_user("viewer", "v@example.com", PASSWORD, is_staff=True)
    from django.contrib.auth.models import Permission

    user.user_permissions.add(Permission.objects.get(codename="view_payment", content_type__app_label="payments"))
    client.login(username="viewer", password=PASSWORD)
    response, html = page(client)
    assert response.status_code == 200
    assert 'id="action-' not in html


def test_optional_url_is_empty_for_a_view_that_does_not_exist():
    assert optional_url("admin:no_such_view", 1) == ""
    assert optional_url("admin:backoffice_user", "u-1") == "/admin/users/u-1/"
    assert optional_url("admin:backoffice_users", query={"user_id": "a b"}) == "/admin/users/?user_id=a+b"


# --- caps and query counts ----------------------------------------------------------------------------------------
def _bulk_payments(n: int, user_id: str = USER) -> None:
    now = timezone.now()
    Payment.objects.bulk_create([
        Payment(id=uuid.uuid4(), user_id=user_id, purpose="float", payment_method="pinless", payment_type="debit",
                payment_provider="usio", merchant_account="29063402", amount=Decimal("10.00"),
                payment_status="COMPLETED", masked_card_number="4242", submit_date=now - timedelta(minutes=i),
                confirmation_id=f"BULK-{user_id}-{i}")
        for i in range(n)])


def test_payments_are_capped_with_a_link_to_the_filtered_changelist(client):
    _bulk_payments(101)
    _, html = page(staff_client(client, "support"))
    assert html.count('<tr id="payment-') == 100
    assert "BULK-bo-user-1-0<" in html and "BULK-bo-user-1-100<" not in html  # newest 100
    assert 'id="payments-more"' in html and 'href="/admin/payments/payment/?q=bo-user-1"' in html


def _queries_for(client, django_assert_max_num_queries, n: int) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    Payment.objects.filter(user_id=USER).delete()
    _bulk_payments(n)
    with django_assert_max_num_queries(25), CaptureQueriesContext(connection) as ctx:
        response = client.get(f"/admin/users/{USER}/")
    assert response.status_code == 200
    return len(ctx)


@with_action_urls
def test_query_count_does_not_grow_with_the_number_of_rows(client, django_assert_max_num_queries):
    seed_user()
    Refund.objects.all().delete()
    c = staff_client(client, "admin")
    few = _queries_for(c, django_assert_max_num_queries, 5)
    many = _queries_for(c, django_assert_max_num_queries, 50)
    assert few == many
