"""Back office: cards and their history show no tokens (overrides: tests/backoffice/test_card_actions.py)."""

import pytest

from cards.models import DebitCard, DebitCardChange
from tests.cards.conftest import save

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
