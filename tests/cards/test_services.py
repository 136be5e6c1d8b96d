"""Card services: save/replace/delete with history, validation codes, the keyed hash, admin update, invalidation,
the failure switch and the cross-app contract functions."""

import hashlib
import hmac
import json

import pytest
from django.test import override_settings

from cards import selectors, services
from cards.models import ChangeType, DebitCard, DebitCardChange
from core.errors import ConflictError, NotFoundError, ValidationError
from core.models import AuditEntry
from tests.cards.conftest import OTHER_USER, USER, card_body, exp_in, save, state, today

pytestmark = pytest.mark.django_db


# --- save / replace / delete ------------------------------------------------------------------------------------

def test_first_save_creates_the_card_and_records_the_change():
    card, created = services.card_save(user_id=USER, actor="service:float", **card_body())
    assert created is True
    card.refresh_from_db()
    assert card.masked_card_number == "1111" and card.is_valid and card.invalid_date is None
    assert card.hashed_card_number == services.card_hash(last4="1111", card_exp=card.card_exp)
    change = DebitCardChange.objects.get()
    assert change.change_type == ChangeType.CREATED and change.actor == "service:float"
    assert (change.old_masked_card_number, change.new_masked_card_number) == ("", "1111")
    assert change.new_hashed_card_number == card.hashed_card_number


def test_save_replaces_the_active_card_keeps_one_row_and_resets_validity():
    first = save()
    services.card_invalidate(user_id=USER, reason="05: Do not honor")
    services.card_toggle_failure(user_id=USER)
    card, created = services.card_save(user_id=USER, actor="user:user-1", **card_body(
        masked_card_number="4444", transaction_reference_id="tok_c2", debit_transaction_reference_id="tok_d2"))
    assert created is False
    assert DebitCard.objects.count() == 1 and card.pk == first.pk
    card.refresh_from_db()
    assert card.masked_card_number == "4444" and card.transaction_reference_id == "tok_c2"
    assert card.is_valid and card.invalid_date is None and card.invalid_reason == ""
    assert card.force_failure is False and card.token_refreshed_at is None
    replaced = DebitCardChange.objects.filter(change_type=ChangeType.REPLACED).get()
    assert (replaced.old_masked_card_number, replaced.new_masked_card_number) == ("1111", "4444")
    assert replaced.old_hashed_card_number == first.hashed_card_number
    assert replaced.new_hashed_card_number == card.hashed_card_number != first.hashed_card_number


def test_saving_the_same_valid_card_again_changes_nothing():
    save()
    before = state()
    _, created = services.card_save(user_id=USER, actor="x", **card_body())
    assert created is False and state() == before


def test_saving_the_same_card_while_invalid_revalidates_it_and_counts():
    save()
    services.card_invalidate(user_id=USER, reason="hard decline")
    card, _ = services.card_save(user_id=USER, actor="x", **card_body())
    assert card.is_valid and card.invalid_date is None
    assert selectors.card_changes_in_window(user_id=USER) == 2


def test_history_never_holds_tokens():
    save(transaction_reference_id="tok_SECRET_CREDIT", debit_transaction_reference_id="tok_SECRET_DEBIT")
    services.card_admin_update(user_id=USER, actor="mx", reason="fix", transaction_reference_id="tok_NEW_SECRET")
    services.card_delete(user_id=USER, actor="x")
    dump = json.dumps(list(DebitCardChange.objects.values()), default=str)
    for token in ("tok_SECRET_CREDIT", "tok_SECRET_DEBIT", "tok_NEW_SECRET"):
        assert token not in dump


def test_delete_records_the_change_and_removes_the_card():
    card = save()
    services.card_delete(user_id=USER, actor="user:user-1")
    assert not DebitCard.objects.exists()
    change = DebitCardChange.objects.get(change_type=ChangeType.DELETED)
    assert (change.old_masked_card_number, change.new_masked_card_number) == ("1111", "")
    assert change.old_hashed_card_number == card.hashed_card_number and change.actor == "user:user-1"


