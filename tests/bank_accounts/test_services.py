"""Bank account services: save/update/no-op, validation (nothing written), delete, prenote status, hash, lookup."""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from bank_accounts.models import BankAccount, BankAccountHistory
from bank_accounts.selectors import bank_account_get, bank_account_history_list, bank_account_user_ids_for_hash
from bank_accounts.services import (
    bank_account_delete,
    bank_account_hash,
    bank_account_lookup,
    bank_account_set_prenote_status,
)
from core.errors import BadRequest, ConflictError, NotFoundError, ValidationError
from core.hashing import blind_index
from tests.bank_accounts.conftest import ACCOUNT, ACCOUNT_2, ROUTING, ROUTING_2, counts, save

pytestmark = pytest.mark.django_db


def _history_values() -> list[tuple]:
    return list(BankAccountHistory.objects.order_by("pk").values_list(
        "action", "user_id", "account_id", "last4", "account_routing_hash", "account_type", "prenote_status", "actor"))


def test_create_stores_hash_last4_and_defaults_and_writes_a_create_history_row():
    result = save(actor="service:user-svc")
    assert (result.created, result.changed) == (True, True)
    account = bank_account_get(user_id="user-1", account_id="acc-1", with_numbers=True)
    assert account.account_number == ACCOUNT and account.routing_number == ROUTING
    assert account.last4 == ACCOUNT[-4:]
    assert account.account_routing_hash == blind_index("bank", ROUTING, ACCOUNT)
    assert (account.account_type, account.prenote_status) == ("checking", "none")
    assert account.entry_timestamp is not None
    assert _history_values() == [("create", "user-1", "acc-1", ACCOUNT[-4:], account.account_routing_hash,
                                  "checking", "none", "service:user-svc")]


def test_new_numbers_update_the_row_reset_the_prenote_and_the_entry_time():
    save(account_type="savings")
    bank_account_set_prenote_status(user_id="user-1", account_id="acc-1", prenote_status="pending", actor="t")
    BankAccount.objects.update(entry_timestamp=timezone.now() - timedelta(days=3))
    before = BankAccount.objects.get().entry_timestamp

    result = save(account_number=ACCOUNT_2, routing_number=ROUTING_2)

    assert (result.created, result.changed) == (False, True)
    account = bank_account_get(user_id="user-1", account_id="acc-1", with_numbers=True)
    assert (account.account_number, account.routing_number, account.last4) == (ACCOUNT_2, ROUTING_2, ACCOUNT_2[-4:])
    assert account.prenote_status == "none"  # the prenote verified the old numbers
    assert account.account_type == "savings"  # omitted on update = unchanged
    assert account.entry_timestamp > before
    actions = [row[0] for row in _history_values()]
    assert actions == ["create", "prenote_status", "update"]
    assert _history_values()[-1][3:5] == (ACCOUNT_2[-4:], bank_account_hash(routing_number=ROUTING_2,
                                                                            account_number=ACCOUNT_2))


def test_a_type_change_alone_keeps_the_numbers_entry_time_and_prenote():
    save()
    bank_account_set_prenote_status(user_id="user-1", account_id="acc-1", prenote_status="pending", actor="t")
    before = BankAccount.objects.get()
    result = save(account_type="savings")
    after = BankAccount.objects.get()
    assert result.changed and after.account_type == "savings"
    assert (after.entry_timestamp, after.prenote_status) == (before.entry_timestamp, "pending")
    assert [row[0] for row in _history_values()] == ["create", "prenote_status", "update"]


def test_saving_what_is_stored_changes_nothing():
    save(account_type="savings")
    before = BankAccount.objects.values().get()
    for account_type in (None, "savings"):
        result = save(account_type=account_type)
        assert (result.created, result.changed) == (False, False)
    assert BankAccount.objects.values().get() == before
    assert counts() == (1, 1)


