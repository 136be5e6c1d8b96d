"""Back office: cards and their history are visible without tokens; edits go through the audited service."""

import pytest

from cards.models import ChangeType, DebitCard, DebitCardChange
from core.models import AuditEntry
from tests.cards.conftest import exp_in, save, state

pytestmark = pytest.mark.django_db

CREDIT, DEBIT = "tok_admin_secret_credit", "tok_admin_secret_debit"


@pytest.fixture
def card():
    return save(transaction_reference_id=CREDIT, debit_transaction_reference_id=DEBIT)


def _change_url(card):
    return f"/admin/cards/debitcard/{card.pk}/change/"


def test_changelist_searches_by_user_id_and_last4_without_tokens(admin_client, card):
    save("someone-else", masked_card_number="9876")
    by_last4 = admin_client.get("/admin/cards/debitcard/", {"q": "1111"})
    assert by_last4.status_code == 200
    text = by_last4.content.decode()
    assert "user-1" in text and "someone-else" not in text
    assert CREDIT not in text and DEBIT not in text
    by_user = admin_client.get("/admin/cards/debitcard/", {"q": "someone-else"}).content.decode()
    assert "someone-else" in by_user and "9876" in by_user


def test_change_page_hides_tokens(admin_client, card):
    response = admin_client.get(_change_url(card))
    assert response.status_code == 200
    assert CREDIT not in response.content.decode() and DEBIT not in response.content.decode()


def test_edit_goes_through_the_service_with_the_staff_user_as_actor(admin_client, card):
    new_exp = exp_in(5, month=3)
    response = admin_client.post(_change_url(card), {"card_exp": new_exp, "is_valid": "on", "reason": "bank reissued",
                                                      "_save": "1"})
    assert response.status_code == 302, response.content.decode()[:2000]
    card.refresh_from_db()
    assert card.card_exp == new_exp and card.is_valid is True
    entry = AuditEntry.objects.get()
    assert entry.actor == "admin" and entry.reason == "bank reissued" and entry.action == "debit_card.admin_update"
    assert entry.changes == {"card_exp": {"old": exp_in(2), "new": new_exp}}
    change = DebitCardChange.objects.get(change_type=ChangeType.ADMIN_UPDATED)
    assert change.actor == "admin" and change.new_card_exp == new_exp


def test_validity_override_in_the_admin(admin_client, card):
    response = admin_client.post(_change_url(card), {"card_exp": card.card_exp, "reason": "fraud", "_save": "1"})
    assert response.status_code == 302
    card.refresh_from_db()
    assert card.is_valid is False and card.invalid_reason == "admin_override"
    assert AuditEntry.objects.get().changes == {"is_valid": {"old": True, "new": False}}


@pytest.mark.parametrize(("data", "error"), [
    ({"card_exp": "012031", "is_valid": "on"}, "This field is required"),
    ({"card_exp": "132031", "is_valid": "on", "reason": "x"}, "month must be 01 to 12"),
    ({"card_exp": "012000", "is_valid": "on", "reason": "x"}, "The card has expired"),
    ({"card_exp": "012031", "is_valid": "on", "reason": "   "}, "This field is required"),
])
def test_invalid_edit_is_refused_by_the_form_and_writes_nothing(admin_client, card, data, error):
    before = state()
    response = admin_client.post(_change_url(card), {**data, "_save": "1"})
    assert response.status_code == 200
    assert error in response.content.decode()
    assert state() == before


def test_cards_cannot_be_added_or_deleted_in_the_admin(admin_client, card):
    assert admin_client.get("/admin/cards/debitcard/add/").status_code == 403
    assert admin_client.post(f"/admin/cards/debitcard/{card.pk}/delete/", {"post": "yes"}).status_code == 403
    assert DebitCard.objects.count() == 1


def test_history_is_read_only(admin_client, card):
    change = DebitCardChange.objects.get()
    assert admin_client.get("/admin/cards/debitcardchange/", {"q": "1111"}).status_code == 200
    assert admin_client.get(f"/admin/cards/debitcardchange/{change.pk}/change/").status_code == 200
    response = admin_client.post(f"/admin/cards/debitcardchange/{change.pk}/change/", {"actor": "forged"})
    assert response.status_code == 403
    assert admin_client.get("/admin/cards/debitcardchange/add/").status_code == 403
    change.refresh_from_db()
    assert change.actor == "test"
