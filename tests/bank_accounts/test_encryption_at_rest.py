"""Done when: the table holds no plaintext numbers; a wrong key fails loudly; [new, old] reads everything."""

import pytest
from cryptography.fernet import Fernet
from django.db import IntegrityError, connection, transaction
from django.test import override_settings

from bank_accounts.models import BankAccount, BankAccountHistory
from bank_accounts.selectors import bank_account_get
from core.encryption import DecryptionError, decrypt, is_current
from tests.bank_accounts.conftest import ACCOUNT, ACCOUNT_2, ROUTING, ROUTING_2, SHORT_ACCOUNT, save

pytestmark = pytest.mark.django_db
OLD, NEW, OTHER = (Fernet.generate_key().decode() for _ in range(3))
NUMBERS = (ACCOUNT, ACCOUNT_2, SHORT_ACCOUNT, ROUTING, ROUTING_2)


def _raw_rows(table: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
        return cursor.fetchall()


def _fragments(number: str) -> set[str]:
    """The number and every substring of 8 or more digits of it."""
    if len(number) < 8:
        return {number}
    return {number[i:j] for i in range(len(number)) for j in range(i + 8, len(number) + 1)}


def _assert_no_plaintext(table: str) -> None:
    text = "\n".join("|".join(str(value) for value in row) for row in _raw_rows(table))
    assert text, f"{table} is empty: the test would prove nothing"
    for number in NUMBERS:
        leaked = sorted(f for f in _fragments(number) if f in text)
        assert not leaked, f"{table} holds plaintext digits {leaked}"


@pytest.fixture
def accounts():
    save(user_id="u-1", account_id="a-1", account_number=ACCOUNT, routing_number=ROUTING)
    save(user_id="u-2", account_id="a-2", account_number=ACCOUNT_2, routing_number=ROUTING_2)
    save(user_id="u-3", account_id="a-3", account_number=SHORT_ACCOUNT, routing_number=ROUTING)
    # An update and a delete too, so that the history has every kind of row.
    save(user_id="u-1", account_id="a-1", account_number=ACCOUNT_2, routing_number=ROUTING_2)
    save(user_id="u-1", account_id="a-1", account_number=ACCOUNT, routing_number=ROUTING)


def test_raw_sql_finds_no_plaintext_account_or_routing_number(accounts):
    _assert_no_plaintext(BankAccount._meta.db_table)
    _assert_no_plaintext(BankAccountHistory._meta.db_table)


def test_the_stored_value_is_one_layer_of_ciphertext_of_the_number(accounts):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT account_number, routing_number, last4 FROM bank_accounts_bankaccount WHERE account_id = %s",
            ["a-2"],
        )
        raw_account, raw_routing, last4 = cursor.fetchone()
    assert decrypt(raw_account) == ACCOUNT_2 and decrypt(raw_routing) == ROUTING_2
    assert last4 == ACCOUNT_2[-4:]


def test_the_model_reads_back_the_plaintext(accounts):
    account = bank_account_get(user_id="u-2", account_id="a-2", with_numbers=True)
    assert (account.account_number, account.routing_number) == (ACCOUNT_2, ROUTING_2)


def test_a_wrong_key_makes_reads_fail_loudly_not_return_ciphertext():
    with override_settings(FIELD_ENCRYPTION_KEY=[OLD]):
        save(user_id="u-1", account_id="a-1")
    with override_settings(FIELD_ENCRYPTION_KEY=[OTHER]):
        with pytest.raises(DecryptionError):
            BankAccount.objects.get(user_id="u-1", account_id="a-1")
        with pytest.raises(DecryptionError):
            list(BankAccount.objects.values_list("account_number", flat=True))
        with pytest.raises(DecryptionError):
            bank_account_get(user_id="u-1", account_id="a-1", with_numbers=True)
        # Without the numbers nothing is decrypted: the account's metadata stays readable.
        assert bank_account_get(user_id="u-1", account_id="a-1").last4 == ACCOUNT[-4:]
        deferred = bank_account_get(user_id="u-1", account_id="a-1")
        with pytest.raises(DecryptionError):
            deferred.routing_number  # noqa: B018 (loading the deferred field is the point)


def test_with_new_and_old_keys_every_row_is_readable_and_new_writes_use_the_new_key():
    with override_settings(FIELD_ENCRYPTION_KEY=[OLD]):
        save(user_id="u-1", account_id="a-1", account_number=ACCOUNT, routing_number=ROUTING)
    with override_settings(FIELD_ENCRYPTION_KEY=[NEW, OLD]):
        save(user_id="u-2", account_id="a-2", account_number=ACCOUNT_2, routing_number=ROUTING_2)
        got = {(a.account_id, a.account_number, a.routing_number) for a in BankAccount.objects.all()}
        assert got == {("a-1", ACCOUNT, ROUTING), ("a-2", ACCOUNT_2, ROUTING_2)}
        raw = dict(_raw_pairs())
        assert not is_current(raw["a-1"]) and is_current(raw["a-2"])


def _raw_pairs():
    with connection.cursor() as cursor:
        cursor.execute("SELECT account_id, account_number FROM bank_accounts_bankaccount")
        return cursor.fetchall()


@pytest.mark.parametrize(("field", "value"), [("prenote_status", "bogus"), ("account_type", "loan")])
def test_the_database_refuses_unknown_enum_values(field, value):
    account = save().account
    with pytest.raises(IntegrityError), transaction.atomic():
        BankAccount.objects.filter(pk=account.pk).update(**{field: value})


def test_one_account_per_user_and_plaid_account_id():
    save()
    with pytest.raises(IntegrityError), transaction.atomic():
        BankAccount.objects.create(user_id="user-1", account_id="acc-1", account_number=ACCOUNT_2,
                                   routing_number=ROUTING_2, account_routing_hash="0" * 64, last4="2961",
                                   entry_timestamp="2026-01-01T00:00:00Z")