def test_delete_without_card_is_404_and_writes_nothing():
    before = state()
    with pytest.raises(NotFoundError) as exc:
        services.card_delete(user_id=USER, actor="x")
    assert exc.value.code == "debit_card_not_found" and state() == before


def test_get_without_card_is_404_debit_card_not_found():
    with pytest.raises(NotFoundError) as exc:
        services.card_get(user_id=USER)
    assert exc.value.code == "debit_card_not_found"


def test_cards_of_different_users_are_independent():
    save(USER)
    save(OTHER_USER, masked_card_number="2222")
    assert services.card_get(user_id=USER).masked_card_number == "1111"
    assert services.card_get(user_id=OTHER_USER).masked_card_number == "2222"


# --- validation -------------------------------------------------------------------------------------------------

def _refused(code: str, **overrides):
    before = state()
    with pytest.raises(ValidationError) as exc:
        services.card_save(user_id=USER, actor="x", **card_body(**overrides))
    assert exc.value.code == code, exc.value.as_dict()
    assert state() == before
    return exc.value


@pytest.mark.parametrize("last4", ["111", "11111", "abcd", "", " 111", "\u0661\u0661\u0661\u0661", "11 1"])
def test_masked_card_number_must_be_exactly_4_digits(last4):
    _refused("invalid_masked_card_number", masked_card_number=last4)


FULLWIDTH_EXP = "\uff11\uff12\uff12\uff10\uff13\uff10"  # "122030" in full-width digits


@pytest.mark.parametrize("exp", ["12/30", "1230", "1220300", "ab2030", "", " 122030", FULLWIDTH_EXP, "12-2030"])
def test_malformed_expiry_is_invalid_card_exp(exp):
    error = _refused("invalid_card_exp", card_exp=exp)
    assert error.details == {"field": "card_exp"}


@pytest.mark.parametrize("month", ["00", "13", "99"])
def test_expiry_month_out_of_range_is_invalid_card_exp(month):
    _refused("invalid_card_exp", card_exp=f"{month}{today().year + 1}")


def test_expiry_in_the_past_is_card_expired():
    now = today()
    _refused("card_expired", card_exp=f"12{now.year - 1}")
    last_month = (now.month - 2) % 12 + 1
    year = now.year if now.month > 1 else now.year - 1
    _refused("card_expired", card_exp=f"{last_month:02d}{year}")


def test_expiry_this_month_is_still_valid():
    now = today()
    card = save(card_exp=f"{now.month:02d}{now.year}")
    assert card.card_exp == f"{now.month:02d}{now.year}"


def test_expiry_decades_ahead_is_invalid():
    _refused("invalid_card_exp", card_exp=exp_in(years=21))


@pytest.mark.parametrize("field", ["transaction_reference_id", "debit_transaction_reference_id"])
@pytest.mark.parametrize(("value", "code"), [
    ("", "token_empty"),
    ("   ", "token_empty"),
    ("t" * 65, "token_too_long"),
    ("tok with space", "token_malformed"),
    ("tok\n1", "token_malformed"),
    ("tökén", "token_malformed"),
    ("tok_4111111111111111", "card_data_not_allowed"),
])
def test_bad_tokens_are_refused_with_a_precise_code(field, value, code):
    error = _refused(code, **{field: value})
    assert error.details["field"] == field
    assert value.strip() == "" or value not in json.dumps(error.as_dict())


def test_token_of_64_printable_characters_is_accepted():
    token = "T" * 60 + "!~_-"
    card = save(transaction_reference_id=token, debit_transaction_reference_id="tok_a4111111111111111b")
    assert card.transaction_reference_id == token
    assert card.debit_transaction_reference_id == "tok_a4111111111111111b"  # digits inside a token: not a PAN


@pytest.mark.parametrize("user_id", ["", "a" * 65, "bad/id", "bad id"])
def test_malformed_user_id_is_refused(user_id):
    before = state()
    with pytest.raises(ValidationError) as exc:
        services.card_save(user_id=user_id, actor="x", **card_body())
    assert exc.value.code == "invalid_user_id" and state() == before


