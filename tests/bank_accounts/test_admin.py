"""Back office: bank accounts and their history are read-only and never show (or decrypt) a number."""

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import override_settings

from bank_accounts.models import BankAccount, BankAccountHistory
from tests.bank_accounts.conftest import ACCOUNT, ACCOUNT_2, ROUTING, ROUTING_2, counts, save

pytestmark = pytest.mark.django_db
ACCOUNTS = "/admin/bank_accounts/bankaccount/"
HISTORY = "/admin/bank_accounts/bankaccounthistory/"


@pytest.fixture(params=["superuser", "support", "admin"])
def staff_client(client, request):
    users = get_user_model().objects
    if request.param == "superuser":
        user = users.create_superuser("root", "root@example.com", "root-password-123")
    else:
        user = users.create_user(request.param, f"{request.param}@example.com", "staff-password-123", is_staff=True)
        user.groups.add(Group.objects.get(name=request.param))
        user.user_permissions.add(*_view_permissions())  # whatever the groups grant, viewing is enough here
    client.force_login(user)
    return client


def _view_permissions():
    from django.contrib.auth.models import Permission

    return Permission.objects.filter(content_type__app_label="bank_accounts", codename__startswith="view_")


@pytest.fixture
def account():
    save(account_number=ACCOUNT_2, routing_number=ROUTING_2)
    return save(account_number=ACCOUNT, routing_number=ROUTING).account


def _pages(account) -> list[str]:
    history = BankAccountHistory.objects.first()
    return [ACCOUNTS, f"{ACCOUNTS}{account.pk}/change/", f"{ACCOUNTS}?q={account.last4}", HISTORY,
            f"{HISTORY}{history.pk}/change/"]


def test_pages_show_last4_but_no_number_in_any_form(staff_client, account):
    for page in _pages(account):
        response = staff_client.get(page)
        assert response.status_code == 200, page
        html = response.content.decode()
        for number in (ACCOUNT, ACCOUNT_2, ROUTING, ROUTING_2):
            assert number not in html, page
        assert 'name="account_number"' not in html and 'name="routing_number"' not in html
    assert ACCOUNT[-4:] in staff_client.get(ACCOUNTS).content.decode()


def test_the_admin_never_decrypts(staff_client, account):
    with override_settings(FIELD_ENCRYPTION_KEY=[Fernet.generate_key().decode()]):  # no key fits the rows
        for page in _pages(account):
            assert staff_client.get(page).status_code == 200, page


def test_nothing_can_be_added_changed_or_deleted(staff_client, account):
    before = (list(BankAccount.objects.values()), counts())
    assert staff_client.get(f"{ACCOUNTS}add/").status_code == 403
    assert staff_client.get(f"{HISTORY}add/").status_code == 403
    assert staff_client.post(f"{ACCOUNTS}{account.pk}/change/", {"last4": "0000", "prenote_status": "verified"}
                             ).status_code == 403
    assert staff_client.post(f"{ACCOUNTS}{account.pk}/delete/", {"post": "yes"}).status_code == 403
    staff_client.post(ACCOUNTS, {"action": "delete_selected", "_selected_action": [account.pk], "post": "yes"})
    assert (list(BankAccount.objects.values()), counts()) == before
