"""Back office of refunds (``refunds/admin.py``): read-only, searchable by user id and confirmation ids, with the
refunds the reconciler left PROCESSING one click away."""

from datetime import timedelta

import pytest
from django.utils import timezone

from refunds.models import Refund

pytestmark = pytest.mark.django_db

LIST = "/admin/refunds/refund/"


def listed(response) -> set[str]:
    return {str(r.pk) for r in response.context["cl"].result_list}


def make_refund(**fields) -> Refund:
    values = {"user_id": "user-a", "amount": "10.00", "description": "why", "account_type": "debit",
              "target": "arbitrary", "method": "card_credit", "usio_account": "float_credit",
              "merchant_account": "29063410", "support_name": "support-key", "status": "PROCESSING"}
    values.update(fields)
    return Refund.objects.create(**values)


@pytest.fixture
def refunds():
    done = make_refund(user_id="user-done", status="COMPLETED", refund_confirmation_id="UREFUND000000001",
                       date_refunded=timezone.now())
    card = make_refund(user_id="user-card", target="usio_transaction", method="card_refund",
                       confirmation_id="UORIGINAL0000001")
    stuck = make_refund(user_id="user-stuck")
    Refund.objects.filter(pk=stuck.pk).update(created_at=timezone.now() - timedelta(minutes=30))
    return {"done": done, "card": card, "stuck": stuck}


@pytest.mark.parametrize(("term", "expected"), [("user-done", {"done"}), ("UREFUND000000001", {"done"}),
                                                ("UORIGINAL0000001", {"card"}), ("nobody", set())])
def test_search_by_user_and_confirmation_ids(admin_client, refunds, term, expected):
    response = admin_client.get(LIST, {"q": term})
    assert response.status_code == 200
    assert listed(response) == {str(refunds[name].pk) for name in expected}


@pytest.mark.parametrize("form", [str, lambda pk: pk.replace("-", "")])
def test_search_by_refund_id(admin_client, refunds, form):
    refund = refunds["card"]
    assert listed(admin_client.get(LIST, {"q": form(str(refund.pk))})) == {str(refund.pk)}


def test_search_by_the_refunded_payments_confirmation(sandbox, admin_client, support, card_payment):
    from tests.refunds.conftest import post_refund, refund_body

    payment = card_payment()
    refund_id = post_refund(support, refund_body(payment_id=str(payment.pk))).json()["id"]
    assert listed(admin_client.get(LIST, {"q": payment.confirmation_id})) == {refund_id}
    assert listed(admin_client.get(LIST, {"q": str(payment.pk)})) == {refund_id}


def test_stuck_filter_shows_old_processing_refunds(admin_client, refunds):
    assert listed(admin_client.get(LIST, {"stuck": "processing"})) == {str(refunds["stuck"].pk)}
    assert listed(admin_client.get(LIST, {"status__exact": "COMPLETED"})) == {str(refunds["done"].pk)}


def test_read_only(admin_client, refunds):
    refund = refunds["done"]
    page = admin_client.get(f"{LIST}{refund.pk}/change/")
    assert page.status_code == 200
    assert b'name="amount"' not in page.content and b'name="status"' not in page.content
    assert admin_client.post(f"{LIST}{refund.pk}/change/", {"amount": "1.00", "status": "FAILED"}).status_code == 403
    assert admin_client.get(f"{LIST}add/").status_code == 403
    assert admin_client.post(f"{LIST}{refund.pk}/delete/", {"post": "yes"}).status_code == 403
    refund.refresh_from_db()
    assert (refund.status, str(refund.amount)) == ("COMPLETED", "10.00")