# --- keyed hash -------------------------------------------------------------------------------------------------

@override_settings(HASH_KEY="hash-key-one")
def test_hashed_card_number_is_the_keyed_hmac_of_last4_and_expiry():
    exp = exp_in(3)
    card = save(card_exp=exp)
    expected = hmac.new(b"hash-key-one", f"card\x1f1111\x1f{exp}".encode(), hashlib.sha256).hexdigest()
    assert card.hashed_card_number == expected
    for plain in (f"1111{exp}", f"card1111{exp}", f"1111\x1f{exp}"):
        assert card.hashed_card_number != hashlib.sha256(plain.encode()).hexdigest()
    with override_settings(HASH_KEY="hash-key-two"):
        assert services.card_hash(last4="1111", card_exp=exp) != expected
    assert services.card_hash(last4="1111", card_exp=exp) == expected
    assert services.card_hash(last4="1112", card_exp=exp) != expected


# --- admin update -----------------------------------------------------------------------------------------------

def test_admin_update_changes_tokens_expiry_and_validity_and_is_audited():
    card = save(transaction_reference_id="tok_old_credit", debit_transaction_reference_id="tok_old_debit")
    services.card_invalidate(user_id=USER, reason="hard decline")
    new_exp = exp_in(4, month=6)
    updated = services.card_admin_update(
        user_id=USER, actor="support-key", reason="customer called, ticket 42",
        transaction_reference_id="tok_new_credit", debit_transaction_reference_id="tok_new_debit",
        card_exp=new_exp, is_valid=True,
    )
    updated.refresh_from_db()
    assert updated.transaction_reference_id == "tok_new_credit"
    assert updated.debit_transaction_reference_id == "tok_new_debit"
    assert updated.card_exp == new_exp and updated.is_valid and updated.invalid_date is None
    assert updated.hashed_card_number == services.card_hash(last4="1111", card_exp=new_exp)

    entry = AuditEntry.objects.get()
    assert entry.actor == "support-key" and entry.reason == "customer called, ticket 42"
    assert entry.action == "debit_card.admin_update" and entry.user_id == USER and entry.target_id == str(card.pk)
    assert entry.changes["card_exp"] == {"old": card.card_exp, "new": new_exp}
    assert entry.changes["is_valid"] == {"old": False, "new": True}
    assert entry.changes["references_replaced"] == ["debit_transaction_reference_id", "transaction_reference_id"]
    dump = json.dumps(entry.changes)
    for token in ("tok_old_credit", "tok_old_debit", "tok_new_credit", "tok_new_debit"):
        assert token not in dump

    change = DebitCardChange.objects.get(change_type=ChangeType.ADMIN_UPDATED)
    assert change.actor == "support-key" and change.reason == "customer called, ticket 42"
    assert change.old_hashed_card_number == card.hashed_card_number
    assert change.new_hashed_card_number == updated.hashed_card_number


def test_admin_update_can_invalidate():
    save()
    card = services.card_admin_update(user_id=USER, actor="mx", reason="fraud report", is_valid=False)
    assert card.is_valid is False and card.invalid_date is not None and card.invalid_reason == "admin_override"


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"reason": "", "is_valid": False}, "reason_required"),
    ({"reason": "   ", "is_valid": False}, "reason_required"),
    ({"reason": "why"}, "nothing_to_update"),
    ({"reason": "why", "card_exp": "13" + str(today().year + 1)}, "invalid_card_exp"),
    ({"reason": "why", "card_exp": "01" + str(today().year - 1)}, "card_expired"),
    ({"reason": "why", "transaction_reference_id": ""}, "token_empty"),
    ({"reason": "why", "debit_transaction_reference_id": "x" * 65}, "token_too_long"),
])
def test_admin_update_refusals_write_nothing(kwargs, code):
    save()
    before = state()
    with pytest.raises(ValidationError) as exc:
        services.card_admin_update(user_id=USER, actor="mx", **kwargs)
    assert exc.value.code == code and state() == before


