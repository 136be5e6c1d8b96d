"""manage.py rotate_encryption_keys: every row ends under the first key, resumable, loud about unreadable rows."""

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings

from bank_accounts.models import BankAccount
from core.encryption import DecryptionError, decrypt, encrypt, is_current
from tests.bank_accounts.conftest import ROUTING, ROUTING_2, save

pytestmark = pytest.mark.django_db
OLD, NEW, UNKNOWN = (Fernet.generate_key().decode() for _ in range(3))
LINE = "bank_accounts.BankAccount: "


def _numbers(i: int) -> tuple[str, str]:
    return f"{40000 + i}{i:03d}7", ROUTING if i % 2 else ROUTING_2


def _raw() -> dict[int, tuple[str, str, object]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, account_number, routing_number, updated_at FROM bank_accounts_bankaccount")
        return {pk: (acct, routing, updated) for pk, acct, routing, updated in cursor.fetchall()}


def _plain() -> dict[int, tuple[str, str]]:
    return {a.pk: (a.account_number, a.routing_number) for a in BankAccount.objects.all()}


def _rotate(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("rotate_encryption_keys", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _line(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(LINE))[len(LINE):]


@pytest.fixture
def old_rows():
    """Five accounts written under OLD; returns their plaintext by pk."""
    with override_settings(FIELD_ENCRYPTION_KEY=[OLD]):
        for i in range(5):
            account_number, routing_number = _numbers(i)
            save(user_id=f"u-{i}", account_id=f"a-{i}", account_number=account_number, routing_number=routing_number)
        return _plain()


def test_rotation_to_a_new_key_keeps_every_account_readable(old_rows):
    before = _raw()
    with override_settings(FIELD_ENCRYPTION_KEY=[NEW, OLD]):
        out, err = _rotate("--batch-size", "2")
    assert _line(out) == "rotated 5, already current 0, failed 0"
    assert "bank_accounts.BankAccount" in err and "5/5" in err  # the progress bar, on stderr

    after = _raw()
    with override_settings(FIELD_ENCRYPTION_KEY=[NEW]):  # the old key is gone
        assert _plain() == old_rows
        for pk, (account_number, routing_number, updated_at) in after.items():
            # One layer of ciphertext under NEW (the update did not run the value through the field again) ...
            assert is_current(account_number) and is_current(routing_number)
            assert (decrypt(account_number), decrypt(routing_number)) == old_rows[pk]
            # ... and the data did not change, so neither did updated_at.
            assert account_number != before[pk][0] and updated_at == before[pk][2]
    with override_settings(FIELD_ENCRYPTION_KEY=[OLD]), pytest.raises(DecryptionError):
        _plain()


def test_a_second_run_has_nothing_to_do(old_rows):
    with override_settings(FIELD_ENCRYPTION_KEY=[NEW, OLD]):
        _rotate()
        rotated = _raw()
        out, _ = _rotate()
    assert _line(out) == "rotated 0, already current 5, failed 0"
    assert _raw() == rotated


def test_an_interrupted_run_is_finished_by_the_next_one(old_rows):
    with override_settings(FIELD_ENCRYPTION_KEY=[NEW, OLD]):
        out, _ = _rotate("--batch-size", "2", "--max-batches", "1")
        assert _line(out) == ("rotated 2, already current 0, failed 0; stopped after 1 batch(es), 3 row(s) left: "
                              "run again")
        assert out.splitlines()[-1].endswith("not yet examined 3")
        partial = _raw()
        done = sorted(pk for pk, (acct, routing, _) in partial.items() if is_current(acct) and is_current(routing))
        assert done == sorted(old_rows)[:2]  # the first batch, committed; the others untouched
        assert _plain() == old_rows

        out, _ = _rotate("--batch-size", "2")
        assert _line(out) == "rotated 3, already current 2, failed 0"
        final = _raw()
        assert all(final[pk][:2] == partial[pk][:2] for pk in done)  # not redone
    with override_settings(FIELD_ENCRYPTION_KEY=[NEW]):
        assert _plain() == old_rows


def test_a_row_under_an_unknown_key_is_reported_left_alone_and_fails_the_command(old_rows):
    with override_settings(FIELD_ENCRYPTION_KEY=[UNKNOWN]):
        stray = save(user_id="u-x", account_id="a-x", account_number="88880001", routing_number=ROUTING).account
    stray_raw = _raw()[stray.pk]
    with override_settings(FIELD_ENCRYPTION_KEY=[NEW, OLD]):
        out = io.StringIO()
        with pytest.raises(CommandError) as exc:
            call_command("rotate_encryption_keys", "--batch-size", "4", stdout=out, stderr=io.StringIO())
        assert "could not be decrypted" in str(exc.value)
        assert exc.value.returncode == 1  # manage.py exits with it
        assert _line(out.getvalue()) == f"rotated 5, already current 0, failed 1 (pk {stray.pk})"
        assert "88880001" not in out.getvalue() + str(exc.value)
        assert _raw()[stray.pk] == stray_raw  # untouched
        assert all(is_current(acct) for pk, (acct, _, _) in _raw().items() if pk != stray.pk)
        # It keeps failing until the key is supplied; the rotated rows are not redone.
        with pytest.raises(CommandError):
            _rotate()
    with override_settings(FIELD_ENCRYPTION_KEY=[NEW]):
        assert _plain_except(stray.pk) == old_rows
    with override_settings(FIELD_ENCRYPTION_KEY=[NEW, UNKNOWN]):
        out, _ = _rotate()
        assert _line(out) == "rotated 1, already current 5, failed 0"


def _plain_except(pk: int) -> dict[int, tuple[str, str]]:
    return {a.pk: (a.account_number, a.routing_number) for a in BankAccount.objects.exclude(pk=pk)}


def test_a_row_with_one_field_under_each_key_is_completed(old_rows):
    pk = sorted(old_rows)[0]
    with override_settings(FIELD_ENCRYPTION_KEY=[NEW]):
        # Half-rotated row (e.g. written by hand): account number under NEW, routing number still under OLD.
        BankAccount.objects.filter(pk=pk).update(account_number=old_rows[pk][0])
    with override_settings(FIELD_ENCRYPTION_KEY=[NEW, OLD]):
        kept = _raw()[pk][0]
        out, _ = _rotate()
        assert _line(out) == "rotated 5, already current 0, failed 0"
        assert _raw()[pk][0] == kept and is_current(_raw()[pk][1])
    with override_settings(FIELD_ENCRYPTION_KEY=[NEW]):
        assert _plain() == old_rows


def test_an_empty_table_and_the_options(db):
    out, _ = _rotate("--model", "bank_accounts.BankAccount")
    assert _line(out) == "rotated 0, already current 0, failed 0"
    with pytest.raises(CommandError):
        _rotate("--model", "bank_accounts.BankAccountHistory")
    with pytest.raises(CommandError):
        _rotate("--batch-size", "0")
    with pytest.raises(CommandError):
        _rotate("--max-batches", "x")


def test_encrypt_helper_sanity():
    # The fixture's premise: different keys give different, mutually unreadable ciphertexts.
    with override_settings(FIELD_ENCRYPTION_KEY=[OLD]):
        token = encrypt("1234")
    with override_settings(FIELD_ENCRYPTION_KEY=[NEW]), pytest.raises(DecryptionError):
        decrypt(token)