@pytest.mark.parametrize(("field", "value", "code", "reason"), [
    ("routing_number", "02600959", "invalid_routing_number", "length"),
    ("routing_number", "0260095930", "invalid_routing_number", "length"),
    ("routing_number", "02600959a", "invalid_routing_number", "non_digit"),
    ("routing_number", "026-00959", "invalid_routing_number", "non_digit"),
    ("routing_number", " 26009593", "invalid_routing_number", "non_digit"),
    ("routing_number", "026009594", "invalid_routing_number", "checksum"),
    ("routing_number", "", "invalid_routing_number", "non_digit"),
    ("routing_number", 26009593, "invalid_routing_number", "type"),
    ("routing_number", "".join(chr(0xFF10 + int(d)) for d in ROUTING), "invalid_routing_number", "non_digit"),
    ("account_number", "123", "invalid_account_number", "length"),
    ("account_number", "1" * 18, "invalid_account_number", "length"),
    ("account_number", "12345a", "invalid_account_number", "non_digit"),
    ("account_number", "1234 5678", "invalid_account_number", "non_digit"),
    ("account_number", None, "invalid_account_number", "type"),
    ("account_type", "loan", "invalid_account_type", None),
    ("user_id", "a b", "invalid_user_id", None),
    ("user_id", "u" * 65, "invalid_user_id", None),
    ("account_id", "", "invalid_account_id", None),
    ("account_id", "a/b", "invalid_account_id", None),
    ("account_id", "a" * 65, "invalid_account_id", None),
])
def test_bad_input_is_refused_with_a_precise_code_and_nothing_is_written(field, value, code, reason):
    save(user_id="other", account_id="other")  # an unrelated account must stay as it is
    before = (list(BankAccount.objects.values()), _history_values())
    with pytest.raises(ValidationError) as exc:
        save(**{field: value})
    assert exc.value.code == code
    if reason:
        assert exc.value.details == {"field": field, "reason": reason}
    assert str(value) not in exc.value.message or value in ("", None)
    assert (list(BankAccount.objects.values()), _history_values()) == before


def test_bad_input_on_update_leaves_the_account_unchanged():
    save()
    before = (list(BankAccount.objects.values()), _history_values())
    with pytest.raises(ValidationError):
        save(account_number=ACCOUNT_2, routing_number="026009594")
    assert (list(BankAccount.objects.values()), _history_values()) == before


def test_delete_removes_the_row_and_keeps_a_history_row():
    account = save(account_type="savings").account
    bank_account_delete(user_id="user-1", account_id="acc-1", actor="service:x")
    assert not BankAccount.objects.exists()
    assert _history_values()[-1] == ("delete", "user-1", "acc-1", ACCOUNT[-4:], account.account_routing_hash,
                                     "savings", "none", "service:x")
    with pytest.raises(NotFoundError) as exc:
        bank_account_delete(user_id="user-1", account_id="acc-1", actor="service:x")
    assert exc.value.code == "bank_account_not_found"
    assert counts() == (0, 2)


def test_get_of_an_unknown_account_is_a_404():
    save()
    with pytest.raises(NotFoundError) as exc:
        bank_account_get(user_id="user-1", account_id="acc-2")
    assert exc.value.code == "bank_account_not_found"
    with pytest.raises(NotFoundError):
        bank_account_get(user_id="user-2", account_id="acc-1")


def test_prenote_status_follows_its_transitions_and_records_history():
    save()
    for status in ("pending", "verified", "failed", "pending", "verified"):
        account = bank_account_set_prenote_status(user_id="user-1", account_id="acc-1", prenote_status=status,
                                                  actor="prenote-job")
        assert account.prenote_status == status == BankAccount.objects.get().prenote_status
    history = list(bank_account_history_list(user_id="user-1", account_id="acc-1").values_list(
        "action", "prenote_status"))
    assert history[0] == ("prenote_status", "verified") and len(history) == 6


