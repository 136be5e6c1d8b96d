"""An expression written to an encrypted field is SQL, not plaintext: it must not be encrypted as text."""

import pytest
from django.db.models import F

from bank_accounts.models import BankAccount
from core.encryption import decrypt, encrypt
from tests.bank_accounts.conftest import ACCOUNT, ROUTING, save

pytestmark = pytest.mark.django_db


def test_update_with_f_expression_keeps_the_value(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        save()
    BankAccount.objects.update(account_number=F("account_number"))
    account = BankAccount.objects.get()
    assert (account.account_number, account.routing_number) == (ACCOUNT, ROUTING)


def test_update_with_a_ciphertext_value_stores_it_once(django_capture_on_commit_callbacks):
    from django.db import connection
    from django.db.models import Value

    with django_capture_on_commit_callbacks():
        save()
    BankAccount.objects.update(account_number=Value(encrypt("12345678901")))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT account_number FROM {BankAccount._meta.db_table}")
        stored = cursor.fetchone()[0]
    assert decrypt(stored) == "12345678901"
    assert BankAccount.objects.get().account_number == "12345678901"
