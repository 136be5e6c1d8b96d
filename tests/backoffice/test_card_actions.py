"""Back office (issue 8): override a debit card's validity (or expiry) with a reason; no token is ever shown."""

from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.utils import timezone

from cards.models import ChangeType, DebitCard, DebitCardChange
from cards.services import card_save
from core.models import AuditEntry
from tests.backoffice.conftest import login

pytestmark = pytest.mark.django_db

CREDIT, DEBIT = "tok_backoffice_credit_7731", "tok_backoffice_debit_7731"


def exp_in(years: int, month: int = 12) -> str:
    today = timezone.localtime(timezone.now(), ZoneInfo(settings.BUSINESS_TIME_ZONE))
    return f"{month:02d}{today.year + years}"


@pytest.fixture
def card() -> DebitCard:
    card, _ = card_save(user_id="user-77", masked_card_number="4242", card_exp=exp_in(2),
                        transaction_reference_id=CREDIT, debit_transaction_reference_id=DEBIT, actor="test")
    return card


def override_url(card) -> str:
    return f"/admin/cards/debitcard/{card.pk}/override/"


def state() -> tuple:
    return (list(DebitCard.objects.order_by("pk").values()), list(DebitCardChange.objects.order_by("pk").values()),
            list(AuditEntry.objects.order_by("pk").values()))


def test_support_marks_a_card_invalid_with_exactly_one_audit_entry(client, card):
    login(client, "mx-sam", "support")
    page = client.get(override_url(card))
    assert page.status_code == 200
    html = page.content.decode()
    assert "4242" in html and f"{card.card_exp[:2]}/{card.card_exp[2:]}" in html
    assert CREDIT not in html and DEBIT not in html
    assert 'id="id_reason"' in html and 'name="_confirm"' in html and 'id="id_is_valid_1"' in html

    response = client.post(override_url(card), {"is_valid": "invalid", "card_exp": card.card_exp,
                                                "reason": "customer reported theft", "_confirm": "1"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert response["Location"] == f"/admin/cards/debitcard/{card.pk}/change/"
    card.refresh_from_db()
    assert card.is_valid is False and card.invalid_reason == "admin_override" and card.invalid_date is not None
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.action, entry.reason, entry.user_id) == (
        "mx-sam", "debit_card.admin_update", "customer reported theft", "user-77")
    assert entry.changes == {"is_valid": {"old": True, "new": False}}
    change = DebitCardChange.objects.get(change_type=ChangeType.ADMIN_UPDATED)
    assert change.actor == "mx-sam" and change.reason == "customer reported theft"


def test_admin_makes_a_card_valid_again_with_a_reissued_expiry(client, card):
    DebitCard.objects.filter(pk=card.pk).update(is_valid=False, invalid_date=timezone.now(),
                                                invalid_reason="hard decline")  # as a hard decline leaves it
    login(client, "ops-ada", "admin")
    new_exp = exp_in(4, month=3)
    response = client.post(override_url(card), {"is_valid": "valid", "card_exp": new_exp, "reason": "bank reissued"})
    assert response.status_code == 302
    card.refresh_from_db()
    assert (card.is_valid, card.card_exp, card.invalid_reason, card.invalid_date) == (True, new_exp, "", None)
    entry = AuditEntry.objects.get()
    assert entry.actor == "ops-ada" and entry.changes == {
        "card_exp": {"old": exp_in(2), "new": new_exp}, "is_valid": {"old": False, "new": True}}


@pytest.mark.parametrize(("data", "error"), [
    ({"is_valid": "invalid", "reason": ""}, "A reason is required."),
    ({"is_valid": "invalid", "reason": "   "}, "A reason is required."),
    ({"is_valid": "valid", "reason": "nothing really"}, "Nothing to change: the card is already valid"),
    ({"is_valid": "maybe", "reason": "x"}, "Select a valid choice"),
    ({"reason": "x"}, "This field is required."),
    ({"is_valid": "valid", "card_exp": "132031", "reason": "x"}, "card_exp month must be 01 to 12."),
    ({"is_valid": "valid", "card_exp": "012000", "reason": "x"}, "The card has expired."),
    ({"is_valid": "valid", "card_exp": "1/30", "reason": "x"}, "card_exp must be MMYYYY (6 digits)."),
])
def test_invalid_overrides_show_the_form_again_with_the_error_and_change_nothing(client, card, data, error):
    login(client, "mx-sam", "support")
    before = state()
    response = client.post(override_url(card), {**data, "_confirm": "1"})
    assert response.status_code == 200
    html = response.content.decode()
    assert error in html and 'class="errorlist' in html
    assert CREDIT not in html and DEBIT not in html
    assert state() == before


@pytest.mark.parametrize("who", ["no-group", "view-only"])
def test_staff_without_the_permission_get_403_and_change_nothing(client, card, who):
    if who == "no-group":
        login(client, "staff-nobody")
    else:
        login(client, "viewer", None, "view_debitcard")
    before = state()
    assert client.get(override_url(card)).status_code == 403
    assert client.post(override_url(card), {"is_valid": "invalid", "reason": "tampered"}).status_code == 403
    assert state() == before


@pytest.mark.parametrize("group", ["support", "admin"])
def test_card_pages_show_last4_and_expiry_and_that_tokens_exist_never_their_values(client, card, group):
    login(client, f"{group}-user", group)
    pages = ["/admin/cards/debitcard/", "/admin/cards/debitcard/?q=4242", f"/admin/cards/debitcard/{card.pk}/change/",
             f"/admin/cards/debitcard/{card.pk}/history/", "/admin/cards/debitcardchange/", override_url(card)]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert CREDIT not in html and DEBIT not in html, url
        assert 'name="transaction_reference_id"' not in html, url
    detail = client.get(f"/admin/cards/debitcard/{card.pk}/change/").content.decode()
    assert "4242" in detail and "on file (credit, debit)" in detail and 'id="override-card-link"' in detail


def test_cards_are_not_edited_through_a_model_form(client, card):
    login(client, "ops-ada", "admin")
    before = state()
    change_url = f"/admin/cards/debitcard/{card.pk}/change/"
    html = client.get(change_url).content.decode()
    assert 'name="is_valid"' not in html and 'name="card_exp"' not in html  # read-only page
    assert client.post(change_url, {"card_exp": exp_in(3), "reason": "x", "_save": "1"}).status_code == 403
    assert client.get("/admin/cards/debitcard/add/").status_code == 403
    assert client.post(f"/admin/cards/debitcard/{card.pk}/delete/", {"post": "yes"}).status_code == 403
    assert state() == before


def test_unknown_card_is_404_for_a_permitted_user_and_403_for_others(client, card):
    login(client, "mx-sam", "support")
    assert client.get("/admin/cards/debitcard/999999/override/").status_code == 404
    client.logout()
    login(client, "staff-nobody")
    assert client.get("/admin/cards/debitcard/999999/override/").status_code == 403
