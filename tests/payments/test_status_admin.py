"""Back office of payments and their status history (``payments/admin.py``): read-only, searchable, filterable,
with the stuck payments of SPEC §7.7 one click away."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest
from django.utils import timezone

from core.business_days import CHICAGO, add_business_days, chicago_date
from payments.models import Payment, PaymentStatusChange, Source
from payments.status import payment_apply_status
from tests.payments.test_status import make_payment

pytestmark = pytest.mark.django_db

LIST = "/admin/payments/payment/"
HISTORY = "/admin/payments/paymentstatuschange/"


def listed(response) -> set[str]:
    return {str(p.pk) for p in response.context["cl"].result_list}


@pytest.fixture
def payments():
    ach = make_payment(user_id="user-ach", status="ACHSENT", confirmation_id="U0000000000000001",
                       masked_account_number="1234")
    card = make_payment(user_id="user-card", payment_method="pinless", masked_card_number="9876")
    payment_apply_status(payment_id=card.pk, to_status="COMPLETED", source=Source.API, actor="api",
                         confirmation_id="U0000000000000002")
    jpm = make_payment(user_id="user-jpm", purpose="subscription", provider="jpm")
    return {"ach": ach, "card": card, "jpm": jpm}


@pytest.mark.parametrize(
    ("term", "expected"),
    [("user-ach", {"ach"}), ("U0000000000000002", {"card"}), ("1234", {"ach"}), ("9876", {"card"}),
     ("nobody", set())],
)
def test_search_by_user_confirmation_and_last4(admin_client, payments, term, expected):
    response = admin_client.get(LIST, {"q": term})
    assert response.status_code == 200
    assert listed(response) == {str(payments[name].pk) for name in expected}


@pytest.mark.parametrize("form", [str, lambda pk: pk.replace("-", "")])
def test_search_by_payment_id_our_processor_reference(admin_client, payments, form):
    payment = payments["jpm"]
    response = admin_client.get(LIST, {"q": form(str(payment.pk))})
    assert listed(response) == {str(payment.pk)}


@pytest.mark.parametrize(
    ("params", "expected"),
    [({"payment_status__exact": "COMPLETED"}, {"card"}), ({"payment_method__exact": "pinless"}, {"card"}),
     ({"payment_provider__exact": "jpm"}, {"jpm"}), ({"purpose__exact": "subscription"}, {"jpm"}),
     ({"payment_type__exact": "debit"}, {"ach", "card", "jpm"})],
)
def test_filters(admin_client, payments, params, expected):
    response = admin_client.get(LIST, params)
    assert response.status_code == 200
    assert listed(response) == {str(payments[name].pk) for name in expected}


def test_filters_combine_with_a_payment_id_search(admin_client, payments):
    response = admin_client.get(LIST, {"q": str(payments["jpm"].pk), "payment_status__exact": "COMPLETED"})
    assert listed(response) == set()


def test_stuck_filter_shows_old_processing_and_old_achsent(admin_client, payments):
    now = timezone.now()
    old_processing = make_payment(user_id="old-processing")
    Payment.objects.filter(pk=old_processing.pk).update(created_at=now - timedelta(minutes=6))
    eight_business_days = add_business_days(chicago_date(now), -8)
    old_achsent = make_payment(user_id="old-achsent", status="ACHSENT",
                               submit_date=datetime.combine(eight_business_days, time(12), tzinfo=CHICAGO))
    assert listed(admin_client.get(LIST, {"stuck": "processing"})) == {str(old_processing.pk)}
    assert listed(admin_client.get(LIST, {"stuck": "achsent"})) == {str(old_achsent.pk)}


def test_change_page_is_read_only_with_the_history_inline(admin_client, payments):
    card = payments["card"]
    response = admin_client.get(f"{LIST}{card.pk}/change/")
    assert response.status_code == 200
    text = response.content.decode()
    assert "PROCESSING" in text and "COMPLETED" in text and "FLOAT_DEBIT_COMPLETED" in text  # the inline row
    assert 'name="amount"' not in text and 'name="payment_status"' not in text  # no editable field
    assert response.context["has_change_permission"] is False
    assert response.context["has_delete_permission"] is False


def test_nothing_can_be_added_changed_or_deleted(admin_client, payments):
    card = payments["card"]
    assert admin_client.get(f"{LIST}add/").status_code == 403
    before = Payment.objects.filter(pk=card.pk).values().get()
    response = admin_client.post(f"{LIST}{card.pk}/change/", {"amount": "1.00", "payment_status": "FAILED"})
    assert response.status_code == 403
    assert admin_client.post(f"{LIST}{card.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Payment.objects.filter(pk=card.pk).values().get() == before
    change = PaymentStatusChange.objects.get(payment=card)
    assert admin_client.post(f"{HISTORY}{change.pk}/delete/", {"post": "yes"}).status_code == 403
    assert PaymentStatusChange.objects.filter(pk=change.pk).exists()


def test_status_history_list_and_search(admin_client, payments):
    card = payments["card"]
    response = admin_client.get(HISTORY, {"q": str(card.pk)})
    assert response.status_code == 200
    assert [c.to_status for c in response.context["cl"].result_list] == ["COMPLETED"]
    by_user = admin_client.get(HISTORY, {"q": "user-card"})
    assert [c.payment_id for c in by_user.context["cl"].result_list] == [card.pk]
    assert admin_client.get(HISTORY, {"source__exact": "api"}).status_code == 200
    assert admin_client.get(f"{HISTORY}{PaymentStatusChange.objects.get(payment=card).pk}/change/").status_code == 200