def test_admin_update_without_card_is_404():
    before = state()
    with pytest.raises(NotFoundError) as exc:
        services.card_admin_update(user_id=USER, actor="mx", reason="why", is_valid=True)
    assert exc.value.code == "debit_card_not_found" and state() == before


def test_admin_update_ignores_the_change_limit():
    save()
    for last4 in ("2222", "3333"):
        save(masked_card_number=last4)
    assert selectors.card_changeable(user_id=USER) == (False, "max_changes_reached")
    services.card_admin_update(user_id=USER, actor="mx", reason="fix", card_exp=exp_in(5))
    assert selectors.card_changes_in_window(user_id=USER) == 3  # admin updates do not count


# --- invalidation -----------------------------------------------------------------------------------------------

def test_invalidate_marks_the_card_and_records_it_once():
    save()
    card = services.card_invalidate(user_id=USER, reason="05: Do not honor")
    assert card.is_valid is False and card.invalid_reason == "05: Do not honor"
    first_date = card.invalid_date
    again = services.card_invalidate(user_id=USER, reason="other")
    assert again.invalid_date == first_date and again.invalid_reason == "05: Do not honor"
    assert DebitCardChange.objects.filter(change_type=ChangeType.INVALIDATED).count() == 1


def test_invalidate_only_if_token_spares_a_replaced_card():
    save(debit_transaction_reference_id="tok_new_debit")
    before = state()
    assert services.card_invalidate(user_id=USER, reason="decline", only_if_token="tok_old_debit") is None
    assert state() == before
    assert services.card_invalidate(user_id=USER, reason="decline", only_if_token="tok_new_debit").is_valid is False


def test_invalidate_without_card_returns_none():
    assert services.card_invalidate(user_id=USER, reason="decline") is None
    assert not DebitCardChange.objects.exists()


# --- failure switch ---------------------------------------------------------------------------------------------

def test_toggle_failure_flips_the_flag():
    save()
    assert services.card_toggle_failure(user_id=USER).force_failure is True
    assert services.card_toggle_failure(user_id=USER).force_failure is False


@override_settings(ENVIRONMENT="prod")
def test_toggle_failure_does_not_exist_in_prod():
    save()
    with pytest.raises(NotFoundError) as exc:
        services.card_toggle_failure(user_id=USER)
    assert exc.value.code == "not_found"
    assert DebitCard.objects.get().force_failure is False


def test_toggle_failure_without_card_is_404():
    with pytest.raises(NotFoundError) as exc:
        services.card_toggle_failure(user_id=USER)
    assert exc.value.code == "debit_card_not_found"


# --- cross-app contract -----------------------------------------------------------------------------------------

def test_card_user_ids_for_hash_covers_active_cards_and_history():
    exp = exp_in(2)
    shared = services.card_hash(last4="1111", card_exp=exp)
    save("user-a", card_exp=exp)
    save("user-b", card_exp=exp)
    save("user-b", masked_card_number="9999", card_exp=exp)  # replaced: the hash stays in b's history
    save("user-c", card_exp=exp)
    services.card_delete(user_id="user-c", actor="x")  # deleted: still in c's history
    save("user-d", masked_card_number="5555", card_exp=exp)
    assert services.card_user_ids_for_hash(hashed_card_number=shared) == ["user-a", "user-b", "user-c"]
    assert services.card_user_ids_for_hash(hashed_card_number="0" * 64) == []
    assert services.card_user_ids_for_hash(hashed_card_number="") == []


def test_conflict_error_is_a_409_with_reason():
    save()
    save(masked_card_number="2222")
    save(masked_card_number="3333")
    before = state()
    with pytest.raises(ConflictError) as exc:
        save(masked_card_number="4444")
    assert exc.value.status_code == 409 and exc.value.code == "debit_card_not_changeable"
    assert exc.value.details["reason"] == "max_changes_reached"
    assert state() == before