def test_prenote_status_idempotent_refusals_and_unknowns_write_nothing():
    save()
    before = _history_values()
    bank_account_set_prenote_status(user_id="user-1", account_id="acc-1", prenote_status="none", actor="t")
    with pytest.raises(ConflictError) as exc:
        bank_account_set_prenote_status(user_id="user-1", account_id="acc-1", prenote_status="verified", actor="t")
    assert exc.value.code == "invalid_prenote_transition"
    assert exc.value.details == {"from": "none", "to": "verified"}
    with pytest.raises(ValidationError) as exc:
        bank_account_set_prenote_status(user_id="user-1", account_id="acc-1", prenote_status="ok", actor="t")
    assert exc.value.code == "invalid_prenote_status"
    with pytest.raises(NotFoundError):
        bank_account_set_prenote_status(user_id="user-1", account_id="nope", prenote_status="pending", actor="t")
    assert _history_values() == before
    assert BankAccount.objects.get().prenote_status == "none"


def test_bank_account_hash_is_the_keyed_blind_index_contract():
    value = bank_account_hash(routing_number=ROUTING, account_number=ACCOUNT)
    assert value == blind_index("bank", ROUTING, ACCOUNT) and len(value) == 64
    assert value != bank_account_hash(routing_number=ROUTING, account_number=ACCOUNT_2)
    with override_settings(HASH_KEY="another-key"):
        assert bank_account_hash(routing_number=ROUTING, account_number=ACCOUNT) != value


def test_user_ids_for_hash_include_past_holders_unless_told_not_to():
    save(user_id="u-2", account_id="x")
    save(user_id="u-1", account_id="y")
    save(user_id="u-3", account_id="z")
    bank_account_delete(user_id="u-3", account_id="z", actor="t")
    save(user_id="u-4", account_id="w", account_number=ACCOUNT_2)
    digest = bank_account_hash(routing_number=ROUTING, account_number=ACCOUNT)
    assert bank_account_user_ids_for_hash(account_routing_hash=digest) == ["u-1", "u-2", "u-3"]
    assert bank_account_user_ids_for_hash(account_routing_hash=digest, include_history=False) == ["u-1", "u-2"]
    assert bank_account_user_ids_for_hash(account_routing_hash="0" * 64) == []


def test_lookup_by_numbers_or_hash():
    save(user_id="u-2", account_id="x")
    save(user_id="u-1", account_id="y")
    digest = bank_account_hash(routing_number=ROUTING, account_number=ACCOUNT)
    expected = {"exists": True, "user_ids": ["u-1", "u-2"]}
    assert bank_account_lookup(routing_number=ROUTING, account_number=ACCOUNT) == expected
    assert bank_account_lookup(account_routing_hash=digest) == expected
    assert bank_account_lookup(account_routing_hash=digest.upper()) == expected
    assert bank_account_lookup(routing_number=ROUTING_2, account_number=ACCOUNT) == {"exists": False, "user_ids": []}


@pytest.mark.parametrize("kwargs", [
    {},
    {"routing_number": ROUTING},
    {"account_number": ACCOUNT},
    {"routing_number": ROUTING, "account_number": ACCOUNT, "account_routing_hash": "a" * 64},
    {"account_number": ACCOUNT, "account_routing_hash": "a" * 64},
])
def test_lookup_needs_exactly_one_form(kwargs):
    with pytest.raises(BadRequest) as exc:
        bank_account_lookup(**kwargs)
    assert exc.value.code == "invalid_lookup_request"


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"routing_number": "026009594", "account_number": ACCOUNT}, "invalid_routing_number"),
    ({"routing_number": ROUTING, "account_number": "12"}, "invalid_account_number"),
    ({"account_routing_hash": "g" * 64}, "invalid_account_routing_hash"),
    ({"account_routing_hash": "a" * 63}, "invalid_account_routing_hash"),
])
def test_lookup_validates_what_it_is_given(kwargs, code):
    with pytest.raises(ValidationError) as exc:
        bank_account_lookup(**kwargs)
    assert exc.value.code == code
